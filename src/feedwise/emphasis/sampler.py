"""Active Bias in your own PyTorch loop: a ``DataLoader`` sampler and a loss-weights function.

Sampling (SGD-SPV) — three lines added to an ordinary loop::

    history = PredictionHistory(len(train_set))                                      # 1
    loader = DataLoader(WithIndex(train_set), batch_size=128,
                        sampler=ActiveBiasSampler(history, method="spv"))             # 2
    for x, y, idx in loader:
        logits = model(x)
        history.update(idx, true_class_probs(logits, y))                              # 3
        loss = F.cross_entropy(logits, y)
        opt.zero_grad(); loss.backward(); opt.step()

Weighting (SGD-WPV) keeps your shuffling and changes the loss instead::

        loss = (F.cross_entropy(logits, y, reduction="none")
                * emphasis_weights(history, idx, method="wpv")).mean()

The sampler yields a uniform permutation during ``burn_in`` epochs, then each epoch
``num_samples`` indices drawn with replacement with probability ∝ score + ε, computed from
the history at the start of that epoch.
"""

from __future__ import annotations

from typing import Iterator

import torch
from torch.utils.data import Dataset as TorchDataset
from torch.utils.data import Sampler

from feedwise.emphasis.history import PredictionHistory
from feedwise.emphasis.methods import (DEFAULT_BURN_IN, DEFAULT_EPSILON, check_burn_in, check_epsilon, draw,
                                       get_method, probabilities)
from feedwise.errors import FeedwiseError


def true_class_probs(logits: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
    """Softmax probability of each example's label, detached (what the history records)."""
    with torch.no_grad():
        return torch.softmax(logits.detach().float(), dim=1).gather(1, labels.long()[:, None]).squeeze(1)


class WithIndex(TorchDataset):
    """Wrap a map-style dataset of ``(x, y)`` so that items become ``(x, y, index)``."""

    def __init__(self, dataset):
        self.dataset = dataset

    def __len__(self) -> int:
        return len(self.dataset)

    def __getitem__(self, i):
        x, y = self.dataset[i][:2]
        return x, y, i


class ActiveBiasSampler(Sampler[int]):
    """A ``torch.utils.data.Sampler`` that emphasises examples by their prediction history.

    ``method``: a sampling method of :mod:`feedwise.emphasis.methods` (``spv``, ``stc``, ``se``,
    ``sd``) or ``uniform``; ``epsilon`` ≥ 0 smooths the probabilities; ``burn_in`` epochs of
    uniform permutations come first; ``num_samples`` indices per epoch (default: N).
    ``generator``: a ``torch.Generator`` for reproducible draws.
    """

    def __init__(self, history: PredictionHistory, method: str = "spv", epsilon: float = DEFAULT_EPSILON,
                 burn_in: float = DEFAULT_BURN_IN, num_samples: int | None = None,
                 generator: torch.Generator | None = None, data_source=None):
        if not isinstance(history, PredictionHistory):
            raise FeedwiseError("ActiveBiasSampler needs a PredictionHistory as its first argument")
        m = get_method(method)
        if m.how == "weight":
            raise FeedwiseError(f"method '{method}' weights the loss; use emphasis_weights() for it, "
                                f"or the sampling twin '{'s' + method[1:]}' here")
        if m.name == "scan" or (m.scorer is not None and not m.uses_history):
            raise FeedwiseError(f"method '{method}' is not available as a sampler (use uniform, se, sd, spv, stc)")
        if data_source is not None and len(data_source) != history.num_examples:
            raise FeedwiseError(f"the dataset has {len(data_source)} examples but the history {history.num_examples}")
        self.history = history
        self.method = m
        self.epsilon = check_epsilon(epsilon)
        self.burn_in = check_burn_in(burn_in)
        self.num_samples = int(num_samples) if num_samples is not None else history.num_examples
        if self.num_samples <= 0:
            raise FeedwiseError(f"num_samples must be positive, got {num_samples}")
        self.generator = generator
        self.epoch = 0

    def __len__(self) -> int:
        return self.num_samples

    def probabilities(self, history: PredictionHistory | None = None) -> torch.Tensor:
        """The sampling probabilities of the next epoch (uniform during burn-in)."""
        h = history if history is not None else self.history
        if h.num_examples != self.history.num_examples:
            raise FeedwiseError(f"this sampler draws from {self.history.num_examples} examples; "
                                f"it cannot use a history of {h.num_examples}")
        if self.method.name == "uniform" or self.epoch < self.burn_in:
            return torch.full((h.num_examples,), 1.0 / h.num_examples, dtype=torch.float64)
        return probabilities(h, self.method, self.epsilon, num_examples=self.history.num_examples).cpu()

    def __iter__(self) -> Iterator[int]:
        n = self.history.num_examples
        if self.method.name == "uniform" or self.epoch < self.burn_in:
            if self.num_samples == n:
                order = torch.randperm(n, generator=self.generator)
            else:
                order = torch.randint(n, (self.num_samples,), generator=self.generator)
        else:
            order = draw(self.probabilities(), self.num_samples, self.generator)
        self.epoch += 1
        return iter(order.tolist())

    def set_epoch(self, epoch: int) -> None:
        """Like DistributedSampler.set_epoch: decide where the burn-in stands."""
        self.epoch = int(epoch)
