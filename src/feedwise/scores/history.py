"""Scores of the Active Bias prediction history (Chang et al. 2017).

The history keeps per example rows ``[count, shift, s1, s2]`` (float64): the number of
observations of the label's probability, the first observation, and the sums of the shifted
observations and of their squares (:class:`feedwise.emphasis.PredictionHistory`). The
statistics below read those rows; the scores read the statistics.
"""

from __future__ import annotations

import torch

from feedwise.scores.base import Score, register


def stats_from_rows(rows: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """(n, p̄, sample variance) from rows ``[count, shift, s1, s2]`` of the state.

    Few tensor operations on purpose (this runs every step): undefined values come out as
    NaN by plain arithmetic — n = 0 gives 0/0 for p̄, and n = 1 gives 0/0 for var because
    the single observation is the shift, so s1 = s2 = 0 exactly."""
    n, s1 = rows[:, 0], rows[:, 2]
    c = s1 * s1 / n
    var = ((rows[:, 3] - c) / (n - 1)).clamp_(min=0)  # clamp keeps NaN; rounding can dip below 0
    return n, rows[:, 1] + s1 / n, var


def std_hat(n: torch.Tensor, var: torch.Tensor) -> torch.Tensor:
    """std̂ = sqrt(var + var²/(n − 1)) (NaN where var is)."""
    return (var + var * var / (n - 1)).sqrt_()


class HistoryScore(Score):
    source = "history"

    def __call__(self, given, rng=None) -> torch.Tensor:
        rows = given.rows() if hasattr(given, "rows") else given
        return self.compute(rows)

    def compute(self, rows: torch.Tensor) -> torch.Tensor:
        raise NotImplementedError


class Easy(HistoryScore):
    name, description = "easy", "p̄: mean probability of the example's label over training"

    def compute(self, rows):
        return stats_from_rows(rows)[1]


class Hard(HistoryScore):
    name, description = "hard", "1 − p̄: the label rarely got probability over training"

    def compute(self, rows):
        return 1 - stats_from_rows(rows)[1]


class Variance(HistoryScore):
    name, description = "variance", "std̂: prediction variance of the label's probability (n ≥ 2)"

    def compute(self, rows):
        n, _, v = stats_from_rows(rows)
        return std_hat(n, v)


class Closeness(HistoryScore):
    name, description = "closeness", "p̄ (1 − p̄): closeness to the decision threshold"

    def compute(self, rows):
        m = stats_from_rows(rows)[1]
        return m * (1 - m)


for _s in (Easy(), Hard(), Variance(), Closeness()):
    register(_s)
