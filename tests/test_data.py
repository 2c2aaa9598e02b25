
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


# --------------------------------------------------------------------------- data rules (load time)
def _npz(path, **arrays):
    np.savez(path, **arrays)
    return str(path)


@pytest.fixture
def xy():
    rng = np.random.default_rng(2)
    return rng.normal(size=(200, 6)).astype(np.float32), rng.integers(0, 4, 200)


def test_nan_or_inf_inputs_are_a_data_error_naming_file_and_rows(tmp_path, xy):
    x, y = xy
    bad = x.copy()
    bad[[3, 7, 9], 1] = np.nan
    bad[11, 0] = np.inf
    p = _npz(tmp_path / "nan.npz", x=bad, y=y)
    with pytest.raises(FeedwiseError, match=r"nan\.npz: x has 4 row\(s\) holding NaN or inf \(first: row 3\)"):
        load_dataset("npz", data_dir=p, val_size=20)
    xt = x[:40].copy()
    xt[5] = np.inf
    p = _npz(tmp_path / "nantest.npz", x=x, y=y, x_test=xt, y_test=y[:40])
    with pytest.raises(FeedwiseError, match=r"x_test has 1 row\(s\) holding NaN or inf \(first: row 5\)"):
        load_dataset("npz", data_dir=p, val_size=20)
    big = x.astype(np.float64)
    big[0, 0] = 1e300          # finite in float64, inf in float32
    p = _npz(tmp_path / "big.npz", x=big, y=y)
    with pytest.raises(FeedwiseError, match=r"1 row\(s\) holding NaN or inf"):
        load_dataset("npz", data_dir=p, val_size=20)


def test_labels_are_zero_based_classes_from_the_training_labels(tmp_path, xy):
    x, y = xy
    with pytest.raises(FeedwiseError, match=r"classes 0\.\.4 .* no example in y: 0 \(labels start at 1: make them 0-based"):
        load_dataset("npz", data_dir=_npz(tmp_path / "a.npz", x=x, y=y + 1), val_size=20)
    gap = np.where(y == 2, 3, y)
    with pytest.raises(FeedwiseError, match=r"no example in y: 2 \(relabel"):
        load_dataset("npz", data_dir=_npz(tmp_path / "b.npz", x=x, y=gap), val_size=20)
    with pytest.raises(FeedwiseError, match="only one class"):
        load_dataset("npz", data_dir=_npz(tmp_path / "c.npz", x=x, y=np.zeros(200, int)), val_size=20)
    huge = y.copy()
    huge[0] = 10**9        # would be a 1 TB one-hot / 8 GB bincount: refused before any allocation
    with pytest.raises(FeedwiseError, match=r"label 1000000000 in y is too large.*100,000"):
        load_dataset("npz", data_dir=_npz(tmp_path / "d.npz", x=x, y=huge), val_size=20)
    d = load_dataset("npz", data_dir=_npz(tmp_path / "ok.npz", x=x, y=y), val_size=20)
    assert d.num_classes == 4


def test_test_labels_never_add_classes(tmp_path, xy):
    x, y = xy
    yt = y[:40].copy()
    yt[0] = 12
    with pytest.raises(FeedwiseError, match=r"1 test label\(s\) are outside the training classes 0\.\.3 \(largest 12\)"):
        load_dataset("npz", data_dir=_npz(tmp_path / "a.npz", x=x, y=y, x_test=x[:40], y_test=yt), val_size=20)
    yt[0] = -1
    with pytest.raises(FeedwiseError, match="y_test holds negative labels"):
        load_dataset("npz", data_dir=_npz(tmp_path / "b.npz", x=x, y=y, x_test=x[:40], y_test=yt), val_size=20)
    for name, arrays, msg in [
        ("frac", {"x_test": x[:40], "y_test": y[:40] + 0.5}, "y_test must hold integer class labels"),
        ("fracy", {"y": y + 0.5}, "y must hold integer class labels"),
        ("xonly", {"x_test": x[:40]}, "holds x_test but no y_test: give both"),
        ("yonly", {"y_test": y[:40]}, "holds y_test but no x_test"),
        ("len", {"x_test": x[:40], "y_test": y[:30]}, "x_test has 40 rows but y_test has 30 labels"),
        ("shape", {"x_test": x[:40, :5], "y_test": y[:40]}, r"test inputs have shape \(5,\) per example"),
    ]:
        arrays = {"x": x, "y": y, **arrays}
        with pytest.raises(FeedwiseError, match=msg):
            load_dataset("npz", data_dir=_npz(tmp_path / f"{name}.npz", **arrays), val_size=20)


def test_inputs_must_be_numeric_rows(tmp_path, xy):
    x, y = xy
    with pytest.raises(FeedwiseError, match=r"x has shape \(200,\); it needs one row per example.*reshape\(-1, 1\)"):
        load_dataset("npz", data_dir=_npz(tmp_path / "a.npz", x=x[:, 0], y=y), val_size=20)
    strings = np.array([f"{v:.3f}" for v in x[:, 0]]).reshape(-1, 1)   # numbers as text are not numbers
    with pytest.raises(FeedwiseError, match="x must hold numbers .* got dtype <U"):
        load_dataset("npz", data_dir=_npz(tmp_path / "b.npz", x=strings, y=y), val_size=20)
    with pytest.raises(FeedwiseError, match="no examples or no features"):
        load_dataset("npz", data_dir=_npz(tmp_path / "c.npz", x=np.zeros((200, 0)), y=y), val_size=20)
    with pytest.raises(FeedwiseError, match=r"x has 200 rows but y has 199 labels"):
        load_dataset("npz", data_dir=_npz(tmp_path / "d.npz", x=x, y=y[:-1]), val_size=20)


def test_idx_images_need_three_dimensions(idx_folder):
    rng = np.random.default_rng(0)
    write_idx(idx_folder / "train-images-idx3-ubyte.gz", rng.integers(0, 256, (300, 784)))
    with pytest.raises(FeedwiseError, match=r"IDX file .*train-images-idx3-ubyte.gz has shape \(300, 784\); expected 3"):
        load_dataset("mnist", data_dir=str(idx_folder), val_size=50)


def test_idx_labels_follow_the_class_rule(idx_folder):
    write_idx(idx_folder / "t10k-labels-idx1-ubyte", np.full(60, 11), gz=False)
    with pytest.raises(FeedwiseError, match=r"mnist data in .*: 60 test label\(s\) are outside the training classes"):
        load_dataset("mnist", data_dir=str(idx_folder), val_size=50)


def test_bad_seeds_and_sizes_are_refused_by_the_loader():
    for kw, msg in [({"split_seed": -1}, "--split-seed must be a non-negative integer"),
                    ({"noise_seed": -2}, "--noise-seed must be a non-negative integer"),
                    ({"max_train": 0}, "--max-train must be positive")]:
        with pytest.raises(FeedwiseError, match=msg):
            load_dataset("mnist1d", num_samples=600, val_size=50, **kw)


# --------------------------------------------------------------------------- identity of the data
def test_fingerprint_is_the_content_of_the_files_read(tmp_path, xy, idx_folder, data_cache):
    x, y = xy
    p = _npz(tmp_path / "d.npz", x=x, y=y)
    a = load_dataset("npz", data_dir=p, val_size=20).info["fingerprint"]
    assert a.startswith("sha256:") and a == load_dataset("npz", data_dir=p, val_size=20).info["fingerprint"]
    _npz(tmp_path / "d.npz", x=x + 1, y=y)        # different data under the same name
    assert load_dataset("npz", data_dir=p, val_size=20).info["fingerprint"] != a
    f = load_dataset("mnist", data_dir=str(idx_folder), val_size=50).info["fingerprint"]
    assert f.startswith("sha256:")
    write_idx(idx_folder / "t10k-labels-idx1-ubyte", np.roll(read_idx(idx_folder / "t10k-labels-idx1-ubyte"), 1),
              gz=False)
    assert load_dataset("mnist", data_dir=str(idx_folder), val_size=50).info["fingerprint"] != f
    # generated data has no files: its generator arguments (in DataOptions) define it
    assert "fingerprint" not in load_dataset("mnist1d", num_samples=600, val_size=50).info


def test_data_options_are_absolute_and_checked(tmp_path, monkeypatch, xy):
    from feedwise.studies.train.run import DataOptions

    monkeypatch.chdir(tmp_path)
    p = _npz(tmp_path / "digits.npz", x=xy[0], y=xy[1])
    assert DataOptions(data_dir="digits.npz").data_dir == DataOptions(data_dir="./digits.npz").data_dir == p
    assert DataOptions(data_dir="sub/../digits.npz").data_dir == p
    for kw, msg in [({"data_dir": ""}, "--data-dir is empty"), ({"label_noise": 1.0}, r"label noise must be in \[0, 1\)"),
                    ({"label_noise": float("nan")}, "label noise"), ({"split_seed": -1}, "--split-seed"),
                    ({"noise_seed": -1}, "--noise-seed"), ({"max_train": 0}, "--max-train must be positive"),
                    ({"num_samples": 5}, "--num-samples must be at least 20")]:
        with pytest.raises(FeedwiseError, match=msg):
            DataOptions(**kw)
    opts = DataOptions(data_dir="digits.npz")
    from feedwise.workloads import get_workload

    ident = opts.identity(get_workload("npz-mlp").load(data_dir=opts.data_dir))
    assert ident["data_dir"] == p and ident["fingerprint"].startswith("sha256:")


def test_resume_follows_the_file_not_its_spelling(tmp_path, monkeypatch, xy, capsys):
    """`./digits.npz` resumes a study made with `digits.npz`; other bytes under that name are refused."""
    from feedwise.cli import main

    monkeypatch.chdir(tmp_path)
    x, y = xy
    _npz(tmp_path / "digits.npz", x=x, y=y)
    run = ["train", "--workload", "npz-mlp", "--steps", "4", "--eval-every", "2", "--batch-size", "16", "--out", "o"]
    assert main([*run, "--data-dir", "digits.npz"]) == 0
    assert main([*run, "--data-dir", "./digits.npz"]) == 0
    assert "already finished" in capsys.readouterr().out
    _npz(tmp_path / "digits.npz", x=x[::-1], y=y[::-1])
    assert main([*run, "--data-dir", "digits.npz"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "holds a different study (data.fingerprint" in err[0]


def test_npz_images_train_a_cnn_with_stated_splits(tmp_path, capsys):
    """N x H x W uint8 images: scaled, standardised, given a channel axis; npz-cnn trains on them;
    --val-fraction and --test-fraction set the splits."""
    import json

    from feedwise.cli import main
    from feedwise.workloads import get_workload

    rng = np.random.default_rng(0)
    y = rng.integers(0, 3, 500)
    x = rng.integers(0, 60, (500, 12, 12)).astype(np.uint8)
    for k in range(3):                              # class k: a bright 4x4 patch in column block k
        x[y == k, 4:8, 4 * k:4 * k + 4] += 150
    np.savez(tmp_path / "img.npz", x=x, y=y)
    d = get_workload("npz-cnn").load(data_dir=str(tmp_path / "img.npz"), val_fraction=0.2, test_fraction=0.1)
    assert d.input_shape == (1, 12, 12) and d.num_train + len(d.y_val) == 450 and len(d.y_test) == 50
    assert abs(float(d.x_train.mean())) < 0.05 and abs(float(d.x_train.std()) - 1) < 0.05
    assert sorted(d.train_rows.tolist()) == d.train_rows.tolist() or len(set(d.train_rows.tolist())) == d.num_train
    out = tmp_path / "cnn"
    assert main(["train", "--workload", "npz-cnn", "--data-dir", str(tmp_path / "img.npz"), "--target", "0.2",
                 "--steps", "150", "--eval-every", "25", "--batch-size", "32", "--val-fraction", "0.2",
                 "--out", str(out)]) == 0
    rec = json.loads((out / "trials/0/trial.json").read_text())
    assert rec["status"] == "reached"
    for bad, msg in ((["--val-fraction", "1.5"], "--val-fraction must be a fraction"),
                     (["--test-fraction", "0.2", "--workload", "mnist1d-mlp"], "--test-fraction applies to")):
        args = ["train", "--workload", "npz-cnn", "--data-dir", str(tmp_path / "img.npz"), "--target", "0.2", *bad,
                "--out", str(tmp_path / "bad")]
        assert main(args) == 2 and msg in capsys.readouterr().err
