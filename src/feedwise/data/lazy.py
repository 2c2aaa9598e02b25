"""Inputs that do not fit in memory: any map-style ``torch.utils.data.Dataset``, read lazily.

:class:`LazyInputs` stands where an in-memory input tensor would (``Dataset.x_train`` and
friends): ``x[idx]`` loads and stacks those rows, ``len(x)`` and ``x.shape`` work, and
:meth:`LazyInputs.subset` is a view (nothing is loaded). So every study runs unchanged on it;
the hot paths do not index it row by row:

- training: feedwise's feeder still decides the indices of every batch; a ``DataLoader`` whose
  batch sampler is fed by the feeder fetches them with worker processes, ahead of the training
  loop (:class:`FeederBatches`, used by :class:`feedwise.engine.Trainer`);
- evaluation and prediction: a sequential ``DataLoader`` over the split, with workers.

Labels stay in memory (``Dataset.y_train`` ...): the studies need them all (class balance, label
noise, flagging). The feeder draws batches up to ``prefetch`` batches ahead of training: feeders
that only order the data (uniform, scan, subsets, class balance) give exactly the batches of the
in-memory path; a feeder that observes examples (Active Bias) scores the next epoch without the
observations of the last ``prefetch`` batches of the current one.
"""

from __future__ import annotations

import collections
from typing import Iterator

import numpy as np
import torch
from torch.utils.data import DataLoader

from feedwise.errors import FeedwiseError

DEFAULT_WORKERS = 2
DEFAULT_PREFETCH = 2      # batches per worker fetched ahead


class _Rows(torch.utils.data.Dataset):
    """Position ``i`` -> the input tensor of ``dataset[positions[i]]`` (what loader workers fetch)."""

    def __init__(self, dataset, positions: np.ndarray):
        self.dataset, self.positions = dataset, positions

    def __len__(self) -> int:
        return len(self.positions)

    def __getitem__(self, i):
        return _input_of(self.dataset[int(self.positions[i])])


def _input_of(item) -> torch.Tensor:
    x = item[0] if isinstance(item, (tuple, list)) else item
    return torch.as_tensor(np.asarray(x) if not isinstance(x, torch.Tensor) else x, dtype=torch.float32)


class LazyInputs:
    """The inputs of a map-style dataset's rows ``positions``, indexed like a tensor.

    ``dataset[i]`` must return ``(input, label)`` (or the input alone); inputs are converted to
    float32 tensors. ``num_workers`` loader processes fetch batches (0: in this process)."""

    def __init__(self, dataset, positions=None, num_workers: int = DEFAULT_WORKERS, device: str | torch.device = "cpu",
                 prefetch: int = DEFAULT_PREFETCH):
        self.dataset = dataset
        n = len(dataset)
        self.positions = np.arange(n, dtype=np.int64) if positions is None else np.asarray(positions, dtype=np.int64)
        if len(self.positions) and (self.positions.min() < 0 or self.positions.max() >= n):
            raise FeedwiseError(f"lazy inputs: positions outside the dataset's {n} rows")
        self.num_workers = int(num_workers)
        self.prefetch = int(prefetch)
        self.device = torch.device(device)
        self._shape: tuple[int, ...] | None = None

    # ------------------------------------------------------------------ tensor-like
    def __len__(self) -> int:
        return len(self.positions)

    @property
    def item_shape(self) -> tuple[int, ...]:
        if self._shape is None:
            if not len(self.positions):
                raise FeedwiseError("lazy inputs hold no rows")
            self._shape = tuple(_input_of(self.dataset[int(self.positions[0])]).shape)
        return self._shape

    @property
    def shape(self) -> torch.Size:
        return torch.Size((len(self), *self.item_shape))

    @property
    def dtype(self) -> torch.dtype:
        return torch.float32

    def _positions_of(self, key) -> np.ndarray:
        if isinstance(key, slice):
            return self.positions[key]
        if isinstance(key, torch.Tensor):
            key = key.detach().cpu().numpy()
        return self.positions[np.asarray(key, dtype=np.int64).reshape(-1)]

    def __getitem__(self, key) -> torch.Tensor:
        """Load and stack the rows ``key`` (int, slice, index array or tensor), on ``self.device``."""
        if isinstance(key, (int, np.integer)):
            return _input_of(self.dataset[int(self.positions[key])]).to(self.device)
        pos = self._positions_of(key)
        if not len(pos):
            return torch.empty((0, *self.item_shape), device=self.device)
        return torch.stack([_input_of(self.dataset[int(p)]) for p in pos]).to(self.device)

    def subset(self, key) -> "LazyInputs":
        """A view of the rows ``key`` (nothing is loaded)."""
        return LazyInputs(self.dataset, self._positions_of(key), self.num_workers, self.device, self.prefetch)

    def to(self, device) -> "LazyInputs":
        v = self.subset(slice(None))
        v.device = torch.device(device)
        v._shape = self._shape
        return v

    def cpu(self) -> "LazyInputs":
        return self.to("cpu")

    def __repr__(self) -> str:
        return f"LazyInputs({type(self.dataset).__name__}, rows={len(self)}, workers={self.num_workers})"

    # ------------------------------------------------------------------ loaders
    def _loader_kwargs(self) -> dict:
        kw = {"num_workers": self.num_workers, "pin_memory": self.device.type == "cuda"}
        if self.num_workers > 0:
            kw.update(prefetch_factor=self.prefetch, persistent_workers=False)
        return kw

    def batches(self, batch_size: int) -> Iterator[torch.Tensor]:
        """The rows in order, ``batch_size`` at a time, fetched by the loader workers."""
        loader = DataLoader(_Rows(self.dataset, self.positions), batch_size=batch_size, shuffle=False,
                            **self._loader_kwargs())
        for xb in loader:
            yield xb.to(self.device, non_blocking=True)

    def fetcher(self, batches: "FeederBatches") -> Iterator[torch.Tensor]:
        """An iterator of the input batches whose positions ``batches`` yields, fetched ahead by workers."""
        loader = DataLoader(_Rows(self.dataset, self.positions), batch_sampler=batches, **self._loader_kwargs())
        return iter(loader)


class FeederBatches(torch.utils.data.Sampler):
    """A batch sampler fed by a feedwise feeder: each step asks ``feeder.next_batch(batch_size)``,
    keeps ``(global indices, weights, local indices, local weights)`` in a queue for the training
    loop and hands the local indices to the loader. ``local`` maps a global batch to this rank's
    shard (identity in one process); ``steps`` bounds the batches drawn."""

    def __init__(self, feeder, batch_size: int, steps: int, local=None):
        self.feeder, self.batch_size, self.steps = feeder, int(batch_size), int(steps)
        self.local = local
        self.queue: collections.deque = collections.deque()
        self.drawn = 0

    def __len__(self) -> int:
        return self.steps

    def __iter__(self):
        while self.drawn < self.steps:
            idx, w = self.feeder.next_batch(self.batch_size)
            lidx, lw = self.local(idx, w) if self.local is not None else (idx, w)
            self.queue.append((idx, w, lidx, lw))
            self.drawn += 1
            yield lidx.detach().cpu().tolist()


def take_rows(x, idx):
    """Rows ``idx`` of an input tensor (a copy) or of lazy inputs (a view, nothing loaded)."""
    if isinstance(x, LazyInputs):
        return x.subset(idx)
    return x[torch.as_tensor(idx, dtype=torch.long, device=x.device)]


def is_lazy(x) -> bool:
    return isinstance(x, LazyInputs)


# --------------------------------------------------------------------------- a Dataset from torch datasets
IN_MEMORY_LIMIT = 2 * 1024 ** 3    # bytes of float32 inputs up to which "auto" loads everything into memory


def labels_of(dataset, num_workers: int = DEFAULT_WORKERS) -> np.ndarray:
    """Every label of a map-style dataset: its ``targets`` (or ``labels``) attribute when it has one,
    else one pass over it with loader workers."""
    for attr in ("targets", "labels"):
        t = getattr(dataset, attr, None)
        if t is not None and len(t) == len(dataset):
            return np.asarray(t.tolist() if isinstance(t, torch.Tensor) else t)
    loader = DataLoader(dataset, batch_size=256, num_workers=num_workers, collate_fn=lambda items: [
        it[1] if isinstance(it, (tuple, list)) and len(it) > 1 else None for it in items])
    out = []
    for labels in loader:
        if any(lb is None for lb in labels):
            raise FeedwiseError(f"{type(dataset).__name__}[i] must return (input, label)")
        out.extend(int(torch.as_tensor(lb)) for lb in labels)
    return np.asarray(out)


def from_torch(train, test, val=None, *, name: str = "torch", val_size: float | int = 0.1, split_seed: int = 0,
               label_noise: float = 0.0, noise_seed: int = 0, max_train: int | None = None,
               num_classes: int | None = None, in_memory: bool | str = "auto", num_workers: int = DEFAULT_WORKERS):
    """A feedwise :class:`~feedwise.data.sources.Dataset` from map-style torch datasets.

    ``train[i]`` returns ``(input, label)`` with an integer class label. Without ``val``, a
    validation split of ``val_size`` examples (a fraction when below 1) is carved from ``train``
    with ``split_seed``. ``in_memory``: ``True`` loads every input into tensors (the fast path),
    ``False`` reads them lazily (:class:`LazyInputs`), ``"auto"`` loads them when the float32 inputs
    take at most ``IN_MEMORY_LIMIT`` bytes. Labels are always in memory; label noise flips training
    labels only, with its own seed."""
    from feedwise.data.noise import add_label_noise
    from feedwise.data.sources import Dataset

    ytr_all = labels_of(train, num_workers)
    yte = labels_of(test, num_workers)
    n = len(ytr_all)
    if val is None:
        n_val = int(round(val_size * n)) if 0 < val_size < 1 else int(val_size)
        if not (0 < n_val < n):
            raise FeedwiseError(f"validation size {val_size} does not fit a training set of {n} examples")
        perm = np.random.default_rng(split_seed).permutation(n)
        val_pos, train_pos = np.sort(perm[:n_val]), np.sort(perm[n_val:])
        val_ds, yva = train, ytr_all[val_pos]
    else:
        val_pos, train_pos, val_ds, yva = None, np.arange(n), val, labels_of(val, num_workers)
    if max_train is not None:
        if max_train <= 0:
            raise FeedwiseError(f"max_train must be positive, got {max_train}")
        train_pos = train_pos[:max_train]
    ytr = ytr_all[train_pos]
    for what, y in (("training", ytr), ("validation", yva), ("test", yte)):
        if y.size and (not np.issubdtype(y.dtype, np.integer) or y.min() < 0):
            raise FeedwiseError(f"{name}: {what} labels must be non-negative integers (class numbers)")
    k = int(num_classes) if num_classes is not None else int(max(ytr.max(), yva.max(), yte.max())) + 1
    noisy, flipped = add_label_noise(ytr, label_noise, k, noise_seed)
    x_tr = LazyInputs(train, train_pos, num_workers)
    x_va = LazyInputs(val_ds, val_pos, num_workers)
    x_te = LazyInputs(test, None, num_workers)
    if in_memory == "auto":
        in_memory = (len(ytr) + len(yva) + len(yte)) * int(np.prod(x_tr.item_shape)) * 4 <= IN_MEMORY_LIMIT
    if in_memory:
        x_tr, x_va, x_te = (torch.cat(list(x.batches(1024))) if len(x) else torch.empty((0, *x.item_shape))
                            for x in (x_tr, x_va, x_te))
    t = lambda a: torch.from_numpy(np.ascontiguousarray(a).astype(np.int64))  # noqa: E731
    return Dataset(name=name, x_train=x_tr, y_train=t(noisy), x_val=x_va, y_val=t(yva), x_test=x_te, y_test=t(yte),
                   num_classes=k, noisy_indices=flipped, clean_y_train=t(ytr),
                   info={"split_seed": split_seed, "label_noise": label_noise, "noise_seed": noise_seed,
                         "in_memory": bool(in_memory), "loader_workers": None if in_memory else num_workers})
