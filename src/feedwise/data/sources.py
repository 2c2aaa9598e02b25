"""Dataset loaders. Everything ends as float32/int64 tensors in memory; nothing is downloaded.

Sources:

- ``mnist1d``: generated locally with the ``mnist1d`` package's generator (its templates and
  default transform arguments, fixed seed), cached as ``.npz`` under ``$FEEDWISE_DATA``
  (default ``~/.cache/feedwise``).
- ``fashion-mnist`` / ``mnist``: IDX files (``.gz`` or raw) in a folder; the default folder for
  Fashion-MNIST is where Debian's ``dataset-fashion-mnist`` puts them.
- ``cifar10``: the python pickled batches (``data_batch_1..5``, ``test_batch``).
- ``npz``: any ``.npz`` file holding ``x`` and ``y`` (and optionally ``x_test``/``y_test``).

A validation split is carved from the training split with its own seed; label noise (its own
seed) is applied to the remaining training labels only, and the flipped indices are recorded.

Data rules, checked at load time (before a study writes anything; each breach is one
:class:`FeedwiseError` naming the file):

- inputs ``x`` are numeric (bool, integer or float), one row per example with at least one
  feature (shape ``(N, ...)``, not 1-D), and every value is finite after conversion to float32
  (NaN/inf rows are counted and refused: they are a data error, not a learning-rate problem);
- labels ``y`` are integers, one per row; the classes are ``0..K-1`` with ``K = max(y) + 1``
  from the training labels, every one of them has at least one training example, ``2 <= K <=``
  :data:`MAX_CLASSES`; test labels lie in ``0..K-1`` (they never add classes);
- ``x_test`` and ``y_test`` come together, with as many labels as rows and the training
  inputs' per-example shape; IDX image files are 3-D ``(count, rows, cols)``.

Every file a loader reads is noted (:func:`note_file`), and :func:`load_dataset` puts the
SHA-256 of their bytes in ``Dataset.info["fingerprint"]``: what a study records to tell
different data saved under the same name apart (generated data has no files: its generator
arguments define it).
"""

from __future__ import annotations

import contextvars
import gzip
import hashlib
import os
import pickle
import struct
import zlib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

import numpy as np
import torch

from feedwise.data.noise import add_label_noise
from feedwise.errors import FeedwiseError
from feedwise.files import write_npz

FASHION_MNIST_DIR = "/usr/share/datasets/fashion-mnist"
MAX_CLASSES = 100_000          # more classes than this is taken for a mistake (a label of 10^9 ...)
MIN_MNIST1D_SAMPLES = 20

_FILES_READ: contextvars.ContextVar[list | None] = contextvars.ContextVar("feedwise_files_read", default=None)


_ROWS: contextvars.ContextVar[list | None] = contextvars.ContextVar("feedwise_rows", default=None)


def note_rows(rows: np.ndarray) -> None:
    """A loader tells which rows of the user's file its training split holds (npz)."""
    box = _ROWS.get()
    if box is not None:
        box.append(np.asarray(rows, dtype=np.int64))


def note_file(path: str | Path) -> None:
    """Record that the loader now running read ``path``: its bytes go into the data fingerprint.

    A dataset function added to :data:`DATASETS` calls this for every file it reads."""
    files = _FILES_READ.get()
    if files is not None:
        files.append(Path(path))


def check_seed(value, option: str) -> int:
    """A seed is a non-negative integer (numpy's generators refuse negative ones)."""
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < 0:
        raise FeedwiseError(f"{option} must be a non-negative integer, got {value!r}")
    return int(value)


def fingerprint_files(paths) -> str | None:
    """``sha256:<hex>`` over the names and bytes of ``paths`` (streamed; order-independent)."""
    paths = sorted({Path(p).resolve() for p in paths}, key=str)
    if not paths:
        return None
    h = hashlib.sha256()
    for p in paths:
        one = hashlib.sha256()
        with open(p, "rb") as f:
            for chunk in iter(lambda: f.read(1 << 20), b""):
                one.update(chunk)
        h.update(p.name.encode() + b"\0" + one.digest())
    return "sha256:" + h.hexdigest()


@dataclass
class Dataset:
    """A classification dataset in memory: train / validation / test tensors."""

    name: str
    x_train: torch.Tensor
    y_train: torch.Tensor
    x_val: torch.Tensor
    y_val: torch.Tensor
    x_test: torch.Tensor
    y_test: torch.Tensor
    num_classes: int
    # indices into the training split whose labels were flipped by label noise
    noisy_indices: np.ndarray = field(default_factory=lambda: np.zeros(0, dtype=np.int64))
    # the training labels before noise (equal to y_train when there is no noise)
    clean_y_train: torch.Tensor | None = None
    info: dict = field(default_factory=dict)
    # row numbers of the training examples in the user's source file (npz), when known
    train_rows: np.ndarray | None = None

    @property
    def input_shape(self) -> tuple[int, ...]:
        return tuple(self.x_train.shape[1:])

    @property
    def num_train(self) -> int:
        return int(self.x_train.shape[0])

    def to(self, device: torch.device | str) -> "Dataset":
        move = lambda t: None if t is None else t.to(device)  # noqa: E731
        return Dataset(
            self.name, move(self.x_train), move(self.y_train), move(self.x_val), move(self.y_val),
            move(self.x_test), move(self.y_test), self.num_classes, self.noisy_indices,
            move(self.clean_y_train), dict(self.info), self.train_rows,
        )

    def describe(self) -> dict:
        return {
            "name": self.name,
            "input_shape": list(self.input_shape),
            "num_classes": self.num_classes,
            "num_train": self.num_train,
            "num_val": int(self.x_val.shape[0]),
            "num_test": int(self.x_test.shape[0]),
            "num_noisy": int(len(self.noisy_indices)),
            **self.info,
        }


# --------------------------------------------------------------------------- raw loaders
# Each returns (x_train, y_train, x_test, y_test) as numpy arrays, x float32 normalised.


def cache_dir() -> Path:
    return Path(os.environ.get("FEEDWISE_DATA", Path.home() / ".cache" / "feedwise"))


def _mnist1d_raw(num_samples: int = 60_000, seed: int = 42, **_) -> tuple:
    if num_samples < MIN_MNIST1D_SAMPLES:
        raise FeedwiseError(f"mnist1d needs at least {MIN_MNIST1D_SAMPLES} samples, got {num_samples}")
    path = cache_dir() / f"mnist1d-n{num_samples}-seed{seed}.npz"
    if path.exists():
        try:
            with np.load(path) as z:
                return z["x"], z["y"], z["x_test"], z["y_test"]
        except Exception:  # a corrupt cache is regenerated, not fatal
            path.unlink(missing_ok=True)
    from mnist1d.data import get_dataset_args, make_dataset

    from feedwise.progress import say
    say(f"generating MNIST-1D ({num_samples:,} samples, once; cached in {path.parent})")
    args = get_dataset_args()
    args.num_samples = num_samples
    args.seed = seed
    args.train_split = 5 / 6  # 60,000 -> 50,000 train (+val) and 10,000 test
    d = make_dataset(args)
    arrays = {
        "x": d["x"].astype(np.float32), "y": d["y"].astype(np.int64),
        "x_test": d["x_test"].astype(np.float32), "y_test": d["y_test"].astype(np.int64),
    }
    path.parent.mkdir(parents=True, exist_ok=True)
    write_npz(path, **arrays)   # atomic, with the mode a plain open gives (shared caches stay readable)
    return arrays["x"], arrays["y"], arrays["x_test"], arrays["y_test"]


def read_idx(path: Path) -> np.ndarray:
    """Read an IDX file (raw or gzip), checking its header against its size."""
    try:
        opener = gzip.open if path.suffix == ".gz" else open
        with opener(path, "rb") as f:
            raw = f.read()
        note_file(path)
    except FileNotFoundError:
        raise FeedwiseError(f"missing data file {path}") from None
    except (OSError, EOFError, zlib.error) as e:
        raise FeedwiseError(f"corrupt or truncated IDX file {path}: {e}") from None
    if len(raw) < 4 or raw[0] != 0 or raw[1] != 0 or raw[2] != 0x08:
        raise FeedwiseError(f"corrupt IDX file {path}: bad magic number (expected unsigned-byte IDX)")
    ndim = raw[3]
    header = 4 + 4 * ndim
    if ndim == 0 or len(raw) < header:
        raise FeedwiseError(f"corrupt or truncated IDX file {path}: header too short")
    dims = struct.unpack(">" + "I" * ndim, raw[4:header])
    expected = int(np.prod(dims))
    if len(raw) - header != expected:
        raise FeedwiseError(
            f"corrupt or truncated IDX file {path}: header says {expected} bytes of data, found {len(raw) - header}"
        )
    return np.frombuffer(raw, dtype=np.uint8, offset=header).reshape(dims)


def _find(folder: Path, stem: str) -> Path:
    for name in (stem + ".gz", stem, stem.replace("-idx", ".idx")):
        if (folder / name).exists():
            return folder / name
    raise FeedwiseError(f"missing data file {folder / (stem + '.gz')} (nor {stem})")


def _idx_raw(data_dir: str | None = None, default_dir: str | None = None, **_) -> tuple:
    if not (data_dir or default_dir):
        raise FeedwiseError("this dataset needs --data-dir: a folder holding the IDX files")
    folder = Path(data_dir or default_dir)
    if not folder.is_dir():
        hint = " (install Debian's dataset-fashion-mnist, or pass --data-dir)" if default_dir else ""
        raise FeedwiseError(f"data folder {folder} does not exist{hint}")
    xtr = read_idx(_find(folder, "train-images-idx3-ubyte"))
    ytr = read_idx(_find(folder, "train-labels-idx1-ubyte"))
    xte = read_idx(_find(folder, "t10k-images-idx3-ubyte"))
    yte = read_idx(_find(folder, "t10k-labels-idx1-ubyte"))
    for stem, a, ndim, shape in (("train-images-idx3-ubyte", xtr, 3, "(count, rows, cols)"),
                                 ("t10k-images-idx3-ubyte", xte, 3, "(count, rows, cols)"),
                                 ("train-labels-idx1-ubyte", ytr, 1, "(count,)"),
                                 ("t10k-labels-idx1-ubyte", yte, 1, "(count,)")):
        if a.ndim != ndim:
            raise FeedwiseError(f"IDX file {_find(folder, stem)} has shape {tuple(a.shape)}; expected {ndim} "
                                f"dimension(s) {shape}")
    if len(xtr) != len(ytr) or len(xte) != len(yte):
        raise FeedwiseError(f"IDX files in {folder}: images and labels have different counts")
    mean, std = xtr.mean() / 255.0, xtr.std() / 255.0
    norm = lambda a: ((a.astype(np.float32) / 255.0 - mean) / std)[:, None, :, :]  # noqa: E731
    return norm(xtr), ytr.astype(np.int64), norm(xte), yte.astype(np.int64)


def _cifar10_raw(data_dir: str | None = None, **_) -> tuple:
    if not data_dir:
        raise FeedwiseError("cifar10 needs --data-dir pointing at the python batches (cifar-10-batches-py)")
    folder = Path(data_dir)
    if (folder / "cifar-10-batches-py").is_dir():
        folder = folder / "cifar-10-batches-py"
    if not folder.is_dir():
        raise FeedwiseError(f"data folder {folder} does not exist")

    def batch(name: str):
        p = folder / name
        if not p.exists():
            raise FeedwiseError(f"missing data file {p}")
        try:
            with open(p, "rb") as f:
                d = pickle.load(f, encoding="bytes")
            note_file(p)
            x = np.asarray(d[b"data"], dtype=np.uint8).reshape(-1, 3, 32, 32)
            y = np.asarray(d[b"labels"], dtype=np.int64)
        except Exception as e:
            raise FeedwiseError(f"corrupt CIFAR-10 batch {p}: {e}") from None
        return x, y

    parts = [batch(f"data_batch_{i}") for i in range(1, 6)]
    xtr = np.concatenate([p[0] for p in parts])
    ytr = np.concatenate([p[1] for p in parts])
    xte, yte = batch("test_batch")
    mean = xtr.mean(axis=(0, 2, 3), keepdims=True) / 255.0
    std = xtr.std(axis=(0, 2, 3), keepdims=True) / 255.0
    norm = lambda a: ((a.astype(np.float32) / 255.0 - mean) / std).astype(np.float32)  # noqa: E731
    return norm(xtr), ytr, norm(xte), yte


def _npz_raw(data_dir: str | None = None, test_fraction: float | None = None, split_seed: int = 0, **_) -> tuple:
    if not data_dir:
        raise FeedwiseError("the npz dataset needs --data-dir pointing at a .npz file holding x and y")
    p = Path(data_dir)
    if not p.is_file():
        raise FeedwiseError(f"missing data file {p}")
    try:
        with np.load(p, allow_pickle=False) as z:
            arrays = {k: z[k] for k in z.files}
    except Exception as e:
        raise FeedwiseError(f"corrupt .npz file {p}: {e}") from None
    note_file(p)
    for k in ("x", "y"):
        if k not in arrays:
            raise FeedwiseError(f"{p} holds no array '{k}' (it has: {', '.join(sorted(arrays)) or 'nothing'})")
    if ("x_test" in arrays) != ("y_test" in arrays):
        have, miss = ("x_test", "y_test") if "x_test" in arrays else ("y_test", "x_test")
        raise FeedwiseError(f"{p} holds {have} but no {miss}: give both (a test split) or neither "
                            "(one is carved from x, y)")
    x, y = _inputs(arrays["x"], p, "x"), _labels(arrays["y"], p, "y")
    if x.shape[0] != y.shape[0]:
        raise FeedwiseError(f"{p}: x has {x.shape[0]} rows but y has {y.shape[0]} labels (need one label per row)")
    _check_finite(x, p, "x")   # row numbers of the file, before any split
    if "x_test" in arrays:
        xte, yte = _inputs(arrays["x_test"], p, "x_test"), _labels(arrays["y_test"], p, "y_test")
        if xte.shape[0] != yte.shape[0]:
            raise FeedwiseError(f"{p}: x_test has {xte.shape[0]} rows but y_test has {yte.shape[0]} labels "
                                "(need one label per row)")
        _check_finite(xte, p, "x_test")
        if test_fraction:
            raise FeedwiseError(f"{p} holds its own test split (x_test, y_test): --test-fraction does not apply")
        note_rows(np.arange(len(y)))
        return x, y, xte, yte
    num_classes(y, str(p), "y")   # the class rule on the whole file, before a test split is carved
    if test_fraction is None:
        test_fraction = 0.2
    if test_fraction == 0:
        note_rows(np.arange(len(y)))
        return x, y, x[:0], y[:0]
    perm = np.random.default_rng(split_seed + 7919).permutation(len(y))
    n_test = max(1, int(round(test_fraction * len(y))))
    if n_test >= len(y):
        raise FeedwiseError(f"{p}: {len(y)} rows are too few to carve a test split and still train")
    te, tr = perm[:n_test], perm[n_test:]
    note_rows(tr)
    return x[tr], y[tr], x[te], y[te]


def _inputs(a: np.ndarray, where, what: str) -> np.ndarray:
    """``a`` as float32 inputs, one row per example: numeric, at least 2-D, no empty rows."""
    a = np.asarray(a)
    if a.dtype.kind not in "biuf":
        raise FeedwiseError(f"{where}: {what} must hold numbers (bool, int or float), got dtype {a.dtype}")
    if a.ndim < 2:
        raise FeedwiseError(f"{where}: {what} has shape {tuple(a.shape)}; it needs one row per example and at least "
                            f"one feature, shape (N, ...) (a single feature: {what}.reshape(-1, 1))")
    if a.shape[0] == 0 or a[0].size == 0:
        raise FeedwiseError(f"{where}: {what} has shape {tuple(a.shape)}: no examples or no features")
    if a.dtype == np.uint8:
        return a   # images: scaled and standardised after the split (from_arrays)
    with np.errstate(over="ignore"):
        return a.astype(np.float32)


def _labels(a: np.ndarray, where, what: str) -> np.ndarray:
    """``a`` as int64 labels: an integer array with one label per row, none negative."""
    a = np.asarray(a)
    if a.ndim != 1:
        raise FeedwiseError(f"{where}: {what} has shape {tuple(a.shape)}; it needs one integer label per row, "
                            "shape (N,)")
    if a.dtype.kind not in "iu":
        raise FeedwiseError(f"{where}: {what} must hold integer class labels 0..K-1, got dtype {a.dtype} "
                            f"(convert whole-number labels with {what}.astype(int))")
    if len(a) and a.min() < 0:
        raise FeedwiseError(f"{where}: {what} holds negative labels ({int((a < 0).sum())} rows, smallest "
                            f"{int(a.min())}); class labels are 0..K-1")
    return a.astype(np.int64)


def num_classes(y: np.ndarray, where: str, what: str = "the training labels") -> int:
    """K = max(y) + 1 for training labels ``y``, checked: 2 <= K <= MAX_CLASSES, every class present."""
    if len(y) == 0:
        raise FeedwiseError(f"{where}: no labels in {what}")
    top = int(y.max())
    if top >= MAX_CLASSES:
        raise FeedwiseError(f"{where}: label {top} in {what} is too large: classes are 0..K-1 with K = max label + 1, and "
                            f"more than {MAX_CLASSES:,} classes is taken for a mistake (relabel to consecutive "
                            "integers from 0)")
    k = top + 1
    if k < 2:
        raise FeedwiseError(f"{where}: only one class (label 0) in {what}; a classifier needs at least two")
    counts = np.bincount(y, minlength=k)
    empty = np.flatnonzero(counts == 0)
    if len(empty):
        shown = ", ".join(str(int(c)) for c in empty[:10]) + (", ..." if len(empty) > 10 else "")
        hint = " (labels start at 1: make them 0-based, y - 1)" if counts[0] == 0 and int(y.min()) == 1 else \
            " (relabel to consecutive integers from 0)"
        raise FeedwiseError(f"{where}: {len(empty)} of the classes 0..{k - 1} (K = max label + 1) have no "
                            f"example in {what}: {shown}{hint}")
    return k


def _check_finite(x: np.ndarray, where: str, what: str) -> None:
    """Refuse NaN/inf inputs, counting the rows that hold one (in chunks: no N x D temporary)."""
    if len(x) == 0 or x.dtype.kind in "biu":
        return
    flat = x.reshape(len(x), -1)
    bad, first = 0, None
    for i in range(0, len(flat), 4096):
        rows = ~np.isfinite(flat[i:i + 4096]).all(axis=1)
        if rows.any():
            bad += int(rows.sum())
            first = i + int(np.argmax(rows)) if first is None else first
    if bad:
        raise FeedwiseError(f"{where}: {what} has {bad} row(s) holding NaN or inf (first: row {first}); "
                            "clean or drop them")


def check_arrays(xtr, ytr, xte, yte, where: str) -> int:
    """Apply the data rules (module docstring) to a loader's output; returns the number of classes K."""
    for what, x, y in (("training", xtr, ytr), ("test", xte, yte)):
        if np.asarray(x).ndim < 2 or np.asarray(y).ndim != 1 or len(x) != len(y):
            raise FeedwiseError(f"{where}: {what} inputs have shape {tuple(np.shape(x))} and labels "
                                f"{tuple(np.shape(y))}: need (N, ...) inputs with one label per row")
        if np.asarray(y).dtype.kind not in "iu":
            raise FeedwiseError(f"{where}: {what} labels must be integers, got dtype {np.asarray(y).dtype}")
        if len(y) and int(np.min(y)) < 0:
            raise FeedwiseError(f"{where}: {what} labels hold negative values; class labels are 0..K-1")
    if xte.shape[1:] != xtr.shape[1:]:
        raise FeedwiseError(f"{where}: test inputs have shape {xte.shape[1:]} per example but training inputs "
                            f"{xtr.shape[1:]}")
    k = num_classes(ytr, where)
    if len(yte) and int(np.max(yte)) >= k:
        out = yte >= k
        raise FeedwiseError(f"{where}: {int(out.sum())} test label(s) are outside the training classes 0..{k - 1} "
                            f"(largest {int(np.max(yte))}); test labels never add classes")
    _check_finite(xtr, where, "the training inputs")
    _check_finite(xte, where, "the test inputs")
    return k


DATASETS: dict[str, Callable[..., tuple]] = {
    "mnist1d": _mnist1d_raw,
    "fashion-mnist": lambda **kw: _idx_raw(default_dir=FASHION_MNIST_DIR, **kw),
    "mnist": _idx_raw,
    "cifar10": _cifar10_raw,
    "npz": _npz_raw,
}


def load_dataset(
    name: str,
    *,
    data_dir: str | None = None,
    val_size: int | float = 5000,
    split_seed: int = 0,
    label_noise: float = 0.0,
    noise_seed: int = 0,
    max_train: int | None = None,
    num_samples: int | None = None,
    test_fraction: float | None = None,
) -> Dataset:
    """Load ``name`` into memory, carve a validation split, optionally add label noise.

    ``val_size`` is a count, or a fraction of the training split when below 1.
    ``max_train`` keeps only the first ``max_train`` training examples (after the split).
    ``num_samples`` sets the size of a generated dataset (mnist1d only).
    """
    if name not in DATASETS:
        raise FeedwiseError(f"unknown dataset '{name}' (known: {', '.join(DATASETS)})")
    check_seed(split_seed, "--split-seed")
    check_seed(noise_seed, "--noise-seed")
    if max_train is not None and max_train <= 0:
        raise FeedwiseError(f"--max-train must be positive, got {max_train}")
    kwargs: dict = {"data_dir": data_dir, "split_seed": split_seed}
    if num_samples is not None:
        if name != "mnist1d":
            raise FeedwiseError(f"--num-samples only applies to generated datasets (mnist1d), not {name}")
        kwargs["num_samples"] = int(num_samples)
    if test_fraction is not None:
        if name != "npz":
            raise FeedwiseError(f"--test-fraction applies to your own files without a test split (npz), not {name}")
        kwargs["test_fraction"] = check_fraction(test_fraction, "--test-fraction")
    token, rows_token = _FILES_READ.set([]), _ROWS.set([])
    try:
        xtr, ytr, xte, yte = DATASETS[name](**kwargs)
        files, rows = _FILES_READ.get(), _ROWS.get()
    finally:
        _FILES_READ.reset(token)
        _ROWS.reset(rows_token)
    where = f"{name} data in {data_dir}" if data_dir and name != "npz" else (data_dir or name)
    return from_arrays(xtr, ytr, xte, yte, name=name, where=where, val_size=val_size, split_seed=split_seed,
                       label_noise=label_noise, noise_seed=noise_seed, max_train=max_train,
                       fingerprint=fingerprint_files(files) if files else None, rows=rows[0] if rows else None)


def check_fraction(v, option: str) -> float:
    """A split fraction in [0, 1)."""
    try:
        f = float(v)
    except (TypeError, ValueError):
        raise FeedwiseError(f"{option} must be a fraction in [0, 1), got {v!r}") from None
    if not (0.0 <= f < 1.0):
        raise FeedwiseError(f"{option} must be a fraction in [0, 1), got {v}")
    return f


def from_arrays(x, y, x_test, y_test, *, name: str = "arrays", where: str | None = None,
                val_size: int | float = 0.1, split_seed: int = 0, label_noise: float = 0.0, noise_seed: int = 0,
                max_train: int | None = None, fingerprint: str | None = None, rows: np.ndarray | None = None) -> Dataset:
    """A :class:`Dataset` in memory from numpy arrays: the data rules (module docstring), a validation
    split of ``val_size`` carved from ``x, y`` with ``split_seed`` (0: no validation split),
    ``max_train``, label noise. ``rows``: the row number of each of ``x``'s rows in a source file.

    Inputs are used as stored (float32), except ``uint8`` ones (images): scaled to [0, 1], then
    standardised with the training split's mean and standard deviation. 3-D inputs (N × H × W)
    get a channel axis (N × 1 × H × W); 4-D ones are N × C × H × W (channels first)."""
    xtr, ytr, xte, yte = (np.asarray(a) for a in (x, y, x_test, y_test))
    where = where or name
    k = check_arrays(xtr, ytr, xte, yte, where)
    if xtr.dtype == np.uint8:
        xtr, xte = xtr.astype(np.float32) / 255.0, xte.astype(np.float32) / 255.0
        mean, std = float(xtr.mean()), float(xtr.std()) or 1.0
        xtr, xte = (xtr - mean) / std, (xte - mean) / std
    if xtr.ndim == 3:
        xtr, xte = xtr[:, None], xte[:, None]
    n = len(ytr)
    n_val = int(round(val_size * n)) if 0 < val_size < 1 else int(val_size)
    if not (0 <= n_val < n) or (n_val == 0 and val_size != 0):
        raise FeedwiseError(f"validation size {val_size} does not fit a training split of {n} examples")
    perm = np.random.default_rng(split_seed).permutation(n)
    val_idx, train_idx = np.sort(perm[:n_val]), np.sort(perm[n_val:])
    if max_train is not None:
        train_idx = train_idx[:max_train]
    y_train = ytr[train_idx]
    noisy_y, flipped = add_label_noise(y_train, label_noise, k, noise_seed)
    t = lambda a, dt: torch.from_numpy(np.ascontiguousarray(a)).to(dt)  # noqa: E731
    return Dataset(
        name=name,
        x_train=t(xtr[train_idx], torch.float32), y_train=t(noisy_y, torch.int64),
        x_val=t(xtr[val_idx], torch.float32), y_val=t(ytr[val_idx], torch.int64),
        x_test=t(xte, torch.float32), y_test=t(yte, torch.int64),
        num_classes=k, noisy_indices=flipped, clean_y_train=t(y_train, torch.int64),
        info={"split_seed": split_seed, "label_noise": label_noise, "noise_seed": noise_seed,
              **({"fingerprint": fingerprint} if fingerprint else {})},
        train_rows=None if rows is None else np.asarray(rows, dtype=np.int64)[train_idx],
    )
