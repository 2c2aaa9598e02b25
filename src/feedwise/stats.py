"""How well a per-example score picks out known positives (e.g. flipped labels): pure maths,
shared by the emphasis study's diagnostics and `feedwise flag`."""

from __future__ import annotations

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
