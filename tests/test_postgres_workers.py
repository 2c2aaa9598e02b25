"""Several `feedwise batch-size` workers share one Optuna study on a real PostgreSQL server.

The server is started here from the distribution's binaries (Debian: the ``postgresql``
package); nothing is installed by the test. Without the binaries, or when the server cannot
start, the tests skip with the reason.

The cluster lives in a fresh folder under the system temp dir and listens on a unix socket in
that folder only (no TCP), on a free port number, with ``trust`` authentication. As root (CI),
``initdb``/``postgres`` refuse to run, so they run as the ``postgres`` system user (created by
the Debian package) and the folder is handed to that user.

Every ``--storage`` URL here is the docs' form, ``postgresql://USER@/DB?host=DIR&port=PORT``
(no driver named: feedwise opens it with psycopg 3, the ``postgres``/``test`` extra).
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
    opts: str = ""

    def db_url(self, name: str, password: str | None = None) -> str:
        """The ``--storage`` URL of database ``name``, exactly in the form the docs show
        (``postgresql://USER@/DB?host=SOCKET_DIR&port=PORT``; with trust authentication a
        password is accepted and ignored)."""
        user = f"feedwise:{password}" if password else "feedwise"
        return f"postgresql://{user}@/{name}?host={self.root}&port={self.port}"

    @property
    def url(self) -> str:
        return self.db_url("feedwise")

    def new_database(self, name: str) -> str:
        """Create database ``name``, create Optuna's schema in it (as a deployment does once,
        before starting workers: two workers creating the schema at the same instant collide
        on ``CREATE TYPE``; the docs' one-liner), and return its ``--storage`` URL."""
        import psycopg

        with psycopg.connect(dbname="postgres", user="feedwise", host=str(self.root), port=self.port,
                             autocommit=True) as con:
            con.execute(f'CREATE DATABASE "{name}"')
        url = self.db_url(name)
        storage(url)
        return url

    def pg_ctl(self, *args: str, timeout: float = 60) -> subprocess.CompletedProcess:
        return subprocess.run([str(self.bin / "pg_ctl"), "-D", str(self.root / "data"), *args], capture_output=True,
                              text=True, timeout=timeout, **self.user_kwargs)

    def halt(self) -> None:
        """Stop the server (fast shutdown: open connections are cut), keeping its data."""
        p = self.pg_ctl("-m", "fast", "-w", "stop")
        assert p.returncode == 0, p.stderr

    def resume(self) -> None:
        p = self.pg_ctl("-l", str(self.root / "server.log"), "-w", "-t", "60", "-o", self.opts, "start")
        assert p.returncode == 0, p.stderr

    def stop(self) -> None:
        self.pg_ctl("-m", "immediate", "-w", "stop")
        shutil.rmtree(self.root, ignore_errors=True)


def start() -> Server:
    bindir = find_bin()
    if bindir is None:
        raise Unavailable("PostgreSQL server binaries (initdb, pg_ctl) not found; on Debian: apt-get install postgresql")
    try:
        import psycopg
    except ImportError:
        raise Unavailable("psycopg 3 is not installed (pip install 'feedwise[postgres]')") from None
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
    server.opts = opts
    p = run(bindir / "pg_ctl", "-D", root / "data", "-l", root / "server.log", "-w", "-t", "60", "-o", opts, "start")
    if p.returncode != 0:
        log = (root / "server.log").read_text(errors="replace") if (root / "server.log").exists() else p.stderr
        shutil.rmtree(root, ignore_errors=True)
        raise Unavailable(f"the PostgreSQL server did not start: {log.strip().splitlines()[-1:] or p.stdout}")
    deadline = time.monotonic() + 30
    while True:
        try:
            con = psycopg.connect(dbname="postgres", user="feedwise", host=str(root), port=server.port,
                                  autocommit=True)
            break
        except psycopg.OperationalError as e:
            if time.monotonic() > deadline:
                server.stop()
                raise Unavailable(f"cannot connect to the test server: {e}") from None
            time.sleep(0.2)
    with con:
        con.execute("CREATE DATABASE feedwise")
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
            "--trials", str(trials), "--steps", str(steps), "--eval-every", "40", "--ref-batch", "0",
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
    from feedwise.studies.batch_size.storage import normalize_url

    if url not in _STORAGES:
        _STORAGES[url] = optuna.storages.RDBStorage(normalize_url(url))
    return _STORAGES[url]


def storage_trials(url: str, batch: int):
    """The trials of the (one) feedwise study of batch size ``batch`` in a database."""
    import optuna

    names = [s.study_name for s in optuna.study.get_all_study_summaries(storage(url))
             if s.study_name.startswith(f"feedwise-bs{batch}-")]
    if not names:   # not created yet
        return []
    (name,) = names
    return optuna.load_study(study_name=name, storage=storage(url)).get_trials(deepcopy=False)


def folders(out: Path) -> dict[str, dict]:
    base = out / "trials"
    return {p.name: json.loads((p / "trial.json").read_text()) for p in sorted(base.iterdir())
            if (p / "trial.json").exists()} if base.is_dir() else {}


def check_each_trial_ran_once(url: str, out: Path, batch: int, asked: int) -> list:
    """One folder per trained Optuna trial and one Optuna trial per folder; the finished trials
    are exactly the Sobol points 0..asked-1, each once (no overshoot, no point twice)."""
    trials = storage_trials(url, batch)
    numbers = [t.number for t in trials]
    assert len(numbers) == len(set(numbers))
    dirs = folders(out)
    assert set(dirs) <= {f"b{batch}-{n}" for n in numbers}
    finished = [t for t in trials if t.state.name in ("COMPLETE", "PRUNED")]
    for t in trials:
        tid = f"b{batch}-{t.number}"
        if tid not in dirs:   # lost a race for its point (skipped, trained nothing), or killed before its folder
            assert t.state.name in ("FAIL", "RUNNING"), t
            continue
        assert dirs[tid]["optuna"]["number"] == t.number and dirs[tid]["batch_size"] == batch
        assert dirs[tid]["point"] == t.user_attrs["point"]
    assert sorted(t.user_attrs["point"] for t in finished) == list(range(asked))
    points = [tuple(sorted(dirs[f"b{batch}-{t.number}"]["search_params"].items())) for t in finished]
    assert len(points) == len(set(points)), "a metaparameter point was trained twice"
    return trials


def test_two_workers_finish_the_study_together(pg, tmp_path, tiny):
    url, out, asked = pg.new_database("two_workers"), tmp_path / "bs", 4
    procs = start_workers(worker_cmd(url, out, asked, 32), 2)
    outs = [p.communicate(timeout=240) for p in procs]
    for p, (o, e) in zip(procs, outs):
        assert p.returncode == 0, e[-2000:]
    trials = check_each_trial_ran_once(url, out, 32, asked)
    finished = [t for t in trials if t.state.name in ("COMPLETE", "PRUNED")]
    # exactly the asked points across both workers; the only other trials lost a race for a point
    assert len(finished) == asked
    assert all(t.state.name in ("COMPLETE", "PRUNED") or "feedwise_skipped" in t.user_attrs for t in trials)
    assert all(rec["status"] in ("budget", "reached", "pruned") for rec in folders(out).values())
    # both workers trained: some trials ran at the same time
    spans = sorted((t.datetime_start, t.datetime_complete) for t in finished)
    assert any(b[0] < a[1] for a, b in zip(spans, spans[1:])), "the two workers never ran trials concurrently"
    summary = json.loads((out / "summary.json").read_text())
    assert summary["kind"] == "batch-size" and summary["batch_sizes"][0]["points"] == list(range(asked))


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
        # as if the dead worker had run on another machine (a worker of this host whose process is
        # gone is failed at once, tests/test_batch_size.py): only its silent heartbeat tells
        for n in running:
            rec_path = out / "trials" / f"b{batch}-{n}" / "trial.json"
            if rec_path.exists():
                rec = json.loads(rec_path.read_text())
                rec_path.write_text(json.dumps({**rec, "worker": {**rec.get("worker", {}), "host": "another-host"}}))
        # another worker completes the study: it trains the missing points, waits for the dead
        # worker's point until its trial has had no heartbeat for 3 s (heartbeat 1 s), marks it
        # FAIL and its folder 'unfinished', and trains that point again
        assert main(cmd[3:]) == 0
        assert time.monotonic() - killed_at >= 3
        assert main(cmd[3:]) == 0   # nothing is left to run
    finally:
        if victim.poll() is None:
            victim.kill()
        torch.set_num_threads(threads)
    trials = check_each_trial_ran_once(url, out, batch, asked)
    states = {f"b{batch}-{t.number}": t.state.name for t in trials}
    after = folders(out)
    for tid, rec in before.items():   # nothing that had finished was lost or redone
        assert after[tid] == rec and states[tid] in ("COMPLETE", "PRUNED")
    finished = [t for t, s in states.items() if s in ("COMPLETE", "PRUNED")]
    assert len(finished) == asked    # exactly the asked points: the dead worker's point was trained again
    killed = [f"b{batch}-{n}" for n in running]
    assert [states[t] for t in killed] == ["FAIL"], states      # the trial the dead worker was running
    assert all(after[t]["status"] == "unfinished" for t in killed if t in after)
    assert set(states.values()) <= {"COMPLETE", "PRUNED", "FAIL"}


def test_documented_url_password_and_two_studies_on_one_database(pg, tmp_path, tiny, capsys):
    """The docs' ``postgresql://USER:PASS@/DB?host=...&port=...`` works as given (psycopg 3); the
    password is in no file and no output; a second, different study on the same database trains
    its own points (it neither reuses nor prunes against the first's trials)."""
    from feedwise.cli import main

    pg.new_database("shared")
    secret = "s3cret-pw-7"
    url = pg.db_url("shared", password=secret)
    assert url.startswith("postgresql://feedwise:")   # the plain scheme: no driver named
    args = ["batch-size", "--num-samples", "2000", "--batch-sizes", "32", "--trials", "2", "--steps", "80",
            "--eval-every", "40", "--ref-batch", "0", "--target", "1e-9", "--storage", url, "--threads", "1"]
    (a,) = start_workers([sys.executable, "-m", "feedwise.cli", *args, "--out", str(tmp_path / "a")], 1)
    a_out, a_err = a.communicate(timeout=240)   # a real command line: sys.argv goes to study.json
    assert a.returncode == 0, a_err[-2000:]
    assert main([*args, "--seed", "5", "--out", str(tmp_path / "b")]) == 0
    printed = capsys.readouterr()
    assert secret not in printed.out + printed.err + a_out + a_err
    for p in tmp_path.rglob("*"):
        if p.is_file():
            assert secret.encode() not in p.read_bytes(), p
    study = json.loads((tmp_path / "a" / "study.json").read_text())
    assert "feedwise:***@" in study["storage"] and any("feedwise:***@" in c for c in study["command"])
    import optuna

    names = sorted(s.study_name for s in optuna.study.get_all_study_summaries(storage(pg.db_url("shared"))))
    fps = [json.loads((tmp_path / d / "study.json").read_text())["fingerprint"] for d in ("a", "b")]
    assert names == sorted(f"feedwise-bs32-{fp[:12]}" for fp in fps) and fps[0] != fps[1]
    for d in ("a", "b"):
        s = json.loads((tmp_path / d / "summary.json").read_text())
        assert s["batch_sizes"][0]["points"] == [0, 1] and s["batch_sizes"][0]["trials_by_status"] == {"budget": 2}


def _wait_for(cond, proc, timeout=180.0, what=""):
    deadline = time.monotonic() + timeout
    while not cond():
        assert proc.poll() is None, f"the worker ended before {what}: " + proc.communicate()[1][-2000:]
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        time.sleep(0.05)


def test_worker_survives_a_short_server_restart(pg, tmp_path, tiny):
    """The server stops (fast shutdown, connections cut) for 3 s mid-trial and starts again: the
    worker retries its storage calls and finishes the study, no traceback, nothing lost."""
    url, out, asked, batch = pg.new_database("restart"), tmp_path / "bs", 3, 32
    (worker,) = start_workers(worker_cmd(url, out, asked, batch, steps=1500), 1)
    try:
        _wait_for(lambda: any(t.state.name in ("COMPLETE", "PRUNED") for t in storage_trials(url, batch))
                  and any(t.state.name == "RUNNING" for t in storage_trials(url, batch)), worker, what="a trial")
        for st in _STORAGES.values():   # this test's own pool: its connections die with the server
            st.engine.dispose()
        pg.halt()
        time.sleep(3)
        pg.resume()
        _, err = worker.communicate(timeout=240)
    finally:
        if worker.poll() is None:
            worker.kill()
    assert worker.returncode == 0, err[-3000:]
    assert "Traceback" not in err and "error" not in err.lower(), err[-3000:]
    check_each_trial_ran_once(url, out, batch, asked)
    assert all(r["status"] in ("budget", "reached", "pruned") for r in folders(out).values())


def test_a_long_outage_ends_in_one_line_and_the_study_resumes(pg, tmp_path, tiny):
    """Past --storage-retry the worker stops with one line (no traceback); with the server back,
    the same command resumes: the interrupted point is trained again."""
    from feedwise.cli import main

    url, out, asked, batch = pg.new_database("outage"), tmp_path / "bs", 3, 32
    cmd = worker_cmd(url, out, asked, batch, steps=1500) + ["--storage-retry", "2"]
    (worker,) = start_workers(cmd, 1)
    try:
        _wait_for(lambda: any(t.state.name == "RUNNING" for t in storage_trials(url, batch))
                  and any(r["status"] == "running" for r in folders(out).values()), worker, what="a trial")
        for st in _STORAGES.values():
            st.engine.dispose()
        pg.halt()
        try:
            _, err = worker.communicate(timeout=120)
        finally:
            pg.resume()
    finally:
        if worker.poll() is None:
            worker.kill()
    lines = [ln for ln in err.splitlines() if ln.strip()]
    assert worker.returncode == 2 and len(lines) == 1, err[-3000:]
    assert lines[0].startswith("feedwise: error: storage postgresql+psycopg://feedwise@/outage?") \
        and "unreachable for 2 s" in lines[0], lines[0]
    time.sleep(3.5)   # the dead trial's heartbeat is stale (3 x 1 s): the next run takes its point over
    import torch

    threads = torch.get_num_threads()
    try:
        assert main(cmd[3:]) == 0
    finally:
        torch.set_num_threads(threads)
    check_each_trial_ran_once(url, out, batch, asked)
    assert sorted(r["status"] for r in folders(out).values()).count("unfinished") == 1
