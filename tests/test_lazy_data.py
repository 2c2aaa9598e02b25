"""Data that does not fit in memory: a map-style torch Dataset read lazily by loader workers, with
the feeder still choosing every batch."""

import numpy as np
import pytest
import torch

from feedwise.data.lazy import LazyInputs, from_torch, labels_of, take_rows
from feedwise.engine import TrainConfig, train
from feedwise.errors import FeedwiseError
from feedwise.feeds import make_feeder
from feedwise.workloads import get_workload

W = get_workload("mnist1d-mlp")


class Arrays(torch.utils.data.Dataset):
    """A map-style dataset that counts the rows it was asked for."""

    def __init__(self, x, y, targets=True):
        self.x, self.y = x, y
        if targets:
            self.targets = list(y)

    def __len__(self):
        return len(self.y)

    def __getitem__(self, i):
        return self.x[i], int(self.y[i])


@pytest.fixture(scope="module")
def both(tiny):
    x = torch.cat([tiny.x_train, tiny.x_val]).numpy()
    y = torch.cat([tiny.y_train, tiny.y_val]).numpy()
    train_set, test_set = Arrays(x, y), Arrays(tiny.x_test.numpy(), tiny.y_test.numpy(), targets=False)
    return (from_torch(train_set, test_set, in_memory=False, num_workers=1),
            from_torch(train_set, test_set, in_memory=True, num_workers=0))


def _strip(rows):
    return [{k: v for k, v in r.items() if k not in ("wall_s", "eval_s")} for r in rows]


def test_lazy_inputs_index_like_a_tensor(both):
    lazy, mem = both
    assert isinstance(lazy.x_train, LazyInputs) and not isinstance(mem.x_train, LazyInputs)
    assert lazy.x_train.shape == mem.x_train.shape and lazy.num_train == mem.num_train
    idx = torch.tensor([5, 0, 77])
    assert torch.equal(lazy.x_train[idx], mem.x_train[idx]) and torch.equal(lazy.x_train[3], mem.x_train[3])
    view = take_rows(lazy.x_train, np.array([10, 20, 30]))
    assert isinstance(view, LazyInputs) and len(view) == 3 and torch.equal(view[1], mem.x_train[20])
    assert torch.equal(torch.cat(list(lazy.x_val.batches(50))), mem.x_val)
    assert torch.equal(lazy.y_train, mem.y_train) and lazy.describe()["in_memory"] is False


def test_lazy_training_equals_the_in_memory_path(both):
    """Feeders that only order the data give exactly the in-memory batches: same measurements."""
    lazy, mem = both
    cfg = TrainConfig(batch_size=32, lr=0.1, max_steps=120, eval_every=40, target=None, seed=1)
    a, _ = train(mem, W.model_fn(mem), cfg)
    b, tb = train(lazy, W.model_fn(lazy), cfg)
    assert _strip(a.rows) == _strip(b.rows) and a.test_error == b.test_error
    assert tb._fetch is None                     # the loader workers were stopped at the end of the run
    scan_a, _ = train(mem, W.model_fn(mem), cfg, feeder=make_feeder("scan"))
    scan_b, _ = train(lazy, W.model_fn(lazy), cfg, feeder=make_feeder("scan"))
    assert _strip(scan_a.rows) == _strip(scan_b.rows)
    # a feeder that observes (Active Bias weighting) trains on lazy data too
    c, tc = train(lazy, W.model_fn(lazy), TrainConfig(batch_size=64, lr=0.1, max_steps=80, eval_every=40),
                  feeder=make_feeder("wpv", burn_in=0.5))
    assert c.status == "budget" and tc.feeder.history.count().sum() == 80 * 64


def test_labels_come_from_targets_or_one_pass(tiny):
    x, y = tiny.x_train.numpy()[:50], tiny.y_train.numpy()[:50]
    assert (labels_of(Arrays(x, y)) == y).all() and (labels_of(Arrays(x, y, targets=False), num_workers=0) == y).all()

    class NoLabels(Arrays):
        def __getitem__(self, i):
            return self.x[i]

    with pytest.raises(FeedwiseError, match=r"must return \(input, label\)"):
        labels_of(NoLabels(x, y, targets=False), num_workers=0)


LAZY_WORKLOAD = '''
import numpy as np
import torch
from feedwise.data.lazy import from_torch
from feedwise.workloads import Workload


class Rows(torch.utils.data.Dataset):        # read one row at a time, as from files on disk
    def __init__(self, x, y):
        self.x, self.y = x, y
        self.targets = list(y)

    def __len__(self):
        return len(self.y)

    def __getitem__(self, i):
        return self.x[i], int(self.y[i])


def data():
    rng = np.random.default_rng(0)
    centers = rng.normal(0, 2.5, (4, 12))
    y = rng.integers(0, 4, 1400)
    x = (centers[y] + rng.normal(0, 1, (1400, 12))).astype(np.float32)
    return from_torch(Rows(x[:1200], y[:1200]), Rows(x[1200:], y[1200:]), val_size=0.2, in_memory=False,
                      num_workers=1)


LAZY = Workload("lazy-blobs", dataset=data, model="mlp", model_options={"widths": (32,)}, target=0.3,
                max_steps=200, eval_every=25, batch_size=32, lr=0.05)
'''


def test_a_lazy_dataset_runs_through_the_studies(tmp_path):
    """A workload whose data is read lazily (DataLoader workers fetch the feeder's batches) runs
    through batch-size, emphasis, subset and flag unchanged."""
    import json

    from feedwise.cli import main

    (tmp_path / "lazy.py").write_text(LAZY_WORKLOAD)
    spec = f"{tmp_path / 'lazy.py'}:LAZY"
    s = lambda d: json.loads((tmp_path / d / "summary.json").read_text())  # noqa: E731
    assert main(["batch-size", "--workload", spec, "--batch-sizes", "32,128", "--trials", "2", "--steps", "100",
                 "--ref-batch", "0", "--eval-every", "25", "--out", str(tmp_path / "bs")]) == 0
    assert any(b["steps_to_result"] for b in s("bs")["batch_sizes"])
    assert main(["emphasis", "--workload", spec, "--methods", "uniform,wpv", "--seeds", "1", "--steps", "80",
                 "--eval-every", "40", "--out", str(tmp_path / "em")]) == 0
    assert set(s("em")["methods"]) == {"uniform", "wpv"}
    assert main(["subset", "--workload", spec, "--acquisitions", "entropy,random", "--fractions", "0.5",
                 "--ensemble", "2x2", "--budgets", "steps", "--steps", "60", "--acq-steps", "40",
                 "--out", str(tmp_path / "sub")]) == 0
    assert s("sub")["results"]
    assert main(["flag", "--workload", spec, "--label-noise", "0.2", "--steps", "120", "--eval-every", "40",
                 "--out", str(tmp_path / "fl")]) == 0
    assert s("fl")["evaluation"]["1-pbar"]["auroc"] > 0.6
    study = json.loads((tmp_path / "em" / "study.json").read_text())
    assert study["dataset"]["in_memory"] is False
