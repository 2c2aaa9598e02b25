"""The batch-size study on tiny real runs: exact steps-to-result, pruning, resume, CLI."""

import csv
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from feedwise.cli import main
from feedwise.errors import FeedwiseError
from feedwise.studies.batch_size.run import (BatchSizeRequest, Budget, load_space_file, resolve_space,
                                         run_batch_size_study, summarize)
from feedwise.studies.train.run import DataOptions
from feedwise.workloads import get_workload

TINY = DataOptions(num_samples=2000)
SRC = str(Path(__file__).resolve().parents[1] / "src")


def csv_steps_to_result(study: Path, target: float) -> dict:
    """Independent of the library: min over trials of the first step with val_error < target."""
    best = {}
    for t in (study / "trials").iterdir():
        b = json.loads((t / "trial.json").read_text())["batch_size"]
        best.setdefault(b, None)
        with open(t / "measurements.csv") as f:
            for row in csv.DictReader(f):
                if row["val_error"] not in ("", "nan") and float(row["val_error"]) < target:
                    s = int(row["step"])
                    best[b] = s if best[b] is None else min(best[b], s)
                    break
    return best


def finished_optuna(out: Path, storage: str | None = None) -> dict:
    """``{batch size: {state: [trial numbers]}}`` of the feedwise studies in a storage, plus
    ``points`` (the Sobol points of the finished trials) and ``skipped`` (trials that trained nothing)."""
    import optuna
    from optuna.trial import TrialState

    optuna.logging.set_verbosity(optuna.logging.WARNING)
    storage = storage or f"sqlite:///{out / 'study.db'}"
    res = {}
    for s in optuna.study.get_all_study_summaries(storage):
        if not s.study_name.startswith("feedwise-bs"):
            continue
        st = optuna.load_study(study_name=s.study_name, storage=storage)
        trials = st.get_trials()
        b = st.user_attrs["batch_size"]
        assert b not in res, "two storage studies for one batch size"
        res[b] = {state.name: [t.number for t in trials if t.state == state]
                  for state in (TrialState.COMPLETE, TrialState.PRUNED, TrialState.FAIL, TrialState.RUNNING,
                                TrialState.WAITING)}
        res[b]["points"] = sorted(t.user_attrs["point"] for t in trials
                                  if t.state in (TrialState.COMPLETE, TrialState.PRUNED))
        res[b]["skipped"] = [t.number for t in trials if "feedwise_skipped" in t.user_attrs]
        res[b]["name"] = s.study_name
    return res


def test_search_space_defaults_overrides_and_errors(tmp_path):
    w = get_workload("mnist1d-mlp")
    sp = resolve_space(w.search_space, None, "momentum")
    assert set(sp) == {"lr", "one_minus_momentum", "end_factor", "decay_fraction"}
    assert "one_minus_momentum" not in resolve_space(w.search_space, None, "sgd")
    sp = resolve_space(w.search_space, {"lr": [0.01, 1], "end_factor": 1.0}, "momentum")
    assert sp["lr"] == [0.01, 1.0] and sp["end_factor"] == 1.0
    with pytest.raises(FeedwiseError, match="unknown search-space parameter 'momentum'"):
        resolve_space(w.search_space, {"momentum": [0.5, 0.9]}, "momentum")
    with pytest.raises(FeedwiseError, match="log-scaled"):
        resolve_space(w.search_space, {"lr": [0.0, 1.0]}, "momentum")
    with pytest.raises(FeedwiseError, match="below high"):
        resolve_space(w.search_space, {"lr": [1.0, 0.1]}, "momentum")
    y = tmp_path / "space.yaml"
    y.write_text("lr: [0.02, 2.0]\ndecay_fraction: 0.75\n")
    assert load_space_file(y) == {"lr": [0.02, 2.0], "decay_fraction": 0.75}
    j = tmp_path / "space.json"
    j.write_text(json.dumps({"warmup": [1, 2]}))
    # unknown name from a file is a one-line CLI error (exit 2), before anything runs
    assert main(["batch-size", "--space", str(j), "--num-samples", "2000", "--out", str(tmp_path / "o")]) == 2
    assert not (tmp_path / "o").exists()


def test_budget_scales_steps_and_eval_period():
    b = Budget(max_steps=1000, ref_batch=256, eval_every=25, min_eval_every=10)
    assert [b.steps(x) for x in (16, 64, 256, 4096)] == [16000, 4000, 1000, 1000]
    assert [b.eval_period(x) for x in (16, 64, 256, 1024)] == [400, 100, 25, 10]
    assert Budget(max_steps=500, ref_batch=0, eval_every=20).steps(16) == 500


def test_real_study_summary_pruning_and_resume(tmp_path, data_cache):
    out = tmp_path / "bs"
    # a tiny space around a good point: several trials reach the target, later ones get pruned
    space = {"lr": [0.05, 0.3], "one_minus_momentum": [0.05, 0.3], "end_factor": 1.0, "decay_fraction": 1.0}
    req = BatchSizeRequest(workload="mnist1d-mlp", batch_sizes=[64, 256], trials=4, optimizer="momentum",
                           target=0.6, budget=Budget(max_steps=300, ref_batch=0, eval_every=10), seed=1,
                           space=space, data=TINY)
    s = run_batch_size_study(req, out, threads=1, device="cpu", order="given")   # points in Optuna-number order
    assert json.loads((out / "summary.json").read_text())["curve"] == s["curve"]
    # the exact definition, recomputed from the CSV files alone
    by_b = {e["batch_size"]: e for e in s["batch_sizes"]}
    assert {b: e["steps_to_result"] for b, e in by_b.items()} == csv_steps_to_result(out, 0.6)
    assert all(e["steps_to_result"] is not None for e in by_b.values())
    opt = finished_optuna(out)
    for b, e in by_b.items():
        st = opt[b]
        assert len(st["COMPLETE"]) + len(st["PRUNED"]) == 4 and not st["RUNNING"]
        assert st["points"] == [0, 1, 2, 3] == e["points"] and st["name"].startswith(f"feedwise-bs{b}-")
        assert sum(e["trials_by_status"].values()) == e["trials"] == 4
        assert e["best_effective_lr"] == pytest.approx(e["best_lr"] / (1 - e["best_momentum"]))
    # trial.json records the Optuna trial and batch size; pruned trials stopped exactly
    pruned = 0
    for t in (out / "trials").iterdir():
        rec = json.loads((t / "trial.json").read_text())
        b, num = rec["batch_size"], rec["optuna"]["number"]
        assert t.name == f"b{b}-{num}" and rec["optuna"]["study"] == opt[b]["name"] and rec["point"] == num
        if rec["status"] == "pruned":
            pruned += 1
            best = by_b[b]["steps_to_result"]
            assert rec["steps_run"] < rec["budget"]["steps"]
            assert rec["steps_run"] + rec["budget"]["eval_every"] >= best
        if rec["status"] == "reached":
            assert rec["steps_to_result"] >= by_b[b]["steps_to_result"]
    assert pruned >= 1
    pr = s["pruning"]
    assert pr["examples_processed"] == sum(e["examples_processed"] for e in by_b.values())
    assert pr["examples_processed"] < pr["examples_unpruned"] and pr["fraction_saved"] > 0
    # the exact-pruning floor: what the best order could have processed; this run cannot be below it
    assert 0 < pr["examples_floor"] <= pr["examples_processed"]
    assert pr["floor_fraction"] == pytest.approx(pr["examples_floor"] / pr["examples_unpruned"])
    # summary is recomputable from files
    assert summarize(out)["curve"] == s["curve"]

    # resume: nothing is re-run
    before = {p.name: p.stat().st_mtime_ns for p in (out / "trials").glob("*/trial.json")}
    s2 = run_batch_size_study(req, out, threads=1, device="cpu")
    after = {p.name: p.stat().st_mtime_ns for p in (out / "trials").glob("*/trial.json")}
    assert s2["curve"] == s["curve"] and before == after
    # more trials for one batch size: only the missing ones run
    req.trials, req.batch_sizes = 5, [64]
    run_batch_size_study(req, out, threads=1, device="cpu")
    opt = finished_optuna(out)
    assert opt[64]["points"] == [0, 1, 2, 3, 4] and opt[256]["points"] == [0, 1, 2, 3]
    # a different study in the same folder is refused
    req.optimizer = "sgd"
    with pytest.raises(FeedwiseError, match="different study"):
        run_batch_size_study(req, out, threads=1, device="cpu")


SPACE_YAML = "lr: [2e-2, 0.5]\none_minus_momentum: [5e-2, 0.5]\nend_factor: 1\ndecay_fraction: 1\n"


def kill_args(tmp_path: Path, out: Path) -> list[str]:
    """A study of a few seconds whose best point at B=128 (point 3, 80 steps) beats point 0 (160)."""
    space = tmp_path / "space.yaml"
    space.write_text(SPACE_YAML)   # exponents without a dot: PyYAML reads them as strings
    return ["batch-size", "--workload", "mnist1d-mlp", "--num-samples", "2000", "--batch-sizes", "128",
            "--trials", "4", "--target", "0.55", "--steps", "400", "--ref-batch", "0", "--eval-every", "20",
            "--space", str(space), "--seed", "3", "--threads", "1", "--heartbeat", "1", "--out", str(out)]


def by_point(out: Path) -> dict:
    """``{point: (status, steps_run, steps_to_result)}`` of the finished trials."""
    res = {}
    for p in out.glob("trials/*/trial.json"):
        r = json.loads(p.read_text())
        if r["status"] in ("reached", "budget", "pruned", "diverged"):
            assert r["point"] not in res, "a point finished twice"
            res[r["point"]] = (r["status"], r["steps_run"], r["steps_to_result"])
    return res


@pytest.fixture(scope="module")
def uninterrupted(tmp_path_factory, data_cache):
    tmp = tmp_path_factory.mktemp("uninterrupted")
    assert main(kill_args(tmp, tmp / "o")) == 0
    return json.loads((tmp / "o" / "summary.json").read_text()), by_point(tmp / "o")


@pytest.mark.parametrize("sig", [signal.SIGINT, signal.SIGKILL], ids=["ctrl-c", "sigkill"])
def test_interrupted_study_resumes_to_the_uninterrupted_answer(tmp_path, data_cache, uninterrupted, sig):
    """A real Ctrl-C / SIGKILL inside a trial, then the same command: the interrupted point is
    trained again, so the evaluated points, each point's outcome and the steps-to-result equal
    the uninterrupted run's (same process count and threads: same-machine determinism), and the
    interrupted attempt's examples are counted on top."""
    ref_summary, ref_points = uninterrupted
    out = tmp_path / "killed"
    args = kill_args(tmp_path, out)
    env = {**os.environ, "FEEDWISE_QUIET": "1", "PYTHONPATH": SRC + os.pathsep + os.environ.get("PYTHONPATH", "")}
    proc = subprocess.Popen([sys.executable, "-m", "feedwise.cli", *args], env=env, stdout=subprocess.DEVNULL,
                            stderr=subprocess.PIPE)
    killed_dir, deadline = None, time.time() + 150
    while time.time() < deadline and killed_dir is None and proc.poll() is None:
        time.sleep(0.01)
        recs = {}
        for t in out.glob("trials/*/trial.json"):
            try:
                recs[t.parent] = json.loads(t.read_text())
            except (json.JSONDecodeError, OSError):
                pass
        done = [p for p, r in recs.items() if r["status"] != "running"]
        running = [p for p, r in recs.items() if r["status"] == "running"
                   and len((p / "measurements.csv").read_text().splitlines()) >= 2]
        if done and running:
            killed_dir = running[0]
            os.kill(proc.pid, sig)
    _, err = proc.communicate(timeout=60)
    assert killed_dir is not None, err.decode()[-2000:]
    killed_point = json.loads((killed_dir / "trial.json").read_text())["point"]
    if sig == signal.SIGINT:   # Ctrl-C: one line, the trial failed and its folder is unfinished at once
        assert proc.returncode == 130 and "Traceback" not in err.decode(), err.decode()[-2000:]
        assert json.loads((killed_dir / "trial.json").read_text())["status"] == "unfinished"
    else:                      # SIGKILL: the next run sees the dead worker's pid is gone (this host) and fails its trial
        assert proc.returncode == -signal.SIGKILL
        assert json.loads((killed_dir / "trial.json").read_text())["status"] == "running"
        time.sleep(3.5)
    finished_before = {p.parent.name: p.read_bytes() for p in out.glob("trials/*/trial.json")
                       if json.loads(p.read_text())["status"] != "running" and p.parent != killed_dir}
    assert main(args) == 0     # the same command resumes (in this process, to spare an interpreter start-up)

    killed = json.loads((killed_dir / "trial.json").read_text())
    assert killed["status"] == "unfinished" and killed["examples"] > 0
    assert killed["examples"] == killed["steps_run"] * 128
    for name, raw in finished_before.items():   # finished folders are never rewritten
        assert (out / "trials" / name / "trial.json").read_bytes() == raw
    assert by_point(out) == ref_points and sorted(ref_points) == [0, 1, 2, 3]
    assert killed_point in ref_points
    s = json.loads((out / "summary.json").read_text())
    assert s["curve"] == ref_summary["curve"] and s["curve"]["128"] is not None
    assert s["batch_sizes"][0]["points"] == [0, 1, 2, 3]
    assert s["batch_sizes"][0]["trials_by_status"]["unfinished"] == 1
    pr, ref = s["pruning"], ref_summary["pruning"]
    assert pr["unfinished_trials"] == 1 and pr["examples_unfinished"] == killed["examples"]
    assert pr["examples_processed"] == ref["examples_processed"] + killed["examples"]
    assert pr["examples_unpruned"] == ref["examples_unpruned"] + killed["examples"]
    assert s["knee"] == ref_summary["knee"]
    opt = finished_optuna(out)[128]
    assert opt["points"] == [0, 1, 2, 3] and not opt["RUNNING"] and not opt["WAITING"]
    assert killed["optuna"]["number"] in opt["FAIL"]


def test_two_workers_share_one_study(tmp_path, data_cache):
    """A worker process and this test process share one study through the SQLite storage."""
    out = tmp_path / "shared"
    cmd = [sys.executable, "-m", "feedwise.cli", "batch-size", "--workload", "mnist1d-mlp", "--num-samples", "2000",
           "--batch-sizes", "32", "--trials", "4", "--target", "0.01", "--steps", "500", "--ref-batch", "0",
           "--eval-every", "50", "--threads", "1", "--out", str(out)]
    env = {**os.environ, "FEEDWISE_QUIET": "1", "PYTHONPATH": SRC + os.pathsep + os.environ.get("PYTHONPATH", "")}
    other = subprocess.Popen(cmd, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    deadline = time.time() + 90
    while not (out / "study.db").exists() and time.time() < deadline and other.poll() is None:
        time.sleep(0.05)
    req = BatchSizeRequest(workload="mnist1d-mlp", batch_sizes=[32], trials=4, optimizer="momentum", target=0.01,
                           budget=Budget(max_steps=500, ref_batch=0, eval_every=50, min_eval_every=10), data=TINY)
    run_batch_size_study(req, out, threads=1, device="cpu")
    other.wait(timeout=120)
    assert other.returncode == 0, other.stderr.read().decode()[-2000:]
    opt = finished_optuna(out)[32]
    finished = opt["COMPLETE"] + opt["PRUNED"]
    # exactly the points 0..3, each trained once, across both workers (no overshoot)
    assert opt["points"] == [0, 1, 2, 3] and not opt["RUNNING"] and not opt["WAITING"]
    assert set(opt["FAIL"]) == set(opt["skipped"])    # the only failures: trials that lost a race, untrained
    recs = [json.loads(p.read_text()) for p in out.glob("trials/*/trial.json")]
    assert sorted(r["optuna"]["number"] for r in recs) == sorted(finished)
    assert sorted(r["point"] for r in recs) == [0, 1, 2, 3]
    assert {r["worker"]["pid"] for r in recs} == {other.pid, os.getpid()}     # both workers trained
    assert len({r["search_params"]["lr"] for r in recs}) == len(recs)   # no QMC point drawn twice
    # both workers waited for the other's last point: the summary each wrote last is complete
    assert json.loads((out / "summary.json").read_text())["batch_sizes"][0]["points"] == [0, 1, 2, 3]


def test_concurrent_trials_train_exactly_like_serial_ones(tmp_path, data_cache):
    """--jobs runs trials in threads: same Sobol point and same training per point (one process)."""
    def run(jobs):
        req = BatchSizeRequest(workload="mnist1d-mlp", batch_sizes=[64], trials=3, optimizer="momentum",
                               target=1e-9, budget=Budget(max_steps=60, ref_batch=0, eval_every=20), seed=2,
                               space={"lr": [0.01, 0.3], "one_minus_momentum": [0.05, 0.5]}, data=TINY)
        run_batch_size_study(req, tmp_path / f"j{jobs}", threads=1, device="cpu", jobs=jobs)
        out = {}
        for t in (tmp_path / f"j{jobs}" / "trials").iterdir():
            rec = json.loads((t / "trial.json").read_text())
            with open(t / "measurements.csv") as f:
                rows = [(int(r["step"]), float(r["train_loss"]), float(r["val_error"])) for r in csv.DictReader(f)]
            out[rec["point"]] = (rec["search_params"], rec["status"], rows)
        return out

    serial, threaded = run(1), run(3)
    assert sorted(serial) == sorted(threaded) == [0, 1, 2]
    assert len({json.dumps(v[0], sort_keys=True) for v in serial.values()}) == 3   # three distinct QMC points
    for n in serial:
        assert serial[n][0] == threaded[n][0] and serial[n][1] == threaded[n][1] == "budget"
        for a, b in zip(serial[n][2], threaded[n][2]):
            assert a[0] == b[0] and a[1] == pytest.approx(b[1], rel=1e-5) and a[2] == pytest.approx(b[2], abs=1e-9)
