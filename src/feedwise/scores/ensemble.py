"""Acquisition scores of an implicit ensemble (Chitta et al. 2019), from running sums.

They read the state of a :class:`feedwise.subset.EnsembleScorer` — ``sum_p`` (N × K, the sum of
the members' probabilities), ``sum_ent`` (N, the sum of their entropies), ``votes`` (N × K, the
members whose argmax is each class) and ``num_members`` — so memory is O(N·K) whatever the
number of members M. Entropies use the natural log, with 0·log 0 = 0.
"""

from __future__ import annotations

import numpy as np

from feedwise.scores.base import Score, register


def entropy(p: np.ndarray, axis: int = -1) -> np.ndarray:
    """Shannon entropy (nats) along ``axis`` with 0·log 0 = 0."""
    p = np.asarray(p, dtype=np.float64)
    with np.errstate(divide="ignore", invalid="ignore"):
        t = np.where(p > 0, p * np.log(np.where(p > 0, p, 1.0)), 0.0)
    return -t.sum(axis=axis)


class EnsembleScore(Score):
    source = "ensemble"
    needs_members = True


class Entropy(EnsembleScore):
    name, description = "entropy", "H[p̄]: entropy of the ensemble's mean prediction"

    def __call__(self, state, rng=None):
        return entropy(state.mean_p())


class BALD(EnsembleScore):
    name, description = "bald", "H[p̄] − mean_m H[p_m]: mutual information (BALD)"

    def __call__(self, state, rng=None):
        mi = entropy(state.mean_p()) - state.sum_ent / state.num_members
        return np.maximum(mi, 0.0)   # ≥ 0 by concavity; clip float round-off


class VariationRatio(EnsembleScore):
    name, description = "variation-ratio", "1 − (votes of the modal class) / M (argmax ties: lowest class)"

    def __call__(self, state, rng=None):
        return 1.0 - state.votes.max(axis=1) / state.num_members


class Margin(EnsembleScore):
    name, description = "margin", "1 − (p̄_top1 − p̄_top2)"

    def __call__(self, state, rng=None):
        p = state.mean_p()
        if p.shape[1] < 2:
            return np.zeros(p.shape[0])
        top2 = np.partition(p, p.shape[1] - 2, axis=1)[:, -2:]
        return 1.0 - (top2[:, 1] - top2[:, 0])


class Random(EnsembleScore):
    name, description = "random", "uniform noise from a seeded generator (the baseline)"
    needs_members = False

    def __call__(self, state, rng=None):
        rng = rng if rng is not None else np.random.default_rng(0)
        return rng.random(state.sum_ent.shape[0])


for _s in (Entropy(), BALD(), VariationRatio(), Margin(), Random()):
    register(_s)
