"""Best-first order of a batch-size sweep: the same trials, the ones likely to be good first.

Exact pruning (:func:`feedwise.studies.batch_size.scaling.should_prune`) stops a trial once it
cannot beat the best steps-to-result already found for its batch size, so it saves the most
when a good trial finishes early. Nothing here changes *which* points are trained (the Sobol
points ``0..N-1`` of each batch size): only the order they run in, so the steps-to-result of
every batch size is the one the unpruned sweep of the same points gives.

- **Batch sizes**: first the one nearest (in log) to the reference batch size (where the
  workload's search space is centred), then repeatedly the unvisited one nearest to a visited
  one (ties: nearer the reference), so every batch size after the first has a finished neighbour.
- **Learning-rate rule, fitted**: the best learning rates of the finished batch sizes,
  interpolated piecewise-linearly in log lr against log B, extrapolated beyond them with the slope
  of the two nearest finished batch sizes (Shallue et al. find no single rule, so none is assumed
  where two batch sizes are known). With one finished batch size there is nothing to fit: the
  square-root rule (slope 1/2, between the constant and the linear rule) is the stated prior.
- **Anchor of a batch size**: its own best trial once one reached the target; before that the
  best trial of the nearest finished batch size, its learning rate moved by the fitted rule; with
  neither, none (the points run in their given order).
- **Points**: the remaining points sorted by their distance to the anchor in the space's unit cube
  (log scale for log parameters; the learning rate weighs :data:`LR_WEIGHT` times the others);
  ties keep the given order.
"""

from __future__ import annotations

import math

from feedwise.studies.batch_size.search_space import LOG_PARAMS

ORDERS = ("best-first", "given")
PRIOR_SLOPE = 0.5     # d log lr / d log B with a single finished batch size (nothing to fit yet)
LR_WEIGHT = 2.0       # the learning rate matters most (Shallue et al.): its coordinate counts double


def batch_size_order(batch_sizes: list[int], ref: int | None) -> list[int]:
    """Batch sizes from the one nearest (log) to ``ref``, then each time the unvisited one nearest
    to a visited one (ties: the one nearer ``ref``, then the smaller)."""
    left = sorted({int(b) for b in batch_sizes})
    if not left:
        return []
    centre = ref if ref and ref > 0 else left[len(left) // 2]
    first = min(left, key=lambda b: (abs(math.log(b / centre)), b))
    order = [first]
    left.remove(first)
    while left:
        nxt = min(left, key=lambda b: (min(abs(math.log(b / v)) for v in order), abs(math.log(b / centre)), b))
        order.append(nxt)
        left.remove(nxt)
    return order


def lr_rule(best_lr: dict[int, float]):
    """The fitted rule ``B -> predicted best lr`` from ``{batch size: best lr}`` (at least one)."""
    pts = sorted((math.log(b), math.log(lr)) for b, lr in best_lr.items() if lr and lr > 0)
    if not pts:
        raise ValueError("lr_rule needs at least one finished batch size")

    def predict(batch_size: int) -> float:
        x = math.log(batch_size)
        if len(pts) == 1:
            return math.exp(pts[0][1] + PRIOR_SLOPE * (x - pts[0][0]))
        if x <= pts[0][0]:
            (x0, y0), (x1, y1) = pts[0], pts[1]
        elif x >= pts[-1][0]:
            (x0, y0), (x1, y1) = pts[-2], pts[-1]
        else:
            i = next(i for i in range(1, len(pts)) if x <= pts[i][0])
            (x0, y0), (x1, y1) = pts[i - 1], pts[i]
        return math.exp(y0 + (y1 - y0) * (x - x0) / (x1 - x0))

    return predict


def anchor(batch_size: int, best: dict[int, dict]) -> dict | None:
    """The point a batch size's search starts from. ``best``: ``{batch size: params of its best
    trial}`` of the batch sizes that have one (``lr`` among the params)."""
    if batch_size in best:
        return dict(best[batch_size])
    if not best:
        return None
    nb = min(best, key=lambda b: (abs(math.log(b / batch_size)), b))
    rule = lr_rule({b: p["lr"] for b, p in best.items() if "lr" in p})
    out = dict(best[nb])
    if "lr" in out:   # moved by the rule, relative to the neighbour's own best (keeps its offset from the fit)
        out["lr"] = out["lr"] * rule(batch_size) / rule(nb)
    return out


def unit(space: dict, params: dict) -> dict[str, float]:
    """Coordinates in the unit cube of the tuned parameters (log scale for log parameters)."""
    out = {}
    for k, v in space.items():
        if not isinstance(v, list) or k not in params:
            continue
        lo, hi, x = float(v[0]), float(v[1]), float(params[k])
        if k in LOG_PARAMS:
            lo, hi, x = math.log(lo), math.log(hi), math.log(max(x, 1e-300))
        out[k] = (x - lo) / (hi - lo)
    return out


def rank_points(points: list[int], params_of, space: dict, anchor_params: dict | None) -> list[int]:
    """``points`` nearest to ``anchor_params`` first (``params_of(point) -> params``); given order
    without an anchor (and between equal distances)."""
    if anchor_params is None:
        return list(points)
    a = unit(space, anchor_params)

    def dist(p: int) -> float:
        u = unit(space, params_of(p))
        return sum((LR_WEIGHT if k == "lr" else 1.0) * (u[k] - a[k]) ** 2 for k in a if k in u)

    return [p for _, _, p in sorted((dist(p), i, p) for i, p in enumerate(points))]
