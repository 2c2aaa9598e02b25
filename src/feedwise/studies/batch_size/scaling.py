"""The maths of the batch-size study, as pure functions over measurements (no training).

Definitions (DESIGN.md, kept exact):

- **steps-to-result** of one trial: the first evaluation step at which ``val_error`` is
  *strictly* below the target; of a batch size: the minimum of that over all its trials; a
  trial that never reaches the target does not count, and a batch size where none reaches it
  has ``None``.
- **perfect scaling** from a reference point (B0, S0): ``S(B) = S0 * B0 / B``.
- **regimes**, between consecutive measured batch sizes B_i < B_j with steps S_i, S_j, by the
  log-log slope ``s = log(S_j / S_i) / log(B_j / B_i)`` (perfect scaling is s = -1, no gain
  at all is s = 0):

  * ``perfect scaling``          when s <= -0.75 (at least 3/4 of the perfect log-speedup),
  * ``diminishing returns``      when -0.75 < s < -0.25,
  * ``maximal data parallelism`` when s >= -0.25 (at most 1/4 of the perfect log-speedup).

  Each measured batch size after the first is labelled by the segment that ends at it; the
  first batch size takes the label of the first segment. Batch sizes that never reached the
  target are ``unreached`` and end the curve.
- **knee** (critical batch size): the fit of ``S(B) = S_min * (1 + B_crit / B)`` (the model of
  McCandlish et al. 2018) to the measured points, least squares on relative errors; at
  ``B = B_crit`` training takes twice the minimal number of steps. ``B_crit`` is ``inf`` when
  the points show no sign of a floor (``S_min <= 0``).
- **effective learning rate**: ``lr / (1 - momentum)`` for heavy-ball and Nesterov momentum,
  ``lr`` for plain SGD (and for Adam, where the ratio has no such meaning).
"""

from __future__ import annotations

import math
from typing import Iterable, Sequence

PERFECT_SLOPE = -0.75
MAXIMAL_SLOPE = -0.25
REGIMES = ("perfect scaling", "diminishing returns", "maximal data parallelism")


def first_step_below(rows: Iterable[dict], target: float) -> int | None:
    """First eval step with ``val_error`` strictly below ``target`` (rows in step order)."""
    for r in rows:
        v = r.get("val_error")
        if v is None or v == "":
            continue
        v = float(v)
        if math.isfinite(v) and v < target:
            return int(r["step"])
    return None


def steps_to_result(trials_rows: Iterable[Iterable[dict]], target: float) -> int | None:
    """Minimum over trials of :func:`first_step_below`; ``None`` when no trial reaches it."""
    best = None
    for rows in trials_rows:
        s = first_step_below(rows, target)
        if s is not None and (best is None or s < best):
            best = s
    return best


def perfect_scaling(batch_sizes: Sequence[float], b0: float, s0: float) -> list[float]:
    """Steps that perfect scaling from the point (b0, s0) predicts at each batch size."""
    return [s0 * b0 / b for b in batch_sizes]


def _reached(curve: dict[int, int | None]) -> list[tuple[int, int]]:
    """(B, S) in increasing B for the batch sizes that reached the target (those that did not
    are skipped, and labelled "unreached" by the callers)."""
    return [(int(b), int(curve[b])) for b in sorted(curve) if curve[b] is not None]


def classify_slope(slope: float) -> str:
    if slope <= PERFECT_SLOPE:
        return REGIMES[0]
    if slope < MAXIMAL_SLOPE:
        return REGIMES[1]
    return REGIMES[2]


def regimes(curve: dict[int, int | None]) -> dict:
    """Label each batch size with a regime (rule in the module docstring).

    Returns ``{"by_batch_size": {B: label}, "segments": [{from, to, slope, regime}],
    "largest_perfect": B or None, "largest_useful": B or None, "rule": text}``.

    Both "largest" numbers are read off the same labels as the table, counting from the smallest
    batch size that reached the target: ``largest_perfect`` is the last B of the leading run of
    batch sizes labelled "perfect scaling" (``None`` when the first segment is not perfect, i.e.
    when no batch size is labelled "perfect scaling" from the start), ``largest_useful`` the last
    B before the first "maximal data parallelism" label (``None`` when the first segment is
    already maximal). A single reached batch size has no segment: both are ``None``.
    :func:`regime_sentence` says the same in words."""
    pts = _reached(curve)
    labels: dict[int, str] = {}
    segments = []
    for (b0, s0), (b1, s1) in zip(pts, pts[1:]):
        slope = math.log(s1 / s0) / math.log(b1 / b0)
        segments.append({"from": b0, "to": b1, "slope": slope, "regime": classify_slope(slope)})
        labels[b1] = classify_slope(slope)
    if segments:
        labels[pts[0][0]] = segments[0]["regime"]
    elif pts:
        labels[pts[0][0]] = "single point"
    for b in sorted(curve):
        if b not in labels:
            labels[b] = "unreached"
    reached = [b for b, _ in pts]
    return {"by_batch_size": {int(b): labels[b] for b in sorted(labels)}, "segments": segments,
            "largest_perfect": _leading_run(reached, labels, lambda lab: lab == REGIMES[0]),
            "largest_useful": _leading_run(reached, labels, lambda lab: lab in REGIMES[:2]),
            "rule": REGIME_RULE}


def _leading_run(reached: list[int], labels: dict[int, str], keep) -> int | None:
    """The last batch size of the leading run (in increasing B) whose labels satisfy ``keep``."""
    last = None
    for b in reached:
        if not keep(labels[b]):
            break
        last = b
    return last


def regime_sentence(reg: dict) -> str:
    """The regimes in words, from the same labels and numbers as :func:`regimes` (so a page
    never says "perfect scaling up to B" next to a table that labels B otherwise)."""
    segs = reg.get("segments") or []
    if not segs:
        return "fewer than two batch sizes reached the target: no scaling regime can be measured."
    slopes = ", ".join(f"{s['from']}→{s['to']}: {s['slope']:.2f}" for s in segs)
    reached = [segs[0]["from"]] + [s["to"] for s in segs]
    first = reached[0]
    lp, lu = reg.get("largest_perfect"), reg.get("largest_useful")
    if lp is not None:
        text = f"perfect scaling from B = {first} up to B = {lp}"
    else:
        text = (f"no perfect scaling: already the first segment ({first}→{segs[0]['to']}, slope "
                f"{segs[0]['slope']:.2f}) is flatter than the perfect-scaling bound {PERFECT_SLOPE}")
    if lu is None:
        text += f"; that segment is already maximal data parallelism (slope >= {MAXIMAL_SLOPE})"
    elif lp is None or lu != lp:
        text += f"; steps kept falling faster than maximal data parallelism allows up to B = {lu}"
    if lu is not None and lu != reached[-1]:
        text += f"; the first segment at maximal data parallelism ends at B = {reached[reached.index(lu) + 1]}"
    return f"{text} (log-log slopes {slopes}; perfect scaling is -1)."


REGIME_RULE = (f"log-log slope s between consecutive batch sizes: perfect scaling if s <= {PERFECT_SLOPE}, "
               f"maximal data parallelism if s >= {MAXIMAL_SLOPE}, diminishing returns in between "
               "(perfect scaling is s = -1); each batch size takes the label of the segment ending at it")


def fit_knee(curve: dict[int, int | None]) -> dict:
    """Fit ``S(B) = S_min (1 + B_crit / B)`` = a + b/B by least squares on relative errors.

    Returns ``{"s_min", "b_crit", "points"}``; ``b_crit`` is ``inf`` when the fitted floor is
    not positive (no floor in sight), ``None`` when fewer than two batch sizes reached the target."""
    pts = [(b, s) for b, s in sorted(curve.items()) if s is not None]
    if len(pts) < 2:
        return {"s_min": None, "b_crit": None, "points": len(pts)}
    # minimise sum ((a + b/B - S) / S)^2 over a, b >= 0: 2x2 normal equations, then the boundary
    rows = [(1.0 / s, 1.0 / (bb * s), 1.0) for bb, s in pts]
    a11 = sum(r[0] * r[0] for r in rows)
    a12 = sum(r[0] * r[1] for r in rows)
    a22 = sum(r[1] * r[1] for r in rows)
    y1 = sum(r[0] for r in rows)
    y2 = sum(r[1] for r in rows)
    det = a11 * a22 - a12 * a12
    a = b = None
    if det > 0:
        a = (y1 * a22 - y2 * a12) / det
        b = (a11 * y2 - a12 * y1) / det
    if a is None or a <= 0:
        return {"s_min": 0.0, "b_crit": math.inf, "points": len(pts)}
    if b <= 0:
        return {"s_min": a, "b_crit": 0.0, "points": len(pts)}
    return {"s_min": a, "b_crit": b / a, "points": len(pts)}


def knee_model(batch_sizes: Sequence[float], s_min: float, b_crit: float) -> list[float]:
    return [s_min * (1.0 + b_crit / b) for b in batch_sizes]


def effective_lr(lr: float, momentum: float | None, optimizer: str) -> float:
    """lr / (1 - momentum) for momentum and Nesterov, lr otherwise."""
    if optimizer in ("momentum", "nesterov") and momentum is not None:
        return lr / (1.0 - momentum)
    return lr


def unpruned_examples(status: str, examples: int, budget_steps: int, batch_size: int) -> int:
    """Examples the unpruned protocol spends on one trial: its full step budget, without early
    stopping at the target or exact pruning. A diverged trial stops at the divergence under
    both protocols, so it counts what it actually processed."""
    if status == "diverged":
        return int(examples)
    return int(budget_steps) * int(batch_size)


def pruning_savings(trials: Iterable[dict]) -> dict:
    """Examples processed vs what the unpruned protocol would process, over trial records
    with ``status``, ``examples``, ``budget_steps`` and ``batch_size``."""
    spent = unpruned = 0
    for t in trials:
        spent += int(t["examples"])
        unpruned += unpruned_examples(t["status"], t["examples"], t["budget_steps"], t["batch_size"])
    saved = unpruned - spent
    return {"examples_processed": spent, "examples_unpruned": unpruned, "examples_saved": saved,
            "fraction_saved": (saved / unpruned) if unpruned else None}


EXACT_FLOOR_RULE = ("the fewest examples any order of the same trials could process under early stopping + exact "
                    "pruning: at each batch size the best trial runs to its steps-to-result S, every other one to "
                    "S minus one evaluation period or to its own earlier stop (a divergence); no order can prune a "
                    "trial before it has passed S - eval_every without reaching the target, since it could still "
                    "reach it first. floor_fraction = examples_floor / examples_unpruned: below it only a larger "
                    "step budget (relative to S) or a pruning rule that is not exact can go")


def exact_floor(trials: Iterable[dict]) -> int:
    """The exact-pruning floor (:data:`EXACT_FLOOR_RULE`) of finished trial records with ``batch_size``,
    ``steps_run``, ``steps_to_result`` (the trial's own first step below the target, or None) and
    ``eval_every``."""
    by_b: dict[int, list[dict]] = {}
    for t in trials:
        by_b.setdefault(int(t["batch_size"]), []).append(t)
    total = 0
    for b, ts in by_b.items():
        reached = [int(t["steps_to_result"]) for t in ts if t["steps_to_result"] is not None]
        if not reached:
            total += b * sum(int(t["steps_run"]) for t in ts)
            continue
        s = min(reached)
        e = int(next(t["eval_every"] for t in ts if t["steps_to_result"] == s))
        total += b * (sum(min(int(t["steps_run"]), s - e) for t in ts) + e)
    return total


def should_prune(step: int, eval_every: int, best: int | None) -> bool:
    """Exact pruning: a trial that has not reached the target by eval ``step`` can reach it at
    ``step + eval_every`` at the earliest; when that is not below the best steps-to-result
    already found for its batch size, it cannot lower the minimum, so it may stop."""
    return best is not None and step + eval_every >= best


# ------------------------------------------------------------------------------ bootstrap over the trial set
BOOTSTRAP_RULE = (
    "bootstrap over the trial set: for each batch size independently, resample its finished trials with "
    "replacement (as many as it has) and take steps-to-result = the minimum over the resample; repeat; the "
    "interval is the percentile interval of those minima. A trial stopped by exact pruning at step s is only "
    "known to reach the target at s + eval_every or later (or never): a resample whose pruned bound lies below "
    "its smallest reached value has a censored minimum, known only to lie in [that bound, the smallest reached "
    "value] (unreached when nothing in it reached). The interval takes the optimistic end (bounds as values) "
    "for its lower percentile and the pessimistic end (pruned as never) for its upper one, so it covers both; "
    "'censored_fraction' says how many resamples were censored. Knee and slopes are computed on each "
    "resample's optimistic and pessimistic curves and their intervals likewise span both. A regime is labelled "
    "only where the slope interval of the segment ending at the batch size lies inside one regime's range; "
    "otherwise the label names the regimes the interval spans.")


def trial_outcome(status: str, step: int | None, steps_run: int | None, eval_every: int | None) -> tuple[float, float]:
    """One finished trial's steps-to-result as an interval (lo, hi) for the bootstrap: a trial that reached
    the target at ``step`` is (step, step); a pruned one, stopped at ``steps_run`` without reaching it, could
    reach it at ``steps_run + eval_every`` at the earliest, or never: (steps_run + eval_every, inf); a trial
    that spent its budget or diverged never reaches it: (inf, inf)."""
    if step is not None:
        return float(step), float(step)
    if status == "pruned":
        return float(int(steps_run or 0) + int(eval_every or 1)), math.inf
    return math.inf, math.inf


def _slope_class_set(lo: float, hi: float) -> list[str]:
    """The regimes a slope interval [lo, hi] touches (in the order of REGIMES)."""
    out = []
    if lo <= PERFECT_SLOPE:
        out.append(REGIMES[0])
    if lo < MAXIMAL_SLOPE and hi > PERFECT_SLOPE:
        out.append(REGIMES[1])
    if hi >= MAXIMAL_SLOPE:
        out.append(REGIMES[2])
    return out


def regime_from_interval(lo: float | None, hi: float | None) -> str:
    """The regime of a segment whose slope interval is [lo, hi] (None: unbounded), only when the interval
    lies inside one regime's range; else ``"undetermined (perfect, diminishing, maximal)"`` naming the
    regimes the interval spans."""
    lo = -math.inf if lo is None else lo
    hi = math.inf if hi is None else hi
    spans = _slope_class_set(lo, hi)
    if len(spans) == 1:
        return spans[0]
    return "undetermined (" + ", ".join(s.split()[0] for s in spans) + ")"


def _finite_or_none(v: float) -> float | None:
    return None if v is None or not math.isfinite(v) else float(v)


def bootstrap(outcomes: dict[int, list[tuple[float, float]]], resamples: int = 1000, level: float = 0.9,
              seed: int = 0) -> dict:
    """Intervals for steps-to-result per batch size, the knee B_crit and the regimes (rule:
    :data:`BOOTSTRAP_RULE`) from each batch size's trial outcomes (:func:`trial_outcome`).

    Draws: ``rng = numpy.random.default_rng(seed)``; for each batch size in increasing order,
    ``rng.integers(0, n, size=(resamples, n))`` indexes its n trials. Unbounded ends (unreached, no
    floor of the knee, an unreached neighbour of a slope) are None."""
    import numpy as np

    rng = np.random.default_rng(seed)
    bs = sorted(int(b) for b in outcomes if outcomes[b])
    q_lo, q_hi = (1 - level) / 2, 1 - (1 - level) / 2
    lo_min, hi_min = {}, {}
    per = {}
    for b in bs:
        lo_v = np.array([o[0] for o in outcomes[b]], float)
        hi_v = np.array([o[1] for o in outcomes[b]], float)
        idx = rng.integers(0, len(lo_v), size=(resamples, len(lo_v)))
        lo_min[b], hi_min[b] = lo_v[idx].min(1), hi_v[idx].min(1)
        censored = lo_min[b] < hi_min[b]
        per[b] = {"low": _finite_or_none(float(np.quantile(lo_min[b], q_lo, method="lower"))),
                  "high": _finite_or_none(float(np.quantile(hi_min[b], q_hi, method="higher"))),
                  "censored_fraction": float(censored.mean()),
                  "unreached_fraction": float(np.isinf(hi_min[b]).mean()), "trials": len(lo_v)}
    knees_a, knees_b = [], []
    for r in range(resamples):
        for mins, acc in ((lo_min, knees_a), (hi_min, knees_b)):
            c = {b: (int(mins[b][r]) if math.isfinite(mins[b][r]) else None) for b in bs}
            k = fit_knee(c)["b_crit"]
            acc.append(math.nan if k is None else k)
    ka, kb = np.array(knees_a), np.array(knees_b)
    k_small, k_big = np.fmin(ka, kb), np.fmax(ka, kb)     # NaN (fewer than two reached) only where both are
    fitted = ~np.isnan(k_small)
    knee = {"low": None, "high": None, "unfitted_fraction": float(1 - fitted.mean())}
    if fitted.any():
        knee["low"] = _finite_or_none(float(np.quantile(k_small[fitted], q_lo, method="lower")))
        knee["high"] = _finite_or_none(float(np.quantile(k_big[fitted], q_hi, method="higher")))
    segments = []
    for b0, b1 in zip(bs, bs[1:]):
        lb = math.log(b1 / b0)
        with np.errstate(divide="ignore", invalid="ignore"):
            s_low = np.log(lo_min[b1] / hi_min[b0]) / lb     # -inf when b0 is unreached in the resample
            s_high = np.log(hi_min[b1] / lo_min[b0]) / lb    # +inf when b1 is unreached
        s_low = np.where(np.isnan(s_low), -np.inf, s_low)
        s_high = np.where(np.isnan(s_high), np.inf, s_high)
        lo_s = _finite_or_none(float(np.quantile(s_low, q_lo, method="lower")))
        hi_s = _finite_or_none(float(np.quantile(s_high, q_hi, method="higher")))
        segments.append({"from": b0, "to": b1, "slope_low": lo_s, "slope_high": hi_s,
                         "regime": regime_from_interval(lo_s, hi_s)})
    labels = {s["to"]: s["regime"] for s in segments}
    if segments:
        labels[bs[0]] = segments[0]["regime"]
    return {"level": level, "resamples": resamples, "seed": seed, "steps_to_result": per, "knee": knee,
            "segments": segments, "by_batch_size": labels, "rule": BOOTSTRAP_RULE}
