"""Gradient noise scale (McCandlish et al. 2018) vs the measured knee of the batch-size sweep.

Superseded by benchmarks/noise_scale_knees.py (3 seeds, every summary, B_noise, both optimizers);
its saved JSON predates the finite-dataset correction and the named summaries: its "b_simple" was
the |G|²-weighted ratio of sums over the run.

    .venv/bin/python benchmarks/batch_size_noise_scale.py

Runs `noise-scale` on mnist1d-mlp (one run at B=128, momentum 0.9, lr 0.1 = the workload's
defaults, until val error < 0.15; gradients measured every 50 steps on 1,024 examples cut in
chunks of 32) into runs/bench/noise_scale_mnist1d/, then compares B_simple with the knees of the
sweeps that benchmarks/batch_size_mnist1d.py left in runs/bench/ (run those first):

- measured knee = B_crit of the fit S(B) = S_min (1 + B_crit / B) to the sweep's curve;
- target: prediction within a factor of 4 of the knee, at < 10% of the sweep's compute
  (examples processed by the sweep, pruned protocol — the conservative denominator).

The primary comparison, fixed before the runs, is the plain-SGD sweep (the noise-scale theory
is derived for SGD); the momentum sweep is reported next to it.
Writes benchmarks/results/batch_size_noise_scale.json (+ PNG).
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

from feedwise.studies.noise_scale.run import NoiseScaleRequest, run_noise_scale  # noqa: E402


def main() -> int:
    out = ROOT / "runs" / "bench" / "noise_scale_mnist1d"
    req = NoiseScaleRequest(workload="mnist1d-mlp", batch_size=128, optimizer="momentum", lr=0.1, momentum=0.9,
                            b_small=32, b_big=1024, measure_every=50, max_steps=4000, target=0.15, seed=0)
    t0 = time.time()
    ns = run_noise_scale(req, out, threads=1, device="cpu")
    wall = time.time() - t0
    pred = ns["predicted_critical_batch"]
    comparisons = {}
    for opt in ("sgd", "momentum"):
        sweep = ROOT / "runs" / "bench" / f"batch_size_mnist1d_{opt}" / "summary.json"
        if not sweep.exists():
            continue
        s = json.loads(sweep.read_text())
        knee = s["knee"].get("b_crit")
        ex = s["pruning"]["examples_processed"]
        ratio = pred / knee if knee else None
        comparisons[opt] = {
            "knee_b_crit": knee, "s_min": s["knee"].get("s_min"),
            "largest_perfect_scaling_batch": s["regimes"]["largest_perfect"],
            "largest_useful_batch": s["regimes"]["largest_useful"],
            "prediction_over_knee": ratio,
            "within_factor_4": (ratio is not None and 0.25 <= ratio <= 4.0),
            "prediction_over_late_window_knee": (ns["b_simple"]["late_window"] / knee) if knee else None,
            "sweep_examples_processed": ex, "sweep_examples_unpruned": s["pruning"]["examples_unpruned"],
            "compute_fraction": ns["compute"]["examples_total"] / ex,
            "compute_fraction_vs_unpruned": ns["compute"]["examples_total"] / s["pruning"]["examples_unpruned"],
            "under_10_percent": ns["compute"]["examples_total"] / ex < 0.10,
        }
    res = {"benchmark": "batch_size_noise_scale", "command": "python benchmarks/batch_size_noise_scale.py",
           "noise_scale_request": {k: v for k, v in req.__dict__.items() if k != "data"},
           "b_simple_summaries": ns["b_simple"], "predicted_critical_batch": pred,
           "prediction_rule": ns["prediction_rule"], "measurements": ns["measurements"], "compute": ns["compute"],
           "train": ns["train"], "wall_s_this_invocation": wall,
           "primary_comparison": "sgd", "comparisons": comparisons}
    res_dir = ROOT / "benchmarks" / "results"
    res_dir.mkdir(parents=True, exist_ok=True)
    try:
        from feedwise.studies.batch_size.report import build_sections
        assets = res_dir / "batch_size_noise_scale"
        assets.mkdir(exist_ok=True)
        res["plots"] = [str(p.relative_to(ROOT)) for sec in build_sections(out, assets) for p in sec.images]
        from feedwise.studies.batch_size.report import build_overlay
        sweeps = [ROOT / "runs" / "bench" / f"batch_size_mnist1d_{o}" for o in ("momentum", "sgd")]
        sweeps = [d for d in sweeps if (d / "summary.json").exists()]
        if len(sweeps) > 1:  # momentum vs SGD on the same axes, with the noise-scale prediction
            ov = build_overlay(sweeps, assets)
            res["plots"] += [str(p.relative_to(ROOT)) for sec in ov for p in sec.images]
            res["overlay_markdown"] = ov[0].markdown
    except ImportError:
        pass
    (res_dir / "batch_size_noise_scale.json").write_text(json.dumps(res, indent=2) + "\n")
    print(json.dumps({k: res[k] for k in ("b_simple_summaries", "compute", "comparisons")}, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
