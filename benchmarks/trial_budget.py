"""How steps-to-result and the knee move with the trial budget (search noise), mnist1d-mlp, plain SGD.

    .venv/bin/python benchmarks/trial_budget.py [--max-minutes 9] [--trials 50]
    .venv/bin/python benchmarks/trial_budget.py --analyze-only

Shallue et al. tuned ~100 trials per batch size; our sweeps (benchmarks/batch_size_mnist1d.py) use
10. This benchmark trains a larger trial set and subsamples it: for a budget of k trials per batch
size, draw k of the n trained trials without replacement (independently per batch size), take
steps-to-result = the minimum over the drawn trials, fit the knee, and repeat; the spread over
draws is the search noise a k-trial sweep carries.

Protocol, identical to the saved SGD sweep (benchmarks/results/batch_size_mnist1d_sgd.json) except:
- batch sizes 64, 256, 1024 only (the three around its knee, 238), to fit the machine;
- **no exact pruning**: every trial runs until it reaches the target (val error < 0.15), diverges
  or spends its budget, so each trial's own steps-to-result is known exactly (a pruned trial's
  would only be known to be >= a bound, which makes small subsets censored);
- trials are trained point by point round-robin over the batch sizes (point k of every batch size,
  then k + 1) and saved after each, so a run cut by --max-minutes leaves a balanced set, and the
  next invocation resumes from the saved records (runs/bench/trial_budget_sgd*.json); two processes
  may split the batch sizes (--batch-sizes 1024 next to --batch-sizes 64,256); the analysis uses
  points 0..n-1 with n the count every batch size has.
Points are the study's own: Sobol point k of the SGD space (seed 0 + B), training seed
stream(0, "batch-size trial", k), the sweep's budget (1,200 steps at B >= 256, 1,200*256/B below).

Writes benchmarks/results/trial_budget_mnist1d_sgd.json: every trial's record, and per budget k
the median and 5-95% range of steps-to-result per batch size, of B_crit and of the 64 -> 256 and
256 -> 1024 log-log slopes over 2,000 draws.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import sys
import time
from pathlib import Path

os.environ.setdefault("FEEDWISE_QUIET", "1")
ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "src"))

import numpy as np  # noqa: E402
import torch  # noqa: E402

from feedwise.engine import Trainer  # noqa: E402
from feedwise.studies.batch_size import scaling  # noqa: E402
from feedwise.studies.batch_size.run import Budget, make_config, trial_seed  # noqa: E402
from feedwise.studies.batch_size.search_space import resolve_space  # noqa: E402
from feedwise.studies.batch_size.trials import point_params  # noqa: E402
from feedwise.workloads import get_workload  # noqa: E402

BATCH_SIZES = [64, 256, 1024]
SPACE = {"lr": [1e-2, 10.0], "end_factor": [1e-2, 1.0], "decay_fraction": [0.5, 1.0]}
BUDGET = Budget(max_steps=1200, ref_batch=256, eval_every=25, min_eval_every=10)
BUDGETS_K = [10, 25, 50, 100]
DRAWS = 2000
STATE = ROOT / "runs" / "bench" / "trial_budget_sgd.json"          # the trials of every batch size


def state_of(b: int) -> Path:                                      # one file per batch size: processes may share work
    return ROOT / "runs" / "bench" / f"trial_budget_sgd_b{b}.json"


def load_state(batch_sizes) -> dict:
    trials = json.loads(STATE.read_text())["trials"] if STATE.exists() else []
    for b in batch_sizes:
        if state_of(b).exists():
            trials += json.loads(state_of(b).read_text())["trials"]
    seen, out = set(), []
    for t in trials:
        if (t["batch_size"], t["point"]) not in seen:
            seen.add((t["batch_size"], t["point"]))
            out.append(t)
    return {"trials": out}
OUT = ROOT / "benchmarks" / "results" / "trial_budget_mnist1d_sgd.json"


def train_point(w, data, space, b: int, point: int) -> dict:
    params = point_params(space, point, 0 + b)
    cfg = make_config(b, params, "sgd", BUDGET, w.target, trial_seed(0, point))
    tr = Trainer(data, w.model_fn(data), cfg, loss_fn=w.loss)
    rows = []
    res = tr.run(on_row=rows.append)
    return {"batch_size": b, "point": point, "params": params, "status": res.status, "steps_run": res.steps_run,
            "steps_to_result": scaling.first_step_below(rows, w.target), "examples": res.examples,
            "wall_s": res.wall_s, "eval_s": res.eval_s}


SEEDS_STATE = ROOT / "runs" / "bench" / "trial_budget_sgd_seeds.json"


def seed_reruns(state: dict, n_seeds: int) -> list[dict]:
    """The best point of each batch size (over all its trials) trained again with fresh seeds, as
    `feedwise batch-size --seeds` does (seed stream(0, "batch-size seed rerun", j), j = 1..n)."""
    from feedwise.seeds import stream

    torch.set_num_threads(1)
    done = json.loads(SEEDS_STATE.read_text())["runs"] if SEEDS_STATE.exists() else []
    have = {(r["batch_size"], r["seed_index"]) for r in done}
    w = get_workload("mnist1d-mlp")
    data = w.load()
    for b in BATCH_SIZES:
        reached = [t for t in state["trials"] if t["batch_size"] == b and t["steps_to_result"] is not None]
        if not reached:
            continue
        best = min(reached, key=lambda t: (t["steps_to_result"], t["point"]))
        for j in range(1, n_seeds + 1):
            if (b, j) in have:
                continue
            cfg = make_config(b, best["params"], "sgd", BUDGET, w.target, stream(0, "batch-size seed rerun", j))
            rows = []
            res = Trainer(data, w.model_fn(data), cfg, loss_fn=w.loss).run(on_row=rows.append)
            done.append({"batch_size": b, "point": best["point"], "search_steps_to_result": best["steps_to_result"],
                         "seed_index": j, "status": res.status,
                         "steps_to_result": scaling.first_step_below(rows, w.target)})
            SEEDS_STATE.write_text(json.dumps({"runs": done}, indent=1) + "\n")
            print(f"B={b} best point {best['point']} seed {j}: {done[-1]['steps_to_result']}", flush=True)
    return done


def train(n_trials: int, max_minutes: float, batch_sizes: list[int]) -> dict:
    torch.set_num_threads(1)
    state = load_state(BATCH_SIZES)
    done = {(t["batch_size"], t["point"]) for t in state["trials"]}
    w = get_workload("mnist1d-mlp")
    data = w.load()
    space = resolve_space(w.search_space, SPACE, "sgd")
    t0 = time.time()
    for k in range(n_trials):
        for b in batch_sizes:
            if (b, k) in done:
                continue
            if time.time() - t0 > 60 * max_minutes:
                print(f"time limit: stopped before point {k} of B={b}")
                return state
            rec = train_point(w, data, space, b, k)
            state["trials"].append(rec)
            mine = state_of(b)
            mine.parent.mkdir(parents=True, exist_ok=True)
            old = json.loads(mine.read_text())["trials"] if mine.exists() else []
            mine.write_text(json.dumps({"trials": old + [rec]}, indent=1) + "\n")
            print(f"B={b:5d} point {k:3d}: {rec['status']:9s} steps_to_result={rec['steps_to_result']} "
                  f"({rec['wall_s'] + rec['eval_s']:.1f} s)", flush=True)
    return state


def _q(xs, q):
    xs = [x for x in xs if x is not None]
    return float(np.quantile(xs, q)) if xs else None


def analyze(state: dict, draws: int = DRAWS, seed: int = 0) -> dict:
    per = {b: [t for t in state["trials"] if t["batch_size"] == b] for b in BATCH_SIZES}
    n = min(len(v) for v in per.values())
    per = {b: sorted(v, key=lambda t: t["point"])[:n] for b, v in per.items()}   # a balanced set: points 0..n-1
    vals = {b: np.array([t["steps_to_result"] if t["steps_to_result"] is not None else np.inf for t in v])
            for b, v in per.items()}
    rng = np.random.default_rng(seed)
    out = {}
    for k in [k for k in BUDGETS_K if k <= n] + ([n] if n not in BUDGETS_K else []):
        curves = []
        for _ in range(draws if k < n else 1):
            c = {}
            for b in BATCH_SIZES:
                m = float(vals[b][rng.choice(n, size=k, replace=False)].min())
                c[b] = None if math.isinf(m) else int(m)
            curves.append(c)
        steps = {str(b): {"median": _q([c[b] for c in curves], 0.5), "p05": _q([c[b] for c in curves], 0.05),
                          "p95": _q([c[b] for c in curves], 0.95),
                          "unreached_fraction": sum(c[b] is None for c in curves) / len(curves)}
                 for b in BATCH_SIZES}
        knees = [scaling.fit_knee(c)["b_crit"] for c in curves]
        finite = [x for x in knees if x is not None and math.isfinite(x)]
        slopes = {}
        for b0, b1 in zip(BATCH_SIZES, BATCH_SIZES[1:]):
            s = [math.log(c[b1] / c[b0]) / math.log(b1 / b0) for c in curves if c[b0] and c[b1]]
            slopes[f"{b0}->{b1}"] = {"median": _q(s, 0.5), "p05": _q(s, 0.05), "p95": _q(s, 0.95),
                                     "better_than_perfect_fraction": (sum(x < -1 for x in s) / len(s)) if s else None}
        out[str(k)] = {"draws": len(curves), "steps_to_result": steps,
                       "b_crit": {"median": _q(finite, 0.5), "p05": _q(finite, 0.05), "p95": _q(finite, 0.95),
                                  "infinite_fraction": 1 - len(finite) / len(knees)},
                       "slopes": slopes}
    # the summary's own bootstrap (resampling with replacement), on the first 10 points (what a 10-trial sweep
    # would report) and on all n: intervals for steps-to-result, the knee and the regime labels
    def boot(k):
        oc = {b: [scaling.trial_outcome(t["status"], t["steps_to_result"], t["steps_run"], BUDGET.eval_period(b))
                  for t in per[b][:k]] for b in BATCH_SIZES}
        r = scaling.bootstrap(oc, resamples=1000, level=0.9)
        curve = {b: (None if math.isinf(float(vals[b][:k].min())) else int(vals[b][:k].min())) for b in BATCH_SIZES}
        return {"curve": {str(b): v for b, v in curve.items()}, "knee": scaling.fit_knee(curve)["b_crit"],
                "plain_regimes": {str(b): v for b, v in scaling.regimes(curve)["by_batch_size"].items()},
                "steps_to_result_interval": {str(b): [v["low"], v["high"]] for b, v in r["steps_to_result"].items()},
                "knee_interval": [r["knee"]["low"], r["knee"]["high"]], "segments": r["segments"],
                "regimes_interval_rule": {str(b): v for b, v in r["by_batch_size"].items()}}
    return {"trials_per_batch_size": n, "by_budget": out,
            "bootstrap": {"first_10_points": boot(min(10, n)), f"all_{n}_points": boot(n)}}


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--trials", type=int, default=50)
    ap.add_argument("--max-minutes", type=float, default=9.0)
    ap.add_argument("--analyze-only", action="store_true")
    ap.add_argument("--seeds", type=int, default=3, help="fresh seeds for each batch size's best point (0: none)")
    ap.add_argument("--batch-sizes", default=",".join(map(str, BATCH_SIZES)),
                    help="train only these (two processes may split the batch sizes; the analysis takes all)")
    a = ap.parse_args()
    t0 = time.time()
    if a.analyze_only:
        state = load_state(BATCH_SIZES) if (STATE.exists() or state_of(BATCH_SIZES[0]).exists()) \
            else json.loads(OUT.read_text())
    else:
        train(a.trials, a.max_minutes, [int(b) for b in a.batch_sizes.split(",")])
        state = load_state(BATCH_SIZES)
        if a.seeds:
            seed_reruns(state, a.seeds)
    seeds = json.loads(SEEDS_STATE.read_text())["runs"] if SEEDS_STATE.exists() else \
        (json.loads(OUT.read_text()).get("seed_reruns", {}).get("runs", []) if OUT.exists() else [])
    wall = time.time() - t0
    res = {"benchmark": "trial_budget_mnist1d_sgd",
           "command": "python benchmarks/trial_budget.py " + " ".join(sys.argv[1:]),
           "protocol": {"workload": "mnist1d-mlp", "optimizer": "sgd", "batch_sizes": BATCH_SIZES, "space": SPACE,
                        "budget": BUDGET.__dict__, "pruning": "none (every trial to target, divergence or budget)",
                        "subsampling": f"k of n trials without replacement per batch size, {DRAWS} draws",
                        "threads": 1, "note": "scaled down: 3 batch sizes, trials trained in resumable "
                                              "invocations of <= --max-minutes on a shared 2-core machine"},
           "this_invocation_wall_s": wall,
           "train_wall_s_total": sum(t["wall_s"] + t["eval_s"] for t in state["trials"]),
           **analyze(state),
           "seed_reruns": {"rule": "each batch size's best point over all trials, trained again with fresh seeds "
                                   "(no pruning)",
                           "runs": seeds,
                           "by_batch_size": {str(b): sorted(r["steps_to_result"] if r["steps_to_result"] is not None
                                                            else math.inf for r in seeds if r["batch_size"] == b)
                                             for b in BATCH_SIZES}},
           "trials": state["trials"]}
    OUT.parent.mkdir(parents=True, exist_ok=True)
    OUT.write_text(json.dumps(res, indent=1) + "\n")
    print(json.dumps({k: res[k] for k in ("trials_per_batch_size", "by_budget")}, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
