"""Hostile paths and environments, and the CLI's ways out (issues 13 and 19).

Every failure is one line on stderr and a non-zero exit, never a traceback, and nothing finished is
lost: --out under a file, too long, under /proc, on a read-only file system; a disk that fills up
during a trial or during Optuna's bookkeeping; the results folder deleted mid-run; an internal
error (exit 3, traceback in a log file); Ctrl-C at any moment; a mistyped option value."""

import errno
import json
import os
import resource
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from feedwise.errors import FeedwiseError, environment_error

TINY = ["--num-samples", "2000", "--steps", "60", "--eval-every", "20", "--batch-size", "32"]


def feedwise(*args, env_extra=None, **kw):
    env = {**os.environ, "FEEDWISE_QUIET": "1", **(env_extra or {})}
    return subprocess.run([sys.executable, "-m", "feedwise.cli", *args], capture_output=True, text=True, env=env, **kw)


def one_line(stderr: str) -> str:
    lines = [l for l in stderr.strip().splitlines() if l.strip()]
    assert len(lines) == 1 and "Traceback" not in stderr, stderr
    return lines[0]


def _mount_prefix() -> list[str] | None:
    """A command prefix giving a private mount namespace (root: unshare -m; else a user namespace)."""
    if not shutil.which("unshare"):
        return None
    for prefix in (["unshare", "-m"], ["unshare", "-r", "-m"]):
        probe = subprocess.run([*prefix, "sh", "-c", "d=$(mktemp -d) && mount -t tmpfs -o size=64k tmpfs $d"],
                               capture_output=True)
        if probe.returncode == 0:
            return prefix
    return None


MOUNT = _mount_prefix()
needs_mount = pytest.mark.skipif(MOUNT is None, reason="cannot mount a tmpfs here (no unshare/mount namespace)")


def in_namespace(script: str, cwd) -> subprocess.CompletedProcess:
    """Run a shell script in a private mount namespace (its mounts vanish with it)."""
    env = {**os.environ, "FEEDWISE_QUIET": "1", "PY": sys.executable}
    return subprocess.run([*MOUNT, "sh", "-c", script], capture_output=True, text=True, env=env, cwd=cwd, timeout=600)


# --------------------------------------------------------------------------- paths
@pytest.mark.parametrize("out,msg", [
    ("{tmp}/afile/run", "a part of the path is a file, not a folder"),
    ("{tmp}/afile", "exists and is not a folder"),
    ("{tmp}/" + "x" * 300 + "/run", "file name too long"),
    ("/proc/feedwise-run", "does not exist"),
])
def test_an_impossible_out_is_one_line(tmp_path, data_cache, out, msg):
    (tmp_path / "afile").write_text("a file, not a folder")
    out = out.format(tmp=tmp_path)
    p = feedwise("train", *TINY, "--out", out)
    assert p.returncode == 2 and msg in one_line(p.stderr), p.stderr


@needs_mount
def test_a_read_only_file_system(tmp_path, data_cache):
    """A new study on a read-only mount is refused in one line; a finished study on one still answers
    (nothing to write) and its report is refused in one line."""
    assert feedwise("train", *TINY, "--out", str(tmp_path / "done")).returncode == 0
    script = f"""
        mkdir -p ro && mount -t tmpfs -o ro,size=1m tmpfs ro || exit 90
        $PY -m feedwise.cli train {' '.join(TINY)} --out ro/run 2> new.err; echo $? > new.rc
        mount --bind done done && mount -o remount,ro,bind done || exit 91
        $PY -m feedwise.cli train {' '.join(TINY)} --out done > again.out 2> again.err; echo $? > again.rc
        $PY -m feedwise.cli report done 2> report.err; echo $? > report.rc
    """
    r = in_namespace(script, tmp_path)
    assert r.returncode == 0, r.stderr
    rd = lambda name: (tmp_path / name).read_text()  # noqa: E731
    assert rd("new.rc").strip() == "2" and "read-only file system" in one_line(rd("new.err"))
    assert rd("again.rc").strip() == "0" and "already finished" in rd("again.out")
    assert rd("report.rc").strip() == "2" and "read-only file system" in one_line(rd("report.err"))


def test_a_read_only_folder_injected(tmp_path, data_cache, monkeypatch, capsys):
    """The same without a mount: EROFS injected into every file created under --out."""
    from feedwise.cli import main

    out = tmp_path / "ro"
    real_open, real_mkdir = os.open, os.mkdir

    def refuse(real):
        def f(path, *a, **k):
            if str(path).startswith(str(out)):
                raise OSError(errno.EROFS, os.strerror(errno.EROFS), str(path))
            return real(path, *a, **k)
        return f

    monkeypatch.setattr(os, "open", refuse(real_open))
    monkeypatch.setattr(os, "mkdir", refuse(real_mkdir))
    assert main(["train", *TINY, "--out", str(out)]) == 2
    assert "read-only file system" in one_line(capsys.readouterr().err)
    assert not out.exists()


# --------------------------------------------------------------------------- full disk
@needs_mount
def test_a_disk_that_fills_up_during_a_trial_and_during_tuning(tmp_path, data_cache):
    """On a 24 kB tmpfs the measurements of a long run fill the disk; on a 160 kB one Optuna's SQLite
    storage fills it during the tuning (here, with optuna 5.1) (Optuna then raised ``AssertionError: Should not reach.``). One line each, exit 2;
    with room again, the same command finishes and no finished trial is rewritten."""
    emph = ("emphasis --num-samples 2000 --batch-size 32 --steps 200 --eval-every 10 --methods uniform,spv "
            "--seeds 1 --tune 2")
    script = f"""
        mkdir -p small tiny && mount -t tmpfs -o size=24k tmpfs tiny && mount -t tmpfs -o size=160k tmpfs small || exit 90
        $PY -m feedwise.cli train --num-samples 2000 --batch-size 32 --steps 3000 --eval-every 10 --no-stop \
            --out tiny/run 2> train.err; echo $? > train.rc
        cp -a tiny/run train-after
        $PY -m feedwise.cli {emph} --out small/run 2> tune.err; echo $? > tune.rc
        cp -a small/run tune-after
        mount -o remount,size=8m small || exit 91
        $PY -m feedwise.cli {emph} --out small/run > resume.out 2> resume.err; echo $? > resume.rc
        cp -a small/run resume-after
    """
    r = in_namespace(script, tmp_path)
    assert r.returncode == 0, r.stderr
    rd = lambda name: (tmp_path / name).read_text()  # noqa: E731
    assert rd("train.rc").strip() == "2"
    assert "measurements.csv: no space left on the device" in one_line(rd("train.err"))
    t = json.loads((tmp_path / "train-after/trials/0/trial.json").read_text())
    assert t["status"] == "running" and (tmp_path / "train-after/study.json").exists()

    assert rd("tune.rc").strip() == "2", rd("tune.err")
    line = one_line(rd("tune.err"))
    assert "no space left" in line or "disk is full" in line, line
    assert rd("resume.rc").strip() == "0", rd("resume.err")
    before = {p.parent.name: p.read_bytes() for p in (tmp_path / "tune-after/trials").glob("*/trial.json")
              if json.loads(p.read_text()).get("best_ckpt_test_error", "absent") != "absent"}
    after = {p.parent.name: p.read_bytes() for p in (tmp_path / "resume-after/trials").glob("*/trial.json")}
    assert all(after[k] == v for k, v in before.items())   # finished before the disk filled: kept as they were
    assert (tmp_path / "resume-after/summary.json").exists()
    assert not list((tmp_path / "resume-after").rglob("*.tmp"))   # no temp file left behind by the failures


def test_a_file_size_limit_during_a_trial(tmp_path, data_cache, tiny):
    """Without a mount: the kernel refuses writes past RLIMIT_FSIZE (EFBIG) - one line, exit 2."""
    def limit():
        resource.setrlimit(resource.RLIMIT_FSIZE, (8192, 8192))

    p = subprocess.run([sys.executable, "-m", "feedwise.cli", "train", "--num-samples", "2000", "--batch-size", "32",
                        "--steps", "3000", "--eval-every", "10", "--no-stop", "--out", str(tmp_path / "run")],
                       capture_output=True, text=True, env={**os.environ, "FEEDWISE_QUIET": "1"}, preexec_fn=limit)
    assert p.returncode == 2
    assert "measurements.csv: file too large" in one_line(p.stderr)
    assert json.loads((tmp_path / "run/trials/0/trial.json").read_text())["status"] == "running"


def test_optunas_assertion_hides_a_full_disk_and_is_still_one_line():
    """What Optuna raises when its storage cannot record a trial's end: the cause is down the chain."""
    import sqlite3

    try:
        try:
            try:
                raise sqlite3.OperationalError("database or disk is full")
            except sqlite3.OperationalError as e:
                raise RuntimeError("(sqlite3.OperationalError) database or disk is full [SQL: UPDATE trials]") from e
        except RuntimeError:
            assert False, "Should not reach."
    except AssertionError as e:
        msg = environment_error(e, out="runs/x")
    assert msg == "the Optuna storage (runs/x/study.db) cannot be written: database or disk is full"
    assert environment_error(KeyError("a bug")) is None


def test_a_failed_plot_leaves_no_empty_png(tmp_path, monkeypatch):
    from feedwise.report import plots

    fig, ax = plots.figure()
    ax.plot([1, 2], [3, 4])

    def full(*a, **k):
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))

    monkeypatch.setattr(fig, "savefig", full)
    with pytest.raises(FeedwiseError, match=r"curve.png: no space left on the device"):
        plots.save(fig, tmp_path / "curve.png")
    assert list(tmp_path.iterdir()) == []


# --------------------------------------------------------------------------- folder deleted mid-run
@pytest.mark.parametrize("command", ["emphasis", "subset", "batch-size"])
def test_the_results_folder_deleted_mid_run(tmp_path, data_cache, monkeypatch, capsys, command):
    """Before, batch-size and subset crashed and emphasis recreated the folder and wrote a summary
    without study.json. Now: one line, exit 2, and nothing is written there again."""
    import feedwise.studies.batch_size.run as bs
    import feedwise.studies.emphasis.run as em
    import feedwise.studies.subset.run as su
    from feedwise.cli import main

    out = tmp_path / "run"
    module = {"emphasis": em, "subset": su, "batch-size": bs}[command]
    orig, calls = module.run_trial, []

    def run_trial(trial, *a, **k):
        calls.append(trial.id)
        if len(calls) == 2:
            shutil.rmtree(out)
        return orig(trial, *a, **k)

    monkeypatch.setattr(module, "run_trial", run_trial)
    args = {"emphasis": ["--methods", "uniform,spv", "--seeds", "1", "--steps", "40", "--eval-every", "20"],
            "subset": ["--acquisitions", "random", "--fractions", "0.5", "--ensemble", "1x1", "--budgets", "steps",
                       "--steps", "40"],
            "batch-size": ["--batch-sizes", "32,64", "--trials", "1", "--steps", "40", "--eval-every", "20"]}
    base = ["--num-samples", "2000"] + ([] if command == "batch-size" else ["--batch-size", "32"])
    assert main([command, *base, *args[command], "--out", str(out)]) == 2
    line = one_line(capsys.readouterr().err)
    assert str(out) in line and ("does not exist" in line or "lost its study.json" in line
                                 or "cannot be written" in line), line
    assert not out.exists()


# --------------------------------------------------------------------------- internal errors
def test_an_internal_error_is_one_line_exit_3_and_a_log(tmp_path, data_cache, monkeypatch, capsys):
    import feedwise.studies.train.run as train
    from feedwise.cli import main

    out = tmp_path / "run"
    assert main(["train", *TINY, "--out", str(out)]) == 0
    capsys.readouterr()

    def broken(*a, **k):
        raise ZeroDivisionError("injected bug")

    monkeypatch.setattr(train, "train_study", broken)
    assert main(["train", *TINY, "--out", str(out)]) == 3
    line = one_line(capsys.readouterr().err)
    assert line.startswith("feedwise: internal error") and "ZeroDivisionError: injected bug" in line
    assert line.endswith(f"traceback in {out / 'error.log'}")
    log = (out / "error.log").read_text()
    assert "Traceback (most recent call last)" in log and "injected bug" in log

    # no study folder yet: the log goes to a temp file, and the --out is left alone
    assert main(["train", *TINY, "--out", str(tmp_path / "new")]) == 3
    line = one_line(capsys.readouterr().err)
    where = Path(line.rsplit("traceback in ", 1)[1])
    try:
        assert where.name.startswith("feedwise-error-") and "injected bug" in where.read_text()
        assert not (tmp_path / "new").exists()
    finally:
        where.unlink()


# --------------------------------------------------------------------------- Ctrl-C
@pytest.mark.parametrize("delay", [0.4, 1.0])
def test_ctrl_c_while_importing_is_one_line(tmp_path, data_cache, delay):
    """Ctrl-C in the first seconds used to print a 40-56 line traceback (it came before main's try)."""
    p = subprocess.Popen([sys.executable, "-m", "feedwise.cli", "train", *TINY, "--out", str(tmp_path / "o")],
                         stderr=subprocess.PIPE, stdout=subprocess.PIPE, text=True,
                         env={**os.environ, "FEEDWISE_QUIET": "1"})
    time.sleep(delay)
    p.send_signal(signal.SIGINT)
    _, err = p.communicate(timeout=120)
    assert p.returncode == 130 and one_line(err).startswith("feedwise: interrupted"), err


def test_ctrl_c_during_training_says_what_happens_next(tmp_path, data_cache, tiny):
    out = tmp_path / "o"
    p = subprocess.Popen([sys.executable, "-m", "feedwise.cli", "train", "--num-samples", "2000", "--batch-size", "32",
                          "--steps", "1000000", "--eval-every", "50", "--out", str(out)],
                         stderr=subprocess.PIPE, stdout=subprocess.PIPE, text=True,
                         env={**os.environ, "FEEDWISE_QUIET": "1"})
    rows = out / "trials/0/measurements.csv"
    deadline = time.time() + 120
    while time.time() < deadline and not (rows.exists() and len(rows.read_text().splitlines()) > 2):
        time.sleep(0.2)
    p.send_signal(signal.SIGINT)
    _, err = p.communicate(timeout=120)
    assert p.returncode == 130
    assert one_line(err) == ("feedwise: interrupted; if trial 0 had not finished, re-running the same command "
                             "starts it again from step 0")
    assert json.loads((out / "trials/0/trial.json").read_text())["status"] == "running"


def test_a_ctrl_c_that_a_library_swallows_still_stops_with_130(tmp_path, monkeypatch, capsys):
    """A Ctrl-C during `report` was sometimes swallowed (exit 0)."""
    import feedwise.report.page as html
    from feedwise.cli import main

    def swallowing(*a, **k):
        try:
            os.kill(os.getpid(), signal.SIGINT)
            time.sleep(1)
        except KeyboardInterrupt:
            pass   # what a careless library does
        return tmp_path / "index.html"

    monkeypatch.setattr(html, "build_report", swallowing)
    assert main(["report", str(tmp_path)]) == 130
    assert capsys.readouterr().err.strip().startswith("feedwise: interrupted; the report may be incomplete")


def test_a_ctrl_c_that_an_extension_turns_into_an_import_error_is_still_an_interrupt(tmp_path, monkeypatch, capsys):
    """Ctrl-C landing inside a C extension's module init (scipy's pybind11 HiGHS wrapper) surfaced as
    'internal error: ImportError: initialization failed' with exit 3 (seen once in 60 runs)."""
    import feedwise.report.page as html
    from feedwise.cli import main

    def failing_import(*a, **k):
        try:
            os.kill(os.getpid(), signal.SIGINT)
            time.sleep(1)
        except KeyboardInterrupt:
            raise ImportError("initialization failed") from None
        return tmp_path / "index.html"

    monkeypatch.setattr(html, "build_report", failing_import)
    assert main(["report", str(tmp_path)]) == 130
    assert capsys.readouterr().err.strip().startswith("feedwise: interrupted; the report may be incomplete")


# --------------------------------------------------------------------------- argparse
@pytest.mark.parametrize("args,line", [
    (["train", "--batch-size", "x"], "feedwise: error: argument --batch-size: not an integer: 'x' "
                                     "(see feedwise train --help)"),
    (["emphasis", "--seeds", "two"], "feedwise: error: argument --seeds: invalid int value: 'two' "
                                     "(see feedwise emphasis --help)"),
    (["train", "--bogus", "3", "--out", "o"], "feedwise: error: unrecognized arguments: --bogus 3 (see feedwise train --help)"),
    (["nope"], "feedwise: error: argument COMMAND: invalid choice: 'nope'"),
])
def test_a_mistyped_option_is_one_line_and_where_help_is(capsys, args, line):
    from feedwise.cli import main

    assert main(args) == 2   # argparse's exit becomes main's return code (library callers get no SystemExit)
    err = capsys.readouterr().err
    assert one_line(err).startswith(line), err


# --------------------------------------------------------------------------- report robustness
@pytest.fixture(scope="module")
def emphasis_study(tmp_path_factory, data_cache):
    from feedwise.cli import main

    out = tmp_path_factory.mktemp("emph") / "run"
    assert main(["emphasis", *TINY, "--methods", "uniform,spv", "--seeds", "1", "--out", str(out)]) == 0
    return out


def test_report_without_summary_is_a_page_saying_so(emphasis_study, tmp_path, capsys):
    from feedwise.cli import main

    d = tmp_path / "nosummary"
    shutil.copytree(emphasis_study, d)
    (d / "summary.json").unlink()
    assert main(["report", str(d)]) == 0
    assert "No summary.json in" in (d / "report/index.html").read_text()


@pytest.mark.parametrize("damage,msg", [(lambda b: b[: len(b) // 2], "corrupt JSON file"),
                                        (lambda b: b"[]", "holds a list")])
def test_report_on_a_damaged_summary_is_one_line(emphasis_study, tmp_path, capsys, damage, msg):
    from feedwise.cli import main

    d = tmp_path / "damaged"
    shutil.copytree(emphasis_study, d)
    (d / "summary.json").write_bytes(damage((d / "summary.json").read_bytes()))
    assert main(["report", str(d)]) == 2
    line = one_line(capsys.readouterr().err)
    assert msg in line and str(d / "summary.json") in line


def test_a_resume_over_an_emptied_measurements_file_is_one_line(emphasis_study, tmp_path, capsys):
    from feedwise.cli import main

    d = tmp_path / "emptied"
    shutil.copytree(emphasis_study, d)
    m = d / "trials/spv-s0/measurements.csv"
    m.write_text(m.read_text().splitlines()[0] + "\n")
    assert main(["emphasis", *TINY, "--methods", "uniform,spv", "--seeds", "1", "--out", str(d)]) == 2
    line = one_line(capsys.readouterr().err)
    assert f"damaged results file {m}" in line


def test_report_of_an_unbounded_amdahl_limit(tmp_path):
    """A scale-out projection with no serial part: Amdahl's limit is inf, written as null."""
    from feedwise.parallel.perfmodel import AlphaBeta, ComputeModel, project
    from feedwise.studies.scale_out.report import _projection_section
    from feedwise.results import read_json, write_json

    proj = project(ComputeModel(0.0, 1e-6), AlphaBeta(1e-5, 1e-9), 256, 4e5, 100, [1, 2, 4])
    proj.update({"measured_world_size": 2, "measured_comm_s_per_step": 1e-4, "threads_per_worker": 1,
                 "predicted_comm_s_per_step_at_measured": 1e-4, "assumptions": ["loopback"]})
    write_json(tmp_path / "p.json", proj)
    proj = read_json(tmp_path / "p.json")
    assert proj["amdahl_max_speedup"] is None
    section = _projection_section(proj, [], "x", tmp_path)
    assert "could speed up without bound" in section.markdown


def test_main_gives_a_library_caller_its_signal_handler_and_unraisable_hook_back(capsys):
    from feedwise.cli import main

    def mine(unraisable):
        pass

    before_hook, before_handler = sys.unraisablehook, signal.getsignal(signal.SIGINT)
    sys.unraisablehook = mine
    try:
        assert main(["workloads"]) == 0
        assert sys.unraisablehook is mine and signal.getsignal(signal.SIGINT) is before_handler
    finally:
        sys.unraisablehook = before_hook
