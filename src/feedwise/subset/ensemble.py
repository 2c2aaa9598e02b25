"""Implicit ensembles: E acquisition models x C checkpoints each, streamed into a scorer.

Kept engine-free (imports run downward: studies -> engine -> ... -> subset): the checkpoint
hook is a plain engine callback, ``cb(trainer, row) -> status | None``, that only needs
``trainer.predict_proba(x)``; how a member is trained is passed in by the caller
(``feedwise.studies.subset.run`` passes a function that runs one recorded trial).

A member run of S steps with C checkpoints evaluates every ``ceil(S / C)`` steps and runs
``C · ceil(S / C)`` steps, so exactly C checkpoints are scored. Each checkpoint's N x K
probabilities are folded into the scorer and dropped; nothing M x N x K is ever held.
"""

from __future__ import annotations

import math
import re
import time
from dataclasses import dataclass
from typing import Callable

from feedwise.errors import FeedwiseError
from feedwise.subset.scorer import EnsembleScorer


@dataclass(frozen=True)
class EnsembleSpec:
    models: int        # E: independently initialised acquisition models
    checkpoints: int   # C: checkpoints taken along each model's training

    @property
    def members(self) -> int:
        return self.models * self.checkpoints

    def __str__(self) -> str:
        return f"{self.models}x{self.checkpoints}"

    @classmethod
    def parse(cls, text: str) -> "EnsembleSpec":
        m = re.fullmatch(r"\s*(\d+)\s*[xX]\s*(\d+)\s*", str(text))
        if not m or int(m.group(1)) < 1 or int(m.group(2)) < 1:
            raise FeedwiseError(f"ensemble must be written ExC with E models and C checkpoints each, both >= 1 "
                                f"(for example 4x10), got {text!r}")
        return cls(int(m.group(1)), int(m.group(2)))

    def member_schedule(self, steps: int) -> tuple[int, int]:
        """(eval_every, total steps) for a member asked to train ``steps`` steps with C checkpoints."""
        every = max(1, math.ceil(steps / self.checkpoints))
        return every, every * self.checkpoints


def predict_logits(trainer, x, chunk: int = 8192):
    """The current model's logits on ``x`` (N x K, float32), in eval mode: what ``trainer.predict_proba``
    computes before its softmax (same chunks, so softmax of these is bit-identical to it)."""
    import torch

    model = trainer.model
    was_training = model.training
    model.eval()
    with torch.no_grad():
        out = torch.cat([model(x[i:i + chunk].to(trainer.device)).float() for i in range(0, len(x), chunk)])
    model.train(was_training)
    return out


class CheckpointStreamer:
    """Engine callback: at every evaluation, score the pool with the current model and add it to the scorer
    (and, when given, its logits to a :class:`feedwise.subset.TrainingDynamics`: the same forward pass)."""

    def __init__(self, scorer: EnsembleScorer, pool_x, max_checkpoints: int | None = None, dynamics=None):
        self.scorer, self.pool_x, self.max_checkpoints = scorer, pool_x, max_checkpoints
        self.dynamics = dynamics
        self.checkpoints = 0
        self.scored_examples = 0
        self.score_s = 0.0

    def __call__(self, trainer, row: dict) -> str | None:
        if self.max_checkpoints is not None and self.checkpoints >= self.max_checkpoints:
            return None
        t0 = time.perf_counter()
        if self.dynamics is None:
            probs = trainer.predict_proba(self.pool_x)
        else:
            import torch

            logits = predict_logits(trainer, self.pool_x)
            probs = torch.softmax(logits, 1)
            self.dynamics.add(logits)
        self.scorer.add(probs)
        self.score_s += time.perf_counter() - t0
        self.checkpoints += 1
        self.scored_examples += int(len(self.pool_x))
        return None


def train_ensemble(spec: EnsembleSpec, scorer: EnsembleScorer, pool_x,
                   run_member: Callable[[int, CheckpointStreamer], None], done: set[int] | None = None,
                   after_member: Callable[[int, CheckpointStreamer], None] | None = None,
                   dynamics: Callable[[int], object] | None = None) -> EnsembleScorer:
    """Train ``spec.models`` members, each streaming ``spec.checkpoints`` checkpoints into ``scorer``.

    ``run_member(j, streamer)`` trains member j with ``streamer`` as an engine callback;
    members in ``done`` are skipped (their checkpoints are already in the scorer's state);
    ``after_member(j, streamer)`` runs after each new member (to save the state, for resume);
    ``dynamics(j)`` gives member j's :class:`feedwise.subset.TrainingDynamics` (or None)."""
    done = done or set()
    for j in range(spec.models):
        if j in done:
            continue
        streamer = CheckpointStreamer(scorer, pool_x, spec.checkpoints, dynamics(j) if dynamics else None)
        before = scorer.num_members
        run_member(j, streamer)
        if scorer.num_members - before != spec.checkpoints:
            raise FeedwiseError(f"acquisition member {j} produced {scorer.num_members - before} checkpoints, "
                                f"expected {spec.checkpoints} (did it stop early or diverge?)")
        if after_member is not None:
            after_member(j, streamer)
    return scorer
