"""RHO-LOSS as a feeder of the engine (``feedwise emphasis --methods rho``).

Each step the feeder draws ``n_B = B / ratio`` candidates, asks the trainer for the current model's
per-example loss on them (``losses_of``, handed over once through :meth:`RhoFeeder.attach`: a forward
pass without gradient, in eval mode) and returns the ``B`` with the highest reducible loss. The
selection itself is :class:`feedwise.emphasis.rho.RhoSampler`, the same object a user's own loop uses.
"""

from __future__ import annotations

from typing import Callable

import torch

from feedwise.emphasis.rho import DEFAULT_RATIO, IrreducibleLosses, RhoSampler, check_ratio, work_units
from feedwise.errors import FeedwiseError
from feedwise.feeds.base import Feeder


class RhoFeeder(Feeder):
    """Train on the candidates with the highest training loss − irreducible loss."""

    name = "rho"
    wants_model_losses = True

    def __init__(self, il_losses: IrreducibleLosses | torch.Tensor | None = None, ratio: float = DEFAULT_RATIO):
        if il_losses is None:
            raise FeedwiseError("feed 'rho' needs irreducible losses (an IL model trained on a holdout split): "
                                "use `feedwise emphasis --methods rho`, or RhoFeeder(il_losses) in Python")
        self.il = il_losses if isinstance(il_losses, IrreducibleLosses) else IrreducibleLosses(il_losses)
        self.ratio = check_ratio(ratio)
        self._losses_of: Callable[[torch.Tensor], torch.Tensor] | None = None
        self.sampler: RhoSampler | None = None

    def bind(self, num_examples, generator, device="cpu"):
        super().bind(num_examples, generator, device)
        if self.il.num_examples != self.num_examples:
            raise FeedwiseError(f"RHO-LOSS: {self.il.num_examples} irreducible losses for {self.num_examples} "
                                "training examples")
        self._batch = None
        self.selected = torch.zeros(self.num_examples, dtype=torch.int32, device=self.device)
        return self

    def attach(self, losses_of: Callable[[torch.Tensor], torch.Tensor]) -> None:
        """The trainer's ``losses_of(indices) -> per-example losses`` of its current model (no gradient)."""
        self._losses_of = losses_of

    def next_batch(self, batch_size):
        if self._losses_of is None:
            raise FeedwiseError("the rho feeder needs the model's losses: the trainer attaches them "
                                "(RhoFeeder.attach(losses_of))")
        s = self.sampler
        if s is None or s.batch_size != batch_size:
            s = self.sampler = RhoSampler(self.il, batch_size, self.ratio, generator=self.generator,
                                          device=self.device)
        cand = s.candidates()
        idx = s.select(cand, self._losses_of(cand))
        self.selected.index_add_(0, idx, torch.ones(len(idx), dtype=torch.int32, device=self.device))
        self.epoch = s.passes
        return idx, None

    @property
    def forward_examples(self) -> int:
        return 0 if self.sampler is None else int(self.sampler.forward_examples)

    def cost(self, train_examples: int) -> dict:
        """The run's compute: its training examples, the candidates' forward passes and the IL model's."""
        c = {"train_examples": int(train_examples), "forward_examples": self.forward_examples, **self.il.cost()}
        c["units"] = work_units(c["train_examples"] + c["il_train_examples"],
                                c["forward_examples"] + c["il_forward_examples"])
        return c

    def state(self) -> dict:
        pool = None if self.il.pool is None else len(self.il.pool)
        return {"feed": self.name, "ratio": self.ratio, "pool": pool}


__all__ = ["RhoFeeder"]
