"""What a Shallue batch-size sweep costs: unpruned, today's order, best-first, best-first + together.

    .venv/bin/python benchmarks/sweep_cost.py --optimizer sgd
    .venv/bin/python benchmarks/sweep_cost.py --optimizer momentum

One run per optimizer on mnist1d-mlp, the same trial set (the Sobol points 0..N-1 of every batch
size, the search space and budget of benchmarks/batch_size_mnist1d.py) trained four ways:

- ``reference``: every trial alone, no pruning, stopped at the target (its first step below the
  target is what the unpruned protocol would find; what it would *process* is counted by the
  study's own account: the full step budget of every trial, the actual examples of a diverged one).
  Its wall-clock is that of the stop-at-target runs, a lower bound of the unpruned protocol's.
- ``given``: the study as before this change, ``--order given`` (ascending batch sizes, points in
  order, one at a time), early stopping + exact pruning;
- ``best-first``: ``--order best-first`` (the default);
- ``together``: best-first with ``--trials-together K`` (all points of a batch size at once).

For each: examples processed, wall-clock, steps-to-result per batch size (all must equal the
reference's within one evaluation period; given and best-first exactly), and the *exact-pruning
floor*: the fewest examples any order could process with this pruning rule (the best trial runs to
its steps-to-result, every other trial to one evaluation before it or to its own earlier stop),
computed from the reference. Result: benchmarks/results/sweep_cost_<optimizer>.json.
"""

from __future__ import annotations

import argparse
import os
import shutil
import sys
import time
from pathlib import Path

os.environ.setdefault("FEEDWISE_QUIET", "1")
ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "src"))
sys.path.insert(0, str(ROOT / "benchmarks"))

import torch
from _common import RESULTS, machine, write_json
from batch_size_mnist1d import SPACES

from feedwise.engine import Trainer
from feedwise.studies.batch_size import scaling
from feedwise.studies.batch_size.run import (
    BatchSizeRequest,
    Budget,
    make_config,
    run_batch_size_study,
    trial_seed,
)
from feedwise.studies.batch_size.trials import point_params
from feedwise.workloads import get_workload

BATCH_SIZES = [32, 64, 128, 256, 512]
# scaled to the shared 2-core CPU (the budget of batch_size_mnist1d.py, 1,200 steps, from the
# workload's batch size 128 instead of 256: the same examples at B <= 128; evaluations every 6,400
# examples: an evaluation (5,000 validation examples, forward only) costs ~1/4 of the training between two)
BUDGET = Budget(max_steps=1200, ref_batch=128, eval_every=50, min_eval_every=10)


def train_trial_set(req: BatchSizeRequest, space: dict, target: float | None, budget: Budget = BUDGET,
                    curves: bool = False) -> dict:
    """Every trial of the set alone, no pruning: stopped at ``target`` (None: its full budget or its
    divergence); with ``curves``, its (step, val_error) at every evaluation too."""
    w = get_workload(req.workload)
    data = w.load()
    mf = w.model_fn(data)
    out = {}
    for b in req.batch_sizes:
        trials = []
        for p in range(req.trials):
            params = point_params(space, p, req.seed + b)
            cfg = make_config(b, params, req.optimizer, budget, target, trial_seed(req.seed, p))
            t = time.perf_counter()
            r = Trainer(data, mf, cfg, loss_fn=w.loss).run()
            rec = {"point": p, "status": r.status, "steps_run": r.steps_run, "examples": r.examples,
                   "steps_to_result": r.steps_to_result, "s": time.perf_counter() - t,
                   "budget_steps": cfg.budget_steps(), "eval_every": cfg.eval_every}
            if curves:
                rec["curve"] = [[row["step"], row["val_error"]] for row in r.rows
                                if row.get("val_error") is not None and row["step"] > 0]
            trials.append(rec)
            print(f"  reference b={b} point {p}: {r.status} at {r.steps_run}", flush=True)
        out[b] = trials
    return out


def reference(req: BatchSizeRequest, space: dict, target: float) -> dict:
    return train_trial_set(req, space, target)


def floor_and_account(b: int, trials: list[dict]) -> dict:
    reached = [t["steps_to_result"] for t in trials if t["steps_to_result"] is not None]
    best = min(reached) if reached else None
    unpruned = sum(scaling.unpruned_examples(t["status"], t["examples"], t["budget_steps"], b) for t in trials)
    floor = scaling.exact_floor({**t, "batch_size": b} for t in trials)
    return {"steps_to_result": best, "examples_unpruned": unpruned, "examples_floor": floor,
            "examples_stop_at_target": sum(t["examples"] for t in trials),
            "wall_s": sum(t["s"] for t in trials)}


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--optimizer", default="momentum", choices=["sgd", "momentum"])
    ap.add_argument("--trials", type=int, default=20)
    ap.add_argument("--together", type=int, default=0, help="K of the together variant (default: --trials)")
    ap.add_argument("--batch-sizes", default=",".join(map(str, BATCH_SIZES)))
    ap.add_argument("--variants", default="reference,given,best-first,together")
    ap.add_argument("--name", default=None, help="result name (default sweep_cost_<optimizer>)")
    a = ap.parse_args()
    torch.set_num_threads(1)
    k = a.together or a.trials
    req = BatchSizeRequest(workload="mnist1d-mlp", batch_sizes=[int(b) for b in a.batch_sizes.split(",")],
                           trials=a.trials, optimizer=a.optimizer, budget=BUDGET, seed=0, space=SPACES[a.optimizer])
    req, space, target, _ = req.resolved()
    name = a.name or f"sweep_cost_{a.optimizer}"
    runs = ROOT / "runs" / "bench" / name
    res: dict = {"benchmark": name, "command": "python benchmarks/sweep_cost.py " + " ".join(sys.argv[1:]),
                 "protocol": {"workload": "mnist1d-mlp", "optimizer": a.optimizer, "batch_sizes": req.batch_sizes,
                              "trials_per_batch_size": a.trials, "space": space, "budget": BUDGET.__dict__,
                              "target": target, "together_k": k, "threads": 1},
                 "machine": machine(), "variants": {}}
    variants = a.variants.split(",")
    if "reference" in variants:
        t = time.perf_counter()
        ref = reference(req, space, target)
        wall = time.perf_counter() - t
        per_b = {b: floor_and_account(b, ts) for b, ts in ref.items()}
        res["reference_trials"] = {str(b): ts for b, ts in ref.items()}
        res["variants"]["reference"] = {
            "wall_s": wall, "examples_processed": sum(v["examples_unpruned"] for v in per_b.values()),
            "examples_stop_at_target": sum(v["examples_stop_at_target"] for v in per_b.values()),
            "examples_floor": sum(v["examples_floor"] for v in per_b.values()),
            "steps_to_result": {str(b): v["steps_to_result"] for b, v in per_b.items()},
            "by_batch_size": {str(b): v for b, v in per_b.items()}}
        print("reference", res["variants"]["reference"]["steps_to_result"], f"{wall:.0f}s", flush=True)
    for v in variants:
        if v == "reference":
            continue
        out = runs / v
        shutil.rmtree(out, ignore_errors=True)
        kw = {"order": "given"} if v == "given" else {"order": "best-first"}
        if v == "together":
            kw["trials_together"] = k
        t = time.perf_counter()
        s = run_batch_size_study(req, out, threads=1, device="cpu", **kw)
        wall = time.perf_counter() - t
        res["variants"][v] = {
            "options": kw, "wall_s": wall, "examples_processed": s["pruning"]["examples_processed"],
            "examples_unpruned_account": s["pruning"]["examples_unpruned"],
            "steps_to_result": {str(e["batch_size"]): e["steps_to_result"] for e in s["batch_sizes"]},
            "examples_by_batch_size": {str(e["batch_size"]): e["examples_processed"] for e in s["batch_sizes"]},
            "trials_by_status": {str(e["batch_size"]): e["trials_by_status"] for e in s["batch_sizes"]}}
        print(v, res["variants"][v]["steps_to_result"], res["variants"][v]["examples_processed"], f"{wall:.0f}s",
              flush=True)
    ref = res["variants"].get("reference")
    if ref:
        unpruned = ref["examples_processed"]
        evals = {str(b): BUDGET.eval_period(b) for b in req.batch_sizes}
        for v, r in res["variants"].items():
            r["fraction_of_unpruned"] = r["examples_processed"] / unpruned
            r["steps_to_result_diff"] = {b: (None if r["steps_to_result"][b] is None or ref["steps_to_result"][b]
                                             is None else r["steps_to_result"][b] - ref["steps_to_result"][b])
                                         for b in ref["steps_to_result"]}
            r["matches_reference_within_one_eval"] = all(
                (r["steps_to_result"][b] is None) == (ref["steps_to_result"][b] is None)
                and (d is None or abs(d) <= evals[b]) for b, d in r["steps_to_result_diff"].items())
        ref["floor_fraction_of_unpruned"] = ref["examples_floor"] / unpruned
        for v, r in res["variants"].items():
            print(f"{v:11s} examples {r['examples_processed']:>11,} = {100 * r['fraction_of_unpruned']:5.1f}% of "
                  f"unpruned, wall {r['wall_s']:6.0f}s, steps-to-result {r['steps_to_result']} "
                  f"match={r['matches_reference_within_one_eval']}")
        print(f"exact-pruning floor: {100 * ref['floor_fraction_of_unpruned']:.1f}% of unpruned")
    print(write_json(RESULTS / f"{name}.json", res))
    return 0


if __name__ == "__main__":
    sys.exit(main())
