"""The runnable files under examples/ work as their docstrings say, on tiny settings."""

from __future__ import annotations

import importlib.util
import json
from pathlib import Path

import numpy as np
import pytest
import torch

from feedwise.cli import main

ROOT = Path(__file__).resolve().parents[1]
EXAMPLES = ROOT / "examples"
FASHION = Path("/usr/share/datasets/fashion-mnist")


def load_example(name: str):
    spec = importlib.util.spec_from_file_location(f"feedwise_example_{name}", EXAMPLES / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def _json(path: Path) -> dict:
    return json.loads(path.read_text())


def _rows(out: Path) -> list[dict]:
    import csv

    with open(out / "trials/0/measurements.csv") as f:
        return [{k: v for k, v in r.items() if k not in ("wall_s", "eval_s")} for r in csv.DictReader(f)]


# ------------------------------------------------------------------------------ cnn_workload.py
def test_cnn_workload_file_through_batch_size_and_flag(tmp_path, monkeypatch):
    """The documented commands, spelled as in the docstring (relative to the repository root), on the
    generated image set."""
    monkeypatch.setenv("FEEDWISE_EXAMPLE_TINY", "1")
    monkeypatch.chdir(ROOT)
    spec = "examples/cnn_workload.py:FASHION_CNN"
    space = tmp_path / "space.json"      # a narrow learning-rate range: every trial should train
    space.write_text(json.dumps({"lr": [0.01, 0.05], "one_minus_momentum": [0.05, 0.2]}))
    assert main(["batch-size", "--space", str(space), "--workload", spec, "--batch-sizes", "16,64", "--trials", "2", "--steps", "120",
                 "--ref-batch", "0", "--eval-every", "20", "--target", "0.5", "--num-samples", "720",
                 "--out", str(tmp_path / "bs")]) == 0
    s = _json(tmp_path / "bs/summary.json")
    assert all(b["steps_to_result"] for b in s["batch_sizes"]), s["batch_sizes"]
    study = _json(tmp_path / "bs/study.json")
    assert study["config"]["workload"] == f"{EXAMPLES / 'cnn_workload.py'}:FASHION_CNN"
    assert main(["flag", "--workload", spec, "--label-noise", "0.2", "--steps", "150", "--eval-every", "50",
                 "--num-samples", "720", "--out", str(tmp_path / "flag")]) == 0
    f = _json(tmp_path / "flag/summary.json")
    assert f["num_flipped"] > 0 and f["evaluation"]["1-pbar"]["auroc"] > 0.7
    assert (tmp_path / "flag/flagged.csv").is_file()


def test_cnn_workload_model_and_generated_images():
    ex = load_example("cnn_workload")
    x, y, xt, yt = ex.strokes(120)
    assert x.dtype == np.uint8 and x.shape == (100, 28, 28) and xt.shape == (20, 28, 28)
    assert set(y) == set(range(4))
    net = ex.MyCNN((1, 28, 28), 10)
    assert net(torch.zeros(2, 1, 28, 28)).shape == (2, 10)


@pytest.mark.skipif(not FASHION.is_dir(), reason="Fashion-MNIST is not installed (apt-get install dataset-fashion-mnist)")
def test_cnn_workload_reads_fashion_idx_with_numpy(monkeypatch):
    monkeypatch.delenv("FEEDWISE_EXAMPLE_TINY", raising=False)
    ex = load_example("cnn_workload")
    x, y, xt, yt = ex.fashion(num_samples=500)
    assert x.shape == (500, 28, 28) and x.dtype == np.uint8 and len(y) == 500
    assert xt.shape == (10000, 28, 28) and set(np.unique(yt)) == set(range(10))


# ------------------------------------------------------------------------------ image_folder.py
@pytest.mark.parametrize("fmt", ["png", "npy"])
def test_image_folder_dataset(tmp_path, fmt):
    ex = load_example("image_folder")
    root = ex.write_tiny_folder(tmp_path / "imgs", classes=3, train_per_class=4, test_per_class=2, size=12, fmt=fmt)
    ds = ex.ImageFolder(root / "train")
    assert len(ds) == 12 and ds.targets == [0] * 4 + [1] * 4 + [2] * 4 and ds.classes == ["class_0", "class_1", "class_2"]
    x, label = ds[5]
    assert label == 1 and x.dtype == torch.float32 and x.shape == ((3, 12, 12) if fmt == "png" else (1, 12, 12))
    assert 0.0 <= float(x.min()) and float(x.max()) <= 1.0
    train, test = ex.image_folder(str(root))
    assert len(test) == 6 and test.classes == train.classes


def test_image_folder_workload_lazy_equals_in_memory(tmp_path, monkeypatch):
    """Small folders are loaded into memory; above the limit feedwise reads them lazily with loader
    workers. Both train the same batches: equal measurements."""
    import feedwise.data.lazy as lazy

    ex = load_example("image_folder")
    root = ex.write_tiny_folder(tmp_path / "imgs", classes=3, train_per_class=30, test_per_class=6, size=12)
    spec = f"{EXAMPLES / 'image_folder.py'}:IMAGE_FOLDER"
    args = ["train", "--workload", spec, "--data-dir", str(root), "--steps", "40", "--eval-every", "20",
            "--batch-size", "16"]
    assert main(args + ["--out", str(tmp_path / "mem")]) == 0
    monkeypatch.setattr(lazy, "IN_MEMORY_LIMIT", 0)
    assert main(args + ["--out", str(tmp_path / "lazy")]) == 0
    mem, lz = (_json(tmp_path / d / "trials/0/trial.json") for d in ("mem", "lazy"))
    info = {d: _json(tmp_path / d / "study.json")["dataset"] for d in ("mem", "lazy")}
    assert info["mem"]["in_memory"] is True and info["lazy"]["in_memory"] is False
    assert info["lazy"]["loader_workers"] >= 1 and info["lazy"]["num_train"] == 81
    assert mem["steps_run"] == lz["steps_run"] == 40
    assert _rows(tmp_path / "mem") == _rows(tmp_path / "lazy")


def test_image_folder_without_data_dir_is_one_line(tmp_path, capsys):
    assert main(["train", "--workload", f"{EXAMPLES / 'image_folder.py'}:IMAGE_FOLDER",
                 "--out", str(tmp_path / "o")]) == 2
    err = capsys.readouterr().err.strip()
    assert "give --data-dir" in err and len(err.splitlines()) == 1


# ------------------------------------------------------------------------------ own_loop.py
def test_own_loop_saves_history_and_flags(tmp_path, data_cache, capsys):
    ex = load_example("own_loop")
    out = tmp_path / "own"
    assert ex.main(["--out", str(out), "--num-samples", "2000", "--steps", "120", "--probe-every", "40",
                    "--probe-batch", "256", "--probe-small", "32", "--label-noise", "0.2", "--cross-fit", "2",
                    "--cross-fit-steps", "60"]) == 0
    r = _json(out / "result.json")
    assert r["flag_history"]["exit"] == 0 and r["flag_pred_probs"]["exit"] == 0
    labels = np.load(out / "labels.npy")
    state = torch.load(out / "history.pt", weights_only=True)
    assert len(labels) == r["num_train"] == int(state["num_examples"])
    assert int(state["count"].sum()) == 120 * 128                   # one observation per example per step
    assert len(np.load(out / "flipped.npy")) == round(0.2 * len(labels))
    probs = np.load(out / "pred_probs.npy")
    assert probs.shape == (len(labels), 10) and np.allclose(probs.sum(1), 1, atol=1e-5)
    noise_rows = (out / "noise.csv").read_text().splitlines()
    assert len(noise_rows) == 1 + 120 // 40 and _json(out / "noise.json")["measurements"] == 3
    for d in ("flag-history", "flag-pred-probs"):
        s = _json(out / d / "summary.json")
        assert s["rows_scored"] == len(labels) and s["label_issues"]["num_examples"] == len(labels)
    assert "noise scale B_simple" in capsys.readouterr().out


def test_own_loop_with_an_active_bias_sampler(tiny):
    from feedwise.emphasis import PredictionHistory

    ex = load_example("own_loop")
    h = PredictionHistory(tiny.num_train)
    model = ex.train_loop(tiny.x_train, tiny.y_train, steps=60, batch_size=64, method="spv", history=h)
    assert int(h.count().sum()) == 60 * 64 and ex.error_rate(model, tiny.x_val, tiny.y_val) < 0.9


# ------------------------------------------------------------------------------ the README's commands
def test_readme_sh_commands_of_the_own_code_section_parse():
    """The ```sh blocks of "Your own model, data and loop" are not run by tests/test_readme.py (they train
    real workloads for minutes); their commands must parse, and the runs above cover them tiny."""
    import re
    import shlex

    from feedwise.cli import build_parser

    text = (ROOT / "README.md").read_text()
    section = text.split("## Your own model, data and loop", 1)[1].split("\n## ", 1)[0]
    lines = [ln for b in re.findall(r"^```sh\n(.*?)^```", section, flags=re.S | re.M) for ln in b.splitlines()
             if ln.startswith("feedwise ")]
    assert len(lines) >= 2
    for ln in lines:
        argv = shlex.split(ln)[1:]
        build_parser().parse_args(argv)
        spec = argv[argv.index("--workload") + 1]
        assert (ROOT / spec.split(":")[0]).is_file(), spec
