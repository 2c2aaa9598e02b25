"""The results folder: atomic writes (and their file mode), exclusive creation of study.json under
concurrency, trial claims, and damaged files read back as one error naming the file."""

import multiprocessing as mp
import os
import shutil
import signal
import stat
import time
from pathlib import Path

import numpy as np
import pytest

from feedwise.errors import FeedwiseError
from feedwise.files import (Claim, atomic_writer, read_json, read_npy, read_npz, write_bytes, write_json, write_npy,
                            write_npz, write_text)
from feedwise.results import StudyDir


# --------------------------------------------------------------------------- atomic writing
def _mode(p: Path) -> int:
    return stat.S_IMODE(p.stat().st_mode)


@pytest.mark.parametrize("umask", [0o022, 0o077, 0o002])
def test_every_atomic_writer_gives_the_mode_of_a_plain_open(tmp_path, umask):
    old = os.umask(umask)
    try:
        plain = tmp_path / "plain.txt"
        plain.write_text("x")
        write_json(tmp_path / "a.json", {"a": 1})
        write_text(tmp_path / "b.txt", "b")
        write_bytes(tmp_path / "c.bin", b"c")
        write_npy(tmp_path / "d.npy", np.arange(3))
        write_npz(tmp_path / "e.npz", x=np.arange(3))
    finally:
        os.umask(old)
    assert _mode(plain) == 0o666 & ~umask
    for name in ("a.json", "b.txt", "c.bin", "d.npy", "e.npz"):
        assert _mode(tmp_path / name) == _mode(plain), name
    assert sorted(p.name for p in tmp_path.iterdir()) == ["a.json", "b.txt", "c.bin", "d.npy", "e.npz", "plain.txt"]


def test_a_failed_atomic_write_keeps_the_old_file_and_leaves_no_temp_file(tmp_path):
    path = tmp_path / "summary.json"
    write_json(path, {"old": True})
    with pytest.raises(RuntimeError):
        with atomic_writer(path) as f:
            f.write('{"new": ')
            raise RuntimeError("stopped half-way")
    assert read_json(path) == {"old": True}
    assert [p.name for p in tmp_path.iterdir()] == ["summary.json"]


def test_a_write_into_a_deleted_folder_is_one_error_and_recreates_nothing(tmp_path):
    gone = tmp_path / "out"
    with pytest.raises(FeedwiseError, match=r"cannot write .*summary.json: the folder .*out does not exist"):
        write_json(gone / "summary.json", {})
    assert not gone.exists()


def test_arrays_round_trip_and_damaged_arrays_name_the_file(tmp_path):
    write_npy(tmp_path / "s.npy", np.arange(100))
    write_npz(tmp_path / "s.npz", a=np.arange(5), b=np.ones(3))
    assert read_npy(tmp_path / "s.npy").tolist() == list(range(100))
    assert set(read_npz(tmp_path / "s.npz")) == {"a", "b"}
    for name in ("s.npy", "s.npz"):
        data = (tmp_path / name).read_bytes()
        (tmp_path / name).write_bytes(data[: len(data) // 2])
    with pytest.raises(FeedwiseError, match=r"corrupt or truncated file .*s\.npy"):
        read_npy(tmp_path / "s.npy")
    with pytest.raises(FeedwiseError, match=r"corrupt or truncated file .*s\.npz"):
        read_npz(tmp_path / "s.npz")


@pytest.mark.parametrize("content,msg", [
    (b"[1, 2, 3]", "holds a list, not a JSON object"),
    (b'{"kind": "train", "con', "corrupt JSON file"),
    (bytes(range(256)), "corrupt JSON file"),
    (b"", "corrupt JSON file"),
])
def test_damaged_json_is_one_error_naming_the_file(tmp_path, content, msg):
    (tmp_path / "study.json").write_bytes(content)
    with pytest.raises(FeedwiseError, match=msg) as e:
        read_json(tmp_path / "study.json")
    assert str(tmp_path / "study.json") in str(e.value) and "\n" not in str(e.value)
    with pytest.raises(FeedwiseError, match=msg):   # opening the folder as a study reads it the same way
        StudyDir(tmp_path).open("train", {"a": 1})


# --------------------------------------------------------------------------- study.json under concurrency
def _open_after(barrier, out, kind, config, q):
    try:
        barrier.wait()
        StudyDir(out).open(kind, config)
        q.put((kind, "ok"))
    except FeedwiseError as e:
        q.put((kind, str(e)))
    except BaseException as e:  # pragma: no cover - shows up as a failure below
        q.put((kind, f"unexpected {type(e).__name__}: {e}"))


def test_processes_opening_one_folder_at_once_agree_on_one_study(tmp_path):
    """Issue 13: the check-then-write of study.json let two studies into one folder (1-2 in 10 tries).
    Now study.json is created exclusively: whatever the start order, exactly one kind is accepted,
    every process asking for the same study joins it and every other one is refused."""
    ctx = mp.get_context("fork")
    kinds = [("train", {"lr": 0.1}), ("noise-scale", {"b": 32}), ("train", {"lr": 0.1}), ("noise-scale", {"b": 32}),
             ("train", {"lr": 0.3}), ("noise-scale", {"b": 32})]
    for rnd in range(25):
        out = tmp_path / f"o{rnd}"
        barrier, q = ctx.Barrier(len(kinds)), ctx.Queue()
        procs = [ctx.Process(target=_open_after, args=(barrier, out, k, c, q)) for k, c in kinds]
        for p in procs:
            p.start()
        results = [q.get(timeout=60) for _ in procs]
        for p in procs:
            p.join(timeout=60)
        study = read_json(out / "study.json")
        accepted = [k for k, r in results if r == "ok"]
        assert accepted and set(accepted) == {study["kind"]}, (rnd, results)
        refused = [r for _, r in results if r != "ok"]
        assert all("holds a different study" in r for r in refused), results
        # every process that asked for the winner's exact study joined it
        winners = [c for k, c in kinds if k == study["kind"] and c == study["config"]]
        assert len(accepted) == len(winners), (rnd, results)
        assert sorted(p.name for p in out.iterdir()) == ["study.json"]


def test_a_folder_with_foreign_content_is_still_refused(tmp_path):
    (tmp_path / "notes.txt").write_text("mine")
    with pytest.raises(FeedwiseError, match="not empty and holds no study.json"):
        StudyDir(tmp_path).open("train", {})


# --------------------------------------------------------------------------- claims
def _hold_forever(path, ready):
    c = Claim(path)
    assert c.acquire(wait=False)
    ready.set()
    time.sleep(600)


def test_a_claim_excludes_others_names_its_holder_and_dies_with_it(tmp_path):
    ctx = mp.get_context("fork")
    ready = ctx.Event()
    p = ctx.Process(target=_hold_forever, args=(tmp_path / "claim", ready))
    p.start()
    try:
        assert ready.wait(60)
        c = Claim(tmp_path / "claim")
        assert not c.acquire(wait=False)
        assert f"pid {p.pid} on host" in c.holder()
    finally:
        os.kill(p.pid, signal.SIGKILL)
        p.join(60)
    assert c.acquire(wait=False), "a claim held by a dead process is free again"
    assert f"pid {os.getpid()}" in c.holder()
    c.release()
    assert c.holder() == "another process"   # released: names nobody


def test_a_trial_held_elsewhere_is_never_written_into(tmp_path):
    study = StudyDir(tmp_path)
    study.open("train", {})
    mine, theirs = study.trial(0), study.trial(0)   # two holders (as two processes would be)
    assert mine.acquire(wait=False)
    with pytest.raises(FeedwiseError, match="is being run by"):
        theirs.start({"id": "0"})
    assert not (tmp_path / "trials" / "0" / "trial.json").exists()
    mine.start({"id": "0"})
    mine.add_row({"step": 1})
    mine.finish({"id": "0", "status": "budget", "steps_run": 1})
    mine.release()
    assert theirs.acquire(wait=False)


# --------------------------------------------------------------------------- damaged trial files
@pytest.fixture(scope="module")
def finished(tmp_path_factory, data_cache):
    from feedwise.engine import TrainConfig
    from feedwise.studies.train.run import DataOptions, TrainRequest, train_study

    out = tmp_path_factory.mktemp("finished") / "run"
    cfg = TrainConfig(batch_size=32, lr=0.1, max_steps=80, eval_every=20, target=0.9, stop_at_target=False)
    rec, _ = train_study(TrainRequest("mnist1d-mlp", cfg, data=DataOptions(num_samples=2000)), str(out), threads=1)
    assert rec["status"] == "reached" and rec["steps_to_result"] == 20 and rec["steps_run"] == 80
    return out


def _damage(src: Path, dst: Path, how) -> Path:
    shutil.copytree(src, dst)
    m = dst / "trials" / "0" / "measurements.csv"
    text = m.read_text()
    m.write_bytes(how(text))
    return dst


@pytest.mark.parametrize("how,msg", [
    (lambda t: b"", "it is empty"),
    (lambda t: t.splitlines()[0].encode() + b"\n", "it has no rows"),
    (lambda t: t.encode()[: len(t) - 9], "fields, the header"),                     # cut inside the last row
    (lambda t: "\n".join(t.splitlines()[:-1]).encode() + b"\n", "trial.json says steps_run"),  # a whole row lost
    (lambda t: bytes(np.random.default_rng(0).integers(0, 256, 300, dtype=np.uint8)), "damaged results file"),
    (lambda t: t.replace("\n20,", "\n20,640,", 1).encode(), "fields, the header"),   # two writers' rows glued
    (lambda t: "\n".join(l for l in t.splitlines() if not l.startswith("20,")).encode() + b"\n",
     "no row at step 20, trial.json's steps_to_result"),
])
def test_damaged_measurements_are_one_error_naming_the_file(finished, tmp_path, how, msg):
    """Issue 19: an emptied or truncated measurements.csv was trusted (the summary dropped a reached
    result, or said reached with steps_to_result null)."""
    out = _damage(finished, tmp_path / "d", how)
    with pytest.raises(FeedwiseError, match=msg) as e:
        StudyDir(out).trial(0).measurements()
    assert str(out / "trials" / "0" / "measurements.csv") in str(e.value)


def test_an_intact_trial_reads_back(finished):
    rows = StudyDir(finished).trial(0).measurements()
    assert [r["step"] for r in rows] == [20, 40, 60, 80] and rows[0]["val_error"] < 0.9
