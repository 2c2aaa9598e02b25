"""The one results layout, read and written here only.

    <out>/study.json               what was asked (command, config, versions, machine)
    <out>/summary.json             what was found (atomic: temp file + rename)
    <out>/study.db                 Optuna storage when the study tunes
    <out>/trials/<id>/trial.json   one run
    <out>/trials/<id>/measurements.csv   one row per evaluation
    <out>/report/                  index.html and pictures

Re-running the same study on the same folder resumes; a folder holding a different study
is refused with a clear error.
"""

from __future__ import annotations

import csv
import json
import math
import os
import platform
import tempfile
from pathlib import Path
from typing import Any, Iterable

from feedwise.errors import FeedwiseError

MEASUREMENT_COLUMNS = ["step", "examples", "epoch", "wall_s", "eval_s", "train_loss", "val_error", "val_loss", "lr"]


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


def write_json(path: str | Path, obj: Any) -> None:
    """Write JSON atomically: a temp file in the same folder, fsync, then rename."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=path.name, suffix=".tmp")
    try:
        with os.fdopen(fd, "w") as f:
            json.dump(_clean(obj), f, indent=2, sort_keys=False)
            f.write("\n")
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def read_json(path: str | Path) -> Any:
    path = Path(path)
    try:
        with open(path) as f:
            return json.load(f)
    except FileNotFoundError:
        raise FeedwiseError(f"missing file {path}") from None
    except json.JSONDecodeError as e:
        raise FeedwiseError(f"corrupt JSON file {path}: {e}") from None


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

    def open(self, kind: str, config: dict, command: list[str] | None = None, extra: dict | None = None) -> dict:
        """Create ``study.json`` or, when it exists, insist that it describes the same study.

        ``config`` holds what defines the study's results (not how many workers run it)."""
        if self.root.exists() and not self.root.is_dir():
            raise FeedwiseError(f"--out {self.root} exists and is not a folder")
        config = _clean(config)
        if not self.study_path.exists() and self.root.exists():
            # another worker starting at the same moment may be writing study.json (its temp file
            # is here) or may have just renamed it into place: neither makes the folder foreign
            others = [p for p in self.root.iterdir() if not (p.name.startswith("study.json") and p.name.endswith(".tmp"))]
            if others and not self.study_path.exists():
                raise FeedwiseError(f"results folder {self.root} is not empty and holds no study.json; use another --out")
        if self.study_path.exists():
            old = read_json(self.study_path)
            if old.get("kind") != kind or old.get("config") != config:
                diff = _first_difference(old.get("config", {}), config) if old.get("kind") == kind else \
                    f"it holds a '{old.get('kind')}' study"
                raise FeedwiseError(f"results folder {self.root} holds a different study ({diff}); use another --out")
            return old
        study = {"kind": kind, "config": config, "command": command or [], "machine": machine_info(), **(extra or {})}
        write_json(self.study_path, study)
        return study

    def trial(self, trial_id: int | str) -> "TrialDir":
        return TrialDir(self.root / "trials" / str(trial_id))

    def trials(self) -> list["TrialDir"]:
        base = self.root / "trials"
        if not base.is_dir():
            return []
        dirs = [TrialDir(p) for p in base.iterdir() if (p / "trial.json").exists()]
        return sorted(dirs, key=lambda t: (not t.path.name.isdigit(), int(t.path.name) if t.path.name.isdigit() else 0, t.path.name))

    def write_summary(self, summary: dict) -> None:
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
    """``trials/<id>/``: trial.json and measurements.csv (appended row by row, flushed)."""

    def __init__(self, path: Path):
        self.path = Path(path)
        self._csv = None

    @property
    def id(self) -> str:
        return self.path.name

    def read(self) -> dict:
        return read_json(self.path / "trial.json")

    def exists(self) -> bool:
        return (self.path / "trial.json").exists()

    def finished(self) -> bool:
        return self.exists() and self.read().get("status") not in (None, "running")

    def write(self, record: dict) -> None:
        write_json(self.path / "trial.json", record)

    def start(self, record: dict, columns: Iterable[str] = MEASUREMENT_COLUMNS) -> None:
        """Begin (or restart) a trial: trial.json with status running, an empty measurements file."""
        self.path.mkdir(parents=True, exist_ok=True)
        self.write({**record, "status": "running"})
        self.columns = list(columns)
        self._file = open(self.path / "measurements.csv", "w", newline="")
        self._csv = csv.DictWriter(self._file, fieldnames=self.columns, extrasaction="ignore")
        self._csv.writeheader()
        self._file.flush()

    def add_row(self, row: dict) -> None:
        self._csv.writerow({k: row.get(k, "") for k in self.columns})
        self._file.flush()

    def finish(self, record: dict) -> None:
        if self._csv is not None:
            self._file.close()
            self._csv = None
        self.write(record)

    def measurements(self) -> list[dict]:
        path = self.path / "measurements.csv"
        if not path.exists():
            return []
        with open(path, newline="") as f:
            rows = list(csv.DictReader(f))
        out = []
        for r in rows:
            out.append({k: _num(v) for k, v in r.items()})
        return out


def _num(v: str):
    if v == "" or v is None:
        return None
    try:
        f = float(v)
    except ValueError:
        return v
    return int(f) if f.is_integer() and "." not in v and "e" not in v.lower() else f
