"""Several processes on one results folder, and resumed tuning.

Issue 13: two identical `emphasis` or `subset` runs on one --out both ran every trial and glued
their rows into measurements.csv. Now each trial is claimed: every trial runs once, every
measurements.csv is well-formed, and the summary is the one a single process writes.
Issue 19: `emphasis --tune` repeated learning rates after a resume."""

import math
import os
import re
import subprocess
import sys
import textwrap
from collections import Counter

import pytest

from feedwise.results import StudyDir, read_json

TINY = ["--num-samples", "2000", "--batch-size", "32", "--threads", "1"]
COMMANDS = {
    "emphasis": ["emphasis", *TINY, "--methods", "uniform,spv,wpv", "--seeds", "2", "--steps", "60",
                 "--eval-every", "20"],
    "subset": ["subset", *TINY, "--acquisitions", "entropy,random", "--fractions", "0.5", "--ensemble", "2x2",
               "--seeds", "2", "--budgets", "steps", "--steps", "40", "--acq-steps", "20"],
    "train": ["train", *TINY, "--steps", "100", "--eval-every", "20", "--no-stop"],
    "flag": ["flag", *TINY, "--steps", "60", "--eval-every", "20"],
}
# logs every trial this process trains ("<pid> <trial id>"), then runs the CLI
RUNNER = textwrap.dedent("""
    import os, sys
    import feedwise.studies.common as common
    from feedwise.studies.emphasis import run as emphasis
    from feedwise.studies.flag import run as flag
    from feedwise.studies.subset import run as subset
    from feedwise.studies.train import run as train
    orig = common.run_trial
    def logged(trial, *a, **k):
        with open(os.environ["RUN_LOG"], "a") as f:
            f.write(f"{os.getpid()} {trial.id}\\n")
        return orig(trial, *a, **k)
    for m in (emphasis, flag, subset, train):
        m.run_trial = logged
    from feedwise.cli import main
    sys.exit(main(sys.argv[1:]))
""")


def _timing(key: str) -> bool:
    """wall_s, eval_s, wall_s_mean, s_per_step, seconds, ...: measured times differ from run to run."""
    return re.search(r"(^|_)(s|seconds)(_|$)", key) is not None


def assert_same(a, b, where="summary"):
    """Equal up to float tolerance (two processes need not sum in the same order), timings aside."""
    if isinstance(a, dict):
        assert isinstance(b, dict) and set(a) == set(b), (where, sorted(set(a) ^ set(b)))
        for k in a:
            if not _timing(k):
                assert_same(a[k], b[k], f"{where}.{k}")
    elif isinstance(a, list):
        assert isinstance(b, list) and len(a) == len(b), where
        for i, (x, y) in enumerate(zip(a, b)):
            assert_same(x, y, f"{where}[{i}]")
    elif isinstance(a, float) and isinstance(b, float):
        assert math.isclose(a, b, rel_tol=1e-6, abs_tol=1e-9), (where, a, b)
    else:
        assert a == b, (where, a, b)


@pytest.mark.parametrize("command", list(COMMANDS))
def test_two_processes_on_one_folder_run_each_trial_once(tmp_path, data_cache, command):
    from feedwise.cli import main

    runner = tmp_path / "runner.py"
    runner.write_text(RUNNER)
    out, log = tmp_path / "shared", tmp_path / "runs.log"
    env = {**os.environ, "FEEDWISE_QUIET": "1", "RUN_LOG": str(log)}
    args = [*COMMANDS[command], "--out", str(out)]
    procs = [subprocess.Popen([sys.executable, str(runner), *args], env=env, stdout=subprocess.PIPE,
                              stderr=subprocess.PIPE, text=True) for _ in range(2)]
    results = [p.communicate(timeout=600) for p in procs]
    for p, (o, e) in zip(procs, results):
        assert p.returncode == 0, e
        assert "Traceback" not in e

    runs = Counter(line.split()[1] for line in log.read_text().splitlines())
    study = StudyDir(out)
    trials = {t.id for t in study.trials()}
    assert set(runs) == trials and all(n == 1 for n in runs.values()), runs   # each trial trained exactly once
    for t in study.trials():
        rec = t.read()
        assert rec["status"] in ("reached", "budget"), (t.id, rec["status"])
        rows = t.measurements()   # checks the rows against trial.json: a glued or truncated file fails here
        lines = (t.path / "measurements.csv").read_text().splitlines()
        assert len(lines) == len(rows) + 1 and rows[-1]["step"] == rec["steps_run"]

    single = tmp_path / "single"
    assert main([*COMMANDS[command], "--out", str(single)]) == 0
    assert_same(read_json(single / "summary.json"), read_json(out / "summary.json"))


# --------------------------------------------------------------------------- resumed tuning
TUNE = ["emphasis", *TINY, "--methods", "uniform", "--seeds", "1", "--steps", "40", "--eval-every", "20",
        "--tune", "3"]


def _tuning(out):
    """Per position: the parameters Optuna completed it with, and the trial folder's."""
    import optuna

    st = optuna.load_study(study_name="tune-uniform", storage=f"sqlite:///{out / 'study.db'}")
    done = {t.user_attrs.get("position", t.number): t.params for t in st.trials if t.state == optuna.trial.TrialState.COMPLETE}
    disk = {k: read_json(out / "trials" / f"tune-uniform-{k}" / "trial.json")["params"] for k in range(3)}
    return done, disk


@pytest.fixture(scope="module")
def uninterrupted(tmp_path_factory, data_cache):
    from feedwise.cli import main

    out = tmp_path_factory.mktemp("tune") / "straight"
    assert main([*TUNE, "--out", str(out)]) == 0
    return out


def _interrupt(monkeypatch, target: str, when: str):
    """Ctrl-C in tuning trial ``target``: ``during`` its training, or ``after`` its trial.json is written."""
    from feedwise.studies.emphasis import run as emphasis

    trained = []
    orig_run, orig_one = emphasis.run_trial, emphasis.run_one
    state = {"fired": False}

    def run_trial(trial, *a, callbacks=(), **k):
        trained.append(trial.id)

        def ctrl_c(trainer, row):
            if when == "during" and trial.id == target and not state["fired"]:
                state["fired"] = True
                raise KeyboardInterrupt
        return orig_run(trial, *a, callbacks=[*callbacks, ctrl_c], **k)

    def run_one(study, *a, **k):
        rec = orig_one(study, *a, **k)
        if when == "after" and rec["id"] == target and not state["fired"]:
            state["fired"] = True
            raise KeyboardInterrupt
        return rec

    monkeypatch.setattr(emphasis, "run_trial", run_trial)
    monkeypatch.setattr(emphasis, "run_one", run_one)
    return trained


@pytest.mark.parametrize("when", ["during", "after"])
def test_resumed_tuning_equals_an_uninterrupted_one(uninterrupted, tmp_path, monkeypatch, when):
    from feedwise.cli import main

    out = tmp_path / "resumed"
    trained = _interrupt(monkeypatch, "tune-uniform-1", when)
    assert main([*TUNE, "--out", str(out)]) == 130
    del trained[:]
    assert main([*TUNE, "--out", str(out)]) == 0
    straight, resumed = _tuning(uninterrupted), _tuning(out)
    assert_same(straight, resumed)                # the same parameters at every position, in Optuna and on disk
    assert straight[0] == straight[1]
    assert len({p["lr"] for p in resumed[0].values()}) == 3   # no position repeats another's draw
    if when == "after":   # its trial.json had finished: reconciled with Optuna, not trained again
        assert "tune-uniform-1" not in trained
    else:
        assert trained[0] == "tune-uniform-1"     # restarted at its own position
    assert_same(read_json(uninterrupted / "summary.json")["tuned"], read_json(out / "summary.json")["tuned"])


def test_tuning_trials_send_heartbeats(uninterrupted):
    import sqlite3

    with sqlite3.connect(uninterrupted / "study.db") as db:
        beats = db.execute("SELECT count(*) FROM trial_heartbeats").fetchone()[0]
    assert beats >= 3
