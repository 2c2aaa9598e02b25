"""The Active Bias family as feeders of the engine (``feedwise train --feed spv``).

Importing this module registers ``se we sd wd spv wpv stc wtc loss`` with
:func:`feedwise.feeds.base.register_feeder`. ``uniform``/``scan`` stay the plain feeders of
:mod:`feedwise.feeds.base`; :class:`EmphasisFeeder` also runs them (``method="uniform"``) when a
study wants their prediction history for diagnostics — same draws, same training.

Hot path: ``next_batch`` slices a per-epoch order and, for weighting and loss sampling, a
per-epoch weight buffer, both computed at the epoch boundary (weights are normalised to mean 1
per batch for all the epoch's batches at once); observations are kept and applied every
``flush_every`` steps (one ``exp`` and one ``index_add_`` on float64 running sums for all of
them). Measured in ``benchmarks/emphasis_overhead.py``.
"""

from __future__ import annotations

import math

import torch

from feedwise.emphasis.history import PredictionHistory
from feedwise.emphasis.methods import DEFAULT_BURN_IN, check_burn_in, check_epsilon, draw, get_method
from feedwise.errors import FeedwiseError
from feedwise.feeds.base import Feeder
from feedwise.scores import emphasis, fill_value


_MAX_LOSS = -math.log(1e-12)


def _cat(parts: list) -> torch.Tensor:
    return parts[0] if len(parts) == 1 else torch.cat(parts)


class EmphasisFeeder(Feeder):
    """Uniform burn-in, then sampling or loss weighting by the prediction history."""

    wants_observations = True

    def __init__(self, method: str = "spv", epsilon: float | None = None, burn_in: float = DEFAULT_BURN_IN,
                 flush_every: int = 16):
        self.method = get_method(method)
        self.name = self.method.name
        self.epsilon = check_epsilon(self.method.default_epsilon if epsilon is None else epsilon)
        self.burn_in = check_burn_in(burn_in)
        if int(flush_every) < 1:
            raise FeedwiseError(f"flush_every must be at least 1 step, got {flush_every}")
        self.flush_every = int(flush_every)
        self._history: PredictionHistory | None = None
        self._pending: list = []
        self._score = self.method.scorer
        self._eps = self.epsilon + 1e-12  # all-zero scores with epsilon 0 give equal weights, not 0/0

    def bind(self, num_examples, generator, device="cpu"):
        super().bind(num_examples, generator, device)
        self._history = PredictionHistory(num_examples, device=self.device)
        self._pending = []
        self._stale = None
        self.last_loss = torch.full((num_examples,), float("nan"), device=self.device) \
            if self._score is not None and self._score.source == "losses" else None
        self._fill = 0.0
        self._sampled_epochs = 0
        self._order, self._order_w = self._new_order()
        self._pos = 0
        self._normed: torch.Tensor | None = None  # _order_w normalised to mean 1 per batch, ahead of use
        self._norm = (0, 0, 0)                    # (start, end, batch size) of the valid part of _normed
        return self

    # ------------------------------------------------------------------ observations
    @property
    def history(self) -> PredictionHistory | None:
        """The prediction history, with every observation so far applied."""
        self.flush()
        return self._history

    def observe(self, indices, probs):
        # deferred: the tensors are kept (no copy, no op) and applied every ``flush_every`` steps in one
        # vectorised update — a handful of small tensor ops per step cost more in the training loop
        # than their isolated timings suggest
        self._pending.append((indices, probs, False))
        if len(self._pending) >= self.flush_every:
            self.flush()

    def observe_losses(self, indices, losses):
        """What the engine calls: per-example cross-entropy, turned into probabilities exp(-loss)
        at the flush, for all pending steps in one op."""
        self._pending.append((indices, losses, True))
        if len(self._pending) >= self.flush_every:
            self.flush()

    def flush(self) -> None:
        """Apply the pending observations to the history (and the last losses)."""
        if not self._pending:
            return
        pending, self._pending = self._pending, []
        idx = _cat([i for i, _, _ in pending])
        if all(is_loss for _, _, is_loss in pending):
            loss = _cat([v.float() for _, v, _ in pending])
            p = torch.exp(-loss)
        else:
            p = _cat([torch.exp(-v.float()) if is_loss else v for _, v, is_loss in pending])
            loss = None
        self._history.update(idx, p)
        if self.last_loss is not None:  # later observations come later: the last one wins
            # capped at -log(1e-12): one diverged prediction must not turn every probability into inf/inf
            self.last_loss[idx] = (loss if loss is not None else -torch.log(p.float())).clamp_max(_MAX_LOSS)

    # ------------------------------------------------------------------ per epoch
    def emphasising(self) -> bool:
        return self.method.how != "order" and self.epoch >= self.burn_in

    def _new_order(self) -> tuple[torch.Tensor, torch.Tensor | None]:
        """This epoch's order of indices, and a per-position weight buffer (None: unweighted)."""
        n, m = self.num_examples, self.method
        if m.how == "sample" and self.emphasising():
            self.flush()
            p = self._probabilities()
            self.epoch_probs = p  # the probabilities of this epoch's draws (float64, sum 1)
            order = draw(p.cpu(), n, self.generator)
            self._sampled_epochs += 1
            w = None
            if m.importance_weights:  # importance sampling: 1/(N p) keeps the expected gradient unbiased
                w = (1.0 / (n * p.cpu()[order])).to(torch.float32).to(self.device)
            return order.to(self.device), w
        if m.name == "scan":
            return torch.arange(n, device=self.device), None
        order = torch.randperm(n, generator=self.generator).to(self.device)
        if m.how == "weight" and self.emphasising():
            # score + ε of every example, taken once at the start of the epoch and laid out in the
            # epoch's order; each batch normalises its slice to mean 1. Exact: under shuffling without
            # replacement an example's history does not change between the start of the epoch and
            # its visit (it is observed once per epoch, when it is visited).
            self.flush()
            sc = self._score(self._history.rows())
            self._fill = fill_value(sc)
            return order, emphasis(sc, self._eps, self._fill).to(torch.float32)[order]
        return order, None

    def given(self) -> torch.Tensor:
        """What this method's score reads: the history rows or the last losses."""
        self.flush()
        return self.last_loss.double() if self._score.source == "losses" else self._history.rows()

    def emphasis_scores(self) -> torch.Tensor:
        """Every example's current emphasis, score + ε (ε × mean for a loss), before normalisation."""
        return emphasis(self._score(self.given()), self.epsilon, relative=self._score.relative_epsilon)

    def _probabilities(self) -> torch.Tensor:
        s = self.emphasis_scores()
        total = s.sum()
        return s / total if bool(total > 0) else torch.full_like(s, 1.0 / len(s))

    # ------------------------------------------------------------------ per step
    def next_batch(self, batch_size):
        if self._stale is not None:
            self._refresh_stale()
        end = self._pos + batch_size
        if end <= self.num_examples:
            idx = self._order[self._pos:end]
            if self._order_w is None:
                w = None
            elif self.method.how == "weight":
                w = self._normalised(self._pos, batch_size)
            else:
                w = self._order_w[self._pos:end]
            self._pos = end
            return idx, w
        # the batch crosses the end of the epoch: this epoch's tail, then the next epoch's head
        weighted = self._order_w is not None
        parts = [self._order[self._pos:]]
        wparts = [self._ones(len(parts[0])) if self._order_w is None else self._order_w[self._pos:]]
        need = batch_size - len(parts[0])
        while need > 0:
            self.epoch += 1
            self._order, self._order_w = self._new_order()
            self._normed, self._norm = None, (0, 0, 0)  # a new buffer: batches handed out keep their values
            weighted = weighted or self._order_w is not None
            take = min(need, self.num_examples)
            parts.append(self._order[:take])
            wparts.append(self._ones(take) if self._order_w is None else self._order_w[:take])
            need -= take
            self._pos = take
        idx = torch.cat(parts)
        w = torch.cat(wparts) if weighted else None
        if self.method.how == "weight" and self._order_w is not None and len(parts[0]):
            self._stale = parts[0]  # seen after this epoch's scores were taken: refreshed next step
        if w is not None and self.method.how == "weight":
            w = w / w.mean()  # mean 1 over the batch
        return idx, w

    def _normalised(self, pos: int, batch_size: int) -> torch.Tensor:
        """The weights of the batch at ``pos``, normalised to mean 1. All the epoch's remaining full
        batches are normalised at once (one division over a (k, B) view) when the batch at ``pos``
        is not already, so a step only slices; a changed batch size or a rescored buffer starts
        again from ``pos``."""
        start, end, bs = self._norm
        if bs != batch_size or pos < start or pos + batch_size > end or (pos - start) % batch_size:
            k = (self.num_examples - pos) // batch_size  # >= 1: the caller's batch fits this epoch
            end = pos + k * batch_size
            if self._normed is None:  # one per epoch; within it, only positions not yet handed out are written
                self._normed = torch.empty_like(self._order_w)
            raw = self._order_w[pos:end].view(k, batch_size)
            torch.div(raw, raw.mean(1, keepdim=True), out=self._normed[pos:end].view(k, batch_size))
            self._norm = (pos, end, batch_size)
        return self._normed[pos:pos + batch_size]

    def _refresh_stale(self) -> None:
        """Rescore the examples of the previous epoch's tail (observed in the epoch-crossing batch,
        after this epoch's scores were taken) where they sit in this epoch's order."""
        stale, self._stale = self._stale, None
        if self._order_w is None:
            return
        self.flush()
        mark = torch.zeros(self.num_examples, dtype=torch.bool, device=self.device)
        mark[stale] = True  # a mask, not torch.isin: O(N), 50x faster at N = 45,000
        pos = mark[self._order].nonzero().squeeze(1)
        sc = self._score(self._history.rows(self._order[pos]))
        self._order_w[pos] = emphasis(sc, self._eps, self._fill).to(torch.float32)
        self._norm = (0, 0, 0)  # normalised weights are stale too

    def _ones(self, k: int) -> torch.Tensor:
        return torch.ones(k, dtype=torch.float32, device=self.device)

    def state(self) -> dict:
        s = {"feed": self.name, "method": self.method.label}
        if self.method.how != "order":
            s.update(epsilon=self.epsilon, burn_in=self.burn_in)
        return s


def make_emphasis_feeder(method: str, **options) -> EmphasisFeeder:
    """A feeder for any method, uniform and scan included (they then record a history too)."""
    return EmphasisFeeder(method, **options)


__all__ = ["EmphasisFeeder", "make_emphasis_feeder"]
