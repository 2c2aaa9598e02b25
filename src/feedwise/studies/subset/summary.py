"""The subset study's summary, built from its files only (study.json, trials/, subsets/):
test error per (acquisition, fraction, balance, budget rule) with seeds, against random and
full data, and the cost account with its break-even."""

from __future__ import annotations

from itertools import combinations
from pathlib import Path

import numpy as np

from feedwise.results import StudyDir, read_json
from feedwise.subset.select import KEEP_RULE, jaccard

BREAK_EVEN_RULE = (
    "break_even = search_cost / (full_cost - subset_cost): the number of future target trainings on the subset "
    "after which the one-off search has paid for itself (costs per training, in training examples or seconds; "
    "search examples include pool examples scored). null when the subset training is not cheaper than full-data "
    "training, or when the subset's mean test error exceeds the full-data mean test error by more than the "
    "tolerance (a worse subset pays for nothing). 0 for random subsets within tolerance (no search). "
    "Always null under the steps budget rule in both units: a subset trained for the full-data step budget does "
    "the same training work, so a difference in seconds is timing noise, not a saving."
)


def fraction_tag(f: float) -> str:
    return f"{f:g}"


def subset_name(acq: str, fraction: float, balance: str) -> str:
    return f"{acq}-{fraction_tag(fraction)}" + ("" if balance == "none" else f"-{balance}")

def _stats(values: list[float]) -> dict:
    v = [x for x in values if x is not None]
    if not v:
        return {"mean": None, "std": None, "n": 0, "values": []}
    a = np.asarray(v, dtype=np.float64)
    return {"mean": float(a.mean()), "std": float(a.std(ddof=1)) if a.size > 1 else 0.0, "n": int(a.size),
            "values": [float(x) for x in a]}


def _welch_p(a: list[float], b: list[float]) -> float | None:
    import warnings
    if len(a) < 2 or len(b) < 2:
        return None
    from scipy import stats
    if np.std(a) == 0 and np.std(b) == 0:
        return None
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return float(stats.ttest_ind(a, b, equal_var=False).pvalue)


def break_even(search: float, full: float, subset: float, subset_error: float | None, full_error: float | None,
               tolerance: float) -> float | None:
    """Number of future target trainings on the subset after which the search has paid off (see BREAK_EVEN_RULE)."""
    if subset_error is None or full_error is None or subset_error > full_error + tolerance:
        return None
    saving = full - subset
    if saving <= 0:
        return None
    return float(search / saving)


def cell_break_even(rule: str, acquisition: str, search: dict, full_cost: dict, cost: dict,
                    subset_error: float | None, full_error: float | None, tolerance: float) -> dict:
    """Break-even of one (acquisition, fraction, balance, budget rule) cell in examples and in
    seconds (BREAK_EVEN_RULE). Under the ``steps`` rule the subset does the full-data training
    work, so neither unit can show a saving: both are None (15 cells of the saved benchmarks had
    a "break-even" in seconds from timing noise alone, e.g. 12.09 s vs 16.09 s for identical work)."""
    be: dict[str, float | None] = {"examples": None, "seconds": None}
    if rule == "steps":
        return be
    for unit in ("examples", "seconds"):
        if full_cost.get(unit) is None:
            continue
        be[unit] = break_even(search[unit], full_cost[unit], cost[unit], subset_error, full_error, tolerance)
        if acquisition == "random" and be[unit] is not None:
            be[unit] = 0.0
    return be


def summarize(root: str | Path) -> dict:
    """Build summary.json from study.json, trials/ and subsets/ only."""
    root = Path(root)
    study = StudyDir(root)
    cfg = read_json(study.study_path)["config"]
    trials = {t.id: t.read() for t in study.trials()}
    tol = cfg["tolerance"]

    def tcost(rec: dict) -> dict:
        return {"examples": int(rec.get("examples") or 0), "train_s": float(rec.get("wall_s") or 0.0)}

    # search cost per ensemble and per (acquisition, balance)
    ens_cost: dict[str, dict] = {}
    for tid, rec in trials.items():
        if rec.get("role") != "acquisition":
            continue
        e = ens_cost.setdefault(rec["ensemble"], {"members": 0, "train_examples": 0, "scored_examples": 0,
                                                  "train_s": 0.0, "score_s": 0.0, "trials": []})
        e["members"] += 1
        e["train_examples"] += int(rec.get("examples") or 0)
        e["scored_examples"] += int(rec.get("scored_examples") or 0)
        e["train_s"] += float(rec.get("wall_s") or 0.0)
        e["score_s"] += float(rec.get("score_s") or 0.0)
        e["trials"].append(tid)
    for e in ens_cost.values():
        e["examples"] = e["train_examples"] + e["scored_examples"]
        e["seconds"] = e["train_s"] + e["score_s"]

    subsets = {}
    for p in sorted((root / "subsets").glob("*.json")):
        meta = read_json(p)
        comp = meta.get("composition", {})
        warn = [f"class {c} has {comp['counts'][c]} examples, under half its proportional share "
                f"{comp['share'][c]:.1f}" for c in comp.get("under_half", [])]
        subsets[p.stem] = {**meta, "warnings": warn}

    def search_cost(meta: dict | None) -> dict:
        ids = (meta or {}).get("ensemble", [])
        return {"examples": sum(ens_cost.get(i, {}).get("examples", 0) for i in ids),
                "seconds": sum(ens_cost.get(i, {}).get("seconds", 0.0) for i in ids), "ensembles": ids}

    full = [trials[t] for t in trials if t.startswith("target-full-s") and trials[t].get("status") != "running"]
    full_err = _stats([t.get("test_error") for t in full])
    full_cost = {"examples": float(np.mean([tcost(t)["examples"] for t in full])) if full else None,
                 "seconds": float(np.mean([tcost(t)["train_s"] for t in full])) if full else None}

    groups: dict[tuple, list[dict]] = {}
    for tid, rec in trials.items():
        if rec.get("role") == "target" and rec.get("subset") and rec.get("status") != "running":
            groups.setdefault((rec["acquisition"], rec["fraction"], rec["balance"], rec["budget"]), []).append(rec)

    results = []
    for (a, f, b, rule), recs in sorted(groups.items(), key=lambda kv: (kv[0][1], kv[0][2], kv[0][3], kv[0][0])):
        name = subset_name(a, f, b)
        err = _stats([r.get("test_error") for r in recs])
        cost = {"examples": float(np.mean([tcost(r)["examples"] for r in recs])),
                "seconds": float(np.mean([tcost(r)["train_s"] for r in recs])),
                "steps": int(recs[0].get("steps_run") or 0)}
        search = search_cost(subsets.get(name)) if a != "random" else {"examples": 0, "seconds": 0.0, "ensembles": []}
        be = cell_break_even(rule, a, search, full_cost, cost, err["mean"], full_err["mean"], tol)
        rnd = groups.get(("random", f, b, rule))
        vs_random = None
        if rnd is not None and a != "random":
            rerr = _stats([r.get("test_error") for r in rnd])
            if err["mean"] is not None and rerr["mean"] is not None:
                vs_random = {"random_mean": rerr["mean"], "diff": err["mean"] - rerr["mean"],
                             "beats_random": bool(err["mean"] < rerr["mean"]),
                             "p_value": _welch_p(err["values"], rerr["values"])}
        gap = None if err["mean"] is None or full_err["mean"] is None else err["mean"] - full_err["mean"]
        results.append({
            "acquisition": a, "fraction": f, "balance": b, "budget": rule, "subset": name,
            "size": (subsets.get(name) or {}).get("size"), "test_error": err,
            "gap_to_full": gap, "within_tolerance_of_full": None if gap is None else bool(gap <= tol),
            "vs_random": vs_random, "target_cost": cost, "search_cost": search, "break_even": be,
            "tie_filled": (subsets.get(name) or {}).get("tie_filled"),
            "class_warnings": (subsets.get(name) or {}).get("warnings", []),
        })

    # Jaccard overlap between acquisitions' subsets, per (fraction, balance)
    overlap = {}
    acqs = cfg["acquisitions"]
    for b in cfg["balances"]:
        for f in cfg["fractions"]:
            idx = {a: root / "subsets" / f"{subset_name(a, f, b)}.npy" for a in acqs}
            idx = {a: np.load(p) for a, p in idx.items() if p.exists()}
            overlap[f"{fraction_tag(f)}-{b}"] = {f"{x}|{y}": round(jaccard(idx[x], idx[y]), 4)
                                                  for x, y in combinations(sorted(idx), 2)}

    total_search = {"examples": sum(e["examples"] for e in ens_cost.values()),
                    "seconds": sum(e["seconds"] for e in ens_cost.values())}
    total_target = {"examples": sum(tcost(r)["examples"] for r in trials.values() if r.get("role") == "target"),
                    "seconds": sum(tcost(r)["train_s"] for r in trials.values() if r.get("role") == "target")}
    warnings = [f"{n}: {w}" for n, s in subsets.items() for w in s["warnings"]]
    return {
        "kind": "subset", "workload": cfg["workload"], "schedule": cfg["schedule"], "ensemble": cfg["ensemble"],
        "acquisitions": acqs, "fractions": cfg["fractions"], "balances": cfg["balances"], "budgets": cfg["budgets"],
        "seeds": list(range(cfg["seeds"])), "tolerance": tol, "break_even_rule": BREAK_EVEN_RULE,
        "keep": cfg.get("keep", "hardest"), "keep_rule": KEEP_RULE,
        "budget_rules": {"steps": f"every subset trained for the full-data budget ({cfg['target_steps']} steps)",
                         "epochs": "as many epochs as full-data training: ceil(steps * size / N) steps"},
        "pool_size": read_json(study.study_path).get("dataset", {}).get("num_train"),
        "full": {"test_error": full_err, "cost": full_cost},
        "results": results, "subsets": subsets, "jaccard": overlap,
        "cost": {"ensembles": ens_cost, "search_total": total_search, "target_total": total_target,
                 "units": "examples: training examples (+ pool examples scored, for search); seconds: engine "
                          "training wall_s (+ pool scoring time, for search); validation evals excluded"},
        "warnings": warnings,
    }
