"""`feedwise train`: one run of the engine into the results layout (trial 0)."""

from __future__ import annotations

from dataclasses import asdict, dataclass, field, fields

from feedwise.data.options import DataOptions  # noqa: F401  (re-exported)
from feedwise.engine import TrainConfig
from feedwise.feeds import make_feeder
from feedwise.progress import progress_bar, say
from feedwise.results import StudyDir
from feedwise.studies.common import pick_device, run_trial, set_threads
from feedwise.workloads import get_workload


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
