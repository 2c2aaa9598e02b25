import gzip

import numpy as np
import pytest
import torch

from conftest import FASHION, write_idx
from feedwise.data import add_label_noise, load_dataset
from feedwise.data.sources import read_idx
from feedwise.errors import FeedwiseError


def test_idx_folder_loads_gz_and_raw(idx_folder):
    d = load_dataset("mnist", data_dir=str(idx_folder), val_size=50)
    assert d.x_train.shape == (250, 1, 28, 28) and d.x_val.shape == (50, 1, 28, 28)
    assert d.x_test.shape == (60, 1, 28, 28)
    assert d.x_train.dtype == torch.float32 and d.y_train.dtype == torch.int64
    assert abs(float(torch.cat([d.x_train, d.x_val]).mean())) < 0.05  # standardised by train statistics


def test_truncated_idx_is_a_clear_error(idx_folder):
    p = idx_folder / "t10k-images-idx3-ubyte"
    p.write_bytes(p.read_bytes()[:-100])
    with pytest.raises(FeedwiseError, match="truncated IDX file"):
        load_dataset("mnist", data_dir=str(idx_folder), val_size=50)


def test_corrupt_gzip_idx_is_a_clear_error(idx_folder):
    p = idx_folder / "train-images-idx3-ubyte.gz"
    p.write_bytes(p.read_bytes()[: len(p.read_bytes()) // 2])
    with pytest.raises(FeedwiseError, match="corrupt or truncated IDX"):
        load_dataset("mnist", data_dir=str(idx_folder), val_size=50)


def test_bad_magic(tmp_path):
    p = tmp_path / "x-idx1-ubyte"
    p.write_bytes(b"\x01\x02\x03\x04" + b"\x00" * 10)
    with pytest.raises(FeedwiseError, match="bad magic"):
        read_idx(p)


def test_missing_folder_and_file(tmp_path, idx_folder):
    with pytest.raises(FeedwiseError, match="does not exist"):
        load_dataset("mnist", data_dir=str(tmp_path / "nowhere"))
    (idx_folder / "train-labels-idx1-ubyte.gz").unlink()
    with pytest.raises(FeedwiseError, match="missing data file"):
        load_dataset("mnist", data_dir=str(idx_folder), val_size=50)
    with pytest.raises(FeedwiseError, match="needs --data-dir"):
        load_dataset("mnist")


def test_npz_loader_and_errors(tmp_path):
    rng = np.random.default_rng(1)
    p = tmp_path / "d.npz"
    np.savez(p, x=rng.normal(size=(200, 7)), y=rng.integers(0, 3, 200))
    d = load_dataset("npz", data_dir=str(p), val_size=20)
    assert d.num_classes == 3 and d.x_train.shape[1:] == (7,)
    assert d.num_train + len(d.y_val) + len(d.y_test) == 200
    bad = tmp_path / "bad.npz"
    np.savez(bad, x=rng.normal(size=(10, 3)), y=rng.integers(0, 3, 9))
    with pytest.raises(FeedwiseError, match="one label per row"):
        load_dataset("npz", data_dir=str(bad))
    nox = tmp_path / "nox.npz"
    np.savez(nox, y=np.zeros(3))
    with pytest.raises(FeedwiseError, match="no array 'x'"):
        load_dataset("npz", data_dir=str(nox))
    junk = tmp_path / "junk.npz"
    junk.write_bytes(b"not a zip")
    with pytest.raises(FeedwiseError, match="corrupt .npz"):
        load_dataset("npz", data_dir=str(junk))


def test_unknown_dataset():
    with pytest.raises(FeedwiseError, match="unknown dataset 'nope'.*mnist1d"):
        load_dataset("nope")


def test_validation_split_is_disjoint_and_seeded(tiny, data_cache):
    a = load_dataset("mnist1d", num_samples=2000, val_size=300, split_seed=1)
    b = load_dataset("mnist1d", num_samples=2000, val_size=300, split_seed=1)
    c = load_dataset("mnist1d", num_samples=2000, val_size=300, split_seed=2)
    assert torch.equal(a.x_val, b.x_val)
    assert not torch.equal(a.x_val, c.x_val)
    train_rows = {tuple(r) for r in a.x_train.numpy().round(5)}
    assert not any(tuple(r) in train_rows for r in a.x_val.numpy().round(5))
    assert a.num_train + 300 == 2000 * 5 // 6


def test_mnist1d_is_cached(data_cache):
    load_dataset("mnist1d", num_samples=600, val_size=50)
    assert list(data_cache.glob("mnist1d-n600-*.npz"))
    (next(data_cache.glob("mnist1d-n600-*.npz"))).write_bytes(b"garbage")  # corrupt cache is regenerated
    d = load_dataset("mnist1d", num_samples=600, val_size=50)
    assert d.x_train.shape[1:] == (40,)


def test_label_noise_flips_to_another_class_with_its_own_seed():
    y = np.random.default_rng(0).integers(0, 10, 5000)
    noisy, flipped = add_label_noise(y, 0.2, 10, seed=3)
    assert len(flipped) == 1000 and len(np.unique(flipped)) == 1000
    assert (noisy[flipped] != y[flipped]).all()
    keep = np.setdiff1d(np.arange(len(y)), flipped)
    assert (noisy[keep] == y[keep]).all()
    # uniform over the other classes: each offset 1..9 appears roughly equally
    offs = np.bincount((noisy[flipped] - y[flipped]) % 10, minlength=10)[1:]
    assert offs.min() > 60
    again, f2 = add_label_noise(y, 0.2, 10, seed=3)
    assert (again == noisy).all() and (f2 == flipped).all()
    _, f3 = add_label_noise(y, 0.2, 10, seed=4)
    assert not (f3 == flipped).all()
    for bad in (-0.1, 1.0):
        with pytest.raises(FeedwiseError, match=r"in \[0, 1\)"):
            add_label_noise(y, bad, 10, 0)


def test_dataset_records_noisy_indices(data_cache):
    d = load_dataset("mnist1d", num_samples=2000, val_size=200, label_noise=0.1, noise_seed=5)
    assert len(d.noisy_indices) == round(0.1 * d.num_train)
    assert (d.y_train[d.noisy_indices] != d.clean_y_train[d.noisy_indices]).all()


@pytest.mark.skipif(not FASHION.is_dir(), reason="Debian's dataset-fashion-mnist is not installed")
def test_real_fashion_mnist_files():
    d = load_dataset("fashion-mnist")
    assert d.num_train == 55000 and len(d.y_test) == 10000 and d.num_classes == 10
    assert d.input_shape == (1, 28, 28)
