"""Pure statistics shared by the studies: how well a per-example score picks out known positives
(e.g. flipped labels; the emphasis study's diagnostics and `feedwise flag`), the gradient noise
scale's estimator and its summaries (the noise-scale study and :mod:`feedwise.monitor`), the
bootstrap of a minimum over a trial set (the batch-size study's intervals), and the paired tests over
seeds with Holm's correction that decide the subset study's verdicts."""

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


# ------------------------------------------------------------------------------ gradient noise scale
# (McCandlish et al. 2018, appendix A; DESIGN.md "noise scale"). Pure maths over measured squared
# gradient norms; the measurements themselves are taken by feedwise.monitor.

def finite_c(b: float, n: int | None) -> float:
    """``c(B) = (N − B) / (B (N − 1))``: the variance factor of the mean of B per-example gradients drawn
    **without replacement** from N, so that ``E|G_B|² = |G|² + c(B) tr(Σ)`` with G the mean gradient over
    the N examples and ``Σ = (1/N) Σ_i (g_i − G)(g_i − G)ᵀ`` their covariance (divisor N). ``1/B`` (drawing
    with replacement, or N infinite) when N is unknown. The correction matters when B/N does not vanish:
    ``c(B)·B = (N − B)/(N − 1)``, e.g. 0.75 for B = 1,024 of N = 4,000 (without it, tr(Σ) is
    underestimated by that factor and |G|² overestimated)."""
    if n is None or n <= 1:
        return 1.0 / b
    return (n - b) / (b * (n - 1))


def noise_estimate(q_small: float, q_big: float, b_small: float, b_big: float,
                   n: int | None = None) -> tuple[float, float]:
    """(|G|², tr Σ) from the mean squared gradient norm at two batch sizes, unbiased (may be < 0):
    ``tr Σ = (q_small − q_big) / (c(B_small) − c(B_big))``, ``|G|² = q_big − c(B_big) tr Σ``.

    The same algebra gives (GᵀHG, tr(HΣ)) when ``q`` are H-weighted squared norms ``gᵀHg`` with an H
    drawn independently of the gradients (B_noise = tr(HΣ)/GᵀHG)."""
    if not 0 < b_small < b_big:
        from feedwise.errors import FeedwiseError
        raise FeedwiseError(f"need 0 < b_small < b_big, got {b_small}, {b_big}")
    cs, cb = finite_c(b_small, n), finite_c(b_big, n)
    tr = (q_small - q_big) / (cs - cb)
    return q_big - cb * tr, tr


def ratio_of_means(g2s, trs) -> float:
    """mean(tr Σ) / mean(|G|²) = Σ tr / Σ |G|²: each measurement weighs by its |G|² (NaN when the mean
    |G|² is not positive or there is nothing)."""
    if not len(g2s):
        return math.nan
    g2, tr = sum(g2s) / len(g2s), sum(trs) / len(trs)
    return tr / g2 if g2 > 0 else math.nan


NOISE_SUMMARY_RULES = {
    "time_average": "plain mean over time: the series is cut into consecutive blocks of `block` measurements, "
                    "each block's B_simple is its ratio of means (the paper's guard against the noise of one "
                    "ratio), and the blocks weigh the same (each stretch of training counts equally)",
    "g2_weighted": "sum(tr Sigma) / sum(|G|^2) over every measurement: a |G|^2-weighted ratio, which leans on "
                   "early, high-gradient training (NOT the mean over the run)",
    "near_target": "ratio of means over the `block` measurements up to and including the step the target was "
                   "reached (null when it was not)",
    "late_window": "ratio of means over the last `late_fraction` of the measurements",
    "at_start": "ratio of means of the measurement(s) at step 0 (before any training)",
    "at_target": "ratio of means of the measurement(s) at the step the target was reached",
}


def noise_summaries(steps, g2s, trs, *, target_step: int | None = None, block: int = 4,
                    late_fraction: float = 0.25) -> dict:
    """Honest summaries of a B_simple series (one (|G|², tr Σ) estimate per measurement, in step order):
    ``time_average``, ``g2_weighted``, ``near_target``, ``late_window``, ``at_start``, ``at_target``
    (rules in :data:`NOISE_SUMMARY_RULES`; a summary that cannot be formed is NaN)."""
    steps, g2s, trs = list(steps), [float(v) for v in g2s], [float(v) for v in trs]
    n, block = len(g2s), max(1, int(block))
    blocks = [ratio_of_means(g2s[i:i + block], trs[i:i + block]) for i in range(0, n, block)]
    finite = [v for v in blocks if math.isfinite(v)]
    late = max(1, math.ceil(late_fraction * n)) if n else 0

    def at(step):
        idx = [i for i, s in enumerate(steps) if s == step]
        return ratio_of_means([g2s[i] for i in idx], [trs[i] for i in idx]) if idx else math.nan

    near = math.nan
    if target_step is not None:
        idx = [i for i, s in enumerate(steps) if s <= target_step][-block:]
        near = ratio_of_means([g2s[i] for i in idx], [trs[i] for i in idx]) if idx else math.nan
    return {"time_average": sum(finite) / len(finite) if finite else math.nan,
            "g2_weighted": ratio_of_means(g2s, trs),
            "near_target": near,
            "late_window": ratio_of_means(g2s[n - late:], trs[n - late:]) if n else math.nan,
            "at_start": at(0),
            "at_target": at(target_step) if target_step is not None else math.nan,
            "blocks_dropped": len(blocks) - len(finite), "block": block, "late_fraction": late_fraction,
            "measurements": n, "target_step": target_step}


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
