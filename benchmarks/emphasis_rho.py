"""Does RHO-LOSS beat uniform and Active Bias, with and without label noise, and at what compute?

Runs the `feedwise emphasis` study with ``--methods uniform,spv,wpv,rho --matched-compute`` on one
workload and label-noise level into ``runs/emphasis_rho/<workload>_noise<τ>/`` (resumable) and saves its
summary as ``benchmarks/results/emphasis_rho_<workload>_noise<τ>.json`` plus the report's PNGs.

    .venv/bin/python benchmarks/emphasis_rho.py --workload mnist1d-mlp --noise 0.2

3 paired seeds (0, 1, 2). Equal training steps for every method (3,000 at batch 128 on mnist1d-mlp, as
benchmarks/emphasis_study.py);
RHO-LOSS draws 1,280 candidates per step (ratio 0.1, the paper's) and its irreducible-loss models are two
cross-fitted MLPs of the same architecture (holdout 1/2, 1,500 steps each, best-validation checkpoint).
``uniform-matched`` is uniform trained for as many steps as RHO-LOSS's whole compute buys (IL models and
candidate forwards included, forward = 1, forward + backward = 3 units per example). Scaled to fit about
10 minutes per run on 2 shared cores (one torch thread): see SCALE.
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
from feedwise.studies.emphasis.irreducible import RhoOptions  # noqa: E402
from feedwise.studies.emphasis.run import EmphasisRequest, emphasis_study  # noqa: E402
from feedwise.studies.train.run import DataOptions  # noqa: E402
from feedwise.workloads import get_workload  # noqa: E402

SCALE = {
    "mnist1d-mlp": {"steps": 3000, "eval_every": 150, "burn_in": 2, "il_steps": 1500},
    "fashion-mnist-mlp": {"steps": 2000, "eval_every": 200, "burn_in": 1, "il_steps": 1000},
}


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--workload", default="mnist1d-mlp", choices=sorted(SCALE))
    ap.add_argument("--noise", type=float, default=0.0)
    ap.add_argument("--seeds", type=int, default=3)
    ap.add_argument("--methods", default="uniform,spv,wpv,rho")
    ap.add_argument("--ratio", type=float, default=0.1)
    ap.add_argument("--holdout", type=float, default=0.5)
    ap.add_argument("--no-matched", action="store_true",
                    help="leave out uniform at rho's compute (it trains ~5x the steps: the slowest trial)")
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--data-dir", default=None, help="Fashion-MNIST folder (default: the Debian one)")
    ap.add_argument("--runs", default=str(ROOT / "runs" / "emphasis_rho"), help="where the study folders go")
    ap.add_argument("--results", default=str(ROOT / "benchmarks" / "results"))
    a = ap.parse_args()
    w = get_workload(a.workload)
    sc = SCALE[a.workload]
    cfg = TrainConfig(batch_size=w.batch_size, lr=w.lr, optimizer="momentum", max_steps=sc["steps"],
                      eval_every=sc["eval_every"], target=None, stop_at_target=False)
    rho = RhoOptions(ratio=a.ratio, holdout=a.holdout, crossfit=True, il_steps=sc["il_steps"])
    req = EmphasisRequest(workload=a.workload, config=cfg, methods=a.methods.split(","), seeds=a.seeds,
                          burn_in=sc["burn_in"], data=DataOptions(label_noise=a.noise, data_dir=a.data_dir),
                          rho=rho, matched_compute=not a.no_matched)
    tag = f"{a.workload}_noise{a.noise:g}" + ("_unmatched" if a.no_matched else "")
    out = Path(a.runs) / tag
    t0 = time.time()
    summary = emphasis_study(req, str(out), threads=a.threads, device=a.device, command=sys.argv)
    summary["benchmark"] = {
        "command": " ".join(["benchmarks/emphasis_rho.py"] + sys.argv[1:]), "elapsed_s_this_call": time.time() - t0,
        "threads": a.threads, "device": a.device,
        "scaled": f"{sc['steps']} steps (workload default {w.max_steps}), eval every {sc['eval_every']}, burn-in "
                  f"{sc['burn_in']} epochs, {a.seeds} seeds, constant lr {w.lr} momentum 0.9, batch {w.batch_size}; "
                  f"rho ratio {a.ratio} ({round(w.batch_size / a.ratio)} candidates per step), two cross-fitted "
                  f"IL models (holdout {a.holdout}) of {sc['il_steps']} steps each; no tuning"
                  + ("; no matched-compute uniform" if a.no_matched else ""),
    }
    res = Path(a.results)
    res.mkdir(parents=True, exist_ok=True)
    (res / f"emphasis_rho_{tag}.json").write_text(json.dumps(summary, indent=1) + "\n")
    from feedwise.studies.emphasis.report import build_sections
    assets = res / f"emphasis_rho_{tag}"
    shutil.rmtree(assets, ignore_errors=True)
    assets.mkdir()
    build_sections(out, assets)
    for line in summary["statement"]:
        print(line)
    for m, e in summary["methods"].items():
        c = e.get("compute") or {}
        print(f"{m:16} final {e['final']['test_error_mean']:.4f}  best {e['best']['test_error_mean']:.4f}  "
              f"units x uniform {c.get('units_vs_uniform') or 0:.2f}  wall {e['wall_s_mean']:.1f}s")


if __name__ == "__main__":
    main()
