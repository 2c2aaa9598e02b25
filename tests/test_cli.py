import json
import subprocess
import sys

import pytest

from conftest import FASHION

TINY = ["--num-samples", "2000", "--steps", "60", "--eval-every", "20", "--batch-size", "32"]


def feedwise(*args, env_extra=None, cwd=None):
    import os

    env = {**os.environ, "FEEDWISE_QUIET": "1", **(env_extra or {})}
    return subprocess.run([sys.executable, "-m", "feedwise.cli", *args], capture_output=True, text=True, env=env, cwd=cwd)


def assert_one_line_error(p, pattern):
    assert p.returncode != 0, p.stdout
    assert "Traceback" not in p.stderr
    lines = [l for l in p.stderr.strip().splitlines() if l.strip()]
    assert len(lines) == 1, p.stderr
    assert pattern in lines[0], lines[0]


def test_workloads_lists_targets():
    p = feedwise("workloads")
    assert p.returncode == 0
    for name in ("mnist1d-mlp", "fashion-mnist-mlp", "fashion-mnist-simple-cnn", "mnist-simple-cnn", "cifar10-resnet-8"):
        assert name in p.stdout
    assert "0.100" in p.stdout and "0.010" in p.stdout and "0.300" in p.stdout


def test_train_writes_the_layout_and_resumes(tmp_path, data_cache):
    out = tmp_path / "run"
    p = feedwise("train", *TINY, "--out", str(out))
    assert p.returncode == 0, p.stderr
    study = json.loads((out / "study.json").read_text())
    assert study["kind"] == "train" and study["machine"]["torch_threads"] >= 1 and "threads" in study
    trial = json.loads((out / "trials/0/trial.json").read_text())
    for key in ("hparams", "seed", "budget", "status", "steps_run", "steps_to_result", "wall_s", "eval_s"):
        assert key in trial
    assert trial["status"] in ("reached", "budget") and trial["steps_run"] == 60
    lines = (out / "trials/0/measurements.csv").read_text().splitlines()
    assert lines[0].startswith("step,examples,epoch,wall_s,eval_s,train_loss,val_error")
    assert len(lines) == 4
    again = feedwise("train", *TINY, "--out", str(out))
    assert again.returncode == 0 and "already finished" in again.stderr + again.stdout
    assert json.loads((out / "trials/0/trial.json").read_text()) == trial
    other = feedwise("train", *TINY, "--lr", "0.3", "--out", str(out))
    assert_one_line_error(other, "holds a different study (train.lr")


def test_same_command_same_measurements(tmp_path, data_cache):
    def rows(out):
        import csv
        with open(out / "trials/0/measurements.csv") as f:
            return [{k: v for k, v in r.items() if k not in ("wall_s", "eval_s")} for r in csv.DictReader(f)]

    for name in ("a", "b"):
        assert feedwise("train", *TINY, "--seed", "7", "--out", str(tmp_path / name)).returncode == 0
    assert rows(tmp_path / "a") == rows(tmp_path / "b")


@pytest.mark.parametrize("args,msg", [
    (["--workload", "nope"], "unknown workload 'nope'"),
    (["--batch-size", "0"], "batch size must be positive"),
    (["--batch-size", "-3"], "batch size must be positive"),
    (["--batch-size", "100000"], "larger than the training set"),
    (["--feed", "magic"], "unknown feed 'magic'"),
    (["--label-noise", "1.5"], "label noise must be in [0, 1)"),
    (["--workload", "mnist-simple-cnn", "--data-dir", "/nonexistent/folder"], "does not exist"),
    (["--workload", "cifar10-resnet-8"], "needs --data-dir"),
])
def test_bad_input_is_one_line(tmp_path, data_cache, args, msg):
    base = TINY if "--workload" not in args else []
    assert_one_line_error(feedwise("train", *base, *args, "--out", str(tmp_path / "o")), msg)


def test_options_a_command_does_not_use_are_refused(tmp_path):
    """No silent prefix matching (--seed is not --seeds) and no accepted-but-ignored option."""
    out = str(tmp_path / "o")
    for cmd, opt in [("emphasis", "--seed"), ("emphasis", "--feed"), ("flag", "--feed")]:
        r = feedwise(cmd, opt, "3", "--out", out)
        assert r.returncode == 2 and "Traceback" not in r.stderr
        assert f"unrecognized arguments: {opt} 3" in r.stderr
    assert not (tmp_path / "o").exists()


def test_corrupt_idx_through_the_cli(tmp_path, idx_folder):
    p = idx_folder / "train-labels-idx1-ubyte.gz"
    p.write_bytes(p.read_bytes()[:20])
    r = feedwise("train", "--workload", "mnist-simple-cnn", "--data-dir", str(idx_folder), "--out", str(tmp_path / "o"))
    assert_one_line_error(r, "corrupt or truncated IDX file")


def test_out_folder_with_other_content_is_refused(tmp_path, data_cache):
    (tmp_path / "o").mkdir()
    (tmp_path / "o" / "notes.txt").write_text("mine")
    assert_one_line_error(feedwise("train", *TINY, "--out", str(tmp_path / "o")), "not empty and holds no study.json")


@pytest.mark.slow
def test_default_mnist1d_run_reaches_its_target(tmp_path):
    """The embedded default workload with its defaults reaches its target (60k generated samples)."""
    p = feedwise("train", "--workload", "mnist1d-mlp", "--out", str(tmp_path / "o"))
    assert p.returncode == 0, p.stderr
    t = json.loads((tmp_path / "o/trials/0/trial.json").read_text())
    assert t["status"] == "reached" and t["steps_to_result"] <= 4000


@pytest.mark.slow
@pytest.mark.skipif(not FASHION.is_dir(), reason="Debian's dataset-fashion-mnist is not installed")
def test_fashion_mnist_mlp_below_015_within_3000_steps(tmp_path):
    p = feedwise("train", "--workload", "fashion-mnist-mlp", "--target", "0.15", "--steps", "3000",
                 "--out", str(tmp_path / "o"))
    assert p.returncode == 0, p.stderr
    t = json.loads((tmp_path / "o/trials/0/trial.json").read_text())
    assert t["status"] == "reached" and t["steps_to_result"] <= 3000 and t["best_val_error"] < 0.15
