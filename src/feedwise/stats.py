"""Pure statistics: how well a per-example score picks out known positives (e.g. flipped labels),
shared by the emphasis study's diagnostics and `feedwise flag`; and the paired tests over seeds
with Holm's correction that decide the subset study's verdicts."""

from __future__ import annotations

import math

import numpy as np


def auroc(scores: np.ndarray, positive: np.ndarray) -> float | None:
    """Area under the ROC curve of ``scores`` separating ``positive`` (bool) from the rest; ties count 1/2.
    NaN scores are replaced by the median. None when a class is empty."""
    from scipy.stats import rankdata

    s = np.asarray(scores, float).copy()
    pos = np.asarray(positive, bool)
    n_pos, n_neg = int(pos.sum()), int((~pos).sum())
    if n_pos == 0 or n_neg == 0:
        return None
    bad = ~np.isfinite(s)
    if bad.any():
        s[bad] = np.median(s[~bad]) if (~bad).any() else 0.0
    r = rankdata(s)
    return float((r[pos].sum() - n_pos * (n_pos + 1) / 2) / (n_pos * n_neg))


def top_k_share(scores: np.ndarray, positive: np.ndarray, k: int) -> float | None:
    """Share of ``positive`` among the ``k`` highest scores (NaN last; ties by index)."""
    pos = np.asarray(positive, bool)
    k = min(int(k), len(pos))
    if k <= 0:
        return None
    return float(pos[rank(scores)[:k]].mean())


def rank(scores: np.ndarray) -> np.ndarray:
    """Indices from the highest to the lowest score; NaN scores last; ties by index."""
    s = np.nan_to_num(np.asarray(scores, float), nan=-np.inf)
    return np.argsort(-s, kind="stable")


def top_share(scores: np.ndarray, positive: np.ndarray) -> float | None:
    """Share of positives among the k highest scores, k = number of positives (precision at k)."""
    return top_k_share(scores, positive, int(np.sum(positive)))


# --------------------------------------------------------------------------- paired tests over seeds
# Decisions (verdicts, choices) compare configurations trained with the same seeds, so the tests
# are paired: they read the per-seed differences d_i = a_i − b_i. Written out here (not scipy's
# ttest_rel / wilcoxon) so the summaries state exactly what they compute; tests/test_stats.py checks
# them against scipy on small inputs.
ALTERNATIVES = ("two-sided", "less", "greater")


def _check_pairs(a, b) -> np.ndarray:
    a, b = np.asarray(a, dtype=np.float64), np.asarray(b, dtype=np.float64)
    if a.shape != b.shape or a.ndim != 1:
        raise ValueError(f"paired samples need two 1-D arrays of one length, got {a.shape} and {b.shape}")
    return a - b


def paired_t(a, b, alternative: str = "two-sided", shift: float = 0.0) -> dict:
    """Paired t-test of the mean of d = a − b − ``shift`` against 0 (``alternative`` 'less': mean d < 0).

    t = mean(d) / (sd(d) / √n) with n − 1 degrees of freedom. ``shift`` tests a margin, e.g. a
    non-inferiority test "a is worse than b by less than δ" is ``paired_t(a, b, 'less', shift=δ)``.
    Returns {n, mean_diff, t, p}; p is None below two pairs. All differences equal (sd 0): t is ±inf
    (p 0 in the direction of the difference, 1 against it) or, when they are all 0, undefined (p 1)."""
    from scipy.special import stdtr

    if alternative not in ALTERNATIVES:
        raise ValueError(f"alternative must be one of {ALTERNATIVES}, got {alternative!r}")
    d = _check_pairs(a, b) - float(shift)
    n = int(d.size)
    out = {"n": n, "mean_diff": float(d.mean() + shift) if n else None, "t": None, "p": None}
    if n < 2:
        return out
    m, sd = float(d.mean()), float(d.std(ddof=1))
    if sd == 0.0 or not np.isfinite(sd):
        if m == 0.0:
            out["p"] = 1.0
            return out
        t = math.copysign(math.inf, m)
    else:
        t = m / (sd / math.sqrt(n))
    cdf = float(stdtr(n - 1, t))                 # P(T ≤ t), T ~ Student t with n − 1 dof
    p = {"less": cdf, "greater": 1.0 - cdf, "two-sided": 2.0 * min(cdf, 1.0 - cdf)}[alternative]
    out.update(t=float(t), p=min(1.0, max(0.0, p)))
    return out


def wilcoxon_exact(a, b, alternative: str = "two-sided") -> dict:
    """Exact Wilcoxon signed-rank test of d = a − b (zero differences dropped, tied |d| get mid-ranks).

    W⁺ = sum of the ranks of the positive differences; its null distribution is enumerated over all
    2^n sign assignments (n ≤ 20). 'less': small W⁺ (a below b). With n pairs the smallest two-sided
    p is 2/2^n (n = 3: 0.25), so with few seeds it can never reject; it is reported beside the t-test."""
    from scipy.stats import rankdata

    if alternative not in ALTERNATIVES:
        raise ValueError(f"alternative must be one of {ALTERNATIVES}, got {alternative!r}")
    d = _check_pairs(a, b)
    d = d[d != 0]
    n = int(d.size)
    if n == 0:
        return {"n": 0, "w_plus": None, "p": 1.0}
    if n > 20:
        raise ValueError("wilcoxon_exact enumerates 2^n sign assignments: at most 20 pairs")
    r = rankdata(np.abs(d))
    w = float(r[d > 0].sum())
    signs = (np.arange(2 ** n)[:, None] >> np.arange(n)) & 1      # every sign assignment, one per row
    null = signs @ r                                                # W⁺ under each
    eps = 1e-9
    le, ge = float(np.mean(null <= w + eps)), float(np.mean(null >= w - eps))
    p = {"less": le, "greater": ge, "two-sided": min(1.0, 2.0 * min(le, ge))}[alternative]
    return {"n": n, "w_plus": w, "p": p}


def holm(pvalues) -> list[float | None]:
    """Holm–Bonferroni adjusted p-values in the order given (step-down, monotone, capped at 1).

    The i-th smallest of the m defined p-values is adjusted to max_{j ≤ i} min(1, (m − j + 1) · p_(j)).
    None stays None and does not count towards m. Rejecting where the adjusted p < α controls the
    family-wise error rate at α."""
    ps = list(pvalues)
    defined = sorted((float(p), i) for i, p in enumerate(ps) if p is not None)
    m = len(defined)
    out: list[float | None] = [None] * len(ps)
    running = 0.0
    for j, (p, i) in enumerate(defined):
        running = max(running, min(1.0, (m - j) * p))
        out[i] = running
    return out
