"""How low can a sweep's cost go with the same steps-to-result? Exact pruning vs successive halving,
at the sweep_cost budget and at a larger one.

    .venv/bin/python benchmarks/sweep_pruning_rules.py --optimizer sgd
    .venv/bin/python benchmarks/sweep_pruning_rules.py --optimizer momentum --budget-multiplier 4 --product

Issue 17 asks for a sweep at <= 10% of the unpruned protocol's examples with identical steps-to-result.
sweep_cost.py measured the study itself (given order, best-first, best-first + trials together) and
the floor of exact pruning for its trial set. This benchmark asks the next two questions on the same
workload, search space and trial set (mnist1d-mlp, 5 batch sizes 32-512, Sobol points 0..N-1):

1. **Does a pruning rule that is not exact get there?** Every trial is trained once without any stop
   (its full budget, or to its divergence: that run *is* the unpruned protocol, and its examples are
   the denominator), keeping its validation error at every evaluation. Replaying those curves, any
   rule can be evaluated in any order without training again: exact pruning (the study's rule), and
   Optuna's ``SuccessiveHalvingPruner`` rule (its promotion rule re-implemented here for the replay:
   a trial reaching rung k at step r0 * eta**k goes on only if its error is in the best
   1/eta of the trials that reached that rung so far, the first one always), with exact pruning on
   top, one trial at a time or all of a batch size together, over ``--orders`` random orders (order 0
   is the given one). For each rule: the examples as a fraction of the unpruned protocol (mean over
   the orders), and in how many (order, batch size) pairs its steps-to-result differs from the true one
   (the minimum over all trials: an inexact rule can only find a larger one).
2. **Does a larger budget get there with exact pruning?** ``--budget-multiplier m`` trains every trial
   with m times the sweep_cost budget (its learning-rate decay stretched with it, as the search space
   defines decay as a fraction of the budget: a different, more generous protocol with its own
   steps-to-result); ``--product`` then also runs the study itself (best-first + all trials of a batch size
   together, exact pruning) at that budget and checks its steps-to-result against the replayed truth.
   ``--reanalyse FILE --variants given,best-first,together`` adds the study run the issue's other ways
   (given order, best-first alone) to a saved result, against the same unpruned reference.

Result: benchmarks/results/sweep_pruning_rules_<optimizer>_x<m>.json (the curves included, so every
number can be recomputed).
"""

from __future__ import annotations

import argparse
import json
import math
import os
import random
import shutil
import sys
import time
from dataclasses import replace
from pathlib import Path

os.environ.setdefault("FEEDWISE_QUIET", "1")
ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "src"))
sys.path.insert(0, str(ROOT / "benchmarks"))

import torch
from _common import RESULTS, _clean, machine
from batch_size_mnist1d import SPACES
from sweep_cost import BATCH_SIZES, BUDGET, train_trial_set

from feedwise.studies.batch_size import scaling
from feedwise.studies.batch_size.run import BatchSizeRequest, Budget, run_batch_size_study

HALVING_GRID = [(f, eta) for f in (1 / 64, 1 / 32, 1 / 16, 1 / 8) for eta in (2, 3, 4)]


def train_curves(req: BatchSizeRequest, space: dict, budget) -> dict:
    """Every trial to its full budget (or divergence): status, steps, and (step, val_error) per evaluation."""
    return train_trial_set(req, space, None, budget, curves=True)


def true_steps(trials: list[dict], target: float) -> int | None:
    """The unpruned protocol's steps-to-result: the first evaluation below the target, minimum over trials."""
    firsts = [next((s for s, v in t["curve"] if v < target), None) for t in trials]
    firsts = [s for s in firsts if s is not None]
    return min(firsts) if firsts else None


class Halving:
    """Optuna's SuccessiveHalvingPruner promotion rule (min_resource r0, reduction factor eta,
    min_early_stopping_rate 0, bootstrap_count 0), replayed: one instance per batch size."""

    def __init__(self, r0: int, eta: int):
        self.r0, self.eta, self.rungs = r0, eta, {}

    def prune(self, rung: int, step: int, value: float) -> tuple[bool, int]:
        while step >= self.r0 * self.eta ** rung:
            if math.isnan(value):
                return True, rung
            seen = self.rungs.setdefault(rung, [])
            competing = sorted(seen + [value])
            seen.append(value)
            if not value <= competing[max(len(competing) // self.eta - 1, 0)]:
                return True, rung
            rung += 1
        return False, rung


def replay(trials: list[dict], target: float, order: list[int], halving: Halving | None, together: bool) -> tuple:
    """Steps each trial runs under exact pruning (+ ``halving``), in ``order`` (one at a time, or all
    in lockstep); returns (total steps, steps-to-result found)."""
    e = trials[0]["eval_every"]
    curves = [dict(t["curve"]) for t in trials]
    best, stops, rung = None, {}, {i: 0 for i in order}

    def step_rule(i: int, s: int) -> bool:   # after the target check: exact pruning, then halving
        if scaling.should_prune(s, e, best):
            return True
        if halving is None:
            return False
        pruned, rung[i] = halving.prune(rung[i], s, curves[i][s])
        return pruned

    if not together:
        for i in order:
            for s, v in trials[i]["curve"]:
                if v < target:
                    best = s if best is None else min(best, s)
                    stops[i] = s
                    break
                if step_rule(i, s):
                    stops[i] = s
                    break
            else:
                stops[i] = trials[i]["steps_run"]
        return sum(stops.values()), best
    alive = list(order)
    for s in sorted({s for c in curves for s in c}):
        for i in list(alive):
            if s not in curves[i]:   # no evaluation of this trial here (another's divergence step), or it has ended
                if s > max(curves[i], default=0):
                    stops[i] = trials[i]["steps_run"]
                    alive.remove(i)
            elif curves[i][s] < target:
                best = s if best is None else min(best, s)
                stops[i] = s
                alive.remove(i)
        for i in list(alive):
            if s in curves[i] and step_rule(i, s):
                stops[i] = s
                alive.remove(i)
    for i in alive:
        stops[i] = trials[i]["steps_run"]
    return sum(stops.values()), best


def analyse(curves: dict, target: float, n_orders: int) -> dict:
    orders = [list(range(len(next(iter(curves.values())))))]
    for k in range(1, n_orders):
        o = list(orders[0])
        random.Random(k).shuffle(o)
        orders.append(o)
    truth = {b: true_steps(ts, target) for b, ts in curves.items()}
    unpruned = sum(scaling.unpruned_examples(t["status"], t["steps_run"] * b, t["budget_steps"], b)
                   for b, ts in curves.items() for t in ts)
    floor = scaling.exact_floor({"batch_size": b, "steps_run": t["steps_run"], "eval_every": t["eval_every"],
                                 "steps_to_result": true_steps([t], target)} for b, ts in curves.items() for t in ts)
    rules = {}
    for name, hv, together in ([("exact", None, False), ("exact-together", None, True)]
                               + [(f"halving r0={f:.4g}*budget eta={eta}{' together' if tg else ''}", (f, eta), tg)
                                  for f, eta in HALVING_GRID for tg in (False, True)]):
        fracs, wrong = [], {str(b): 0 for b in curves}
        for o in orders:
            ex = 0
            for b, ts in curves.items():
                h = None if hv is None else Halving(max(1, round(ts[0]["budget_steps"] * hv[0])), hv[1])
                steps, found = replay(ts, target, o, h, together)
                ex += steps * b
                wrong[str(b)] += found != truth[b]
            fracs.append(ex / unpruned)
        rules[name] = {"fraction_of_unpruned": {"mean": sum(fracs) / len(fracs), "min": min(fracs),
                                                "max": max(fracs), "given_order": fracs[0]},
                       "orders_with_other_steps_to_result": wrong,
                       "same_steps_to_result_in_every_order": not any(wrong.values())}
    return {"steps_to_result": {str(b): s for b, s in truth.items()}, "examples_unpruned": unpruned,
            "exact_floor_fraction": floor / unpruned, "orders": len(orders), "rules": rules}


def write_result(path: Path, res: dict) -> Path:
    """The result as indented JSON with one line per trial curve (the curves are most of it), atomically."""
    head = json.dumps(_clean({k: v for k, v in res.items() if k != "curves"}), indent=2)
    curves = ",\n".join(f'    "{b}": [\n' + ",\n".join("      " + json.dumps(_clean(t), separators=(",", ":"))
                                                         for t in ts) + "\n    ]"
                         for b, ts in res["curves"].items())
    tmp = path.with_suffix(".json.tmp")
    tmp.write_text(head[:-2] + ',\n  "curves": {\n' + curves + "\n  }\n}\n")
    tmp.replace(path)
    return path


PRODUCT_VARIANTS = {"given": {"order": "given"}, "best-first": {"order": "best-first"},
                    "together": {"order": "best-first", "trials_together": None}}


def run_product(req: BatchSizeRequest, name: str, variant: str, res: dict) -> dict:
    """The study itself (exact pruning) as ``variant``, compared with the replayed unpruned sweep."""
    kw = {k: (req.trials if v is None else v) for k, v in PRODUCT_VARIANTS[variant].items()}
    out = ROOT / "runs" / "bench" / name / variant
    shutil.rmtree(out, ignore_errors=True)
    t = time.perf_counter()
    s = run_batch_size_study(req, out, threads=1, device="cpu", **kw)
    got = {str(e["batch_size"]): e["steps_to_result"] for e in s["batch_sizes"]}
    return {"options": {**kw, "pruning": "exact"}, "wall_s": time.perf_counter() - t,
            "examples_processed": s["pruning"]["examples_processed"],
            "examples_unpruned_account": s["pruning"]["examples_unpruned"],
            "examples_floor": s["pruning"]["examples_floor"],
            "fraction_of_unpruned": s["pruning"]["examples_processed"] / res["examples_unpruned"],
            "steps_to_result": got, "same_steps_to_result": got == res["steps_to_result"]}


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--optimizer", default="momentum", choices=["sgd", "momentum"])
    ap.add_argument("--trials", type=int, default=20)
    ap.add_argument("--budget-multiplier", type=int, default=1)
    ap.add_argument("--orders", type=int, default=20)
    ap.add_argument("--product", action="store_true", help="also run the study (best-first + together)")
    ap.add_argument("--reanalyse", type=Path, default=None,
                    help="recompute the replayed rules of a saved result from its curves (no training)")
    ap.add_argument("--variants", default=None,
                    help="with --reanalyse: also run the study as these variants (given,best-first,together) "
                         "at the saved protocol and add them to the result (product_variants)")
    a = ap.parse_args()
    if a.reanalyse:
        res = json.loads(a.reanalyse.read_text())
        # a NaN (diverged) error was saved as null
        curves = {int(b): [{**t, "curve": [[st, math.nan if v is None else v] for st, v in t["curve"]]}
                           for t in ts] for b, ts in res.pop("curves").items()}
        res.update(analyse(curves, res["protocol"]["target"], a.orders))
        res["reanalysed"] = "rules replayed again from the saved curves: python benchmarks/sweep_pruning_rules.py " \
                            "--reanalyse " + a.reanalyse.name
        res["curves"] = {str(b): ts for b, ts in curves.items()}
        if a.variants:
            torch.set_num_threads(1)
            pc = res["protocol"]
            req = BatchSizeRequest(workload=pc["workload"], batch_sizes=pc["batch_sizes"],
                                   trials=pc["trials_per_batch_size"], optimizer=pc["optimizer"],
                                   budget=Budget(**pc["budget"]), seed=0, space=pc["space"])
            req = req.resolved()[0]
            pv = res.setdefault("product_variants", {})
            for v in a.variants.split(","):
                pv[v] = res["product"] if v == "together" and "product" in res else \
                    run_product(req, res["benchmark"], v, res)
                print(v, f"{100 * pv[v]['fraction_of_unpruned']:.2f}%", pv[v]["steps_to_result"],
                      "same" if pv[v]["same_steps_to_result"] else "OTHER", f"{pv[v]['wall_s']:.0f}s", flush=True)
        print(write_result(a.reanalyse, res))
        return 0
    torch.set_num_threads(1)
    budget = replace(BUDGET, max_steps=BUDGET.max_steps * a.budget_multiplier)
    req = BatchSizeRequest(workload="mnist1d-mlp", batch_sizes=BATCH_SIZES, trials=a.trials, optimizer=a.optimizer,
                           budget=budget, seed=0, space=SPACES[a.optimizer])
    req, space, target, _ = req.resolved()
    name = f"sweep_pruning_rules_{a.optimizer}_x{a.budget_multiplier}"
    t = time.perf_counter()
    curves = train_curves(req, space, budget)
    wall = time.perf_counter() - t
    res = {"benchmark": name, "command": "python benchmarks/sweep_pruning_rules.py " + " ".join(sys.argv[1:]),
           "protocol": {"workload": "mnist1d-mlp", "optimizer": a.optimizer, "batch_sizes": req.batch_sizes,
                        "trials_per_batch_size": a.trials, "space": space, "budget": budget.__dict__,
                        "budget_multiplier": a.budget_multiplier, "target": target, "threads": 1},
           "machine": machine(), "unpruned_wall_s": wall}
    res.update(analyse(curves, target, a.orders))
    if a.product:
        res["product"] = run_product(req, name, "together", res)
    res["curves"] = {str(b): ts for b, ts in curves.items()}
    print(f"{name}: steps-to-result {res['steps_to_result']}, exact floor "
          f"{100 * res['exact_floor_fraction']:.1f}% of unpruned")
    for r, v in res["rules"].items():
        f = v["fraction_of_unpruned"]
        print(f"  {r:44s} {100 * f['mean']:5.1f}% (orders {100 * f['min']:.1f}-{100 * f['max']:.1f}%), "
              f"other steps-to-result: {v['orders_with_other_steps_to_result']}")
    if "product" in res:
        p = res["product"]
        print(f"  study best-first + together: {100 * p['fraction_of_unpruned']:.1f}%, steps-to-result "
              f"{p['steps_to_result']} same={p['same_steps_to_result']}")
    print(write_result(RESULTS / f"{name}.json", res))
    return 0


if __name__ == "__main__":
    sys.exit(main())
