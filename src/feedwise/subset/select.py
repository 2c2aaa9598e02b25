"""Choosing a subset from scores: top fraction (optionally class-balanced) or random.

Sizes are exact: ``subset_size(f, N) = round(f·N)`` (Python's round, at least 1). Indices
are returned sorted and unique. When the cut-off falls inside a group of equal scores (as
happens with discrete scores such as variation ratio), the group is broken at random with
a recorded seed and the number of examples filled that way is reported.

Difficulty-aware selection after Sorscher et al. 2022 ("Beyond neural scaling laws"): the
acquisition scores are difficulties (higher = harder / more uncertain). ``keep='hardest'``
keeps the top of the scores (the default, what the study always did), ``keep='easiest'`` the
bottom, and ``keep='auto'`` lets the kept fraction decide, as the paper's theory prescribes
(keep easy examples when data is scarce, hard ones when it is abundant): easiest when the
fraction is below :data:`AUTO_SPLIT` = 0.5, hardest at 0.5 and above. 0.5 is our choice —
the paper derives the switch point from the ratio of data to parameters, not a constant.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from feedwise.errors import FeedwiseError

BALANCES = ("none", "class")
KEEPS = ("hardest", "easiest", "auto")
AUTO_SPLIT = 0.5   # keep='auto': easiest below this kept fraction, hardest at or above it
KEEP_RULE = (f"keep=auto keeps the easiest examples (lowest difficulty score) when the kept fraction is below "
             f"{AUTO_SPLIT}, the hardest at or above it (after Sorscher et al. 2022); hardest/easiest are fixed")


def check_fraction(f: float) -> float:
    try:
        f = float(f)
    except (TypeError, ValueError):
        raise FeedwiseError(f"fraction must be a number in (0, 1], got {f!r}") from None
    if not (0.0 < f <= 1.0):
        raise FeedwiseError(f"fraction must be in (0, 1], got {f}")
    return f


def subset_size(fraction: float, n: int) -> int:
    return max(1, min(n, int(round(check_fraction(fraction) * n))))


def resolve_keep(keep: str, fraction: float) -> str:
    """'hardest' or 'easiest' for ``keep`` at kept ``fraction`` (see :data:`KEEP_RULE`)."""
    if keep not in KEEPS:
        raise FeedwiseError(f"unknown keep '{keep}' (known: {', '.join(KEEPS)})")
    if keep == "auto":
        return "easiest" if check_fraction(fraction) < AUTO_SPLIT else "hardest"
    return keep


def difficulty_scores(scores: np.ndarray, keep: str, fraction: float) -> np.ndarray:
    """Scores oriented so that the top is what ``keep`` keeps: the difficulty itself for 'hardest',
    its negation for 'easiest'. Entries at −inf (outside the pool) stay −inf."""
    s = np.asarray(scores, dtype=np.float64)
    if resolve_keep(keep, fraction) == "hardest":
        return s
    out = -s
    out[np.isneginf(s)] = -np.inf
    return out


@dataclass
class Selection:
    indices: np.ndarray                     # sorted unique indices into the pool
    tie_filled: int = 0                     # examples chosen at random among scores tied at the cut-off
    tied_at_cutoff: int = 0                 # size of those tied groups (candidates for the remaining places)
    seed: int = 0
    quotas: dict = field(default_factory=dict)   # class -> count (balance=class)


def proportional_quotas(labels: np.ndarray, size: int, num_classes: int | None = None) -> np.ndarray:
    """Per-class counts summing to ``size``, each within one of size·(class frequency): largest remainder."""
    labels = np.asarray(labels)
    k = int(num_classes or (labels.max() + 1 if labels.size else 0))
    freq = np.bincount(labels, minlength=k).astype(np.float64)
    share = freq / max(1, labels.size) * size
    q = np.floor(share).astype(np.int64)
    rest = size - int(q.sum())
    if rest > 0:
        order = np.lexsort((np.arange(k), -(share - q)))   # largest remainder, ties by class index
        q[order[:rest]] += 1
    return np.minimum(q, freq.astype(np.int64))


def top_k(scores: np.ndarray, k: int, rng: np.random.Generator, candidates: np.ndarray | None = None) -> tuple[np.ndarray, int, int]:
    """Indices of the ``k`` highest scores among ``candidates``; ties at the cut-off broken by ``rng``.

    Returns (indices, tie_filled, tied_at_cutoff)."""
    cand = np.arange(len(scores)) if candidates is None else np.asarray(candidates)
    if k <= 0 or cand.size == 0:
        return np.zeros(0, dtype=np.int64), 0, 0
    if k >= cand.size:
        return np.sort(cand).astype(np.int64), 0, 0
    s = np.asarray(scores)[cand]
    cut = np.partition(s, cand.size - k)[cand.size - k]      # k-th largest
    above = cand[s > cut]
    tied = cand[s == cut]
    need = k - above.size
    fill = rng.choice(tied, size=need, replace=False) if need < tied.size else tied
    tie_filled = need if need < tied.size else 0
    return np.sort(np.concatenate([above, fill])).astype(np.int64), int(tie_filled), int(tied.size if tie_filled else 0)


def select_top(scores: np.ndarray, size: int, seed: int = 0, labels: np.ndarray | None = None,
               balance: str = "none", exclude: np.ndarray | None = None, num_classes: int | None = None) -> Selection:
    """The ``size`` highest-scored examples (plus ``exclude``, which are kept and count towards ``size``).

    ``balance='class'`` takes the top within each class, with per-class counts proportional to
    the pool's class frequencies (``labels``)."""
    if balance not in BALANCES:
        raise FeedwiseError(f"unknown balance '{balance}' (known: {', '.join(BALANCES)})")
    scores = np.asarray(scores, dtype=np.float64)
    n = scores.shape[0]
    if not (0 < size <= n):
        raise FeedwiseError(f"subset size must be in [1, {n}], got {size}")
    rng = np.random.default_rng(seed)
    keep = np.zeros(0, dtype=np.int64) if exclude is None else np.unique(np.asarray(exclude, dtype=np.int64))
    free = np.ones(n, dtype=bool)
    free[keep] = False
    if balance == "none":
        picked, tf, tied = top_k(scores, size - keep.size, rng, np.flatnonzero(free))
        return Selection(np.union1d(keep, picked), tf, tied, seed)
    if labels is None:
        raise FeedwiseError("balance='class' needs the pool's labels")
    labels = np.asarray(labels)
    quotas = proportional_quotas(labels, size, num_classes)
    parts, tf, tied = [keep], 0, 0
    short = 0
    for c, q in enumerate(quotas):
        have = int((labels[keep] == c).sum())
        cand = np.flatnonzero(free & (labels == c))
        want = max(0, int(q) - have)
        got, a, b = top_k(scores, want, rng, cand)
        short += want - got.size
        parts.append(got)
        tf, tied = tf + a, tied + b
    chosen = np.unique(np.concatenate(parts))
    if chosen.size < size:   # a class ran out, or the kept set already exceeded a quota: fill by score
        rest = np.ones(n, dtype=bool)
        rest[chosen] = False
        got, a, b = top_k(scores, size - chosen.size, rng, np.flatnonzero(rest))
        chosen, tf, tied = np.union1d(chosen, got), tf + a, tied + b
    elif chosen.size > size:
        raise FeedwiseError(f"the kept examples ({keep.size}) exceed their class quotas by more than the subset size")
    return Selection(chosen.astype(np.int64), tf, tied, seed, {int(c): int(q) for c, q in enumerate(quotas)})


def select_random(n: int, size: int, seed: int = 0, labels: np.ndarray | None = None, balance: str = "none",
                  exclude: np.ndarray | None = None, num_classes: int | None = None) -> Selection:
    """A uniformly random subset of ``size`` (class-proportional with ``balance='class'``)."""
    scores = np.random.default_rng(seed).random(n)
    sel = select_top(scores, size, seed=seed, labels=labels, balance=balance, exclude=exclude, num_classes=num_classes)
    sel.tie_filled = sel.tied_at_cutoff = 0
    return sel


def class_composition(labels: np.ndarray, indices: np.ndarray, num_classes: int) -> dict:
    """Counts per class in the subset, the proportional share from the pool, and classes under half their share."""
    labels = np.asarray(labels)
    counts = np.bincount(labels[indices], minlength=num_classes)
    share = np.bincount(labels, minlength=num_classes) / max(1, labels.size) * len(indices)
    under = [int(c) for c in range(num_classes) if counts[c] < 0.5 * share[c]]
    return {"counts": counts.tolist(), "share": [round(float(s), 2) for s in share],
            "ratio": [round(float(c / s), 3) if s > 0 else None for c, s in zip(counts, share)],
            "under_half": under}


def jaccard(a: np.ndarray, b: np.ndarray) -> float:
    a, b = np.asarray(a), np.asarray(b)
    u = np.union1d(a, b).size
    return float(np.intersect1d(a, b).size / u) if u else 1.0


# --------------------------------------------------------------------------- coverage-centric selection
SELECTIONS = ("top", "ccs")
CCS_RULE = ("ccs (coverage-centric selection, Zheng et al. 2023): drop the hardest beta fraction of the pool (the "
            "highest difficulty scores: likely mislabelled), split the range [min, max] of the remaining scores "
            "into k strata of equal width, then spend the budget from the smallest stratum up: each takes "
            "min(its size, floor(budget left / strata left)) examples drawn uniformly at random. When the budget "
            "exceeds what pruning leaves, only N - size examples are dropped. With balance=class the same rule "
            "runs within each class for its proportional quota.")


def ccs_allocation(strata_sizes, budget: int) -> np.ndarray:
    """How many examples each stratum gives: smallest first, each min(size, ⌊budget left / strata left⌋)."""
    sizes = np.asarray(strata_sizes, dtype=np.int64)
    take = np.zeros_like(sizes)
    left = int(budget)
    order = np.lexsort((np.arange(sizes.size), sizes))   # smallest stratum first, ties by index
    nonempty = [i for i in order if sizes[i] > 0]
    for j, i in enumerate(nonempty):
        take[i] = min(int(sizes[i]), left // (len(nonempty) - j))
        left -= int(take[i])
    return take


def _ccs_indices(scores: np.ndarray, cand: np.ndarray, size: int, strata: int, beta: float,
                 rng: np.random.Generator) -> np.ndarray:
    if size <= 0 or cand.size == 0:
        return np.zeros(0, dtype=np.int64)
    if size >= cand.size:
        return np.sort(cand).astype(np.int64)
    s = scores[cand]
    drop = min(int(round(beta * cand.size)), cand.size - size)
    order = np.lexsort((cand, -s))                      # hardest first, ties by index
    kept = np.sort(cand[order[drop:]])
    ks = scores[kept]
    lo, hi = float(ks.min()), float(ks.max())
    if hi > lo:
        edges = np.linspace(lo, hi, strata + 1)
        which = np.clip(np.searchsorted(edges, ks, side="right") - 1, 0, strata - 1)
    else:
        which = np.zeros(kept.size, dtype=np.int64)
    groups = [kept[which == b] for b in range(strata)]
    take = ccs_allocation([g.size for g in groups], size)
    parts = [rng.choice(g, size=int(t), replace=False) for g, t in zip(groups, take) if t > 0]
    return np.sort(np.concatenate(parts)).astype(np.int64)


def select_ccs(scores: np.ndarray, size: int, seed: int = 0, strata: int = 50, beta: float = 0.1,
               labels: np.ndarray | None = None, balance: str = "none", num_classes: int | None = None) -> Selection:
    """Coverage-centric selection of ``size`` examples by difficulty ``scores`` (see :data:`CCS_RULE`)."""
    if balance not in BALANCES:
        raise FeedwiseError(f"unknown balance '{balance}' (known: {', '.join(BALANCES)})")
    if int(strata) != strata or strata < 1:
        raise FeedwiseError(f"CCS needs at least one stratum, got {strata}")
    if not (0.0 <= beta < 1.0):
        raise FeedwiseError(f"CCS beta (the hardest share dropped) must be in [0, 1), got {beta}")
    scores = np.asarray(scores, dtype=np.float64)
    n = scores.shape[0]
    if not (0 < size <= n):
        raise FeedwiseError(f"subset size must be in [1, {n}], got {size}")
    if not np.isfinite(scores).all():
        raise FeedwiseError("CCS needs a finite score for every example")
    rng = np.random.default_rng(seed)
    if balance == "none":
        return Selection(_ccs_indices(scores, np.arange(n), size, int(strata), beta, rng), 0, 0, seed)
    if labels is None:
        raise FeedwiseError("balance='class' needs the pool's labels")
    labels = np.asarray(labels)
    quotas = proportional_quotas(labels, size, num_classes)
    parts = [_ccs_indices(scores, np.flatnonzero(labels == c), int(q), int(strata), beta, rng)
             for c, q in enumerate(quotas)]
    return Selection(np.sort(np.concatenate(parts)).astype(np.int64), 0, 0, seed,
                     {int(c): int(q) for c, q in enumerate(quotas)})
