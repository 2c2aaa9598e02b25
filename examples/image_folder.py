"""A folder of images, one file per example, read lazily: a map-style ``torch.utils.data.Dataset``.

Layout (labels come from the subfolder names, sorted: the first is class 0)::

    DATA/train/<class>/<any name>.png|.npy
    DATA/test/<class>/<any name>.png|.npy

From the repository root (this file's ``write_tiny_folder`` makes a small folder to try it)::

    python examples/image_folder.py --write runs/images            # writes runs/images/{train,test}/...
    feedwise train --workload examples/image_folder.py:IMAGE_FOLDER --data-dir runs/images --out runs/folder
    feedwise flag  --workload examples/image_folder.py:IMAGE_FOLDER --data-dir runs/images --label-noise 0.2 \\
                   --out runs/folder-flag

The workload's dataset function returns ``(train, test)`` Datasets. feedwise then decides
(:func:`feedwise.data.lazy.from_torch`): when all the float32 inputs take at most 2 GiB they are
loaded into memory once (the fast path); above that they stay on disk and loader worker processes
read the rows of every batch that feedwise's feeder chose (``LazyInputs``), the labels staying in
memory (they come from ``ImageFolder.targets`` without opening a single image). The validation
split (10% here) is carved from the training folder with ``--split-seed``.

PNG files are read with ``matplotlib.image.imread`` (float in [0, 1]; grey, RGB or RGBA, the alpha
channel dropped), ``.npy`` files with ``numpy.load`` (uint8 scaled to [0, 1]); no torchvision needed.
An image becomes a float32 C x H x W tensor; every image must have the same shape.
"""

from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np
import torch
from torch import nn
from torch.utils.data import Dataset

from feedwise.workloads import Workload

EXTENSIONS = (".png", ".npy")


class ImageFolder(Dataset):
    """``root/<class>/<file>``: item ``i`` is ``(C x H x W float32 tensor, class number)``, read from disk
    each time it is asked for. ``classes``: the sorted subfolder names; ``targets``: every label."""

    def __init__(self, root, classes: list[str] | None = None):
        self.root = Path(root)
        if not self.root.is_dir():
            raise FileNotFoundError(f"image folder {self.root} does not exist")
        self.classes = classes or sorted(d.name for d in self.root.iterdir() if d.is_dir())
        self.files: list[Path] = []
        self.targets: list[int] = []
        for k, name in enumerate(self.classes):
            folder = self.root / name
            files = sorted(f for f in folder.iterdir() if f.suffix.lower() in EXTENSIONS) if folder.is_dir() else []
            self.files += files
            self.targets += [k] * len(files)
        if not self.files:
            raise FileNotFoundError(f"no {' or '.join(EXTENSIONS)} images under {self.root}/<class>/")

    def __len__(self) -> int:
        return len(self.files)

    def __getitem__(self, i: int):
        return read_image(self.files[i]), self.targets[i]


def read_image(path: Path) -> torch.Tensor:
    """One image file as a float32 C x H x W tensor in [0, 1]."""
    if path.suffix.lower() == ".npy":
        a = np.load(path, allow_pickle=False)
        a = a.astype(np.float32) / 255.0 if a.dtype == np.uint8 else a.astype(np.float32)
    else:
        import matplotlib.image

        a = np.asarray(matplotlib.image.imread(path), dtype=np.float32)
        if a.ndim == 3 and a.shape[2] == 4:
            a = a[:, :, :3]                       # drop alpha
    x = torch.from_numpy(np.ascontiguousarray(a))
    return x[None] if x.ndim == 2 else x.permute(2, 0, 1).contiguous()   # H x W (x C) -> C x H x W


def image_folder(data_dir: str | None = None):
    """The workload's dataset function: ``(train, test)`` map-style Datasets, for feedwise to load
    into memory when small or to read lazily when large."""
    if data_dir is None:
        raise FileNotFoundError("give --data-dir: a folder holding train/<class>/ and test/<class>/")
    train = ImageFolder(Path(data_dir) / "train")
    test = ImageFolder(Path(data_dir) / "test", classes=train.classes)   # the test set never adds classes
    return train, test


class SmallCNN(nn.Module):
    """Two conv3x3 + ReLU + maxpool stages, global average pooling, a linear layer: any image size."""

    def __init__(self, input_shape, num_classes, width=16):
        super().__init__()
        c = input_shape[0]
        self.net = nn.Sequential(
            nn.Conv2d(c, width, 3, padding=1), nn.ReLU(), nn.MaxPool2d(2),
            nn.Conv2d(width, 2 * width, 3, padding=1), nn.ReLU(), nn.AdaptiveAvgPool2d(1),
            nn.Flatten(), nn.Linear(2 * width, num_classes),
        )

    def forward(self, x):
        return self.net(x)


IMAGE_FOLDER = Workload(
    "image-folder", dataset=image_folder, model=SmallCNN, target=None, max_steps=1000, eval_every=50,
    batch_size=64, lr=0.05, val_size=0.1,
    description="your folder of images (--data-dir with train/<class>/ and test/<class>/, PNG or .npy), a small CNN",
)


def write_tiny_folder(root, classes: int = 3, train_per_class: int = 40, test_per_class: int = 10, size: int = 16,
                      fmt: str = "png", seed: int = 0) -> Path:
    """A small folder of generated grey images (class k: a bright bar at orientation k, with noise),
    ``root/train/class_<k>/<i>.<fmt>`` and ``root/test/...``; returns ``root``."""
    if fmt not in ("png", "npy"):
        raise ValueError(f"fmt must be png or npy, got {fmt}")
    rng = np.random.default_rng(seed)
    root = Path(root)
    for split, per in (("train", train_per_class), ("test", test_per_class)):
        for k in range(classes):
            folder = root / split / f"class_{k}"
            folder.mkdir(parents=True, exist_ok=True)
            for i in range(per):
                img = rng.uniform(0, 0.5, (size, size))
                a = int(rng.integers(2, size - 3))
                if k % 3 == 0:
                    img[a, 2:-2] += 0.5
                elif k % 3 == 1:
                    img[2:-2, a] += 0.5
                else:
                    img[np.arange(2, size - 2), np.arange(2, size - 2)] += 0.5
                img = np.clip(img, 0, 1)
                if fmt == "npy":
                    np.save(folder / f"{i:05d}.npy", (img * 255).astype(np.uint8))
                else:
                    import matplotlib.image

                    matplotlib.image.imsave(folder / f"{i:05d}.png", img, cmap="gray", vmin=0, vmax=1)
    return root


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description="Write a tiny image folder to try the IMAGE_FOLDER workload on.")
    ap.add_argument("--write", required=True, metavar="DIR", help="folder to create (train/ and test/ inside)")
    ap.add_argument("--format", default="png", choices=["png", "npy"])
    ap.add_argument("--classes", type=int, default=3)
    ap.add_argument("--per-class", type=int, default=200, help="training images per class (test: a quarter)")
    a = ap.parse_args(argv)
    root = write_tiny_folder(a.write, a.classes, a.per_class, max(1, a.per_class // 4), fmt=a.format)
    n = sum(1 for _ in root.rglob(f"*.{a.format}"))
    print(f"wrote {n} images under {root}/train and {root}/test")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
