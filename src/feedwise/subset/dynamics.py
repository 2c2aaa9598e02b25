"""Training dynamics of one run, per example, in O(N) memory (engine-free).

:class:`TrainingDynamics` takes the model's logits on every training example at each evaluation
(N × K, one evaluation at a time) and keeps only running sums: the EL2N sum over the first
``el2n_checkpoints`` evaluations, the sum of margins, whether each example was correct at the
previous evaluation, its forgetting events and whether it was ever learned. The scores
``el2n``, ``forgetting`` and ``aum`` of :mod:`feedwise.scores.dynamics` read them.
"""

from __future__ import annotations

import numpy as np

from feedwise.errors import FeedwiseError
from feedwise.scores import get_score

DYNAMICS_SCORES = ("el2n", "forgetting", "aum")


class TrainingDynamics:
    """Running per-example statistics of one training run's evaluations.

    >>> d = TrainingDynamics([0, 1])
    >>> d.add([[2.0, 0.0], [3.0, 1.0]]); d.add([[2.0, 0.0], [0.0, 1.0]])
    >>> d.score("forgetting").tolist(), d.score("aum").tolist()
    ([0.0, 0.0], [-2.0, 0.5])
    """

    def __init__(self, labels, el2n_checkpoints: int = 1):
        self.labels = np.asarray(labels, dtype=np.int64)
        if self.labels.ndim != 1 or self.labels.size == 0:
            raise FeedwiseError("training dynamics need a non-empty 1-D label vector")
        if el2n_checkpoints < 1:
            raise FeedwiseError(f"el2n_checkpoints must be at least 1, got {el2n_checkpoints}")
        n = self.labels.size
        self.el2n_checkpoints = int(el2n_checkpoints)
        self.checkpoints = 0
        self.el2n_count = 0
        self.el2n_sum = np.zeros(n)
        self.margin_sum = np.zeros(n)
        self.correct = np.zeros(n, dtype=bool)
        self.forgets = np.zeros(n, dtype=np.int64)
        self.learned = np.zeros(n, dtype=bool)

    def add(self, logits) -> None:
        """Fold one evaluation's N × K logits (any real numbers; a torch tensor or an array)."""
        if type(logits).__module__.startswith("torch"):
            logits = logits.detach().cpu().numpy()
        z = np.asarray(logits, dtype=np.float64)
        n = self.labels.size
        if z.ndim != 2 or z.shape[0] != n or z.shape[1] < 2:
            raise FeedwiseError(f"logits must be {n} x K with K >= 2, got shape {z.shape}")
        if not np.isfinite(z).all():
            raise FeedwiseError("logits contain NaN or infinite values")
        if self.labels.max() >= z.shape[1] or self.labels.min() < 0:
            raise FeedwiseError(f"labels must lie in [0, {z.shape[1] - 1}]")
        rows = np.arange(n)
        zy = z[rows, self.labels]
        other = z.copy()
        other[rows, self.labels] = -np.inf
        top_other = other.max(axis=1)
        correct = zy > top_other           # a tie with another class is not correct
        if self.checkpoints < self.el2n_checkpoints:
            p = np.exp(z - z.max(axis=1, keepdims=True))
            p /= p.sum(axis=1, keepdims=True)
            p[rows, self.labels] -= 1.0
            self.el2n_sum += np.sqrt((p * p).sum(axis=1))
            self.el2n_count += 1
        self.margin_sum += zy - top_other
        if self.checkpoints > 0:
            self.forgets += self.correct & ~correct
        self.learned |= correct
        self.correct = correct
        self.checkpoints += 1

    def score(self, name: str) -> np.ndarray:
        if name not in DYNAMICS_SCORES:
            raise FeedwiseError(f"unknown training-dynamics score '{name}' (known: {', '.join(DYNAMICS_SCORES)})")
        if self.checkpoints == 0:
            raise FeedwiseError("no evaluation was added to the training dynamics")
        return np.asarray(get_score(name)(self), dtype=np.float64)
