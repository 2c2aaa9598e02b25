"""Batch-size scaling study on the real Fashion-MNIST (fashion-mnist-mlp), scaled down.

    .venv/bin/python benchmarks/batch_size_fashion.py

Protocol (to fit ~10-15 min on one core of a shared 2-core machine): momentum only, batch sizes
16, 64, 256, 1024, 5 finished trials per batch size (scrambled Sobol QMC), target validation
error 0.15 instead of the workload's 0.12 (0.12 takes an MLP many epochs), budget 600 steps at
B >= 256 and 600*256/B below (9,600 at B=16), evaluation every max(10, 25*256/B) steps; the
5 trials of a batch size run at once (threads), so exact pruning stops the others as soon as one
reaches the target.
Study folder: runs/bench/batch_size_fashion_momentum/ (re-running resumes). Results:
benchmarks/results/batch_size_fashion_momentum.json (+ PNG plots).
"""

from __future__ import annotations

import json
import os
import sys
import time
from pathlib import Path

os.environ.setdefault("FEEDWISE_QUIET", "1")
ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "src"))
sys.path.insert(0, str(ROOT / "benchmarks"))

from batch_size_mnist1d import _total_wall, independent_check  # noqa: E402
from feedwise.studies.batch_size.run import BatchSizeRequest, Budget, run_batch_size_study, summarize  # noqa: E402

NAME = "batch_size_fashion_momentum"
BATCH_SIZES = [16, 64, 256, 1024]
TRIALS = 5
TARGET = 0.15
SPACE = {"lr": [1e-3, 1.0], "one_minus_momentum": [1e-2, 0.5], "end_factor": [1e-2, 1.0], "decay_fraction": [0.5, 1.0]}
BUDGET = Budget(max_steps=600, ref_batch=256, eval_every=25, min_eval_every=10)


def main() -> int:
    out = ROOT / "runs" / "bench" / NAME
    req = BatchSizeRequest(workload="fashion-mnist-mlp", batch_sizes=BATCH_SIZES, trials=TRIALS, optimizer="momentum",
                           target=TARGET, budget=BUDGET, seed=0, space=SPACE)
    t0 = time.time(), time.process_time()
    run_batch_size_study(req, out, threads=1, device="cpu", command=sys.argv, jobs=TRIALS)
    wall, cpu = time.time() - t0[0], time.process_time() - t0[1]
    summary = summarize(out)
    res = {"benchmark": NAME, "command": "python benchmarks/batch_size_fashion.py",
           "protocol": {"workload": "fashion-mnist-mlp", "data": "/usr/share/datasets/fashion-mnist (real)",
                        "batch_sizes": BATCH_SIZES, "trials_per_batch_size": TRIALS, "target": TARGET,
                        "space": SPACE, "budget": BUDGET.__dict__, "threads": 1, "jobs": TRIALS,
                        "note": "scaled down: target 0.15 (workload: 0.12), 5 trials, momentum only"},
           "this_invocation": {"wall_s": wall, "cpu_s": cpu}, "total_train_wall_s": _total_wall(out),
           "steps_to_result_check": independent_check(out, summary), "summary": summary}
    res_dir = ROOT / "benchmarks" / "results"
    assets = res_dir / NAME
    assets.mkdir(parents=True, exist_ok=True)
    from feedwise.studies.batch_size.report import build_sections
    res["plots"] = [str(p.relative_to(ROOT)) for s in build_sections(out, assets) for p in s.images]
    (res_dir / f"{NAME}.json").write_text(json.dumps(res, indent=2) + "\n")
    print(json.dumps({"curve": summary["curve"], "regimes": summary["regimes"]["by_batch_size"],
                      "knee": summary["knee"], "pruning": summary["pruning"],
                      "check": res["steps_to_result_check"]}, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
