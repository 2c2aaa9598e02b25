"""RHO-LOSS (Mindermann et al. 2022, *Prioritized training on points that are learnable, worth
learning, and not yet learnt*, arXiv:2206.07137), usable without the engine.

Each step draws a candidate batch of ``n_B = B / ratio`` examples uniformly (consecutive slices of a
fresh permutation of the pool every pass, so without replacement), computes the current model's
per-example training loss on them (a forward pass without gradient) and trains on the ``B`` with the
highest *reducible loss*: training loss minus the *irreducible loss* (IL), the loss of a model trained
on a holdout split. High training loss alone also picks mislabelled and ambiguous points; subtracting
the IL loss (high on those too) keeps the points that are learnable and not yet learnt.

The pieces:

- :func:`holdout_split` — the split of the training rows into the target's part and the IL model's
  holdout (``fraction`` of the rows, default 1/2 as in the paper);
- :class:`IrreducibleLosses` — per-example IL losses (NaN where a row was not scored) and which rows
  the target may train on; :func:`cross_fitted` joins two folds so every row is scored by a model
  that never trained on it;
- :func:`select_reducible` — the selection rule, a pure function;
- :class:`RhoSampler` — candidates, selection and the forward-pass count, for your own loop::

      rho = RhoSampler(il_losses, batch_size=128, ratio=0.1)
      for step in range(steps):
          cand = rho.candidates()
          with torch.no_grad():
              losses = F.cross_entropy(model(x[cand]), y[cand], reduction="none")
          idx = rho.select(cand, losses)                 # the 128 with the highest reducible loss
          loss = F.cross_entropy(model(x[idx]), y[idx])
          opt.zero_grad(); loss.backward(); opt.step()

  or ``for idx in rho.batches(loss_of)`` with ``loss_of(indices) -> losses``.

Compute is counted in forward-pass units (:func:`work_units`): a forward pass of one example is 1,
a training step on one example is 3 (forward 1 + backward 2, the usual FLOP ratio).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Callable, Iterator

import torch

from feedwise.errors import FeedwiseError

DEFAULT_RATIO = 0.1      # B / n_B: the paper's 10% of each candidate batch is trained on
DEFAULT_HOLDOUT = 0.5    # share of the training rows the IL model trains on (the paper's half)
FORWARD_UNITS = 1        # one example's forward pass
TRAIN_UNITS = 3          # one example's forward + backward pass (backward = 2 forwards)


def check_ratio(ratio) -> float:
    try:
        r = float(ratio)
    except (TypeError, ValueError):
        raise FeedwiseError(f"the RHO-LOSS ratio must be a number in (0, 1], got {ratio!r}") from None
    if not (0 < r <= 1):
        raise FeedwiseError(f"the RHO-LOSS ratio (batch / candidates) must be in (0, 1], got {ratio}")
    return r


def check_holdout(fraction) -> float:
    try:
        f = float(fraction)
    except (TypeError, ValueError):
        raise FeedwiseError(f"the RHO-LOSS holdout fraction must be a number in (0, 1), got {fraction!r}") from None
    if not (0 < f < 1):
        raise FeedwiseError(f"the RHO-LOSS holdout fraction must be in (0, 1), got {fraction}")
    return f


def candidate_size(batch_size: int, ratio: float = DEFAULT_RATIO) -> int:
    """n_B = round(B / ratio): the candidate batch the B are selected from."""
    return max(int(batch_size), int(round(int(batch_size) / check_ratio(ratio))))


def work_units(train_examples: int | float = 0, forward_examples: int | float = 0) -> float:
    """Compute in forward-pass units: 3 per trained example (forward + backward), 1 per forward-only one."""
    return TRAIN_UNITS * float(train_examples) + FORWARD_UNITS * float(forward_examples)


def holdout_split(num_examples: int, fraction: float = DEFAULT_HOLDOUT,
                  generator: torch.Generator | None = None) -> tuple[torch.Tensor, torch.Tensor]:
    """(target rows, holdout rows), both sorted and disjoint, covering ``0..num_examples-1``; the
    holdout has ``round(fraction * N)`` rows (at least 1, leaving at least 1)."""
    f = check_holdout(fraction)
    n = int(num_examples)
    if n < 2:
        raise FeedwiseError(f"a holdout split needs at least 2 examples, got {n}")
    k = min(n - 1, max(1, int(round(f * n))))
    perm = torch.randperm(n, generator=generator)
    return perm[k:].sort().values, perm[:k].sort().values


@dataclass
class IrreducibleLosses:
    """Per-example IL losses over all N training rows (NaN: not scored) and the rows the target model
    may train on (``pool``; None: all). ``cost`` counts how they were made (see :func:`work_units`)."""

    losses: torch.Tensor
    pool: torch.Tensor | None = None
    il_train_examples: int = 0       # examples the IL model(s) trained on (steps x batch)
    il_forward_examples: int = 0     # forward passes to score the training rows once
    info: dict | None = None

    def __post_init__(self):
        self.losses = torch.as_tensor(self.losses, dtype=torch.float32).reshape(-1)
        if self.pool is not None:
            self.pool = torch.as_tensor(self.pool, dtype=torch.long).reshape(-1)
        rows = self.losses if self.pool is None else self.losses[self.pool]
        if len(rows) == 0:
            raise FeedwiseError("RHO-LOSS: no training row to draw candidates from")
        if not torch.isfinite(rows).all():
            raise FeedwiseError("RHO-LOSS: every row the target may train on needs a finite irreducible loss "
                                f"({int((~torch.isfinite(rows)).sum())} of {len(rows)} are not)")

    @property
    def num_examples(self) -> int:
        return int(self.losses.shape[0])

    def cost(self) -> dict:
        return {"il_train_examples": int(self.il_train_examples), "il_forward_examples": int(self.il_forward_examples),
                "il_units": work_units(self.il_train_examples, self.il_forward_examples)}


def cross_fitted(losses_a: torch.Tensor, losses_b: torch.Tensor, **cost) -> IrreducibleLosses:
    """Join two folds' IL losses: each row has a finite value in exactly one of them (the fold whose
    model did not train on it); the target may then train on every row."""
    a = torch.as_tensor(losses_a, dtype=torch.float32)
    b = torch.as_tensor(losses_b, dtype=torch.float32)
    if a.shape != b.shape:
        raise FeedwiseError(f"the two folds' IL losses have shapes {tuple(a.shape)} and {tuple(b.shape)}")
    fa, fb = torch.isfinite(a), torch.isfinite(b)
    if (fa & fb).any() or not (fa | fb).all():
        raise FeedwiseError("cross-fitted IL losses: every row must be scored by exactly one fold")
    return IrreducibleLosses(torch.where(fa, a, b), None, **cost)


def reducible_loss(losses: torch.Tensor, il_losses: torch.Tensor) -> torch.Tensor:
    """Training loss − irreducible loss, per example."""
    return losses.float() - il_losses.to(losses.device).float()


def select_reducible(candidates: torch.Tensor, losses: torch.Tensor, il_losses: torch.Tensor, k: int) -> torch.Tensor:
    """The ``k`` candidates with the highest reducible loss ``losses − il_losses[candidates]``, highest first.

    ``losses``: the current model's per-example training loss of each candidate (same order);
    ``il_losses``: IL losses of all N rows. A NaN reducible loss (a diverged model) ranks last."""
    cand = torch.as_tensor(candidates).reshape(-1)
    if losses.shape[0] != cand.shape[0]:
        raise FeedwiseError(f"{losses.shape[0]} losses for {cand.shape[0]} candidates")
    if not 0 < k <= len(cand):
        raise FeedwiseError(f"cannot select {k} of {len(cand)} candidates")
    r = reducible_loss(losses.detach(), il_losses[cand.to(il_losses.device)])
    r = torch.nan_to_num(r, nan=-math.inf)
    top = torch.topk(r, k, sorted=True).indices
    return cand[top.to(cand.device)]


class RhoSampler:
    """Candidate batches and RHO-LOSS selection for any loop (the engine's ``rho`` feeder uses it too).

    ``il``: :class:`IrreducibleLosses` (or a tensor of N IL losses: every row in the pool);
    ``batch_size``: B, the examples trained on per step; ``ratio``: B / n_B (default 0.1);
    ``generator``: a ``torch.Generator`` for the candidate order. ``forward_examples`` counts the
    candidates handed out (each needs one forward pass), ``steps`` the selections made."""

    def __init__(self, il, batch_size: int, ratio: float = DEFAULT_RATIO, generator: torch.Generator | None = None,
                 device: torch.device | str = "cpu"):
        self.il = il if isinstance(il, IrreducibleLosses) else IrreducibleLosses(il)
        self.batch_size = int(batch_size)
        if self.batch_size < 1:
            raise FeedwiseError(f"batch size must be positive, got {batch_size}")
        self.ratio = check_ratio(ratio)
        self.num_candidates = candidate_size(self.batch_size, self.ratio)
        self.device = torch.device(device)
        self._pool = (torch.arange(self.il.num_examples) if self.il.pool is None else self.il.pool).to(self.device)
        if self.num_candidates > len(self._pool):
            raise FeedwiseError(f"RHO-LOSS: the candidate batch ({self.num_candidates} = {self.batch_size} / "
                                f"{self.ratio:g}) exceeds the {len(self._pool)} rows it is drawn from")
        self._il = self.il.losses.to(self.device)
        self.generator = generator
        self._order = None
        self._pos = 0
        self.passes = 0            # completed passes over the pool (candidate epochs)
        self.steps = 0
        self.forward_examples = 0

    def candidates(self) -> torch.Tensor:
        """The next ``n_B`` candidate indices (a slice of the pool's current permutation; a slice
        that crosses the end takes the rest and the head of a fresh permutation, no repeats within)."""
        n, m = len(self._pool), self.num_candidates
        if self._order is None:
            self._order = self._perm()
        if self._pos + m <= n:
            out = self._order[self._pos:self._pos + m]
            self._pos += m
        else:
            head = self._order[self._pos:]
            self.passes += 1
            self._order = self._perm(exclude=head)
            need = m - len(head)
            out = torch.cat([head, self._order[:need]])
            self._pos = need
        self.forward_examples += m
        return out

    def _perm(self, exclude: torch.Tensor | None = None) -> torch.Tensor:
        """A fresh permutation of the pool; rows in ``exclude`` (the previous pass's tail, already in the
        batch being built) go to its end so that a batch never holds one row twice."""
        order = self._pool[torch.randperm(len(self._pool), generator=self.generator).to(self.device)]
        if exclude is not None and len(exclude):
            mark = torch.zeros(self.il.num_examples, dtype=torch.bool, device=self.device)
            mark[exclude] = True
            taken = mark[order]
            order = torch.cat([order[~taken], order[taken]])
        return order

    def select(self, candidates: torch.Tensor, losses: torch.Tensor) -> torch.Tensor:
        """The B candidates with the highest reducible loss (``losses``: the model's, one per candidate)."""
        self.steps += 1
        return select_reducible(candidates, losses.to(self.device), self._il, self.batch_size)

    def batches(self, loss_of: Callable[[torch.Tensor], torch.Tensor]) -> Iterator[torch.Tensor]:
        """Endless selected batches; ``loss_of(indices)`` returns the current model's per-example losses."""
        while True:
            cand = self.candidates()
            with torch.no_grad():
                losses = loss_of(cand)
            yield self.select(cand, losses)

    def cost(self) -> dict:
        """The selection's extra compute so far, and the IL model's."""
        return {"candidate_forward_examples": int(self.forward_examples), **self.il.cost()}


__all__ = ["DEFAULT_HOLDOUT", "DEFAULT_RATIO", "IrreducibleLosses", "RhoSampler", "candidate_size", "check_holdout",
           "check_ratio", "cross_fitted", "holdout_split", "reducible_loss", "select_reducible",
           "work_units"]
