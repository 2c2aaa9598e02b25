"""The Active Bias family as data: ``name -> Method`` (how it emphasises, and by which score).

=========  =================  ==========================================================
name       how                emphasis ∝ (score + ε)
=========  =================  ==========================================================
uniform    order              none: a fresh permutation every epoch (SGD-Uni)
scan       order              none: the same order every epoch (SGD-Scan)
se / we    sample / weight    p̄ (easy examples)
sd / wd    sample / weight    1 − p̄ (hard examples)
spv / wpv  sample / weight    std̂ (prediction variance, the paper's main method)
stc / wtc  sample / weight    p̄ (1 − p̄) (threshold closeness)
loss       sample             the example's last loss −log p, + ε·mean loss (importance
                              sampling, reweighted by 1/(N·p) to keep the gradient unbiased)
=========  =================  ==========================================================

A *sample* method draws each epoch's N indices with replacement with probability ∝ score + ε
(recomputed once per epoch); a *weight* method keeps uniform shuffling and multiplies each
example's loss by score + ε, normalised to mean 1 over the batch (the engine feeder takes the
scores at the start of each epoch, which under shuffling without replacement is each example's
history when it is visited). Every method but
uniform/scan starts with ``burn_in`` epochs of uniform shuffling, while the history fills.

Defaults (ours; the paper treats both as constants to set once): ``ε = 0.05`` — scores live
in [0, 1] (std̂ rarely above 0.3, p̄(1−p̄) at most 0.25), so ε = 0.05 keeps every example's
probability within a factor of a few of the others' — and ``burn_in = 2`` epochs, the
fewest that give every example the two observations std̂ needs.

For ``loss``, ε is relative to the mean loss (default 1.0): p ∝ loss + ε·mean(loss), so
1/(N·p) ≤ (1 + ε)/ε bounds the weights (≤ 2 by default). Without that floor, weights of up to
30 made momentum SGD at the workload's lr unstable on mnist1d-mlp in our first runs.

Examples whose score is still undefined (std̂ needs n ≥ 2, p̄ needs n ≥ 1) get the mean
score of the examples where it is defined (0 when none is).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import torch

from feedwise.emphasis.history import PredictionHistory
from feedwise.errors import FeedwiseError
from feedwise.scores import Score, emphasis, fill_value, get_score  # noqa: F401  (fill_value re-exported)

DEFAULT_EPSILON = 0.05
DEFAULT_BURN_IN = 2


@dataclass(frozen=True)
class Method:
    name: str
    how: str            # order | sample | weight
    score: str          # none, or a score of feedwise.scores: easy | hard | variance | closeness | loss
    label: str          # the paper's name
    default_epsilon: float = DEFAULT_EPSILON
    importance_weights: bool = False   # sampling reweighted by 1/(N p): the expected gradient stays unbiased

    @property
    def scorer(self) -> Score | None:
        """The score this method emphasises by (None for uniform and scan)."""
        return None if self.score == "none" else get_score(self.score)

    @property
    def uses_history(self) -> bool:
        return self.scorer is not None and self.scorer.source == "history"

METHODS: dict[str, Method] = {m.name: m for m in [
    Method("uniform", "order", "none", "SGD-Uni"),
    Method("scan", "order", "none", "SGD-Scan"),
    Method("se", "sample", "easy", "SGD-SE"),
    Method("we", "weight", "easy", "SGD-WE"),
    Method("sd", "sample", "hard", "SGD-SD"),
    Method("wd", "weight", "hard", "SGD-WD"),
    Method("spv", "sample", "variance", "SGD-SPV"),
    Method("wpv", "weight", "variance", "SGD-WPV"),
    Method("stc", "sample", "closeness", "SGD-STC"),
    Method("wtc", "weight", "closeness", "SGD-WTC"),
    Method("loss", "sample", "loss", "loss-IS", default_epsilon=1.0, importance_weights=True),
]}


def get_method(name: str) -> Method:
    if name not in METHODS:
        raise FeedwiseError(f"unknown emphasis method '{name}' (known: {', '.join(METHODS)})")
    return METHODS[name]


def _check_non_negative(value, name: str, unit: str = "") -> float:
    try:
        v = float(value)
    except (TypeError, ValueError):
        raise FeedwiseError(f"{name} must be a number{' of ' + unit if unit else ''}, got {value!r}") from None
    if not (v >= 0 and math.isfinite(v)):
        raise FeedwiseError(f"{name} must be finite and >= 0{' ' + unit if unit else ''}, got {value}")
    return v


def check_epsilon(epsilon: float) -> float:
    return _check_non_negative(epsilon, "epsilon")


def check_burn_in(burn_in: float) -> float:
    return _check_non_negative(burn_in, "burn-in", "epochs")


def draw(p: torch.Tensor, k: int, generator: torch.Generator | None = None) -> torch.Tensor:
    """``k`` indices drawn i.i.d. with probabilities ``p`` (CPU, float64, sum 1).

    Inverse CDF on sorted uniforms, then a random permutation: the sorted queries make the
    binary searches walk the CDF in order (numpy's searchsorted exploits that; at N = k = 45,000
    2.3 ms, against 5.9 ms for ``torch.multinomial`` and 5.7 ms for unsorted uniforms), and
    permuting a sorted i.i.d. sample gives back an i.i.d. sequence. Zero-probability examples
    are never drawn; float64 throughout (``torch.multinomial`` works in float32)."""
    cdf = torch.cumsum(p.detach().cpu().double(), 0)
    u = torch.rand(k, generator=generator, dtype=torch.float64).mul_(cdf[-1]).numpy()
    u.sort()  # numpy's sort: 15x faster than torch.sort here on one thread
    idx = torch.from_numpy(np.searchsorted(cdf.numpy(), u, side="right")).clamp_(max=len(p) - 1)
    return idx[torch.randperm(k, generator=generator)]


def scores(history: PredictionHistory, method: str | Method, indices=None, fill: float | None = None) -> torch.Tensor:
    """The (non-negative, finite) emphasis score of ``method`` for all or some examples."""
    m = method if isinstance(method, Method) else get_method(method)
    if not m.uses_history:
        raise FeedwiseError(f"method '{m.name}' has no history score")
    s = m.scorer(history.rows(indices))
    if fill is None:
        fill = fill_value(s if indices is None else m.scorer(history.rows()))
    return emphasis(s, 0.0, fill)


def probabilities(history: PredictionHistory, method: str | Method = "spv", epsilon: float = DEFAULT_EPSILON,
                  num_examples: int | None = None) -> torch.Tensor:
    """Sampling probabilities (sum 1, float64) ∝ score + ε over all examples of ``history``.

    ``num_examples`` (the size of the dataset being sampled) must match the history's."""
    if num_examples is not None and int(num_examples) != history.num_examples:
        raise FeedwiseError(f"asked for sampling probabilities of {num_examples} examples from a history of "
                            f"{history.num_examples}")
    eps = check_epsilon(epsilon)
    m = method if isinstance(method, Method) else get_method(method)
    if not m.uses_history:
        raise FeedwiseError(f"method '{m.name}' has no history score")
    s = emphasis(m.scorer(history.rows()), eps)
    total = s.sum()
    if not bool(total > 0):
        return torch.full_like(s, 1.0 / len(s))
    return s / total


def emphasis_weights(history: PredictionHistory, indices, method: str | Method = "wpv",
                     epsilon: float = DEFAULT_EPSILON, fill: float | None = None) -> torch.Tensor:
    """Per-example loss weights ∝ score + ε for ``indices``, normalised to mean 1 (float32).

    Multiply the per-example loss (``reduction="none"``) by these before the mean."""
    eps = check_epsilon(epsilon)
    idx = torch.as_tensor(indices, device=history.device).reshape(-1).long()
    history.check_indices(idx)
    w = emphasis(scores(history, method, idx, fill=fill), eps + 1e-12, fill=0.0)  # 1e-12: all-zero scores give equal weights
    return (w / w.mean()).to(torch.float32)
