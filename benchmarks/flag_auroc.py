"""AUROC of flagging flipped labels with 20% label noise, for every score of `feedwise flag`.

Per seed: one uniform run of the workload's default budget (mnist1d-mlp: 4,000 steps, batch 128,
lr 0.1, momentum 0.9, 45,000 training examples; fashion-mnist-mlp: 5,000 steps, lr 0.05, 55,000 examples)
with 20% of the training labels flipped (noise seed = seed); the checkpoint ensemble takes one
checkpoint per evaluation (every 100 steps: 40 or 50 checkpoints). Scores: 1 − p̄ and std̂ (Active
Bias history), final loss, ensemble entropy, BALD, variation ratio. One torch thread.

    .venv/bin/python benchmarks/flag_auroc.py                                # -> results/flag_mnist1d_noise0.2.json
    .venv/bin/python benchmarks/flag_auroc.py --workload fashion-mnist-mlp   # -> results/flag_fashion_noise0.2.json
"""

from __future__ import annotations

import argparse
import os
import shutil
import sys
import time
from pathlib import Path

import numpy as np

os.environ.setdefault("FEEDWISE_QUIET", "1")

from feedwise.engine import TrainConfig  # noqa: E402
from feedwise.results import write_json  # noqa: E402
from feedwise.studies.flag.run import SCORES, FlagRequest, flag_study  # noqa: E402
from feedwise.studies.train.run import DataOptions  # noqa: E402
from feedwise.workloads import get_workload  # noqa: E402

SEEDS = [int(s) for s in os.environ.get("FLAG_SEEDS", "0,1,2,3,4").split(",")]
NOISE = 0.2
EVAL_EVERY = 100
OUTS = {"mnist1d-mlp": "flag_mnist1d_noise0.2.json", "fashion-mnist-mlp": "flag_fashion_noise0.2.json"}


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--workload", default="mnist1d-mlp", choices=sorted(OUTS))
    args = ap.parse_args()
    w = get_workload(args.workload)
    out_json = Path("benchmarks/results") / OUTS[args.workload]
    runs = []
    for seed in SEEDS:
        cfg = TrainConfig(batch_size=w.batch_size, lr=w.lr, max_steps=w.max_steps, eval_every=EVAL_EVERY,
                          target=w.target, stop_at_target=False, seed=seed)
        req = FlagRequest(args.workload, cfg, DataOptions(label_noise=NOISE, noise_seed=seed))
        out = Path("runs/bench_flag") / args.workload / f"seed{seed}"
        shutil.rmtree(out, ignore_errors=True)
        t0 = time.perf_counter()
        s = flag_study(req, str(out), threads=1, device="cpu")
        wall = time.perf_counter() - t0
        runs.append({"seed": seed, "wall_s": round(wall, 1), "test_error": s["test_error"],
                     "num_train": s["num_train"], "num_flipped": s["num_flipped"],
                     "checkpoints": s["checkpoints_scored"], "evaluation": s["evaluation"]})
        print(f"seed {seed}: {wall:.0f}s test error {s['test_error']:.4f} "
              + " ".join(f"{k}={v['auroc']:.3f}" for k, v in s["evaluation"].items()), flush=True)
    k = str(runs[0]["num_flipped"])
    table = {}
    for name in SCORES:
        a = np.array([r["evaluation"][name]["auroc"] for r in runs])
        t = np.array([r["evaluation"][name]["top_share"][k] for r in runs])
        t1000 = np.array([r["evaluation"][name]["top_share"]["1000"] for r in runs])
        table[name] = {"auroc_mean": float(a.mean()), "auroc_std": float(a.std(ddof=1)) if len(a) > 1 else None,
                       "auroc_per_seed": a.tolist(), f"top_{k}_share_mean": float(t.mean()),
                       "top_1000_share_mean": float(t1000.mean())}
    result = {
        "benchmark": "flag_auroc", "workload": args.workload, "label_noise": NOISE, "seeds": SEEDS,
        "protocol": f"one uniform run per seed, workload defaults ({w.max_steps} steps, batch {w.batch_size}, "
                    f"lr {w.lr}, momentum 0.9, constant lr), checkpoint ensemble = one checkpoint every "
                    f"{EVAL_EVERY} steps, 1 torch thread, CPU",
        "higher_score_means": "more likely mislabelled (1-pbar: low mean probability of the given label)",
        "top_k": int(k), "chance_top_k_share": runs[0]["num_flipped"] / runs[0]["num_train"],
        "table": table, "runs": runs, "command": " ".join([sys.executable.split("/")[-1]] + sys.argv),
    }
    write_json(out_json, result)
    print(f"{'score':16} {'AUROC':>14} {'top-' + k:>8} {'top-1000':>9}")
    for name, e in table.items():
        print(f"{name:16} {e['auroc_mean']:.3f} ± {e['auroc_std'] or 0:.3f} {e[f'top_{k}_share_mean']:8.3f} "
              f"{e['top_1000_share_mean']:9.3f}")
    print(f"wrote {out_json}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
