"""A CNN workload of your own, in one .py file: every feedwise command runs it with ``--workload FILE:NAME``.

Fashion-MNIST is read from Debian's IDX files (``apt-get install dataset-fashion-mnist`` puts them in
/usr/share/datasets/fashion-mnist; ``--data-dir`` points elsewhere) with numpy alone. From the
repository root::

    feedwise train      --workload examples/cnn_workload.py:FASHION_CNN --out runs/cnn
    feedwise batch-size --workload examples/cnn_workload.py:FASHION_CNN --batch-sizes 64,256 --trials 4 \\
                        --out runs/cnn-bs
    feedwise flag       --workload examples/cnn_workload.py:FASHION_CNN --label-noise 0.2 --out runs/cnn-flag

``--num-samples N`` keeps the first N training images (a quick run). With ``FEEDWISE_EXAMPLE_TINY=1``
in the environment the same commands train on a small generated image set instead (4 classes of
28 x 28 strokes, 1,200 images or ``--num-samples``; seconds on a CPU; the tests use it). The
environment variable is not part of a study's data identity (a study records this file's SHA-256
and the options it was given): give tiny runs their own ``--out``.

What feedwise needs from this file is the :class:`~feedwise.workloads.Workload` at the bottom:

- ``dataset``: a function returning ``(x_train, y_train, x_test, y_test)`` numpy arrays; it is
  called with the options it accepts among ``data_dir``, ``split_seed`` and ``num_samples``.
  ``uint8`` images of shape N x H x W are scaled to [0, 1], standardised with the training mean and
  standard deviation and given a channel axis (N x 1 x H x W) by feedwise; labels are ``0..K-1``
  (``docs/definitions.md``, "Data"). A validation split of ``val_size`` is carved from the training
  rows with ``--split-seed``; label noise (``--label-noise``) flips training labels only.
- ``model``: any ``nn.Module`` factory; called as ``model(input_shape, num_classes, **model_options)``.
- ``target``: the validation error to reach (strictly below), for ``batch-size`` and ``parallel``.
"""

from __future__ import annotations

import gzip
import math
import os
from pathlib import Path

import numpy as np
from torch import nn

from feedwise.workloads import Workload

FASHION_DIR = "/usr/share/datasets/fashion-mnist"


class MyCNN(nn.Module):
    """conv3x3-c1, ReLU, maxpool 2, conv3x3-c2, ReLU, maxpool 2, fc-hidden, ReLU, fc-classes."""

    def __init__(self, input_shape, num_classes, channels=(8, 16), hidden=64):
        super().__init__()
        c, h, w = input_shape
        c1, c2 = channels
        self.features = nn.Sequential(
            nn.Conv2d(c, c1, 3, padding=1), nn.ReLU(), nn.MaxPool2d(2),
            nn.Conv2d(c1, c2, 3, padding=1), nn.ReLU(), nn.MaxPool2d(2),
        )
        self.head = nn.Sequential(nn.Flatten(), nn.Linear(c2 * (h // 4) * (w // 4), hidden), nn.ReLU(),
                                  nn.Linear(hidden, num_classes))

    def forward(self, x):
        return self.head(self.features(x))


def read_idx(path: Path, header: int) -> np.ndarray:
    """The uint8 payload of an IDX file (gzip or raw): ``header`` = 16 for images, 8 for labels."""
    opener = gzip.open if path.suffix == ".gz" else open
    with opener(path, "rb") as f:
        return np.frombuffer(f.read(), dtype=np.uint8, offset=header)


def _idx(folder: Path, stem: str) -> Path:
    for p in (folder / f"{stem}.gz", folder / stem):
        if p.exists():
            return p
    raise FileNotFoundError(f"no {stem}[.gz] in {folder} (apt-get install dataset-fashion-mnist, or --data-dir)")


def fashion(data_dir: str | None = None, num_samples: int | None = None):
    """Fashion-MNIST as uint8 arrays (feedwise scales and standardises them); a generated image set
    when FEEDWISE_EXAMPLE_TINY=1."""
    if os.environ.get("FEEDWISE_EXAMPLE_TINY") == "1":
        return strokes(num_samples or 1200)
    folder = Path(data_dir or FASHION_DIR)
    x = read_idx(_idx(folder, "train-images-idx3-ubyte"), 16).reshape(-1, 28, 28)
    y = read_idx(_idx(folder, "train-labels-idx1-ubyte"), 8).astype(np.int64)
    x_test = read_idx(_idx(folder, "t10k-images-idx3-ubyte"), 16).reshape(-1, 28, 28)
    y_test = read_idx(_idx(folder, "t10k-labels-idx1-ubyte"), 8).astype(np.int64)
    if num_samples is not None:   # the first N training images, for a quick run
        x, y = x[:num_samples], y[:num_samples]
    return x, y, x_test, y_test


def strokes(n: int = 1200, size: int = 28, seed: int = 0):
    """A small generated image set: 4 classes (horizontal bar, vertical bar, diagonal, box) drawn at
    random positions with noise; 5/6 training, 1/6 test images, uint8."""
    rng = np.random.default_rng(seed)
    y = np.arange(n) % 4
    rng.shuffle(y)
    img = rng.normal(60, 40, (n, size, size))
    for i, k in enumerate(y):
        a, b = rng.integers(4, size - 12, 2)
        if k == 0:
            img[i, a:a + 3, b:b + 10] += 60
        elif k == 1:
            img[i, a:a + 10, b:b + 3] += 60
        elif k == 2:
            d = np.arange(10)
            img[i, a + d, b + d] += 60
        else:
            img[i, a:a + 8, b] += 60
            img[i, a:a + 8, b + 7] += 60
            img[i, a, b:b + 8] += 60
            img[i, a + 7, b:b + 8] += 60
    x = np.clip(img, 0, 255).astype(np.uint8)
    cut = n - max(2, math.ceil(n / 6))
    return x[:cut], y[:cut], x[cut:], y[cut:]


FASHION_CNN = Workload(
    "fashion-cnn", dataset=fashion, model=MyCNN, target=0.12, max_steps=3000, eval_every=100, batch_size=128,
    lr=0.05, model_options={"channels": (8, 16), "hidden": 64}, val_size=0.1,
    description="Fashion-MNIST (Debian IDX files read with numpy), a small CNN (conv3x3-8, pool, conv3x3-16, pool, "
                "fc64); FEEDWISE_EXAMPLE_TINY=1: a generated image set",
)
