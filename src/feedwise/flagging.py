"""Label issues from what you already have, engine-free (cleanlab's spirit): a ranking of every
example by how likely its label is wrong, a flagged set, and an estimated number of label errors.

Two inputs, two documented rules:

- **out-of-sample predicted probabilities** ``pred_probs`` (N × K, each row from a model that did
  not train on that example: cross-validation or a held-out model) — *confident learning*
  (Northcutt et al. 2021). Per class j a threshold ``t_j`` = the mean probability of class j over
  the examples labelled j. An example labelled i counts for class ĵ = argmax of its
  probabilities among the classes j with ``p_j ≥ t_j`` (none: it is not counted). The counts,
  rescaled so that each given class keeps its size, estimate the joint of given and true
  labels; its off-diagonal sum is the **estimated number of label errors**. The flagged set
  takes, in each given class i, that class's estimated errors: its examples with the largest
  margin ``max_{j≠i} p_j − p_i`` (*prune by noise rate*). Ranking: 1 − p(given label).
- **a prediction history** (Active Bias: each example's mean probability of its given label
  over training, p̄, from a :class:`feedwise.emphasis.PredictionHistory` recorded in any loop) —
  *per-class two-component beta mixtures* (Arazo et al. 2019 fit one to the per-example loss).
  For each given class, p̄ of its examples is fitted with one beta distribution and with a
  mixture of two (EM, weighted moments); when the mixture wins by BIC *and* its two components
  are cleanly separated (Ashman's D = √2·|μ_high − μ_low| / √(σ²_low + σ²_high) ≥ 2, the usual
  criterion for a separation into two groups), the **estimated number of errors** in the class
  is the expected count of its low-p̄ component and the flagged examples are those more likely in
  it than not; otherwise none is flagged. Without the separation test, a skewed p̄ of clean
  but hard examples was split in two and a third of the labels of clean mnist1d and
  Fashion-MNIST were called errors (``benchmarks/results/flag_sets_before.json``); with it, D
  was ≤ 1.86 in all 120 class fits without noise and ≥ 2.34 in all 120 with 20% flipped labels
  (``benchmarks/results/flag_sets.json``). EM starts from three splits and keeps the most
  likely fit. The count is still an over-estimate when hard clean examples share the low
  component (1.2-1.6x at 20% noise, 1.6-2.2x at 10%, see the benchmark).
  Ranking: 1 − p̄ (the score that ranked flipped labels best here, AUROC 0.993).

Both rules are estimates: hard but correctly labelled examples look like label errors to any
rule that sees only a model's probabilities. ``benchmarks/flag_sets.py`` measures precision,
recall and the estimated count against injected label noise.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import numpy as np

from feedwise.errors import FeedwiseError

MIN_CLASS = 20          # a class with fewer examples is fitted together with the others
SEPARATION = 2.0        # Ashman's D a two-component fit needs before its low component counts as errors
CLIP = 1e-4             # p̄ is clipped to [CLIP, 1 - CLIP] for the beta densities


@dataclass
class LabelIssues:
    """The result: ``scores`` (higher = more likely mislabelled) for every example, ``ranking``
    (most suspicious first), ``flagged`` (bool per example), ``estimated_errors`` (float),
    ``per_class`` (given class -> {examples, estimated_errors, flagged}) and the ``rule``."""

    scores: np.ndarray
    ranking: np.ndarray
    flagged: np.ndarray
    estimated_errors: float
    per_class: dict = field(default_factory=dict)
    rule: str = ""
    predicted: np.ndarray | None = None

    def summary(self) -> dict:
        return {"num_examples": int(len(self.scores)), "estimated_errors": round(float(self.estimated_errors), 2),
                "estimated_error_rate": float(self.estimated_errors / max(1, len(self.scores))),
                "flagged": int(self.flagged.sum()), "rule": self.rule, "per_class": self.per_class}


def check_labels(labels, n: int | None = None, num_classes: int | None = None) -> np.ndarray:
    y = np.asarray(labels)
    if y.ndim != 1:
        raise FeedwiseError(f"labels must be a 1-D array of class numbers, got shape {y.shape}")
    if n is not None and len(y) != n:
        raise FeedwiseError(f"{len(y)} labels for {n} examples")
    if y.size and (not np.issubdtype(y.dtype, np.integer)):
        if np.issubdtype(y.dtype, np.floating) and np.all(np.isfinite(y)) and np.all(y == np.round(y)):
            y = y.astype(np.int64)
        else:
            raise FeedwiseError("labels must be integer class numbers 0..K-1")
    if y.size and y.min() < 0:
        raise FeedwiseError(f"labels must be class numbers 0..K-1, found {int(y.min())}")
    if num_classes is not None and y.size and y.max() >= num_classes:
        raise FeedwiseError(f"label {int(y.max())} is outside the {num_classes} classes of the probabilities")
    return y.astype(np.int64)


def _rank(scores: np.ndarray) -> np.ndarray:
    """Most suspicious first; ties by index (stable)."""
    return np.argsort(-scores, kind="stable")


# --------------------------------------------------------------------------- confident learning
def from_pred_probs(labels, pred_probs) -> LabelIssues:
    """Label issues from out-of-sample predicted probabilities (confident learning; see the module)."""
    from feedwise.subset.scorer import check_probabilities

    p = check_probabilities(pred_probs)
    n, k = p.shape
    y = check_labels(labels, n, k)
    given = p[np.arange(n), y]
    counts = np.bincount(y, minlength=k)
    thresholds = np.array([p[y == j, j].mean() if counts[j] else 1.0 for j in range(k)])
    above = p >= thresholds[None, :] - 1e-12
    masked = np.where(above, p, -np.inf)
    counted = above.any(axis=1)
    guess = masked.argmax(axis=1)
    joint = np.zeros((k, k))
    np.add.at(joint, (y[counted], guess[counted]), 1)
    row = joint.sum(axis=1)
    calibrated = np.where(row[:, None] > 0, joint / np.maximum(row[:, None], 1) * counts[:, None], 0.0)
    other = p.copy()
    other[np.arange(n), y] = -np.inf
    margin = other.max(axis=1) - given
    flagged = np.zeros(n, bool)
    per_class = {}
    for i in range(k):
        errs = float(calibrated[i].sum() - calibrated[i, i])
        members = np.flatnonzero(y == i)
        m = int(min(len(members), round(errs)))
        if m > 0:
            flagged[members[np.argsort(-margin[members], kind="stable")[:m]]] = True
        per_class[str(i)] = {"examples": int(counts[i]), "estimated_errors": round(errs, 2), "flagged": m,
                             "threshold": float(thresholds[i])}
    scores = 1.0 - given
    est = float(calibrated.sum() - np.trace(calibrated))
    return LabelIssues(scores, _rank(scores), flagged, est, per_class,
                       "confident learning: per-class thresholds t_j = mean p_j over examples labelled j; "
                       "estimated errors = off-diagonal of the calibrated confident joint; flagged: per given "
                       "class, that many examples with the largest margin max_{j != i} p_j - p_i",
                       predicted=p.argmax(axis=1))


# --------------------------------------------------------------------------- prediction history
def _beta_mom(x: np.ndarray, w: np.ndarray) -> tuple[float, float]:
    """Beta parameters by the weighted method of moments."""
    sw = w.sum()
    m = float((w * x).sum() / sw)
    v = float((w * (x - m) ** 2).sum() / sw)
    v = max(v, 1e-6)
    common = m * (1 - m) / v - 1
    common = max(common, 1e-3)
    return max(m * common, 1e-3), max((1 - m) * common, 1e-3)


def _beta_logpdf(x, a, b):
    from scipy.special import betaln

    return (a - 1) * np.log(x) + (b - 1) * np.log1p(-x) - betaln(a, b)


def _em(x: np.ndarray, resp: np.ndarray, iters: int) -> tuple:
    """EM with weighted moments from the low component's initial responsibilities ``resp``."""
    pi = float(resp.mean())
    for _ in range(iters):
        al, bl = _beta_mom(x, resp)
        ah, bh = _beta_mom(x, 1 - resp)
        lp_low = np.log(pi) + _beta_logpdf(x, al, bl)
        lp_high = np.log1p(-pi) + _beta_logpdf(x, ah, bh)
        mx = np.maximum(lp_low, lp_high)
        new = np.exp(lp_low - mx) / (np.exp(lp_low - mx) + np.exp(lp_high - mx))
        pi = float(np.clip(new.mean(), 1e-4, 1 - 1e-4))
        if np.abs(new - resp).max() < 1e-6:
            resp = new
            break
        resp = new
    ll2 = float((mx + np.log(np.exp(lp_low - mx) + np.exp(lp_high - mx))).sum())
    return ll2, resp, pi, (al, bl), (ah, bh)


INIT_QUANTILES = (0.5, 0.25, 0.1)   # EM starts: the lowest 50%, 25%, 10% of the values as the low component


def beta_mixture(x: np.ndarray, iters: int = 100) -> dict:
    """Two-component beta mixture of values in (0, 1) by EM with weighted moments, and a one-beta fit;
    returns the low component's posterior per value, its weight, the BIC of both models and the
    components' separation (Ashman's D). EM starts from three splits (``INIT_QUANTILES``) and keeps the
    fit of highest likelihood: from the median alone it could settle on two overlapping halves and
    miss a low component of 10-20%."""
    x = np.clip(np.asarray(x, dtype=np.float64), CLIP, 1 - CLIP)
    n = len(x)
    a1, b1 = _beta_mom(x, np.ones(n))
    ll1 = float(_beta_logpdf(x, a1, b1).sum())
    fits = [_em(x, np.clip((x <= np.quantile(x, q)).astype(np.float64), 0.05, 0.95), iters) for q in INIT_QUANTILES]
    ll2, resp, pi, (al, bl), (ah, bh) = max(fits, key=lambda f: f[0])
    mean_low, mean_high = al / (al + bl), ah / (ah + bh)
    var = lambda a, b: a * b / ((a + b) ** 2 * (a + b + 1))  # noqa: E731  (variance of a beta)
    separation = math.sqrt(2) * abs(mean_high - mean_low) / math.sqrt(var(al, bl) + var(ah, bh))
    if mean_low > mean_high:   # name the components by their means
        resp, pi = 1 - resp, 1 - pi
    return {"posterior_low": resp, "weight_low": pi, "bic_one": 2 * math.log(n) - 2 * ll1,
            "bic_two": 5 * math.log(n) - 2 * ll2, "mean_low": min(mean_low, mean_high),
            "mean_high": max(mean_low, mean_high), "separation": separation}


def from_history(labels, history) -> LabelIssues:
    """Label issues from a prediction history (per-class beta mixtures on p̄; see the module).

    ``history``: a :class:`feedwise.emphasis.PredictionHistory`, its ``state_dict()``, or the
    per-example p̄ as an array (NaN: never observed)."""
    pbar = _pbar_of(history)
    n = len(pbar)
    y = check_labels(labels, n)
    seen = np.isfinite(pbar)
    if not seen.any():
        raise FeedwiseError("the history holds no observation: record it while training (history.update)")
    scores = np.where(seen, 1.0 - np.nan_to_num(pbar, nan=0.0), np.nan)
    scores = np.where(seen, scores, np.nanmean(scores))   # never observed: the mean score, never flagged
    flagged = np.zeros(n, bool)
    per_class, est = {}, 0.0
    k = int(y.max()) + 1 if n else 0
    small = [c for c in range(k) if (seen & (y == c)).sum() < MIN_CLASS]
    groups = [[c] for c in range(k) if c not in small] + ([small] if small else [])
    for g in groups:
        members = np.flatnonzero(np.isin(y, g) & seen)
        if len(members) < 3:
            continue
        fit = beta_mixture(pbar[members])
        two = fit["bic_two"] < fit["bic_one"] and fit["separation"] >= SEPARATION
        post = fit["posterior_low"] if two else np.zeros(len(members))
        errs = float(post.sum())
        flagged[members[post > 0.5]] = True
        est += errs
        key = str(g[0]) if len(g) == 1 else "+".join(map(str, g))
        per_class[key] = {"examples": int(len(members)), "estimated_errors": round(errs, 2),
                          "flagged": int((post > 0.5).sum()), "two_components": bool(two),
                          "separation": round(fit["separation"], 3),
                          "mean_pbar_low": round(fit["mean_low"], 4), "mean_pbar_high": round(fit["mean_high"], 4)}
    return LabelIssues(scores, _rank(scores), flagged, est, per_class,
                       "per given class, a one-beta fit and a two-component beta mixture (EM) of p-bar; when the "
                       "mixture wins by BIC and separates its components (Ashman's D >= 2), estimated errors = "
                       "expected count of the low-p-bar component and flagged = examples with posterior > 0.5 "
                       "in it; otherwise none")


def _pbar_of(history) -> np.ndarray:
    if hasattr(history, "mean") and hasattr(history, "state_dict"):
        return history.mean().detach().cpu().double().numpy()
    if isinstance(history, dict):
        for key in ("count", "shift", "s1"):
            if key not in history:
                raise FeedwiseError(f"a history state needs '{key}' (PredictionHistory.state_dict())")
        count = np.asarray(history["count"], dtype=np.float64)
        with np.errstate(invalid="ignore", divide="ignore"):
            return np.asarray(history["shift"], dtype=np.float64) + np.asarray(history["s1"], dtype=np.float64) / count
    a = np.asarray(history, dtype=np.float64)
    if a.ndim != 1:
        raise FeedwiseError(f"p-bar must be a 1-D array, got shape {a.shape}")
    return a
