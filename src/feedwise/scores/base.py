"""The score contract, the registry, and the one rule that turns scores into emphasis."""

from __future__ import annotations

import math

import numpy as np
import torch

from feedwise.errors import FeedwiseError


class Score:
    """A per-example score computed from what it is given (see :mod:`feedwise.scores`).

    ``source`` names what ``__call__`` takes: ``history`` (history rows), ``ensemble`` (an
    ensemble's running sums) or ``losses`` (per-example losses). ``relative_epsilon``: emphasis
    adds ε times the mean score instead of ε (a loss has no fixed scale)."""

    name = ""
    source = ""
    description = ""
    relative_epsilon = False

    def __call__(self, given, rng: np.random.Generator | None = None):
        raise NotImplementedError

    def __repr__(self) -> str:
        return f"<score {self.name} ({self.source})>"


SCORES: dict[str, Score] = {}


def register(score: Score) -> Score:
    SCORES[score.name] = score
    return score


def get_score(name: str) -> Score:
    if name not in SCORES:
        raise FeedwiseError(f"unknown score '{name}' (known: {', '.join(SCORES)})")
    return SCORES[name]


def fill_value(scores) -> float:
    """The value given to examples whose score is undefined (NaN): the mean of the defined ones
    (0 when none is defined). Scores are finite or NaN, never infinite."""
    if isinstance(scores, torch.Tensor):
        m = float(torch.nanmean(scores)) if scores.numel() else math.nan
    else:
        s = np.asarray(scores, dtype=np.float64)
        m = float(np.nanmean(s)) if s.size and not np.isnan(s).all() else math.nan
    return m if math.isfinite(m) else 0.0


def emphasis(scores: torch.Tensor, epsilon: float, fill: float | None = None, relative: bool = False) -> torch.Tensor:
    """Emphasis ∝ score + ε: undefined scores take ``fill`` (default: :func:`fill_value`), negative
    ones 0, then ε is added (``relative``: ε times the mean of the filled scores)."""
    s = torch.nan_to_num(scores, nan=fill_value(scores) if fill is None else fill).clamp_min(0)
    return s + epsilon * s.mean() if relative else s + epsilon
