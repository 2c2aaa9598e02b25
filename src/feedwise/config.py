"""The hyperparameters of one training run (:class:`TrainConfig`) and its learning-rate schedule.

Data, not behaviour: the engine (:mod:`feedwise.engine`) trains by it; workloads fill in their
defaults (:meth:`feedwise.workloads.Workload.train_config`); studies record it.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

from feedwise.errors import FeedwiseError

OPTIMIZERS = ("sgd", "momentum", "nesterov", "adam")
SCHEDULES = ("constant", "linear", "cosine")
STATUSES = ("reached", "budget", "diverged", "pruned")


@dataclass
class TrainConfig:
    """Hyperparameters of one training run (units in the comments)."""

    batch_size: int = 128               # examples per step
    optimizer: str = "momentum"         # sgd | momentum | nesterov | adam
    lr: float = 0.05                    # initial learning rate
    momentum: float = 0.9               # for momentum/nesterov (adam: beta1)
    weight_decay: float = 0.0           # L2 coefficient, coupled (torch.optim semantics)
    schedule: str = "constant"          # constant | linear | cosine
    decay_steps: int | None = None      # steps over which lr decays (default: the step budget)
    end_factor: float = 0.01            # lr at the end of the decay, as a fraction of lr
    max_steps: int | None = 3000        # step budget (ignored when max_examples is set)
    max_examples: int | None = None     # example budget: steps = ceil(max_examples / batch_size)
    eval_every: int = 100               # steps between validation evaluations
    target: float | None = None         # target validation error (strictly below counts)
    stop_at_target: bool = True         # stop at the first eval below target
    seed: int = 0                       # one seed; init and data-order streams derive from it
    init_seed: int | None = None        # override the derived init stream
    data_seed: int | None = None        # override the derived data-order stream
    evaluate_test: bool = True          # evaluate the final model on the test split

    def budget_steps(self) -> int:
        if self.max_examples is not None:
            return max(1, math.ceil(self.max_examples / self.batch_size))
        if self.max_steps is None:
            raise FeedwiseError("set a step budget (max_steps) or an example budget (max_examples)")
        return int(self.max_steps)

    def validate(self, num_train: int | None = None) -> None:
        """Refuse values that cannot train (one-line :class:`FeedwiseError`); ``num_train`` (the
        training-set size), when known, also bounds the batch size."""
        if self.batch_size <= 0:
            raise FeedwiseError(f"batch size must be positive, got {self.batch_size}")
        if num_train is not None and self.batch_size > num_train:
            raise FeedwiseError(f"batch size {self.batch_size} is larger than the training set ({num_train} examples)")
        if self.optimizer not in OPTIMIZERS:
            raise FeedwiseError(f"unknown optimizer '{self.optimizer}' (known: {', '.join(OPTIMIZERS)})")
        if self.schedule not in SCHEDULES:
            raise FeedwiseError(f"unknown schedule '{self.schedule}' (known: {', '.join(SCHEDULES)})")
        if not (self.lr > 0 and math.isfinite(self.lr)):
            raise FeedwiseError(f"learning rate must be positive, got {self.lr}")
        if not (0 <= self.momentum < 1):
            raise FeedwiseError(f"momentum must be in [0, 1), got {self.momentum}")
        if not (self.weight_decay >= 0 and math.isfinite(self.weight_decay)):
            raise FeedwiseError(f"weight decay must be >= 0, got {self.weight_decay}")
        if not (0 <= self.end_factor <= 1):
            raise FeedwiseError(f"end_factor must be in [0, 1], got {self.end_factor}")
        if self.decay_steps is not None and self.decay_steps <= 0:
            raise FeedwiseError(f"decay steps must be positive, got {self.decay_steps}")
        if self.eval_every <= 0:
            raise FeedwiseError(f"eval_every must be positive, got {self.eval_every}")
        if self.max_steps is not None and self.max_steps <= 0 and self.max_examples is None:
            raise FeedwiseError(f"step budget must be positive, got {self.max_steps}")
        if self.max_examples is not None and self.max_examples <= 0:
            raise FeedwiseError(f"example budget must be positive, got {self.max_examples}")
        if self.target is not None and not (0 < self.target <= 1):
            why = " (0 can never be reached: reaching means strictly below)" if self.target == 0 else ""
            raise FeedwiseError(f"target must be a validation error in (0, 1], got {self.target}{why}")

    def hparams(self) -> dict:
        """The hyperparameters that matter for this optimizer/schedule, for trial.json."""
        h = {"batch_size": self.batch_size, "optimizer": self.optimizer, "lr": self.lr,
             "weight_decay": self.weight_decay, "schedule": self.schedule}
        if self.optimizer in ("momentum", "nesterov", "adam"):
            h["momentum"] = self.momentum
        if self.schedule != "constant":
            h["decay_steps"] = self.decay_steps or self.budget_steps()
            h["end_factor"] = self.end_factor
        return h


def lr_factor(cfg: TrainConfig, step: int, budget: int) -> float:
    """Multiplier of the initial lr at ``step`` (0-based) for the configured schedule."""
    if cfg.schedule == "constant":
        return 1.0
    t = min(step / max(1, cfg.decay_steps or budget), 1.0)
    if cfg.schedule == "linear":
        return 1.0 - (1.0 - cfg.end_factor) * t
    return cfg.end_factor + (1.0 - cfg.end_factor) * 0.5 * (1.0 + math.cos(math.pi * t))
