"""Feeders decide which examples form each batch and with what loss weights.

A feeder works on index tensors over data already in memory; the engine gathers
``x[indices]`` itself. The contract, kept small so that the engine never knows which
method runs:

- ``bind(num_examples, generator, device)`` once before training;
- ``next_batch(batch_size) -> (indices, weights or None)`` every step;
- ``observe(indices, probs)`` after the forward pass, only when ``wants_observations`` is
  true: ``probs`` are the predicted probabilities of each example's (training) label. The
  engine calls ``observe_losses(indices, losses)`` with the per-example cross-entropy
  (``probs = exp(-losses)``); by default that calls ``observe``, and a feeder may override it
  to defer the conversion (the Active Bias feeders do, once per flush);
- ``attach(losses_of)`` once after ``bind``, only when ``wants_model_losses`` is true: a callable
  ``losses_of(indices) -> per-example losses`` of the current model (no gradient), for a feeder that
  looks at candidates before choosing (RHO-LOSS, :mod:`feedwise.feeds.rho`).

The plain feeders live here; the Active Bias family in :mod:`feedwise.feeds.emphasis`; the
registry of names in :mod:`feedwise.feeds`.
"""

from __future__ import annotations

import torch

from feedwise.errors import FeedwiseError


class Feeder:
    name = "base"
    wants_observations = False
    wants_model_losses = False

    def bind(self, num_examples: int, generator: torch.Generator, device: torch.device | str = "cpu") -> "Feeder":
        if num_examples <= 0:
            raise FeedwiseError("a feeder needs at least one example")
        self.num_examples = int(num_examples)
        self.generator = generator
        self.device = torch.device(device)
        self.epoch = 0
        return self

    def next_batch(self, batch_size: int) -> tuple[torch.Tensor, torch.Tensor | None]:
        raise NotImplementedError

    def observe(self, indices: torch.Tensor, probs: torch.Tensor) -> None:  # pragma: no cover - default no-op
        pass

    def attach(self, losses_of) -> None:  # pragma: no cover - default no-op
        pass

    def observe_losses(self, indices: torch.Tensor, losses: torch.Tensor) -> None:
        """Observations as per-example cross-entropy losses; the label's probability is exp(-loss)."""
        self.observe(indices, torch.exp(-losses.float()))

    def state(self) -> dict:
        """Small JSON-able description recorded with each trial."""
        return {"feed": self.name}


class _OrderFeeder(Feeder):
    """Walk through an order of all examples; a batch that crosses the end of an epoch takes
    the rest of this epoch plus the head of the next one, so every example is seen exactly
    once per epoch (no example dropped, whatever the batch size)."""

    def bind(self, num_examples, generator, device="cpu"):
        super().bind(num_examples, generator, device)
        self._order = self._new_order()
        self._pos = 0
        return self

    def _new_order(self) -> torch.Tensor:
        raise NotImplementedError

    def next_batch(self, batch_size):
        end = self._pos + batch_size
        if end <= self.num_examples:
            idx = self._order[self._pos:end]
            self._pos = end
            return idx, None
        parts = [self._order[self._pos:]]
        need = batch_size - (self.num_examples - self._pos)
        while True:  # a batch may span several epochs when it exceeds the data (not allowed by the engine)
            self.epoch += 1
            self._order = self._new_order()
            take = min(need, self.num_examples)
            parts.append(self._order[:take])
            need -= take
            if need == 0:
                self._pos = take
                break
        return torch.cat(parts), None


class UniformFeeder(_OrderFeeder):
    """Uniform shuffling without replacement: a fresh permutation every epoch (SGD-Uni)."""

    name = "uniform"

    def _new_order(self):
        return torch.randperm(self.num_examples, generator=self.generator).to(self.device)


class ScanFeeder(_OrderFeeder):
    """A fixed order, the same every epoch (SGD-Scan)."""

    name = "scan"

    def _new_order(self):
        if not hasattr(self, "_fixed"):
            self._fixed = torch.arange(self.num_examples, device=self.device)
        return self._fixed


class WeightedFeeder(Feeder):
    """Sampling with replacement by given (unnormalised, non-negative) probabilities."""

    name = "weighted"

    def __init__(self, weights: torch.Tensor | None = None):
        self._weights = weights

    def bind(self, num_examples, generator, device="cpu"):
        super().bind(num_examples, generator, device)
        if self._weights is None:
            self._weights = torch.ones(num_examples)
        w = torch.as_tensor(self._weights, dtype=torch.float64)
        if w.shape != (num_examples,):
            raise FeedwiseError(f"sampling weights have shape {tuple(w.shape)}, expected ({num_examples},)")
        if not torch.isfinite(w).all() or (w < 0).any() or w.sum() <= 0:
            raise FeedwiseError("sampling weights must be finite, non-negative and not all zero")
        self.set_probabilities(w)
        self._drawn = 0
        return self

    def set_probabilities(self, p: torch.Tensor) -> None:
        self._probs = (p / p.sum()).to(torch.float32)

    def next_batch(self, batch_size):
        # multinomial on the CPU with our generator: reproducible and independent of the device
        idx = torch.multinomial(self._probs, batch_size, replacement=True, generator=self.generator)
        self._drawn += batch_size
        self.epoch = self._drawn // self.num_examples
        return idx.to(self.device), None
