"""A workload from the user's own code runs through every study: --workload file.py:NAME."""

import json
import textwrap

import pytest

from feedwise.cli import main

WORKLOAD = '''
import numpy as np
import torch
from torch import nn
from feedwise.workloads import Workload


class TinyNet(nn.Module):                       # any nn.Module
    def __init__(self, input_shape, num_classes, hidden=32):
        super().__init__()
        self.body = nn.Sequential(nn.Flatten(), nn.Linear(int(np.prod(input_shape)), hidden), nn.ReLU(),
                                  nn.Linear(hidden, num_classes))

    def forward(self, x):
        return self.body(x)


def blobs(split_seed=0):
    rng = np.random.default_rng(0)
    centers = rng.normal(0, 2.5, (4, 12))
    y = rng.integers(0, 4, 1400)
    x = (centers[y] + rng.normal(0, 1, (1400, 12))).astype(np.float32)
    return x[:1200], y[:1200], x[1200:], y[1200:]


def smoothed(logits, labels):                   # a loss of one's own: per-example values
    return nn.functional.cross_entropy(logits, labels, reduction="none", label_smoothing=0.05)


BLOBS = Workload("blobs", dataset=blobs, model=TinyNet, target=0.3, max_steps=300, eval_every=25,
                 batch_size=32, lr=0.05, val_size=0.2)
SMOOTH = Workload("blobs-smooth", dataset=blobs, model=TinyNet, target=0.3, max_steps=200, eval_every=50,
                  batch_size=32, lr=0.05, loss=smoothed)


def make():                                     # a function returning a Workload works too
    return BLOBS


NOT_A_WORKLOAD = 3
'''


@pytest.fixture
def wl(tmp_path):
    path = tmp_path / "mine.py"
    path.write_text(WORKLOAD)
    return path


def _summary(out):
    return json.loads((out / "summary.json").read_text())


def test_user_workload_through_every_study(wl, tmp_path, capsys):
    spec = f"{wl}:BLOBS"
    assert main(["train", "--workload", spec, "--out", str(tmp_path / "t")]) == 0
    rec = json.loads((tmp_path / "t/trials/0/trial.json").read_text())
    assert rec["status"] == "reached" and rec["workload"] == spec
    study = json.loads((tmp_path / "t/study.json").read_text())
    assert study["config"]["workload"] == spec and study["config"]["data"]["fingerprint"]
    assert main(["batch-size", "--workload", spec, "--batch-sizes", "16,64", "--trials", "2", "--steps", "200",
                 "--ref-batch", "0", "--eval-every", "20", "--out", str(tmp_path / "bs")]) == 0
    assert any(b["steps_to_result"] for b in _summary(tmp_path / "bs")["batch_sizes"])
    assert main(["emphasis", "--workload", spec, "--methods", "uniform,wpv", "--seeds", "2", "--steps", "120",
                 "--eval-every", "40", "--out", str(tmp_path / "em")]) == 0
    assert set(_summary(tmp_path / "em")["methods"]) == {"uniform", "wpv"}
    assert main(["subset", "--workload", spec, "--acquisitions", "entropy,random", "--fractions", "0.5",
                 "--ensemble", "2x2", "--budgets", "steps", "--steps", "80", "--acq-steps", "40",
                 "--out", str(tmp_path / "sub")]) == 0
    assert _summary(tmp_path / "sub")["results"]
    assert main(["flag", "--workload", spec, "--label-noise", "0.2", "--steps", "150", "--eval-every", "50",
                 "--out", str(tmp_path / "fl")]) == 0
    assert _summary(tmp_path / "fl")["evaluation"]["1-pbar"]["auroc"] > 0.6
    # the same workload spelled relative to the working folder resumes the same study
    import os

    old = os.getcwd()
    os.chdir(wl.parent)
    try:
        assert main(["train", "--workload", "mine.py:BLOBS", "--out", str(tmp_path / "t")]) == 0
    finally:
        os.chdir(old)
    assert "already finished" in capsys.readouterr().out
    # an edited workload file is another study: refused on the same folder
    wl.write_text(WORKLOAD.replace("hidden=32", "hidden=16"))
    assert main(["train", "--workload", spec, "--out", str(tmp_path / "t")]) == 2
    assert "different study" in capsys.readouterr().err


def test_function_returning_a_workload_and_own_loss(wl, tmp_path):
    assert main(["train", "--workload", f"{wl}:make", "--steps", "50", "--out", str(tmp_path / "f")]) == 0
    assert main(["train", "--workload", f"{wl}:SMOOTH", "--no-stop", "--out", str(tmp_path / "s")]) == 0
    rows = (tmp_path / "s/trials/0/measurements.csv").read_text().splitlines()
    assert len(rows) == 1 + 200 // 50
    # the workload's own loss is the one trained and recorded: label smoothing 0.05 over 4 classes
    # cannot go below the entropy of its target distribution (0.20 nats); cross-entropy would near 0
    rec = json.loads((tmp_path / "s/trials/0/trial.json").read_text())
    assert rec["final_val_error"] < 0.05
    assert all(float(r.split(",")[7]) > 0.195 for r in rows[1:])


def test_user_workload_under_data_parallelism(wl, tmp_path):
    """Spawned DDP workers import the same file by its absolute path."""
    assert main(["parallel", "--workload", f"{wl}:BLOBS", "--modes", "sync", "--workers", "2", "--steps", "40",
                 "--eval-every", "20", "--no-stop", "--out", str(tmp_path / "p")]) == 0
    rec = json.loads((tmp_path / "p/trials/sync-w2-s0/trial.json").read_text())
    assert rec["world_size"] == 2 and rec["steps_run"] == 40


@pytest.mark.parametrize("spec, msg", [
    ("{d}/nope.py:W", "does not exist"),
    ("{d}/broken.py:W", "failed to import: NameError"),
    ("{d}/mine.py:MISSING", "defines no MISSING"),
    ("{d}/mine.py:NOT_A_WORKLOAD", "is a int; expected a feedwise.workloads.Workload"),
    ("no_such_module_xyz:W", "failed to import: ModuleNotFoundError"),
])
def test_a_broken_user_workload_is_one_line(wl, tmp_path, capsys, spec, msg):
    (tmp_path / "broken.py").write_text("x = undefined_name\n")
    out = tmp_path / "o"
    assert main(["train", "--workload", spec.format(d=tmp_path), "--out", str(out)]) == 2
    err = capsys.readouterr().err.strip()
    assert msg in err and len(err.splitlines()) == 1 and "Traceback" not in err
    assert not (out / "study.json").exists()


def test_model_factory_must_return_a_module(tmp_path, capsys):
    (tmp_path / "bad.py").write_text(textwrap.dedent('''
        import numpy as np
        from feedwise.workloads import Workload
        def data():
            x = np.random.default_rng(0).normal(size=(200, 4)).astype(np.float32)
            y = np.arange(200) % 2
            return x, y, x[:50], y[:50]
        W = Workload("bad", dataset=data, model=lambda shape, k: "not a model", target=0.5)
    '''))
    assert main(["train", "--workload", f"{tmp_path}/bad.py:W", "--out", str(tmp_path / "o")]) == 2
    assert "returned a str, expected a torch.nn.Module" in capsys.readouterr().err


def test_changed_data_behind_an_unchanged_workload_file_is_another_study(tmp_path, capsys):
    """The workload file reads its data from a file next to it: new data under the same name and the
    same code is refused on resume, because the data's content is part of the study's identity."""
    import numpy as np

    rng = np.random.default_rng(0)
    x = rng.normal(size=(600, 6)).astype(np.float32)
    y = (x[:, 0] > 0).astype(np.int64)
    np.save(tmp_path / "x.npy", x)
    np.save(tmp_path / "y.npy", y)
    (tmp_path / "w.py").write_text(textwrap.dedent(f'''
        import numpy as np
        from feedwise.workloads import Workload
        def data():
            x, y = np.load("{tmp_path}/x.npy"), np.load("{tmp_path}/y.npy")
            return x[:500], y[:500], x[500:], y[500:]
        W = Workload("w", dataset=data, model="mlp", model_options={{"widths": (8,)}}, target=0.4, max_steps=40,
                     eval_every=20, batch_size=32)
    '''))
    args = ["train", "--workload", f"{tmp_path}/w.py:W", "--out", str(tmp_path / "o")]
    assert main(args) == 0 and main(args) == 0
    assert "already finished" in capsys.readouterr().out
    np.save(tmp_path / "y.npy", 1 - y)           # other labels, same file name, same code
    assert main(args) == 2
    assert "different study" in capsys.readouterr().err
