import gzip
import os
import struct
from pathlib import Path

import numpy as np
import pytest
import torch

os.environ.setdefault("FEEDWISE_QUIET", "1")
# One torch thread, as feedwise's own default: on 2 shared, loaded cores two threads ran these tiny
# models up to 50x slower (and the CLI tests' subprocesses use the default too).
torch.set_num_threads(1)

FASHION = Path("/usr/share/datasets/fashion-mnist")


@pytest.fixture(scope="session")
def data_cache(tmp_path_factory):
    """A private cache for small generated datasets."""
    d = tmp_path_factory.mktemp("feedwise-data")
    old = os.environ.get("FEEDWISE_DATA")
    os.environ["FEEDWISE_DATA"] = str(d)
    yield d
    if old is None:
        os.environ.pop("FEEDWISE_DATA", None)
    else:
        os.environ["FEEDWISE_DATA"] = old


@pytest.fixture(scope="session")
def tiny(data_cache):
    """A small mnist1d dataset (2,000 generated samples): seconds to train on."""
    from feedwise.workloads import get_workload

    return get_workload("mnist1d-mlp").load(num_samples=2000, )


def write_idx(path: Path, array: np.ndarray, gz: bool = True) -> None:
    header = bytes([0, 0, 0x08, array.ndim]) + struct.pack(">" + "I" * array.ndim, *array.shape)
    raw = header + array.astype(np.uint8).tobytes()
    if gz:
        with gzip.open(path, "wb") as f:
            f.write(raw)
    else:
        path.write_bytes(raw)


@pytest.fixture
def idx_folder(tmp_path):
    """A tiny MNIST-like IDX folder: 300 train / 60 test images of 28x28."""
    rng = np.random.default_rng(0)
    folder = tmp_path / "idx"
    folder.mkdir()
    write_idx(folder / "train-images-idx3-ubyte.gz", rng.integers(0, 256, (300, 28, 28)))
    write_idx(folder / "train-labels-idx1-ubyte.gz", rng.integers(0, 10, 300))
    write_idx(folder / "t10k-images-idx3-ubyte", rng.integers(0, 256, (60, 28, 28)), gz=False)
    write_idx(folder / "t10k-labels-idx1-ubyte", rng.integers(0, 10, 60), gz=False)
    return folder
