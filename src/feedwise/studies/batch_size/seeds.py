"""The best hyperparameters of each batch size, trained again with fresh seeds (``--seeds N``).

steps-to-result is a minimum over trials of one seed each, so the winning trial's number carries
the luck of its seed and of being selected. ``rerun_best`` trains the best trial's exact
configuration (hyperparameters, schedule, budget, target) with ``N`` fresh seeds
(``stream(seed, "batch-size seed rerun", j)``, j = 1..N: new initialisation and data order) into
``<out>/seeds/b<B>-s<j>/``, without pruning (each run stops at the target or its budget), and the
summary reports each batch size's per-seed steps-to-result, median and range next to the search's
value (:func:`feedwise.studies.batch_size.summary.seeds_summary`). Finished runs are kept on a
resume; a larger N adds seeds.
"""

from __future__ import annotations

from dataclasses import asdict
from pathlib import Path

from feedwise.engine import TrainConfig
from feedwise.errors import FeedwiseError
from feedwise.feeds.base import UniformFeeder
from feedwise.progress import say
from feedwise.results import StudyDir, TrialDir, read_json
from feedwise.seeds import stream
from feedwise.studies.batch_size.summary import summarize
from feedwise.studies.common import pick_device, run_trial, set_threads
from feedwise.workloads import get_workload


def check_seeds(seeds, req) -> None:
    """``--seeds`` checked before the study runs (one error line)."""
    if isinstance(seeds, bool) or not isinstance(seeds, int) or seeds < 1:
        raise FeedwiseError(f"--seeds must be a positive integer, got {seeds!r}")
    if int(getattr(req, "data_parallel", 1)) > 1:
        raise FeedwiseError("--seeds re-runs trials in one process: not available with --data-parallel")


def rerun_best(req, out: str | Path, seeds: int, threads: int | None = None, device: str = "auto") -> dict:
    """Train each batch size's best trial again with ``seeds`` fresh seeds; returns the new summary
    (also written). ``req``: the study's :class:`~feedwise.studies.batch_size.run.BatchSizeRequest` (for
    its data options)."""
    check_seeds(seeds, req)
    sd = StudyDir(out)
    if not sd.study_path.exists():
        raise FeedwiseError(f"{out} holds no batch-size study to re-run")
    study = read_json(sd.study_path)
    summary = summarize(sd)
    w = get_workload(req.workload)
    set_threads(threads)
    dev = pick_device(device)
    data = w.load(**asdict(req.data))
    for e in summary["batch_sizes"]:
        if e["best_trial"] is None:
            continue
        b = int(e["batch_size"])
        rec = sd.trial(e["best_trial"]).read()
        for j in range(1, seeds + 1):
            td = TrialDir(sd.root / "seeds" / f"b{b}-s{j}")
            if td.finished():
                continue
            cfg = TrainConfig(**{**rec["config"], "seed": stream(int(study["config"].get("seed", 0)),
                                                                  "batch-size seed rerun", j)})
            say(f"batch size {b}: best trial {e['best_trial']} with seed {j}/{seeds}")
            run_trial(td, w, data, cfg, UniformFeeder(), device=dev,
                      record={"batch_size": b, "of_trial": e["best_trial"], "seed_index": j})
    s = summarize(sd)
    sd.write_summary(s)
    return s
