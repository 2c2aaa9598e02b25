"""Does Active Bias reduce test error against uniform? The `feedwise emphasis` study, scaled to this machine.

Runs the study (9 methods, 5 paired seeds) on one workload and label-noise level into
``runs/emphasis/<workload>-noise<τ>/`` (resumable) and saves its summary as
``benchmarks/results/emphasis_<workload>_noise<τ>.json`` plus the report's PNGs.

    .venv/bin/python benchmarks/emphasis_study.py --workload mnist1d-mlp --noise 0.2

Scaled down to fit about 10 minutes on 2 shared cores (one torch thread): see SCALE below —
mnist1d-mlp 3,000 steps (8.5 epochs) instead of the workload's 4,000; fashion-mnist-mlp
2,000 steps (4.7 epochs) instead of 5,000, with a 1-epoch burn-in instead of 2.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import sys
import time
from pathlib import Path

os.environ.setdefault("FEEDWISE_QUIET", "1")
ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "src"))

from feedwise.engine import TrainConfig  # noqa: E402
from feedwise.studies.emphasis.run import DEFAULT_METHODS, EmphasisRequest, emphasis_study  # noqa: E402
from feedwise.studies.train.run import DataOptions  # noqa: E402
from feedwise.workloads import get_workload  # noqa: E402

SCALE = {
    "mnist1d-mlp": {"steps": 3000, "eval_every": 150, "burn_in": 2},
    "fashion-mnist-mlp": {"steps": 2000, "eval_every": 200, "burn_in": 1},
}


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--workload", default="mnist1d-mlp", choices=sorted(SCALE))
    ap.add_argument("--noise", type=float, default=0.0)
    ap.add_argument("--seeds", type=int, default=5)
    ap.add_argument("--methods", default=",".join(DEFAULT_METHODS))
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--tune", type=int, default=0, help="Optuna trials per method (lr, epsilon, burn-in)")
    ap.add_argument("--data-dir", default=None, help="Fashion-MNIST folder (default: the Debian one)")
    ap.add_argument("--runs", default=str(ROOT / "runs" / "emphasis"), help="where the study folders go")
    ap.add_argument("--results", default=str(ROOT / "benchmarks" / "results"))
    a = ap.parse_args()
    w = get_workload(a.workload)
    sc = SCALE[a.workload]
    cfg = TrainConfig(batch_size=w.batch_size, lr=w.lr, optimizer="momentum", max_steps=sc["steps"],
                      eval_every=sc["eval_every"], target=None, stop_at_target=False)
    req = EmphasisRequest(workload=a.workload, config=cfg, methods=a.methods.split(","), seeds=a.seeds,
                          burn_in=sc["burn_in"], data=DataOptions(label_noise=a.noise, data_dir=a.data_dir), tune=a.tune)
    tag = f"{a.workload}_noise{a.noise:g}" + (f"_tuned{a.tune}" if a.tune else "")
    out = Path(a.runs) / tag
    t0 = time.time()
    summary = emphasis_study(req, str(out), threads=a.threads, device=a.device, command=sys.argv)
    summary["benchmark"] = {
        "command": " ".join(["benchmarks/emphasis_study.py"] + sys.argv[1:]), "elapsed_s_this_call": time.time() - t0,
        "threads": a.threads, "device": a.device,
        "scaled": f"{sc['steps']} steps (workload default {w.max_steps}), eval every {sc['eval_every']}, "
                  f"burn-in {sc['burn_in']} epochs (tuned: {a.tune} Optuna trials per method), {a.seeds} seeds, constant lr {w.lr} momentum 0.9, batch {w.batch_size}",
    }
    res = Path(a.results)
    res.mkdir(parents=True, exist_ok=True)
    (res / f"emphasis_{tag}.json").write_text(json.dumps(summary, indent=1) + "\n")
    try:  # the report's pictures, when the report module is there
        from feedwise.studies.emphasis.report import build_sections
        assets = res / f"emphasis_{tag}"
        shutil.rmtree(assets, ignore_errors=True)
        assets.mkdir()
        build_sections(out, assets)
    except ImportError:
        pass
    for line in summary["statement"]:
        print(line)


if __name__ == "__main__":
    main()
