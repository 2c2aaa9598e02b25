"""Workload registry: ``name -> Workload`` (dataset + model + target as data, AlgoPerf style).

A workload carries its target validation error and default budgets; the batch-size study
also reads its default metaparameter search space from here.

``target`` is ``None`` when no target can be known in advance (``npz-mlp``: the user's own
data). Then ``feedwise train`` trains the whole budget, and a study that needs a target (the
batch-size study's steps-to-result, ``parallel``'s time-to-result) asks for ``--target``
through :meth:`Workload.resolve_target`. A target is a validation error in (0, 1]: reached when
the error is *strictly below* it, so 0 could never be reached and above 1 is always reached.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Any

import math

from feedwise.data.sources import Dataset, load_dataset
from feedwise.errors import FeedwiseError
from feedwise.models import build_model


@dataclass(frozen=True)
class Workload:
    name: str
    dataset: str
    model: str
    target: float | None                # validation error to reach (strictly below); None: none known
    max_steps: int                      # default step budget
    eval_every: int                     # default steps between evaluations
    batch_size: int = 128               # default batch size of `feedwise train`
    lr: float = 0.05                    # default learning rate of `feedwise train` (momentum 0.9)
    model_options: dict = field(default_factory=dict)
    val_size: float = 5000            # validation examples carved from train (a fraction when < 1)
    description: str = ""
    # the batch-size study's default search space (log-uniform ranges), overridable by file
    search_space: dict = field(default_factory=lambda: {
        "lr": [1e-3, 10.0], "one_minus_momentum": [1e-3, 1.0],
        "end_factor": [1e-3, 1.0], "decay_fraction": [0.5, 1.0],
    })

    def load(self, *, data_dir: str | None = None, label_noise: float = 0.0, noise_seed: int = 0,
             split_seed: int = 0, max_train: int | None = None, num_samples: int | None = None) -> Dataset:
        return load_dataset(self.dataset, data_dir=data_dir, val_size=self.val_size, split_seed=split_seed,
                            label_noise=label_noise, noise_seed=noise_seed, max_train=max_train,
                            num_samples=num_samples)

    def resolve_target(self, given: float | None = None, needed_by: str | None = None) -> float | None:
        """The target of a run: ``given`` (``--target``) or the workload's, checked to lie in (0, 1].

        ``needed_by`` names a study that cannot run without one (an error when there is none)."""
        target = check_target(self.target if given is None else given)
        if target is None and needed_by:
            raise FeedwiseError(f"{needed_by} needs a target validation error and workload '{self.name}' has none: "
                                "give --target (a validation error in (0, 1])")
        return target

    def model_fn(self, data: Dataset, **overrides: Any):
        """A zero-argument factory of fresh models shaped for ``data``."""
        options = {**self.model_options, **overrides}
        build_model(self.model, data.input_shape, data.num_classes, **options)  # validate options now
        return lambda: build_model(self.model, data.input_shape, data.num_classes, **options)

    def train_config(self, **overrides: Any):
        """A :class:`~feedwise.engine.TrainConfig` with this workload's defaults -- batch size, lr,
        step budget, eval period and target, as ``feedwise train`` uses them -- and ``overrides``
        on top (any TrainConfig field; an unknown name is an error, not a silent no-op)."""
        from dataclasses import fields

        from feedwise.engine import TrainConfig

        known = {f.name for f in fields(TrainConfig)}
        unknown = sorted(set(overrides) - known)
        if unknown:
            raise FeedwiseError(f"unknown TrainConfig field(s) {', '.join(unknown)} (known: {', '.join(sorted(known))})")
        defaults = {"batch_size": self.batch_size, "lr": self.lr, "max_steps": self.max_steps,
                    "eval_every": self.eval_every, "target": self.target}
        return TrainConfig(**{**defaults, **overrides})

    def describe(self) -> dict:
        return asdict(self)


def check_target(target: float | None, option: str = "--target") -> float | None:
    """``None``, or a validation error in (0, 1] (strictly below it counts as reached)."""
    if target is None:
        return None
    try:
        t = float(target)
    except (TypeError, ValueError):
        raise FeedwiseError(f"{option} must be a validation error in (0, 1], got {target!r}") from None
    if not (0.0 < t <= 1.0) or math.isnan(t):
        why = " (0 can never be reached: reaching means strictly below)" if t == 0 else ""
        raise FeedwiseError(f"{option} must be a validation error in (0, 1], got {target}{why}")
    return t


WORKLOADS: dict[str, Workload] = {}


def register(w: Workload) -> Workload:
    check_target(w.target, f"workload {w.name}: target")
    WORKLOADS[w.name] = w
    return w


register(Workload(
    "mnist1d-mlp", "mnist1d", "mlp", target=0.15, max_steps=4000, eval_every=50, batch_size=128, lr=0.1,
    model_options={"widths": (256, 256)}, val_size=0.1,
    description="MNIST-1D (60k generated locally), MLP 40-256-256-10 ReLU; the embedded default",
))
register(Workload(
    "fashion-mnist-mlp", "fashion-mnist", "mlp", target=0.12, max_steps=5000, eval_every=100, batch_size=128,
    lr=0.05, model_options={"widths": (256, 256)},
    description="Fashion-MNIST (Debian files), MLP 784-256-256-10 ReLU",
))
register(Workload(
    "fashion-mnist-simple-cnn", "fashion-mnist", "simple-cnn", target=0.10, max_steps=20000, eval_every=250,
    batch_size=128, lr=0.02, description="Fashion-MNIST, Shallue's Simple CNN; Shallue's target 0.10",
))
register(Workload(
    "mnist-simple-cnn", "mnist", "simple-cnn", target=0.01, max_steps=20000, eval_every=250, batch_size=128,
    lr=0.02, description="MNIST IDX files (--data-dir), Shallue's Simple CNN; Shallue's target 0.01",
))
register(Workload(
    "cifar10-resnet-8", "cifar10", "resnet-8", target=0.30, max_steps=30000, eval_every=500, batch_size=128,
    lr=0.05, description="CIFAR-10 python batches (--data-dir), ResNet-8; target 0.30",
))
register(Workload(
    "npz-mlp", "npz", "mlp", target=None, max_steps=2000, eval_every=100, batch_size=128, lr=0.05,
    model_options={"widths": (256, 256)}, val_size=0.1,
    description="your own .npz (--data-dir file.npz with x, y[, x_test, y_test]), MLP on flattened inputs; "
                "no target (give --target)",
))


def get_workload(name: str) -> Workload:
    if name not in WORKLOADS:
        raise FeedwiseError(f"unknown workload '{name}' (known: {', '.join(WORKLOADS)})")
    return WORKLOADS[name]
