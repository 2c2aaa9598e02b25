"""Workload registry: ``name -> Workload`` (dataset + model + target as data, AlgoPerf style).

A workload carries its target validation error and default budgets; the batch-size study
also reads its default metaparameter search space from here.

**Your own workload** comes from your code, for every command: ``--workload my_pkg.my_module:NAME``
or ``--workload path/to/file.py:NAME``, where ``NAME`` is a :class:`Workload` (or a function
returning one) whose ``model`` is any ``torch.nn.Module`` factory and whose ``dataset`` is a
function returning your data (see :meth:`Workload.load`); ``loss`` optionally replaces
cross-entropy. The study files record the workload's spec and the SHA-256 of its source file
(:attr:`Workload.source`), so resuming and refusing work as for the built-in workloads.

``target`` is ``None`` when no target can be known in advance (``npz-mlp``: the user's own
data). Then ``feedwise train`` trains the whole budget, and a study that needs a target (the
batch-size study's steps-to-result, ``parallel``'s time-to-result) asks for ``--target``
through :meth:`Workload.resolve_target`. A target is a validation error in (0, 1]: reached when
the error is *strictly below* it, so 0 could never be reached and above 1 is always reached.
"""

from __future__ import annotations

import hashlib
import importlib
import importlib.util
import inspect
import math
import sys
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import Any, Callable

from torch import nn

from feedwise.data.noise import add_label_noise
from feedwise.data.sources import Dataset, from_arrays, load_dataset
from feedwise.errors import FeedwiseError
from feedwise.models import build_model


@dataclass(frozen=True)
class Workload:
    name: str
    dataset: str | Callable             # a registered dataset name, or your function returning the data
    model: str | Callable               # a registered model name, or your nn.Module factory
    target: float | None = None         # validation error to reach (strictly below); None: none known
    max_steps: int = 2000               # default step budget
    eval_every: int = 100               # default steps between evaluations
    batch_size: int = 128               # default batch size of `feedwise train`
    lr: float = 0.05                    # default learning rate of `feedwise train` (momentum 0.9)
    model_options: dict = field(default_factory=dict)
    val_size: float | None = None       # validation examples carved from train (a fraction when < 1);
                                        # default 5000 for a registered dataset, 0.1 for your own
    description: str = ""
    # the batch-size study's default search space (log-uniform ranges), overridable by file
    search_space: dict = field(default_factory=lambda: {
        "lr": [1e-3, 10.0], "one_minus_momentum": [1e-3, 1.0],
        "end_factor": [1e-3, 1.0], "decay_fraction": [0.5, 1.0],
    })
    loss: Callable | None = None        # per-example loss(logits, labels) -> N losses; None: cross-entropy
    source: dict = field(default_factory=dict)   # where a workload from user code came from (spec, file, sha256)

    def __post_init__(self):
        if self.val_size is None:
            object.__setattr__(self, "val_size", 5000 if isinstance(self.dataset, str) else 0.1)

    def load(self, *, data_dir: str | None = None, label_noise: float = 0.0, noise_seed: int = 0,
             split_seed: int = 0, max_train: int | None = None, num_samples: int | None = None,
             val_fraction: float | None = None, test_fraction: float | None = None) -> Dataset:
        """The data. A registered dataset is loaded by name. Your function (``dataset=``) is called with
        the options it accepts among ``data_dir, split_seed, num_samples`` and returns one of:

        - ``(x, y, x_test, y_test)`` numpy arrays: checked by the data rules, a validation split of
          ``val_size`` carved from ``x, y`` with ``split_seed``, in memory;
        - ``(train, test)`` or ``(train, val, test)`` map-style ``torch.utils.data.Dataset`` s whose
          items are ``(input, label)``: in memory when they fit, else read lazily by loader workers
          (:func:`feedwise.data.lazy.from_torch`);
        - a :class:`feedwise.data.sources.Dataset` (your own splits).

        Label noise (its own seed) and ``max_train`` apply to every form; ``val_fraction`` replaces the
        workload's ``val_size`` (0: no validation split); ``test_fraction`` carves a test split from a
        file without one (npz)."""
        val_size = self.val_size if val_fraction is None else val_fraction
        if isinstance(self.dataset, str):
            return load_dataset(self.dataset, data_dir=data_dir, val_size=val_size, split_seed=split_seed,
                                label_noise=label_noise, noise_seed=noise_seed, max_train=max_train,
                                num_samples=num_samples, test_fraction=test_fraction)
        if test_fraction is not None:
            raise FeedwiseError(f"workload {self.name}: --test-fraction applies to the npz files, not to your "
                                "dataset function (return your own test split)")
        if val_fraction is not None:
            self = replace(self, val_size=val_fraction)
        offered = {"data_dir": data_dir, "split_seed": split_seed, "num_samples": num_samples}
        params = inspect.signature(self.dataset).parameters
        takes_all = any(p.kind == p.VAR_KEYWORD for p in params.values())
        for k, v in offered.items():
            if v is not None and k not in params and not takes_all and k != "split_seed":
                raise FeedwiseError(f"workload {self.name}: its dataset function takes no {k} "
                                    f"(--{k.replace('_', '-')} has no effect on it)")
        kwargs = {k: v for k, v in offered.items() if (k in params or takes_all) and v is not None}
        try:
            got = self.dataset(**kwargs)
        except FeedwiseError:
            raise
        except Exception as e:
            raise FeedwiseError(f"workload {self.name}: its dataset function failed: {_first_line(e)}") from None
        opts = {"split_seed": split_seed, "label_noise": label_noise, "noise_seed": noise_seed, "max_train": max_train}
        data = _dataset_from(got, self, opts)
        # what defines the data: the code that made it (an edited workload file is another study) and the
        # data itself - every tensor's bytes when in memory; for inputs read lazily, the labels, the rows
        # and the dataset's own ``fingerprint()`` when it has one (else only those: stated in the docs)
        parts = [self.source.get("sha256") or "", data.info.get("fingerprint") or "", content_fingerprint(data)]
        data.info["fingerprint"] = hashlib.sha256("|".join(parts).encode()).hexdigest()
        return data

    def resolve_target(self, given: float | None = None, needed_by: str | None = None) -> float | None:
        """The target of a run: ``given`` (``--target``) or the workload's, checked to lie in (0, 1].

        ``needed_by`` names a study that cannot run without one (an error when there is none)."""
        target = check_target(self.target if given is None else given)
        if target is None and needed_by:
            raise FeedwiseError(f"{needed_by} needs a target validation error and workload '{self.name}' has none: "
                                "give --target (a validation error in (0, 1])")
        return target

    def model_fn(self, data: Dataset, **overrides: Any):
        """A zero-argument factory of fresh models shaped for ``data``.

        Your ``model`` is called as ``model(input_shape, num_classes, **options)`` when it takes
        two positional parameters, else ``model(**options)``; it must return an ``nn.Module``."""
        options = {**self.model_options, **overrides}
        if isinstance(self.model, str):
            build_model(self.model, data.input_shape, data.num_classes, **options)  # validate options now
            return lambda: build_model(self.model, data.input_shape, data.num_classes, **options)
        factory = self.model
        try:
            params = [p for p in inspect.signature(factory).parameters.values()
                      if p.kind in (p.POSITIONAL_ONLY, p.POSITIONAL_OR_KEYWORD) and p.default is p.empty]
        except (TypeError, ValueError):
            params = []
        shaped = len(params) >= 2

        def make():
            try:
                m = factory(tuple(data.input_shape), data.num_classes, **options) if shaped else factory(**options)
            except TypeError as e:
                raise FeedwiseError(f"workload {self.name}: its model factory cannot be called with "
                                    f"{'(input_shape, num_classes, ' if shaped else '('}{', '.join(options)}): "
                                    f"{_first_line(e)}") from None
            if not isinstance(m, nn.Module):
                raise FeedwiseError(f"workload {self.name}: its model factory returned a {type(m).__name__}, "
                                    "expected a torch.nn.Module")
            return m

        make()   # validate now, before any folder is written
        return make

    def train_config(self, **overrides: Any):
        """A :class:`~feedwise.engine.TrainConfig` with this workload's defaults -- batch size, lr,
        step budget, eval period and target, as ``feedwise train`` uses them -- and ``overrides``
        on top (any TrainConfig field; an unknown name is an error, not a silent no-op)."""
        from dataclasses import fields

        from feedwise.config import TrainConfig

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
    "npz-cnn", "npz", "simple-cnn", target=None, max_steps=2000, eval_every=100, batch_size=128, lr=0.02,
    model_options={"channels": (16, 32), "hidden": 128}, val_size=0.1,
    description="your own .npz images (N x H x W or N x C x H x W; uint8 scaled and standardised), a small "
                "CNN (conv5x5-16, pool, conv5x5-32, pool, fc128); no target (give --target)",
))
register(Workload(
    "npz-mlp", "npz", "mlp", target=None, max_steps=2000, eval_every=100, batch_size=128, lr=0.05,
    model_options={"widths": (256, 256)}, val_size=0.1,
    description="your own .npz (--data-dir file.npz with x, y[, x_test, y_test]), MLP on flattened inputs; "
                "no target (give --target)",
))


def get_workload(name: str) -> Workload:
    """A registered workload, or one from your code: ``pkg.module:NAME`` or ``path/to/file.py:NAME``."""
    if name in WORKLOADS:
        return WORKLOADS[name]
    if ":" in str(name):
        return load_user_workload(str(name))
    raise FeedwiseError(f"unknown workload '{name}' (known: {', '.join(WORKLOADS)}; or your own: "
                        "file.py:NAME or package.module:NAME)")


def canonical_workload(name: str) -> str:
    """The spelling of a workload that defines a study: a file spec with its absolute path."""
    if name in WORKLOADS or ":" not in str(name):
        return name
    where, _, attr = str(name).rpartition(":")
    if where.endswith(".py") or "/" in where:
        return f"{Path(where).expanduser().resolve()}:{attr}"
    return name


_USER: dict[tuple, Workload] = {}


def load_user_workload(spec: str) -> Workload:
    """Import ``NAME`` from a file or module; it must be a :class:`Workload` or a function returning one.

    The result carries ``source`` = {spec, file, sha256 of the file}; its ``name`` is the canonical
    spec, so spawned workers (data parallelism) resolve the same workload."""
    where, _, attr = spec.rpartition(":")
    if not where or not attr:
        raise FeedwiseError(f"workload '{spec}': write file.py:NAME or package.module:NAME")
    if where.endswith(".py") or "/" in where:
        path = Path(where).expanduser().resolve()
        if not path.is_file():
            raise FeedwiseError(f"workload file {path} does not exist")
        key = (str(path), attr, path.stat().st_mtime_ns)
        if key in _USER:
            return _USER[key]
        mod_name = f"feedwise_user_{hashlib.sha1(str(path).encode()).hexdigest()[:12]}"
        try:
            spec_ = importlib.util.spec_from_file_location(mod_name, path)
            module = importlib.util.module_from_spec(spec_)
            sys.modules[mod_name] = module
            spec_.loader.exec_module(module)
        except FeedwiseError:
            raise
        except BaseException as e:
            sys.modules.pop(mod_name, None)
            if isinstance(e, KeyboardInterrupt):
                raise
            raise FeedwiseError(f"workload file {path} failed to import: {_first_line(e)}") from None
        file, canon = path, f"{path}:{attr}"
    else:
        try:
            module = importlib.import_module(where)
        except BaseException as e:
            if isinstance(e, KeyboardInterrupt):
                raise
            raise FeedwiseError(f"workload module {where} failed to import: {_first_line(e)}") from None
        file = Path(getattr(module, "__file__", "") or "")
        key, canon = (where, attr, file.stat().st_mtime_ns if file.is_file() else 0), spec
        if key in _USER:
            return _USER[key]
    origin = file if where.endswith(".py") or "/" in where else where
    if not hasattr(module, attr):
        names = [n for n in vars(module) if not n.startswith("_")]
        raise FeedwiseError(f"{origin} defines no {attr} (it defines: {', '.join(names[:12]) or 'nothing'})")
    obj = getattr(module, attr)
    if not isinstance(obj, Workload) and callable(obj) and not isinstance(obj, type):
        try:
            obj = obj()
        except FeedwiseError:
            raise
        except Exception as e:
            raise FeedwiseError(f"{origin}:{attr}() failed: {_first_line(e)}") from None
    if not isinstance(obj, Workload):
        raise FeedwiseError(f"{origin}:{attr} is a {type(obj).__name__}; expected a feedwise.workloads.Workload "
                            "(or a function returning one)")
    check_target(obj.target, f"workload {canon}: target")
    sha = hashlib.sha256(file.read_bytes()).hexdigest() if file.is_file() else None
    w = replace(obj, name=canon, source={"spec": canon, "defined_as": obj.name, "file": str(file) if file.is_file()
                                         else None, "sha256": sha})
    _USER[key] = w
    return w


def content_fingerprint(data: Dataset) -> str:
    """SHA-256 over a dataset's contents: the bytes of every in-memory tensor; for lazy inputs their
    rows, the labels and ``dataset.fingerprint()`` when the user's dataset offers one."""
    from feedwise.data.lazy import LazyInputs

    h = hashlib.sha256()
    for name in ("x_train", "y_train", "x_val", "y_val", "x_test", "y_test", "clean_y_train"):
        t = getattr(data, name)
        if t is None:
            continue
        if isinstance(t, LazyInputs):
            h.update(f"{name}:lazy:{type(t.dataset).__name__}:{len(t)}".encode())
            h.update(t.positions.tobytes())
            fp = getattr(t.dataset, "fingerprint", None)
            if callable(fp):
                h.update(str(fp()).encode())
        else:
            a = t.detach().cpu().contiguous()
            h.update(f"{name}:{tuple(a.shape)}:{a.dtype}".encode())
            h.update(a.numpy().tobytes())
    return h.hexdigest()


def _first_line(e: BaseException) -> str:
    text = str(e).strip().splitlines()
    return f"{type(e).__name__}: {text[0]}" if text else type(e).__name__


def _dataset_from(got, w: Workload, opts: dict) -> Dataset:
    """Your dataset function's return value as a Dataset (see :meth:`Workload.load`)."""
    import numpy as np

    from feedwise.data.lazy import from_torch

    name = w.name
    if isinstance(got, Dataset):
        if opts["max_train"] is not None:
            got = replace(got, x_train=got.x_train[:opts["max_train"]], y_train=got.y_train[:opts["max_train"]])
        if opts["label_noise"]:
            clean = got.y_train.cpu().numpy()
            noisy, flipped = add_label_noise(clean, opts["label_noise"], got.num_classes, opts["noise_seed"])
            import torch
            got = replace(got, y_train=torch.from_numpy(noisy), clean_y_train=torch.from_numpy(clean),
                          noisy_indices=flipped, info={**got.info, "label_noise": opts["label_noise"],
                                                       "noise_seed": opts["noise_seed"]})
        return got
    if isinstance(got, tuple) and len(got) == 4 and all(hasattr(a, "shape") for a in got):
        return from_arrays(*(np.asarray(a) for a in got), name=name, val_size=w.val_size, **opts)
    if isinstance(got, tuple) and len(got) in (2, 3) and all(hasattr(d, "__getitem__") and hasattr(d, "__len__")
                                                              for d in got):
        train, *rest = got
        val, test = (rest[0], rest[1]) if len(rest) == 2 else (None, rest[0])
        return from_torch(train, test, val, name=name, val_size=w.val_size, **opts)
    raise FeedwiseError(f"workload {name}: its dataset function returned a {type(got).__name__}; expected "
                        "(x, y, x_test, y_test) arrays, (train, test) or (train, val, test) torch datasets, "
                        "or a feedwise Dataset")
