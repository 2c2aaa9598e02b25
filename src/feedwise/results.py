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

Every file is written atomically and read with checks (:mod:`feedwise.files`); rows of
measurements.csv that disagree with ``trial.json`` (emptied, truncated, glued by two writers)
are one error naming the file.
"""

from __future__ import annotations

import csv
import errno
import json
import os
import platform
import secrets
from pathlib import Path
from typing import Callable, Iterable

from feedwise.errors import FeedwiseError
from feedwise.files import Claim, first_line, jsonable, mkdir, unlink_quietly, write_error, write_new
from feedwise.files import read_json, write_json  # noqa: F401  (the layout's readers and writers, as before)

MEASUREMENT_COLUMNS = ["step", "examples", "epoch", "wall_s", "eval_s", "train_loss", "val_error", "val_loss", "lr"]
FINISHED = ("reached", "budget", "diverged", "pruned")   # statuses of a trial that ran to its end


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
        config = jsonable(config)
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
        data = (json.dumps(jsonable(study), indent=2) + "\n").encode()
        tmp = self.root / f".study.json.{os.getpid()}-{secrets.token_hex(4)}.tmp"
        try:
            write_new(tmp, data)
            os.link(tmp, self.study_path)
            return True
        except FileExistsError:
            return False
        except OSError as e:
            if e.errno not in (errno.EPERM, errno.EOPNOTSUPP, errno.EMLINK, errno.ENOSYS):
                raise write_error(e, self.study_path) from None
        finally:
            unlink_quietly(tmp)
        try:   # no hard links on this file system: an exclusive create, written in one call
            write_new(self.study_path, data)
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
        self._began = False

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
        """Write trial.json. A record written on its own may create the trial's folder; the folder of a
        trial this object started is never created again (deleted during the run: an error)."""
        if not self._began and not self.path.is_dir():
            mkdir(self.path, parents=True)
        write_json(self.path / "trial.json", record)

    def start(self, record: dict, columns: Iterable[str] = MEASUREMENT_COLUMNS) -> None:
        """Begin (or restart) a trial: trial.json with status running, an empty measurements file."""
        if not self._claim.held:
            if not self.acquire(wait=False):
                raise FeedwiseError(f"trial {self.path} is being run by {self.holder()}; it is not run twice")
            self._started_claim = True
        self._began = True
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
            raise _damaged(path, f"not a CSV table ({first_line(e, 60) or type(e).__name__})") from None
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
