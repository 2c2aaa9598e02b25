"""The subset study's summary, built from its files only (study.json, trials/, subsets/).

Decisions are taken on **validation** error, with paired tests across the target seeds (every
configuration's target model is trained with the same seeds 0..K-1, so seed s of a subset is
compared with seed s of random and of full data) and Holm's correction over each family of
cells; test error is reported only for what was chosen (and for the random and full-data
baselines it is compared with). See :data:`VERDICT_RULE`.

The cost account counts work in two units: *examples* (every training example and every
forward-only scored example counts 1, the old account) and *work*, FLOP-weighted in forward
passes of one example: forward = 1, backward = 2 (the usual ratio for dense layers), so a
training example is 3 and a scored example 1. Break-even is given in both, and in seconds.
"""

from __future__ import annotations

from itertools import combinations
from pathlib import Path

import numpy as np

from feedwise.results import StudyDir, read_json
from feedwise.stats import holm, paired_t, wilcoxon_exact
from feedwise.subset.select import KEEP_RULE, jaccard

FORWARD, BACKWARD = 1.0, 2.0           # FLOP weights of one example's forward and backward pass
TRAIN_WORK = FORWARD + BACKWARD        # one training example, in forward-pass units
SCORE_WORK = FORWARD                   # one forward-only scored example
MIN_SEEDS = 3                          # paired seeds a verdict needs
ALPHA = 0.05                           # family-wise error rate of each Holm family

UNITS = ("examples: training examples + forward-only scored examples, each 1 (the old account); work: "
         f"FLOP-weighted, in forward passes of one example (forward = {FORWARD:g}, backward = {BACKWARD:g}: a "
         f"training example = {TRAIN_WORK:g}, a scored example = {SCORE_WORK:g}); seconds: engine training wall_s "
         "(+ pool scoring time, for search); validation evaluations excluded")

VERDICT_RULE = (
    f"Decided on the final model's validation error, paired by target seed, over at least {MIN_SEEDS} seeds (fewer: "
    "no verdict). beats_random: one-sided paired t-test that the subset's validation error is below random's of the "
    "same fraction, balance and budget rule. within_tolerance: one-sided paired non-inferiority t-test that the "
    "subset's validation error exceeds full data's by less than the tolerance (d = subset - full - tolerance < 0). "
    f"Each verdict holds when its Holm-adjusted p is below {ALPHA} over its family (every cell of the study tested "
    "for that verdict). The exact Wilcoxon signed-rank p is reported beside the t-test (with 3 seeds it cannot go "
    "below 0.125 one-sided). Test error is reported only for the chosen cells (per fraction and budget rule, the "
    "non-random cell with the lowest mean validation error) and for the random and full-data baselines.")

BREAK_EVEN_RULE = (
    "break_even = search_cost / (full_cost - subset_cost): the number of future target trainings on the subset "
    "after which the one-off search has paid for itself, in examples (scored examples count as training examples), "
    "in FLOP-weighted work (a scored example is 1/3 of a training example) and in seconds. null unless the "
    "subset is within tolerance of full data by the validation verdict (Holm-corrected; a worse subset pays "
    "for nothing) and its training is cheaper than full-data training. 0 for random subsets within tolerance "
    "(no search). Always null under the steps budget rule in every unit: a subset trained for the full-data step "
    "budget does the same training work, so a difference in seconds is timing noise, not a saving."
)


def fraction_tag(f: float) -> str:
    return f"{f:g}"


def subset_name(acq: str, fraction: float, balance: str, selection: str = "top") -> str:
    return (f"{acq}-{fraction_tag(fraction)}" if selection == "top" else f"{acq}-{selection}-{fraction_tag(fraction)}") \
        + ("" if balance == "none" else f"-{balance}")


def _stats(values: list[float]) -> dict:
    v = [x for x in values if x is not None]
    if not v:
        return {"mean": None, "std": None, "n": 0, "values": []}
    a = np.asarray(v, dtype=np.float64)
    return {"mean": float(a.mean()), "std": float(a.std(ddof=1)) if a.size > 1 else 0.0, "n": int(a.size),
            "values": [float(x) for x in a]}


def work(train_examples: float, scored_examples: float = 0.0) -> float:
    """FLOP-weighted work in forward passes of one example (see :data:`UNITS`)."""
    return TRAIN_WORK * float(train_examples) + SCORE_WORK * float(scored_examples)


def break_even(search: float, full: float, subset: float, within_tolerance: bool | None) -> float | None:
    """Number of future target trainings on the subset after which the search has paid off (see BREAK_EVEN_RULE)."""
    if not within_tolerance:
        return None
    saving = full - subset
    if saving <= 0:
        return None
    return float(search / saving)


def cell_break_even(rule: str, acquisition: str, search: dict, full_cost: dict, cost: dict,
                    within_tolerance: bool | None) -> dict:
    """Break-even of one cell in examples, FLOP-weighted work and seconds (BREAK_EVEN_RULE). Under the ``steps``
    rule the subset does the full-data training work, so no unit can show a saving: all are None (15 cells of
    earlier benchmarks had a "break-even" in seconds from timing noise alone, e.g. 12.09 s vs 16.09 s for
    identical work)."""
    be: dict[str, float | None] = {"examples": None, "work": None, "seconds": None}
    if rule == "steps":
        return be
    for unit in ("examples", "work", "seconds"):
        if full_cost.get(unit) is None or unit not in search or unit not in cost:
            continue
        be[unit] = break_even(search[unit], full_cost[unit], cost[unit], within_tolerance)
        if acquisition == "random" and be[unit] is not None:
            be[unit] = 0.0
    return be


def paired_by_seed(a: dict[int, float], b: dict[int, float]) -> tuple[list[int], np.ndarray, np.ndarray]:
    """The seeds both have a (finite) value for, and the two value vectors in that seed order."""
    seeds = sorted(s for s in set(a) & set(b) if a[s] is not None and b[s] is not None)
    return seeds, np.array([a[s] for s in seeds], float), np.array([b[s] for s in seeds], float)


def paired_verdict_test(a: dict[int, float], b: dict[int, float], shift: float = 0.0) -> dict:
    """One-sided paired tests that a − b − shift < 0 over the common seeds (None below MIN_SEEDS)."""
    seeds, x, y = paired_by_seed(a, b)
    out = {"seeds": seeds, "n": len(seeds), "mean_diff": float(np.mean(x - y)) if seeds else None,
           "p": None, "t": None, "wilcoxon_p": None, "p_holm": None, "holds": None}
    if len(seeds) >= MIN_SEEDS:
        t = paired_t(x, y, "less", shift=shift)
        out.update(p=t["p"], t=t["t"], wilcoxon_p=wilcoxon_exact(x - shift, y, "less")["p"])
    return out


def apply_holm(tests: list[dict], alpha: float = ALPHA) -> None:
    """Holm-adjust the ``p`` of every test of one family in place; ``holds`` = adjusted p < alpha."""
    for t, adj in zip(tests, holm([t["p"] for t in tests])):
        t["p_holm"] = adj
        t["holds"] = None if adj is None else bool(adj < alpha)


def summarize(root: str | Path) -> dict:
    """Build summary.json from study.json, trials/ and subsets/ only."""
    root = Path(root)
    study = StudyDir(root)
    cfg = read_json(study.study_path)["config"]
    trials = {t.id: t.read() for t in study.trials()}
    tol = cfg["tolerance"]

    # search cost per ensemble (and per member, for scores read from some of its models only)
    ens_cost: dict[str, dict] = {}
    member_cost: dict[tuple[str, int], dict] = {}
    for tid, rec in sorted(trials.items()):
        if rec.get("role") != "acquisition":
            continue
        c = {"train_examples": int(rec.get("examples") or 0), "scored_examples": int(rec.get("scored_examples") or 0),
             "train_s": float(rec.get("wall_s") or 0.0), "score_s": float(rec.get("score_s") or 0.0)}
        member_cost[(rec["ensemble"], int(rec.get("member", 0)))] = c
        e = ens_cost.setdefault(rec["ensemble"], {"members": 0, "train_examples": 0, "scored_examples": 0,
                                                  "train_s": 0.0, "score_s": 0.0, "trials": []})
        e["members"] += 1
        for k in ("train_examples", "scored_examples", "train_s", "score_s"):
            e[k] += c[k]
        e["trials"].append(tid)
    for e in ens_cost.values():
        e["examples"] = e["train_examples"] + e["scored_examples"]
        e["work"] = work(e["train_examples"], e["scored_examples"])
        e["seconds"] = e["train_s"] + e["score_s"]

    subsets = {}
    for p in sorted((root / "subsets").glob("*.json")):
        meta = read_json(p)
        comp = meta.get("composition", {})
        warn = [f"class {c} has {comp['counts'][c]} examples, under half its proportional share "
                f"{comp['share'][c]:.1f}" for c in comp.get("under_half", [])]
        subsets[p.stem] = {**meta, "warnings": warn}

    def search_cost(meta: dict | None) -> dict:
        meta = meta or {}
        ids, members = meta.get("ensemble", []), meta.get("members")
        parts = [c for (e, j), c in member_cost.items() if e in ids and (members is None or j in members)]
        tr, sc = sum(c["train_examples"] for c in parts), sum(c["scored_examples"] for c in parts)
        return {"examples": tr + sc, "train_examples": tr, "scored_examples": sc, "work": work(tr, sc),
                "seconds": sum(c["train_s"] + c["score_s"] for c in parts), "ensembles": ids,
                **({"members": members} if members is not None else {})}

    def seed_of(rec: dict) -> int:
        return int(rec.get("seed", rec["id"].rsplit("-s", 1)[-1]))

    def by_seed(recs: list[dict], key: str) -> dict[int, float]:
        return {seed_of(r): r.get(key) for r in recs}

    full = [trials[t] for t in trials if t.startswith("target-full-s") and trials[t].get("status") != "running"]
    full_val, full_test = by_seed(full, "final_val_error"), by_seed(full, "test_error")
    full_examples = float(np.mean([int(t.get("examples") or 0) for t in full])) if full else None
    full_cost = {"examples": full_examples, "work": None if full_examples is None else work(full_examples),
                 "seconds": float(np.mean([float(t.get("wall_s") or 0.0) for t in full])) if full else None}

    groups: dict[tuple, list[dict]] = {}
    for tid, rec in trials.items():
        if rec.get("role") == "target" and rec.get("subset") and rec.get("status") != "running":
            key = (rec["acquisition"], rec.get("selection", "top"), rec["fraction"], rec["balance"], rec["budget"])
            groups.setdefault(key, []).append(rec)

    results = []
    for (a, sel, f, b, rule), recs in sorted(groups.items(), key=lambda kv: (kv[0][2], kv[0][3], kv[0][4], kv[0][0],
                                                                              kv[0][1])):
        name = subset_name(a, f, b, sel)
        val = by_seed(recs, "final_val_error")
        ex = float(np.mean([int(r.get("examples") or 0) for r in recs]))
        cost = {"examples": ex, "work": work(ex), "seconds": float(np.mean([float(r.get("wall_s") or 0.0) for r in recs])),
                "steps": int(recs[0].get("steps_run") or 0)}
        search = search_cost(subsets.get(name)) if a != "random" else \
            {"examples": 0, "train_examples": 0, "scored_examples": 0, "work": 0.0, "seconds": 0.0, "ensembles": []}
        rnd = groups.get(("random", "top", f, b, rule))
        vs_random = None
        if rnd is not None and a != "random":
            vs_random = paired_verdict_test(val, by_seed(rnd, "final_val_error"))
            vs_random["random_val_mean"] = _stats(list(by_seed(rnd, "final_val_error").values()))["mean"]
        vs_full = paired_verdict_test(val, full_val, shift=tol) if full else None
        vstats = _stats([val[s] for s in sorted(val)])
        results.append({
            "acquisition": a, "selection": sel, "fraction": f, "balance": b, "budget": rule, "subset": name,
            "size": (subsets.get(name) or {}).get("size"), "val_error": vstats,
            "val_gap_to_full": None if vstats["mean"] is None or not full else
            vstats["mean"] - _stats(list(full_val.values()))["mean"],
            "vs_random": vs_random, "vs_full": vs_full, "beats_random": None, "within_tolerance": None,
            "test_error": None, "target_cost": cost, "search_cost": search,
            "tie_filled": (subsets.get(name) or {}).get("tie_filled"),
            "class_warnings": (subsets.get(name) or {}).get("warnings", []),
            "_test": by_seed(recs, "test_error"),
        })
    apply_holm([r["vs_random"] for r in results if r["vs_random"] is not None])
    apply_holm([r["vs_full"] for r in results if r["vs_full"] is not None])
    for r in results:
        r["beats_random"] = None if r["vs_random"] is None else r["vs_random"]["holds"]
        r["within_tolerance"] = None if r["vs_full"] is None else r["vs_full"]["holds"]
        r["break_even"] = cell_break_even(r["budget"], r["acquisition"], r["search_cost"], full_cost,
                                          r["target_cost"], r["within_tolerance"])

    # choices on validation; test error for the chosen cells and their baselines only
    chosen = []
    for f, rule in sorted({(r["fraction"], r["budget"]) for r in results}):
        cand = [r for r in results if (r["fraction"], r["budget"]) == (f, rule) and r["acquisition"] != "random"
                and r["val_error"]["mean"] is not None]
        if not cand:
            continue
        best = min(cand, key=lambda r: (r["val_error"]["mean"], r["subset"]))
        rnd = next((r for r in results if (r["acquisition"], r["fraction"], r["balance"], r["budget"])
                    == ("random", f, best["balance"], rule)), None)
        for r in (best, rnd):
            if r is not None:
                r["test_error"] = _stats([r["_test"][s] for s in sorted(r["_test"])])
        chosen.append({"fraction": f, "budget": rule, "subset": best["subset"], "acquisition": best["acquisition"],
                       "selection": best["selection"], "balance": best["balance"],
                       "val_error": best["val_error"]["mean"], "test_error": best["test_error"],
                       "random_test_error": None if rnd is None else rnd["test_error"],
                       "full_test_error": _stats([full_test[s] for s in sorted(full_test)]),
                       "beats_random": best["beats_random"], "within_tolerance": best["within_tolerance"],
                       "p_holm_vs_random": (best["vs_random"] or {}).get("p_holm"),
                       "search_cost": best["search_cost"], "break_even": best["break_even"]})
    for r in results:
        r.pop("_test")

    # Jaccard overlap between acquisitions' subsets, per (fraction, balance)
    overlap = {}
    names = sorted({(r["acquisition"], r["selection"]) for r in results})
    for b in cfg["balances"]:
        for f in cfg["fractions"]:
            idx = {(a if s == "top" else f"{a}-{s}"): root / "subsets" / f"{subset_name(a, f, b, s)}.npy" for a, s in names}
            idx = {a: np.load(p) for a, p in idx.items() if p.exists()}
            overlap[f"{fraction_tag(f)}-{b}"] = {f"{x}|{y}": round(jaccard(idx[x], idx[y]), 4)
                                                  for x, y in combinations(sorted(idx), 2)}

    def total(role: str) -> dict:
        recs = [r for r in trials.values() if r.get("role") == role]
        tr = sum(int(r.get("examples") or 0) for r in recs)
        sc = sum(int(r.get("scored_examples") or 0) for r in recs)
        return {"examples": tr + sc, "train_examples": tr, "scored_examples": sc, "work": work(tr, sc),
                "seconds": sum(float(r.get("wall_s") or 0.0) + float(r.get("score_s") or 0.0) for r in recs)}

    warnings = [f"{n}: {w}" for n, s in subsets.items() for w in s["warnings"]]
    return {
        "kind": "subset", "workload": cfg["workload"], "schedule": cfg["schedule"], "ensemble": cfg["ensemble"],
        "acquisitions": cfg["acquisitions"], "selections": cfg.get("selections", ["top"]),
        "fractions": cfg["fractions"], "balances": cfg["balances"], "budgets": cfg["budgets"],
        "seeds": list(range(cfg["seeds"])), "tolerance": tol, "alpha": ALPHA, "min_seeds": MIN_SEEDS,
        "verdict_rule": VERDICT_RULE, "break_even_rule": BREAK_EVEN_RULE,
        "keep": cfg.get("keep", "hardest"), "keep_rule": KEEP_RULE,
        "budget_rules": {"steps": f"every subset trained for the full-data budget ({cfg['target_steps']} steps)",
                         "epochs": "as many epochs as full-data training: ceil(steps * size / N) steps"},
        "pool_size": read_json(study.study_path).get("dataset", {}).get("num_train"),
        "full": {"val_error": _stats([full_val[s] for s in sorted(full_val)]),
                 "test_error": _stats([full_test[s] for s in sorted(full_test)]), "cost": full_cost},
        "chosen": chosen, "results": results, "subsets": subsets, "jaccard": overlap,
        "cost": {"ensembles": ens_cost, "search_total": total("acquisition"), "target_total": total("target"),
                 "units": UNITS},
        "warnings": warnings,
    }
