"""Several `feedwise batch-size` workers share one Optuna study on a real PostgreSQL server.

The server is started here from the distribution's binaries (Debian: the ``postgresql``
package); nothing is installed by the test. Without the binaries, or when the server cannot
start, the tests skip with the reason.

The cluster lives in a fresh folder under the system temp dir and listens on a unix socket in
that folder only (no TCP), on a free port number, with ``trust`` authentication. As root (CI),
``initdb``/``postgres`` refuse to run, so they run as the ``postgres`` system user (created by
the Debian package) and the folder is handed to that user.
"""


from __future__ import annotations

import glob
import os
import shutil
import socket
import subprocess
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path


class Unavailable(RuntimeError):
    pass


def find_bin() -> Path | None:
    for d in sorted(glob.glob("/usr/lib/postgresql/*/bin"), key=lambda p: int(p.split("/")[-2]) if p.split("/")[-2].isdigit() else 0,
                    reverse=True):
        if os.access(os.path.join(d, "initdb"), os.X_OK) and os.access(os.path.join(d, "pg_ctl"), os.X_OK):
            return Path(d)
    initdb = shutil.which("initdb")
    if initdb and shutil.which("pg_ctl"):
        return Path(initdb).parent
    return None


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@dataclass
class Server:
    root: Path
    port: int
    bin: Path
    user_kwargs: dict

    @property
    def url(self) -> str:
        """SQLAlchemy URL (what Optuna's RDBStorage and ``--storage`` take)."""
        return f"postgresql+psycopg2://feedwise@/feedwise?host={self.root}&port={self.port}"

    def new_database(self, name: str) -> str:
        """Create database ``name``, create Optuna's schema in it (as a deployment does once,
        before starting workers: two workers creating the schema at the same instant collide
        on ``CREATE TYPE``), and return its SQLAlchemy URL."""
        import psycopg2

        con = psycopg2.connect(dbname="postgres", user="feedwise", host=str(self.root), port=self.port)
        con.autocommit = True
        with con.cursor() as cur:
            cur.execute(f'CREATE DATABASE "{name}"')
        con.close()
        url = f"postgresql+psycopg2://feedwise@/{name}?host={self.root}&port={self.port}"
        storage(url)
        return url

    def stop(self) -> None:
        subprocess.run([str(self.bin / "pg_ctl"), "-D", str(self.root / "data"), "-m", "immediate", "-w", "stop"],
                       capture_output=True, timeout=60, **self.user_kwargs)
        shutil.rmtree(self.root, ignore_errors=True)


def start() -> Server:
    bindir = find_bin()
    if bindir is None:
        raise Unavailable("PostgreSQL server binaries (initdb, pg_ctl) not found; on Debian: apt-get install postgresql")
    try:
        import psycopg2
    except ImportError:
        raise Unavailable("psycopg2 is not installed (pip install psycopg2-binary, or the 'postgres' extra)") from None
    user_kwargs: dict = {}
    root = Path(tempfile.mkdtemp(prefix="feedwise-pg-"))
    if os.geteuid() == 0:
        import pwd

        try:
            pw = pwd.getpwnam("postgres")
        except KeyError:
            shutil.rmtree(root, ignore_errors=True)
            raise Unavailable("running as root and there is no 'postgres' user to run the server as") from None
        os.chown(root, pw.pw_uid, pw.pw_gid)
        user_kwargs = {"user": pw.pw_uid, "group": pw.pw_gid, "extra_groups": [], "cwd": str(root)}
    server = Server(root, _free_port(), bindir, user_kwargs)
    run = lambda *cmd, **kw: subprocess.run([str(c) for c in cmd], capture_output=True, text=True,  # noqa: E731
                                            timeout=120, **user_kwargs, **kw)
    p = run(bindir / "initdb", "-D", root / "data", "-U", "feedwise", "--auth=trust", "-E", "UTF8", "--no-sync",
            "--no-instructions")
    if p.returncode != 0:
        shutil.rmtree(root, ignore_errors=True)
        raise Unavailable(f"initdb failed: {(p.stderr or p.stdout).strip().splitlines()[-1:]}")
    opts = (f"-p {server.port} -k {root} -c listen_addresses='' -c fsync=off -c synchronous_commit=off "
            f"-c full_page_writes=off -c max_connections=100 -c shared_buffers=16MB")
    p = run(bindir / "pg_ctl", "-D", root / "data", "-l", root / "server.log", "-w", "-t", "60", "-o", opts, "start")
    if p.returncode != 0:
        log = (root / "server.log").read_text(errors="replace") if (root / "server.log").exists() else p.stderr
        shutil.rmtree(root, ignore_errors=True)
        raise Unavailable(f"the PostgreSQL server did not start: {log.strip().splitlines()[-1:] or p.stdout}")
    deadline = time.monotonic() + 30
    while True:
        try:
            con = psycopg2.connect(dbname="postgres", user="feedwise", host=str(root), port=server.port)
            break
        except psycopg2.OperationalError as e:
            if time.monotonic() > deadline:
                server.stop()
                raise Unavailable(f"cannot connect to the test server: {e}") from None
            time.sleep(0.2)
    con.autocommit = True
    with con.cursor() as cur:
        cur.execute("CREATE DATABASE feedwise")
    con.close()
    return server


# ------------------------------------------------------------------------------------- tests
import json  # noqa: E402
import signal  # noqa: E402
import sys  # noqa: E402

import pytest  # noqa: E402


@pytest.fixture(scope="module")
def pg():
    try:
        server = start()
    except Unavailable as e:
        pytest.skip(str(e))
    yield server
    for st in _STORAGES.values():
        st.engine.dispose()
    _STORAGES.clear()
    server.stop()


def worker_cmd(url: str, out: Path, trials: int, batch: int, steps: int = 80) -> list[str]:
    return [sys.executable, "-m", "feedwise.cli", "batch-size", "--num-samples", "2000", "--batch-sizes", str(batch),
            "--trials", str(trials), "--max-steps", str(steps), "--eval-every", "40", "--ref-batch", "0",
            "--target", "1e-9", "--storage", url, "--heartbeat", "1", "--threads", "1", "--out", str(out)]


def start_workers(cmd: list[str], n: int) -> list[subprocess.Popen]:
    env = {**os.environ, "FEEDWISE_QUIET": "1"}
    return [subprocess.Popen(cmd, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
            for _ in range(n)]


_STORAGES: dict = {}


def storage(url: str):
    """One Optuna storage (one connection pool) per URL for the whole test module."""
    import optuna

    optuna.logging.set_verbosity(optuna.logging.WARNING)
    if url not in _STORAGES:
        _STORAGES[url] = optuna.storages.RDBStorage(url)
    return _STORAGES[url]


def storage_trials(url: str, batch: int):
    import optuna

    try:
        return optuna.load_study(study_name=f"bs{batch}", storage=storage(url)).get_trials(deepcopy=False)
    except KeyError:  # not created yet
        return []


def folders(out: Path) -> dict[str, dict]:
    base = out / "trials"
    return {p.name: json.loads((p / "trial.json").read_text()) for p in sorted(base.iterdir())
            if (p / "trial.json").exists()} if base.is_dir() else {}


def check_each_trial_ran_once(url: str, out: Path, batch: int) -> list:
    """One folder per Optuna trial and one Optuna trial per folder; distinct QMC points."""
    trials = storage_trials(url, batch)
    numbers = [t.number for t in trials]
    assert len(numbers) == len(set(numbers))
    dirs = folders(out)
    assert set(dirs) <= {f"b{batch}-{n}" for n in numbers}
    finished = [t for t in trials if t.state.name in ("COMPLETE", "PRUNED")]
    for t in trials:
        tid = f"b{batch}-{t.number}"
        if tid not in dirs:   # a worker killed between Optuna's ask and the trial's first write
            assert t.state.name in ("FAIL", "RUNNING"), t
            continue
        assert dirs[tid]["optuna"]["number"] == t.number and dirs[tid]["batch_size"] == batch
    points = [tuple(sorted(dirs[f"b{batch}-{t.number}"]["search_params"].items())) for t in finished]
    assert len(points) == len(set(points)), "a metaparameter point was trained twice"
    return trials


def test_two_workers_finish_the_study_together(pg, tmp_path, tiny):
    url, out, asked = pg.new_database("two_workers"), tmp_path / "bs", 4
    procs = start_workers(worker_cmd(url, out, asked, 32), 2)
    outs = [p.communicate(timeout=240) for p in procs]
    for p, (o, e) in zip(procs, outs):
        assert p.returncode == 0, e[-2000:]
    trials = check_each_trial_ran_once(url, out, 32)
    finished = [t for t in trials if t.state.name in ("COMPLETE", "PRUNED")]
    # the asked number, counted across both workers; a worker that asked for its last trial while
    # the other was finishing one may add one more (documented overshoot: one per extra worker)
    assert asked <= len(finished) <= asked + 1
    assert all(t.state.name in ("COMPLETE", "PRUNED") for t in trials)
    assert all(rec["status"] in ("budget", "reached", "pruned") for rec in folders(out).values())
    # both workers trained: some trials ran at the same time
    spans = sorted((t.datetime_start, t.datetime_complete) for t in finished)
    assert any(b[0] < a[1] for a, b in zip(spans, spans[1:])), "the two workers never ran trials concurrently"
    summary = json.loads((out / "summary.json").read_text())
    assert summary["kind"] == "batch-size"


def test_killing_a_worker_loses_nothing_finished(pg, tmp_path, tiny):
    """A worker process finishes trials and is killed (SIGKILL) inside its next one; another
    worker then completes the study, and a later one marks the dead worker's trial FAIL. The
    later workers run the same command inside this process (no interpreter start-up)."""
    import torch

    from feedwise.cli import main

    url, out, asked, batch = pg.new_database("kill_one"), tmp_path / "bs", 4, 32
    cmd = worker_cmd(url, out, asked, batch, steps=1500)   # trials of about a second
    threads = torch.get_num_threads()
    (victim,) = start_workers(cmd, 1)
    try:
        deadline = time.monotonic() + 180
        while True:   # two finished trials, and inside a third one for a while (its heartbeat is sent)
            trials = storage_trials(url, batch)
            done = [t for t in trials if t.state.name in ("COMPLETE", "PRUNED")]
            running = {t.number for t in trials if t.state.name == "RUNNING"}
            if len(done) >= 2 and running:
                time.sleep(0.3)
                if running <= {t.number for t in storage_trials(url, batch) if t.state.name == "RUNNING"}:
                    break
            assert victim.poll() is None, "the worker ended before the kill: " + victim.communicate()[1][-2000:]
            assert time.monotonic() < deadline, "the worker did not get going in time"
            time.sleep(0.05)
        before = {f"b{batch}-{t.number}": folders(out)[f"b{batch}-{t.number}"] for t in done}
        victim.send_signal(signal.SIGKILL)
        victim.wait(timeout=30)
        killed_at = time.monotonic()
        assert main(cmd[3:]) == 0   # another worker completes the study
        # a worker started once the dead one's trial has had no heartbeat for 3 s (heartbeat 1 s)
        # marks it FAIL and its folder 'unfinished'; nothing is left to run
        time.sleep(max(0.0, killed_at + 3.5 - time.monotonic()))
        assert main(cmd[3:]) == 0
    finally:
        if victim.poll() is None:
            victim.kill()
        torch.set_num_threads(threads)
    trials = check_each_trial_ran_once(url, out, batch)
    states = {f"b{batch}-{t.number}": t.state.name for t in trials}
    after = folders(out)
    for tid, rec in before.items():   # nothing that had finished was lost or redone
        assert after[tid] == rec and states[tid] in ("COMPLETE", "PRUNED")
    finished = [t for t, s in states.items() if s in ("COMPLETE", "PRUNED")]
    assert len(finished) == asked    # one worker at a time: exactly the asked number
    killed = [f"b{batch}-{n}" for n in running]
    assert [states[t] for t in killed] == ["FAIL"], states      # the trial the dead worker was running
    assert all(after[t]["status"] == "unfinished" for t in killed if t in after)
    assert set(states.values()) <= {"COMPLETE", "PRUNED", "FAIL"}
