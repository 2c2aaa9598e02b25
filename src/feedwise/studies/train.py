"""`feedwise train`: one run of the engine into the results layout (trial 0)."""

from __future__ import annotations

from dataclasses import asdict, dataclass, field, fields
from pathlib import Path

from feedwise.data.sources import MIN_MNIST1D_SAMPLES, Dataset, check_fraction, check_seed
from feedwise.engine import TrainConfig
from feedwise.errors import FeedwiseError
from feedwise.feeders import make_feeder
from feedwise.progress import progress_bar, say
from feedwise.results import StudyDir
from feedwise.studies.common import pick_device, run_trial, set_threads
from feedwise.workloads import get_workload


@dataclass
class DataOptions:
    """How the workload's dataset is loaded (part of what defines a study).

    Checked when made (and again by :meth:`validate`): a bad value is one :class:`FeedwiseError`
    before any data is read or any folder written. ``data_dir`` is made absolute (``~`` expanded,
    symlinks resolved), so ``./d.npz`` and ``d.npz`` are the same study. A study puts
    :meth:`identity` (these options plus the fingerprint of the data's bytes) in its config."""

    data_dir: str | None = None
    label_noise: float = 0.0
    noise_seed: int = 0
    split_seed: int = 0
    max_train: int | None = None
    num_samples: int | None = None
    val_fraction: float | None = None    # validation split carved from the training rows (default: the workload's)
    test_fraction: float | None = None   # test split carved from a file without one (npz; default 0.2)

    def __post_init__(self) -> None:
        self.validate()

    def validate(self) -> "DataOptions":
        if self.data_dir is not None:
            if not str(self.data_dir).strip():
                raise FeedwiseError("--data-dir is empty: give a folder (IDX, CIFAR-10) or a .npz file")
            self.data_dir = str(Path(str(self.data_dir)).expanduser().resolve())
        if not (0.0 <= self.label_noise < 1.0):   # NaN fails too
            raise FeedwiseError(f"label noise must be in [0, 1), got {self.label_noise}")
        check_seed(self.noise_seed, "--noise-seed")
        check_seed(self.split_seed, "--split-seed")
        if self.max_train is not None and self.max_train < 1:
            raise FeedwiseError(f"--max-train must be positive, got {self.max_train}")
        for option, v in (("--val-fraction", self.val_fraction), ("--test-fraction", self.test_fraction)):
            if v is not None:
                check_fraction(v, option)
        if self.num_samples is not None and self.num_samples < MIN_MNIST1D_SAMPLES:
            raise FeedwiseError(f"--num-samples must be at least {MIN_MNIST1D_SAMPLES}, got {self.num_samples}")
        return self

    def identity(self, data: Dataset) -> dict:
        """What defines the data of a study: these options, plus ``fingerprint`` (SHA-256 of the files
        read, see :func:`feedwise.data.sources.fingerprint_files`) when the data came from files.
        Generated data (mnist1d) has no fingerprint: its options define it, and older studies resume."""
        d = asdict(self)
        for k in ("val_fraction", "test_fraction"):   # absent when not given: older studies resume
            if d[k] is None:
                d.pop(k)
        if data.info.get("fingerprint"):
            d["fingerprint"] = data.info["fingerprint"]
        return d


@dataclass
class TrainRequest:
    workload: str
    config: TrainConfig
    feed: str = "uniform"
    feed_options: dict = field(default_factory=dict)
    data: DataOptions = field(default_factory=DataOptions)

    def validate(self) -> None:
        """Everything that can be checked without the data (the batch size is checked against it later)."""
        get_workload(self.workload)
        self.config.validate()
        self.data.validate()
        make_feeder(self.feed, **self.feed_options)


def train_study(req: TrainRequest, out: str, threads: int | None = None, device: str = "auto",
                command: list[str] | None = None) -> tuple[dict, bool]:
    """Run (or resume) a single training run into ``out``.

    Returns ``(trial record, already_finished)``; a finished trial is never run again."""
    req.validate()
    workload = get_workload(req.workload)
    feeder = make_feeder(req.feed, **req.feed_options)  # validate before touching the disk
    study = StudyDir(out)
    n_threads = set_threads(threads)
    dev = pick_device(device)
    data = workload.load(**asdict(req.data))
    req.config.validate(data.num_train)
    config = {"workload": req.workload, "train": asdict(req.config), "feed": req.feed,
              "feed_options": req.feed_options, "data": req.data.identity(data)}
    study.open("train", config, command=command, extra={"threads": n_threads, "device": str(dev),
                                                         "dataset": data.describe()})
    trial = study.trial(0)
    # another process running this very study holds trial 0: wait for it instead of running it twice
    with trial.hold(waiting=lambda who: say(f"waiting for trial 0 in {out}, which {who} is running")):
        done = trial.finished()
        if not done:
            with progress_bar() as bar:
                task = bar.add_task(f"train {req.workload} bs={req.config.batch_size}", total=req.config.budget_steps())
                run_trial(trial, workload, data, req.config, feeder, device=dev,
                          progress=lambda s, t: bar.update(task, completed=s), record={"data": asdict(req.data)})
        record = trial.read()
        if not done or not study.summary_path.exists():
            study.write_summary(summary(req.workload, record))
    return record, done


def summary(workload: str, record: dict) -> dict:
    """summary.json of a train study, from trial 0's record (so it can be written again on resume)."""
    from feedwise.engine import TrainResult

    keys = [f.name for f in fields(TrainResult) if f.name != "rows"]
    return {"kind": "train", "workload": workload, "trials": {"0": {k: record.get(k) for k in keys}}}
