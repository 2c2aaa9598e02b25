"""The flagged set from a prediction history (feedwise.flagging.from_history): a class's p-bar is split
into 'label errors' only when its two beta components are cleanly separated (Ashman's D >= 2)."""

import numpy as np

from feedwise.flagging import SEPARATION, beta_mixture, from_history


def _classes(rng, rate, k=4, per=1000):
    y = np.repeat(np.arange(k), per)
    pbar = rng.beta(3, 1, k * per)                    # clean but skewed: a long tail of hard examples
    flipped = rng.random(k * per) < rate
    pbar[flipped] = rng.beta(1.2, 9, flipped.sum())   # flipped labels: the model rarely gives them probability
    return y, pbar, flipped


def test_clean_skewed_pbar_is_not_split_into_errors():
    """Clean mnist1d / Fashion-MNIST had 16,000-18,000 'errors' of 45,000-55,000 before the test."""
    rng = np.random.default_rng(0)
    y, pbar, _ = _classes(rng, 0.0)
    fits = [beta_mixture(pbar[y == c]) for c in range(4)]
    assert not any(f["bic_two"] < f["bic_one"] and f["separation"] >= SEPARATION for f in fits)
    issues = from_history(y, pbar)
    assert issues.estimated_errors == 0 and not issues.flagged.any()
    assert all(not c["two_components"] for c in issues.per_class.values())


def test_flipped_labels_are_found_and_counted():
    rng = np.random.default_rng(1)
    y, pbar, flipped = _classes(rng, 0.2)
    fit = beta_mixture(pbar[y == 0])
    # several EM starts: from the median split alone EM settled on two overlapping halves (weight 0.54)
    assert abs(fit["weight_low"] - flipped[y == 0].mean()) < 0.05 and fit["separation"] >= SEPARATION
    issues = from_history(y, pbar)
    tp = (issues.flagged & flipped).sum()
    assert abs(issues.estimated_errors - flipped.sum()) < 0.25 * flipped.sum()
    assert tp / issues.flagged.sum() > 0.8 and tp / flipped.sum() > 0.8
    assert all(c["separation"] >= SEPARATION for c in issues.per_class.values())
