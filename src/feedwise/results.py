"""The one results layout, read and written here only.

    <out>/study.json               what was asked (command, config, versions, machine)
    <out>/summary.json             what was found (atomic: temp file + rename)
    <out>/study.db                 Optuna storage when the study tunes
    <out>/trials/<id>/trial.json   one run
    <out>/trials/<id>/measurements.csv   one row per evaluation
    <out>/trials/<id>/claim        the run's claim: who holds it (host, pid) while it runs
    <out>/.locks/                  claims on shared steps other than trials (a subset search, a tuning)
    <out>/report/                  index.html and pictures

Re-running the same study on the same folder resumes; a folder holding a different study
is refused with a clear error. Several processes may share one folder: ``study.json`` is
created exclusively (exactly one process writes it; the others join it when they ask for the
same study or are refused), and each trial is run by the one process holding its claim.

Every file is written atomically (:func:`atomic_writer`: a temp file in the same folder,
fsync, rename) with the mode a plain ``open`` would give it (0666 minus the umask). A failed
write (full disk, read-only file system, folder deleted during the run, ...) becomes a
:class:`FeedwiseError` naming the file; a damaged file that is read (not JSON, truncated,
rows that disagree with ``trial.json``) is one naming the file too.
"""

from __future__ import annotations

import contextlib
import csv
import errno
import json
import math
import os
import platform
import secrets
import socket
import time
from pathlib import Path
from typing import IO, Any, Callable, Iterable, Iterator

from feedwise.errors import ENVIRONMENT_ERRNOS, FeedwiseError

MEASUREMENT_COLUMNS = ["step", "examples", "epoch", "wall_s", "eval_s", "train_loss", "val_error", "val_loss", "lr"]
FINISHED = ("reached", "budget", "diverged", "pruned")   # statuses of a trial that ran to its end


def _clean(obj: Any) -> Any:
    """JSON has no NaN/inf: write them as null."""
    if isinstance(obj, float):
        return obj if math.isfinite(obj) else None
    if isinstance(obj, dict):
        return {str(k): _clean(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [_clean(v) for v in obj]
    if hasattr(obj, "item") and callable(obj.item) and getattr(obj, "ndim", 1) == 0:
        return _clean(obj.item())
    if hasattr(obj, "tolist"):
        return _clean(obj.tolist())
    return obj


# --------------------------------------------------------------------------- errors of the file system
def write_error(e: OSError, path: str | Path) -> FeedwiseError:
    """A failed write as one line naming the file (and what to do where that is clear)."""
    path = Path(path)
    if e.errno == errno.ENOENT:
        missing = next((p for p in reversed(path.parents) if not p.exists()), path.parent)
        return FeedwiseError(f"cannot write {path}: the folder {missing} does not exist (deleted during the run?)")
    why = ENVIRONMENT_ERRNOS.get(e.errno, e.strerror or str(e))
    return FeedwiseError(f"cannot write {path}: {why}")


def mkdir(path: str | Path, parents: bool = False) -> Path:
    """``path.mkdir(exist_ok=True)`` with a failure as one line. Without ``parents`` a folder
    deleted during the run is not silently created again."""
    path = Path(path)
    try:
        path.mkdir(parents=parents, exist_ok=True)
    except FileExistsError:
        raise FeedwiseError(f"cannot create the folder {path}: a file of that name exists") from None
    except OSError as e:
        raise write_error(e, path) from None
    return path


# --------------------------------------------------------------------------- atomic writing
@contextlib.contextmanager
def atomic_writer(path: str | Path, binary: bool = False, newline: str | None = None) -> Iterator[IO]:
    """Yield a file whose content replaces ``path`` in one step once the block ends without error.

    The temp file sits next to ``path`` (same file system: the rename is atomic), is fsync'ed
    before the rename and is removed on any failure, so a reader sees the old file or the whole
    new one, never a part. Its mode is what ``open`` gives (0666 minus the umask), not mkstemp's
    owner-only 0600. The folder must exist (it is never created again behind a run's back)."""
    path = Path(path)
    tmp = path.with_name(f".{path.name}.{os.getpid()}-{secrets.token_hex(4)}.tmp")
    try:
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o666)
    except OSError as e:
        raise write_error(e, path) from None
    try:
        with (os.fdopen(fd, "wb") if binary else os.fdopen(fd, "w", encoding="utf-8", newline=newline)) as f:
            yield f
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except OSError as e:
        _unlink_quietly(tmp)
        raise write_error(e, path) from None
    except BaseException:
        _unlink_quietly(tmp)
        raise


def _write_new(path: Path, data: bytes) -> None:
    """Create ``path`` (it must not exist), write ``data``, fsync."""
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o666)
    try:
        view = memoryview(data)
        while view:
            view = view[os.write(fd, view):]
        os.fsync(fd)
    finally:
        os.close(fd)


def _unlink_quietly(path: Path) -> None:
    try:
        os.unlink(path)
    except OSError:
        pass


def write_text(path: str | Path, text: str) -> None:
    with atomic_writer(path) as f:
        f.write(text)


def write_bytes(path: str | Path, data: bytes) -> None:
    with atomic_writer(path, binary=True) as f:
        f.write(data)


def write_json(path: str | Path, obj: Any) -> None:
    """Write JSON atomically (NaN/inf become null)."""
    with atomic_writer(path) as f:
        json.dump(_clean(obj), f, indent=2, sort_keys=False)
        f.write("\n")


def write_npy(path: str | Path, array) -> None:
    import numpy as np

    with atomic_writer(path, binary=True) as f:
        np.save(f, array, allow_pickle=False)


def write_npz(path: str | Path, **arrays) -> None:
    import numpy as np

    with atomic_writer(path, binary=True) as f:
        np.savez(f, **arrays)


# --------------------------------------------------------------------------- reading
def read_json(path: str | Path, expect: type | None = dict) -> Any:
    """Read a JSON file; a missing or damaged one (or, by default, one not holding an object) is
    a :class:`FeedwiseError` naming the file."""
    path = Path(path)
    try:
        with open(path, encoding="utf-8") as f:
            obj = json.load(f)
    except FileNotFoundError:
        raise FeedwiseError(f"missing file {path}") from None
    except ValueError as e:   # JSONDecodeError, UnicodeDecodeError
        raise FeedwiseError(f"corrupt JSON file {path}: {_short(e)}") from None
    except OSError as e:
        raise FeedwiseError(f"cannot read {path}: {e.strerror or e}") from None
    if expect is not None and not isinstance(obj, expect):
        raise FeedwiseError(f"corrupt JSON file {path}: it holds a {type(obj).__name__}, not a JSON "
                            f"{'object' if expect is dict else expect.__name__}")
    return obj


def _short(e: Exception, n: int = 120) -> str:
    s = str(e).splitlines()[0] if str(e) else type(e).__name__
    return s if len(s) <= n else s[:n] + "..."


def read_npy(path: str | Path):
    """An array saved by :func:`write_npy`; a missing, truncated or foreign file is one line."""
    import numpy as np

    path = Path(path)
    try:
        return np.load(path, allow_pickle=False)
    except FileNotFoundError:
        raise FeedwiseError(f"missing file {path}") from None
    except (ValueError, EOFError, OSError) as e:
        raise FeedwiseError(f"corrupt or truncated file {path}: {_short(e)}") from None


def read_npz(path: str | Path) -> dict:
    """All arrays of an ``.npz`` file, loaded now (so a damaged member fails here, naming the file)."""
    import zipfile

    import numpy as np

    path = Path(path)
    try:
        with np.load(path, allow_pickle=False) as z:
            return {k: np.asarray(z[k]) for k in z.files}
    except FileNotFoundError:
        raise FeedwiseError(f"missing file {path}") from None
    except (ValueError, EOFError, OSError, KeyError, zipfile.BadZipFile) as e:
        raise FeedwiseError(f"corrupt or truncated file {path}: {_short(e)}") from None


def machine_info() -> dict:
    import torch

    info = {
        "platform": platform.platform(), "processor": platform.machine(), "python": platform.python_version(),
        "cpu_count": os.cpu_count(), "torch": torch.__version__, "torch_threads": torch.get_num_threads(),
        "cuda": torch.cuda.is_available(),
    }
    if torch.cuda.is_available():
        info["gpu"] = torch.cuda.get_device_name(0)
    try:
        from feedwise import __version__
        info["feedwise"] = __version__
    except Exception:  # pragma: no cover
        pass
    return info


# --------------------------------------------------------------------------- claims
class Claim:
    """An exclusive claim on a piece of work: ``fcntl.flock`` on a small file that names the
    holder (host, pid, since when). The kernel drops the lock when the holder ends, however it
    ends, so a claim left by a dead process is free again (stale claims are reclaimed by
    themselves). Re-entrant within one object; two objects (or processes) exclude each other."""

    def __init__(self, path: str | Path):
        self.path = Path(path)
        self._fd: int | None = None
        self._depth = 0

    @property
    def held(self) -> bool:
        return self._depth > 0

    def acquire(self, wait: bool = True) -> bool:
        """Take the claim; without ``wait``, return False at once when another holds it."""
        if self._depth:
            self._depth += 1
            return True
        import fcntl

        try:
            fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o666)
        except OSError as e:
            if e.errno not in (errno.EROFS, errno.EACCES) or not self.path.exists():
                raise write_error(e, self.path) from None
            # a finished study on a read-only mount: a lock taken on a read-only descriptor still excludes
            fd = os.open(self.path, os.O_RDONLY)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | (0 if wait else fcntl.LOCK_NB))
        except BlockingIOError:
            os.close(fd)
            return False
        except OSError as e:
            if e.errno not in (errno.ENOLCK, errno.EOPNOTSUPP, errno.ENOSYS, errno.EINVAL):
                os.close(fd)
                raise write_error(e, self.path) from None
            # a file system without locks: run unguarded rather than not at all
        except BaseException:
            os.close(fd)
            raise
        try:
            os.ftruncate(fd, 0)
            os.pwrite(fd, json.dumps({"host": socket.gethostname(), "pid": os.getpid(),
                                      "since": time.strftime("%Y-%m-%d %H:%M:%S")}).encode(), 0)
        except OSError:
            pass  # the name of the holder is a courtesy; the lock is what counts
        self._fd, self._depth = fd, 1
        return True

    def release(self) -> None:
        if not self._depth:
            return
        self._depth -= 1
        if self._depth:
            return
        fd, self._fd = self._fd, None
        try:
            os.ftruncate(fd, 0)
        except OSError:
            pass
        os.close(fd)   # closing the descriptor releases the flock

    def holder(self) -> str:
        """Who holds the claim, as far as its file says."""
        try:
            info = json.loads(self.path.read_text() or "{}")
            return f"pid {info['pid']} on host {info['host']} (since {info['since']})"
        except (OSError, ValueError, KeyError, TypeError):
            return "another process"

    @contextlib.contextmanager
    def hold(self, wait: bool = True, waiting: Callable[[str], None] | None = None) -> Iterator[bool]:
        """Hold the claim for the block. Yields False (without waiting) when another process holds it
        and ``wait`` is false; with ``wait``, ``waiting(holder)`` is called before blocking."""
        got = self.acquire(wait=False)
        if not got and wait:
            if waiting is not None:
                waiting(self.holder())
            got = self.acquire(wait=True)
        try:
            yield got
        finally:
            if got:
                self.release()

    def __del__(self):
        if self._fd is not None:
            try:
                os.close(self._fd)
            except OSError:
                pass


class StudyDir:
    """A results folder. ``open(kind, config)`` creates it or checks that it holds the same study."""

    def __init__(self, root: str | Path):
        self.root = Path(root)

    @property
    def study_path(self) -> Path:
        return self.root / "study.json"

    @property
    def summary_path(self) -> Path:
        return self.root / "summary.json"

    @property
    def db_path(self) -> Path:
        return self.root / "study.db"

    @property
    def report_dir(self) -> Path:
        return self.root / "report"

    @property
    def error_log(self) -> Path:
        return self.root / "error.log"

    def open(self, kind: str, config: dict, command: list[str] | None = None, extra: dict | None = None) -> dict:
        """Create ``study.json`` or, when it exists, insist that it describes the same study.

        ``config`` holds what defines the study's results (not how many workers run it). Safe when
        several processes open one folder at the same moment: study.json is written in full to a
        temp file and hard-linked into place, which fails when the name exists, so exactly one
        process creates it and every other one compares its own study with the winner's."""
        if self.root.exists() and not self.root.is_dir():
            raise FeedwiseError(f"--out {self.root} exists and is not a folder")
        config = _clean(config)
        if not self.study_path.exists():
            if self.root.exists():
                # another worker starting at the same moment may be writing study.json (its temp file
                # is here): that does not make the folder foreign
                others = [p for p in self.root.iterdir() if not (p.name.startswith(".study.json.")
                                                                  and p.name.endswith(".tmp"))]
                if others and not self.study_path.exists():
                    raise FeedwiseError(f"results folder {self.root} is not empty and holds no study.json; "
                                        "use another --out")
            mkdir(self.root, parents=True)
            study = {"kind": kind, "config": config, "command": command or [], "machine": machine_info(),
                     **(extra or {})}
            if self._create_exclusively(study):
                return study
        old = read_json(self.study_path)
        if old.get("kind") != kind or old.get("config") != config:
            diff = _first_difference(old.get("config", {}), config) if old.get("kind") == kind else \
                f"it holds a '{old.get('kind')}' study"
            raise FeedwiseError(f"results folder {self.root} holds a different study ({diff}); use another --out")
        return old

    def _create_exclusively(self, study: dict) -> bool:
        """Write study.json unless it exists; True when this call created it."""
        data = (json.dumps(_clean(study), indent=2) + "\n").encode()
        tmp = self.root / f".study.json.{os.getpid()}-{secrets.token_hex(4)}.tmp"
        try:
            _write_new(tmp, data)
            os.link(tmp, self.study_path)
            return True
        except FileExistsError:
            return False
        except OSError as e:
            if e.errno not in (errno.EPERM, errno.EOPNOTSUPP, errno.EMLINK, errno.ENOSYS):
                raise write_error(e, self.study_path) from None
        finally:
            _unlink_quietly(tmp)
        try:   # no hard links on this file system: an exclusive create, written in one call
            _write_new(self.study_path, data)
            return True
        except FileExistsError:
            return False
        except OSError as e:
            raise write_error(e, self.study_path) from None

    def trial(self, trial_id: int | str) -> "TrialDir":
        return TrialDir(self.root / "trials" / str(trial_id))

    def trials(self) -> list["TrialDir"]:
        base = self.root / "trials"
        if not base.is_dir():
            return []
        dirs = [TrialDir(p) for p in base.iterdir() if (p / "trial.json").exists()]
        return sorted(dirs, key=lambda t: (not t.path.name.isdigit(), int(t.path.name) if t.path.name.isdigit() else 0, t.path.name))

    def lock(self, name: str) -> Claim:
        """A claim on a shared step of the study that is not a trial (``.locks/<name>``)."""
        mkdir(self._existing_root() / ".locks")
        return Claim(self.root / ".locks" / name)

    def _existing_root(self) -> Path:
        if not self.study_path.exists():
            raise FeedwiseError(f"results folder {self.root} lost its study.json during the run (was it deleted?); "
                                "nothing more is written there")
        return self.root

    def write_summary(self, summary: dict) -> None:
        self._existing_root()
        write_json(self.summary_path, summary)

    def read_summary(self) -> dict:
        return read_json(self.summary_path)


def _first_difference(old: dict, new: dict, prefix: str = "") -> str:
    for k in sorted(set(old) | set(new)):
        a, b = old.get(k), new.get(k)
        if a != b:
            if isinstance(a, dict) and isinstance(b, dict):
                return _first_difference(a, b, f"{prefix}{k}.")
            return f"{prefix}{k}: {a!r} there, {b!r} asked"
    return "same config"


class TrialDir:
    """``trials/<id>/``: trial.json and measurements.csv (appended row by row, flushed).

    Only the process holding the trial's claim (``trials/<id>/claim``) writes into it:
    :meth:`start` takes the claim when the caller has not (and refuses when another process
    holds it); :meth:`finish` and :meth:`abort` give back what :meth:`start` took."""

    def __init__(self, path: Path):
        self.path = Path(path)
        self._csv = None
        self._file = None
        self._claim = Claim(self.path / "claim")
        self._started_claim = False

    @property
    def id(self) -> str:
        return self.path.name

    def read(self) -> dict:
        return read_json(self.path / "trial.json")

    def exists(self) -> bool:
        return (self.path / "trial.json").exists()

    def finished(self) -> bool:
        return self.exists() and self.read().get("status") not in (None, "running")

    # ------------------------------------------------------------------ claim
    def _make(self) -> None:
        root = self.path.parent.parent
        if not root.is_dir():
            raise FeedwiseError(f"cannot write {self.path}: the results folder {root} does not exist "
                                "(deleted during the run?)")
        mkdir(self.path.parent)
        mkdir(self.path)

    def acquire(self, wait: bool = True) -> bool:
        """Claim this trial (see :class:`Claim`); False when another process holds it and not ``wait``."""
        self._make()
        return self._claim.acquire(wait)

    def release(self) -> None:
        self._claim.release()

    def hold(self, wait: bool = True, waiting: Callable[[str], None] | None = None):
        """Hold the trial's claim for the block (see :meth:`Claim.hold`)."""
        self._make()
        return self._claim.hold(wait, waiting)

    def holder(self) -> str:
        return self._claim.holder()

    # ------------------------------------------------------------------ writing
    def write(self, record: dict) -> None:
        write_json(self.path / "trial.json", record)

    def start(self, record: dict, columns: Iterable[str] = MEASUREMENT_COLUMNS) -> None:
        """Begin (or restart) a trial: trial.json with status running, an empty measurements file."""
        if not self._claim.held:
            if not self.acquire(wait=False):
                raise FeedwiseError(f"trial {self.path} is being run by {self.holder()}; it is not run twice")
            self._started_claim = True
        try:
            self.write({**record, "status": "running"})
            self.columns = list(columns)
            path = self.path / "measurements.csv"
            try:
                self._file = open(path, "w", newline="", encoding="utf-8")
                self._csv = csv.DictWriter(self._file, fieldnames=self.columns, extrasaction="ignore")
                self._csv.writeheader()
                self._file.flush()
            except OSError as e:
                raise write_error(e, path) from None
        except BaseException:
            self.abort()
            raise

    def add_row(self, row: dict) -> None:
        try:
            self._csv.writerow({k: row.get(k, "") for k in self.columns})
            self._file.flush()
        except OSError as e:
            raise write_error(e, self.path / "measurements.csv") from None

    def finish(self, record: dict) -> None:
        try:
            self._close()
            self.write(record)
        finally:
            self._give_back()

    def abort(self) -> None:
        """Stop writing after a failure or an interruption: trial.json stays ``running`` (the trial
        is run again on resume) and the claim :meth:`start` took is given back."""
        try:
            self._close()
        except OSError:
            pass
        finally:
            self._give_back()

    def _close(self) -> None:
        if self._file is not None:
            f, self._file, self._csv = self._file, None, None
            try:
                f.close()
            except OSError as e:
                raise write_error(e, self.path / "measurements.csv") from None

    def _give_back(self) -> None:
        if self._started_claim:
            self._started_claim = False
            self.release()

    # ------------------------------------------------------------------ reading
    def measurements(self) -> list[dict]:
        """The rows of measurements.csv. For a finished trial they must agree with trial.json (rows
        present, last step = steps_run, steps_to_result among them): a damaged or truncated file is
        one error naming it, never a silently shorter curve."""
        path = self.path / "measurements.csv"
        rec = self.read() if self.exists() else {}
        done = rec.get("status") in FINISHED
        if not path.exists():
            if done:
                raise FeedwiseError(f"missing file {path} (trial.json says the trial finished)")
            return []
        try:
            with open(path, newline="", encoding="utf-8") as f:
                table = list(csv.reader(f))
        except (UnicodeDecodeError, csv.Error) as e:
            raise _damaged(path, f"not a CSV table ({_short(e, 60)})") from None
        except OSError as e:
            raise FeedwiseError(f"cannot read {path}: {e.strerror or e}") from None
        if not table:
            if done:
                raise _damaged(path, "it is empty")
            return []
        header, body = table[0], table[1:]
        if not header or header[0] != "step" or any(not h for h in header):
            raise _damaged(path, "its header is not a measurements header")
        out = []
        for n, r in enumerate(body, start=2):
            if len(r) != len(header):
                raise _damaged(path, f"line {n} has {len(r)} fields, the header {len(header)}")
            row = {k: _num(v) for k, v in zip(header, r)}
            if any(isinstance(v, str) for v in row.values()) or not isinstance(row["step"], int):
                raise _damaged(path, f"line {n} holds something that is not a number")
            if out and row["step"] <= out[-1]["step"]:
                raise _damaged(path, f"line {n}: step {row['step']} does not follow step {out[-1]['step']}")
            out.append(row)
        if done:
            steps_run, reached = rec.get("steps_run"), rec.get("steps_to_result")
            if not out:
                raise _damaged(path, f"it has no rows, trial.json says {steps_run} steps were run")
            if steps_run is not None and out[-1]["step"] != steps_run:
                raise _damaged(path, f"its last row is step {out[-1]['step']}, trial.json says steps_run {steps_run}")
            if reached is not None and not any(r["step"] == reached for r in out):
                raise _damaged(path, f"no row at step {reached}, trial.json's steps_to_result")
        return out


def _damaged(path: Path, why: str) -> FeedwiseError:
    return FeedwiseError(f"damaged results file {path}: {why}")


def _num(v: str):
    if v == "" or v is None:
        return None
    try:
        f = float(v)
    except ValueError:
        return v
    return int(f) if f.is_integer() and "." not in v and "e" not in v.lower() else f
