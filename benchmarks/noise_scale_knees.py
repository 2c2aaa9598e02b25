"""Which noise-scale statistic predicts which measured knee? B_simple summaries and B_noise along
short training runs (3 seeds per optimizer) vs the knees of the saved SGD and momentum sweeps.

    .venv/bin/python benchmarks/noise_scale_knees.py [--seeds 3]

What is done (sized for a loaded 2-core machine; no sweep is re-run):
- the knees: B_crit of the fit S(B) = S_min (1 + B_crit / B) to the saved sweeps
  benchmarks/results/batch_size_mnist1d_{sgd,momentum}.json (10 Sobol trials per batch size, one
  seed each; their compute = the examples those sweeps processed, pruned protocol);
- the statistics: for each optimizer and seed 0..S-1, one `noise-scale` run of mnist1d-mlp at
  B = 128 with the workload's defaults made comparable (momentum: lr 0.1, momentum 0.9; SGD: lr 1.0,
  the same effective lr 0.1/(1-0.9)), no hyperparameter taken from the sweeps, until val error < 0.15
  (the sweeps' target) or 4,000 steps; gradients measured at step 0, every 100 steps and at the
  target step on 1,024 examples in chunks of 32 (step 0 and the target: 2 draws each), B_noise with
  2 Hessian-vector products on an independent batch of 256 each measurement;
- per statistic and optimizer: the ratio statistic / knee for each seed, its range over seeds, and
  whether all seeds fall within 2x of the knee; compute = examples of the run (training + gradient
  and Hessian-vector measurements) / the sweep's examples.
Writes benchmarks/results/noise_scale_knees.json.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import statistics
import sys
import time
from pathlib import Path

os.environ.setdefault("FEEDWISE_QUIET", "1")
ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "src"))

from feedwise.files import jsonable  # noqa: E402
from feedwise.studies.noise_scale.run import NoiseScaleRequest, run_noise_scale  # noqa: E402

RUNS = {"sgd": {"optimizer": "sgd", "lr": 1.0, "momentum": 0.0},
        "momentum": {"optimizer": "momentum", "lr": 0.1, "momentum": 0.9}}
STATS = ["at_start", "time_average", "g2_weighted", "late_window", "near_target", "at_target"]
OUT = ROOT / "benchmarks" / "results" / "noise_scale_knees.json"


def knee_of(opt: str) -> dict:
    d = json.loads((ROOT / "benchmarks" / "results" / f"batch_size_mnist1d_{opt}.json").read_text())["summary"]
    return {"b_crit": d["knee"]["b_crit"], "s_min": d["knee"]["s_min"], "curve": d["curve"],
            "sweep_examples_processed": d["pruning"]["examples_processed"],
            "sweep_examples_unpruned": d["pruning"]["examples_unpruned"]}


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--seeds", type=int, default=3)
    a = ap.parse_args()
    t0 = time.time()
    runs, table = {}, {}
    for opt, hp in RUNS.items():
        knee = knee_of(opt)
        runs[opt] = []
        for seed in range(a.seeds):
            req = NoiseScaleRequest(workload="mnist1d-mlp", batch_size=128, **hp, b_small=32, b_big=1024,
                                    measure_every=100, max_steps=4000, target=0.15, seed=seed, hessian=True,
                                    hessian_batch=256, hessian_chunks=2, precise_draws=2, block=3)
            t = time.time()
            s = run_noise_scale(req, ROOT / "runs" / "bench" / f"noise_scale_knees_{opt}_{seed}", threads=1,
                                device="cpu")
            runs[opt].append({"seed": seed, "train": s["train"], "measurements": s["measurements"],
                              "b_simple": s["b_simple"], "b_noise": s["b_noise"], "compute": s["compute"],
                              "compute_fraction_of_sweep": s["compute"]["examples_total"]
                              / knee["sweep_examples_processed"],
                              "wall_s": time.time() - t,
                              "series": [{k: r.get(k) for k in ("step", "b_simple_point", "b_simple_window",
                                                                "b_noise_point")} for r in s["series"]]})
            print(f"{opt} seed {seed}: {s['train']['status']} at {s['train']['steps_run']}; "
                  f"B_simple {json.dumps({k: round(v) if v is not None else None for k, v in s['b_simple'].items()})}; "  # noqa: E501
                  f"B_noise {json.dumps({k: round(v) if v is not None else None for k, v in s['b_noise'].items()})}",  # noqa: E501
                  flush=True)
        rows = {}
        for q in ("b_simple", "b_noise"):
            for k in STATS:
                vals = [r[q][k] for r in runs[opt]]
                ok = [v for v in vals if v is not None and isinstance(v, float) and math.isfinite(v) and v > 0]
                ratios = [v / knee["b_crit"] for v in ok]
                rows[f"{q}.{k}"] = {"values": vals, "ratio_to_knee": ratios,
                                    "ratio_median": statistics.median(ratios) if ratios else None,
                                    "ratio_min": min(ratios) if ratios else None,
                                    "ratio_max": max(ratios) if ratios else None,
                                    "all_seeds_within_2x": bool(ratios) and len(ratios) == len(vals)
                                    and all(0.5 <= x <= 2.0 for x in ratios)}
        fr = [r["compute_fraction_of_sweep"] for r in runs[opt]]
        table[opt] = {"knee": knee, "statistics": rows, "compute_fraction_of_sweep": {"min": min(fr), "max": max(fr)}}
    ks, km = table["sgd"]["knee"]["b_crit"], table["momentum"]["knee"]["b_crit"]
    trajectory_ratio = {}
    for k in table["sgd"]["statistics"]:
        a_, b_ = table["sgd"]["statistics"][k], table["momentum"]["statistics"][k]
        if a_["ratio_median"] and b_["ratio_median"]:
            trajectory_ratio[k] = (b_["ratio_median"] * km) / (a_["ratio_median"] * ks)
    analysis = {
        "knee_ratio_momentum_over_sgd": km / ks,
        "one_number_within_2x_of_both_knees_possible": 2 * ks >= km / 2,
        "statistic_momentum_run_over_sgd_run": trajectory_ratio,
        "one_run_pair": {o: {"b_noise_time_average_over_sgd_knee": [r["b_noise"]["time_average"] / ks for r in runs[o]],
                             "b_simple_time_average_over_momentum_knee": [r["b_simple"]["time_average"] / km
                                                                          for r in runs[o]],
                             "compute_fraction_of_sgd_sweep": [r["compute"]["examples_total"]
                                                               / table["sgd"]["knee"]["sweep_examples_processed"]
                                                               for r in runs[o]],
                             "compute_fraction_of_momentum_sweep": [
                                 r["compute"]["examples_total"] / table["momentum"]["knee"]["sweep_examples_processed"]
                                 for r in runs[o]]}
                         for o in runs},
        "note": "a statistic measured along each optimizer's own run can follow the two knees only if it differs "
                "between the runs by about the knees' ratio (within 2x both: between ratio/4 and ratio*4 and at the "
                "right level)",
    }
    both = [k for k in table["sgd"]["statistics"]
            if table["sgd"]["statistics"][k]["all_seeds_within_2x"]
            and table["momentum"]["statistics"][k]["all_seeds_within_2x"]]
    old = json.loads(OUT.read_text()) if OUT.exists() else {}
    res = {"benchmark": "noise_scale_knees",
           "command": "python benchmarks/noise_scale_knees.py " + " ".join(sys.argv[1:]),
           "protocol": {"runs": RUNS, "batch_size": 128, "b_small": 32, "b_big": 1024, "measure_every": 100,
                        "hessian_batch": 256, "hessian_chunks": 2, "precise_draws": 2, "block": 3, "seeds": a.seeds,
                        "target": 0.15, "max_steps": 4000, "threads": 1,
                        "knees": "saved sweeps benchmarks/results/batch_size_mnist1d_{sgd,momentum}.json "
                                 "(not re-run; one seed per trial, 10 trials per batch size)"},
           "wall_s_this_invocation": time.time() - t0,
           "wall_s_first_invocation": old.get("wall_s_first_invocation") or old.get("wall_s") or time.time() - t0,
           "train_wall_s_total": sum(r["compute"]["wall_s"] for rs in runs.values() for r in rs),
           "note": "runs resume from runs/bench/noise_scale_knees_<optimizer>_<seed>/ (a re-run rebuilds the analysis)",
           "by_optimizer": table,
           "statistics_within_2x_for_both_optimizers_all_seeds": both, "analysis": analysis, "runs": runs}
    OUT.write_text(json.dumps(jsonable(res), indent=1) + "\n")
    for opt in table:
        print(opt, "knee", round(table[opt]["knee"]["b_crit"]), "compute", table[opt]["compute_fraction_of_sweep"])
        for k, r in table[opt]["statistics"].items():
            print(f"  {k:24s} ratios {[round(x, 2) for x in r['ratio_to_knee']]} within 2x: {r['all_seeds_within_2x']}")
    print("within 2x for both, every seed:", both)
    print(json.dumps(analysis, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
