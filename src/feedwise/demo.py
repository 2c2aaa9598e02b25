"""`feedwise demo`: small but real versions of all three studies on the embedded mnist1d workload,
then one report. Sized to finish in a few minutes on 2 CPU cores; every number on the page is
measured by these runs (nothing is canned). Re-running resumes: finished trials are kept.
"""

from __future__ import annotations

import time
from pathlib import Path

from feedwise.engine import TrainConfig
from feedwise.progress import say
from feedwise.workloads import get_workload

WORKLOAD = "mnist1d-mlp"


def run_demo(out: str = "runs/demo", threads: int | None = None, device: str = "auto", quick: bool = False) -> str:
    """Run the demo into ``out`` and return the path of ``report/index.html``.

    ``quick`` shrinks every study further (used by the tests: seconds, not minutes)."""
    from feedwise.report.page import build_report
    from feedwise.studies.batch_size.run import BatchSizeRequest, Budget, run_batch_size_study
    from feedwise.studies.emphasis.run import EmphasisRequest, emphasis_study
    from feedwise.studies.subset.run import SubsetRequest, run_subset_study
    from feedwise.studies.train.run import DataOptions, TrainRequest, train_study

    w = get_workload(WORKLOAD)
    root = Path(out)
    data = DataOptions(num_samples=3000) if quick else DataOptions()
    t_start = time.perf_counter()
    timings = {}

    def stage(name: str, fn):
        t0 = time.perf_counter()
        say(f"[bold]feedwise demo[/bold] ({name}) ...")
        r = fn()
        timings[name] = time.perf_counter() - t0
        return r

    # 1. one run to the target
    steps = 300 if quick else w.max_steps
    cfg = TrainConfig(batch_size=w.batch_size, lr=w.lr, optimizer="momentum", max_steps=steps,
                      eval_every=w.eval_every, target=w.target)
    rec, _ = stage("train", lambda: train_study(TrainRequest(w.name, cfg, data=data), str(root / "train"),
                                                threads=threads, device=device))
    say(f"  train: status {rec['status']}, steps_to_result {rec.get('steps_to_result')}, test error {rec.get('test_error')}")

    # 2. batch-size scaling, tuned (quasi-random search) with exact pruning
    bs_req = BatchSizeRequest(
        workload=w.name, batch_sizes=[32, 128] if quick else [64, 256, 1024], trials=2 if quick else 4,
        optimizer="momentum", target=0.45 if quick else None, budget=Budget(max_steps=200 if quick else 1500, ref_batch=128,
                                            eval_every=25 if quick else 50),
        data=data)
    # the trials of a batch size run together so that exact pruning stops the rest once one reaches the target
    bs = stage("batch-size", lambda: run_batch_size_study(bs_req, root / "batch-size", threads=threads, device=device,
                                                          jobs=bs_req.trials))
    say("  batch-size: steps-to-result by batch size: "
        + ", ".join(f"{b['batch_size']}: {b['steps_to_result']}" for b in bs.get("batch_sizes", [])))

    # 3. example emphasis (Active Bias) against uniform, paired seeds, with label noise
    em_cfg = TrainConfig(batch_size=128 if not quick else 32, lr=w.lr, optimizer="momentum",
                         max_steps=150 if quick else 3000, eval_every=50 if quick else 250, target=w.target,
                         stop_at_target=False)
    em_req = EmphasisRequest(workload=w.name, config=em_cfg, methods=["uniform", "spv", "wpv"], seeds=3,
                             data=DataOptions(num_samples=data.num_samples, label_noise=0.2))
    # the study prints its statements (each method vs uniform, final and best-validation model), one per line
    stage("emphasis", lambda: emphasis_study(em_req, str(root / "emphasis"), threads=threads, device=device))

    # 4. training-subset search with a checkpoint ensemble
    sub_req = SubsetRequest(workload=w.name, acquisitions=["entropy", "random"], fractions=[0.25, 0.5],
                            ensemble="2x3" if quick else "2x5", schedule="one-shot", seeds=1 if quick else 2,
                            budgets=["steps"], target_steps=150 if quick else 2000,
                            acq_steps=100 if quick else 1000, data=data)
    stage("subset", lambda: run_subset_study(sub_req, str(root / "subset"), threads=threads, device=device))
    from feedwise.studies.subset.report import conclusion as subset_conclusion

    say(f"  subset: {subset_conclusion(root / 'subset')}")

    page = build_report([root / "train", root / "batch-size", root / "emphasis", root / "subset"],
                        out=root / "report")
    say(f"demo done in {time.perf_counter() - t_start:.0f} s ("
        + ", ".join(f"{k} {v:.0f} s" for k, v in timings.items()) + ")")
    return str(page)
