"""The batch-size study's summary, built from its files only (study.json and trials/):
steps-to-result per batch size (the exact definition in :mod:`feedwise.studies.batch_size.scaling`),
best hyperparameters, trials by status, the Sobol points evaluated, regimes, knee, pruning
savings, and wall-clock.

The compute account is true: a trial interrupted before it finished (Ctrl-C, a killed worker,
status ``unfinished`` or ``running``) is counted with the examples its measurements show (up to
its last evaluation, a lower bound) on both sides of the account, processed and unpruned; its
point is trained again by the resumed study, so a resumed study processes the examples of the
uninterrupted one plus those of its interrupted attempts (``pruning.examples_unfinished``)."""

from __future__ import annotations

import math
import statistics
from pathlib import Path

from feedwise.results import StudyDir, read_json
from feedwise.studies.batch_size import scaling

KIND = "batch-size"
FINISHED = ("reached", "budget", "pruned", "diverged")

def summarize(sd: StudyDir | str | Path) -> dict:
    """summary.json from the files only (study.json + trials/), so it can always be recomputed."""
    sd = sd if isinstance(sd, StudyDir) else StudyDir(sd)
    study = read_json(sd.study_path)
    cfg = study["config"]
    target, optimizer = cfg["target"], cfg["optimizer"]
    per: dict[int, dict] = {}
    records = []
    times: dict[str, float | None] = {}
    for td in sd.trials():
        rec = td.read()
        b = int(rec.get("batch_size") or rec["hparams"]["batch_size"])
        rows = td.measurements()
        s = scaling.first_step_below(rows, target)
        if rec.get("examples") is None:  # running or killed: what its measurements show
            rec = {**rec, "examples": _examples_from_rows(rows)}
        times[td.id] = _wall_at(rows, s)
        records.append((b, td.id, rec, s))
    world = int(cfg.get("data_parallel", 1))
    for b, tid, rec, s in records:
        e = per.setdefault(b, {"batch_size": b, "steps_to_result": None, "best_trial": None, "best_point": None,
                               "best_hparams": None,
                               "best_lr": None, "best_momentum": None, "best_effective_lr": None,
                               "trials": 0, "trials_by_status": {}, "examples_processed": 0,
                               "examples_unpruned": 0, "budget_steps": None, "eval_every": None})
        status = rec.get("status", "running")
        if status in FINISHED and rec.get("wall_s") is not None and rec.get("steps_run"):
            e.setdefault("_sps", []).append(float(rec["wall_s"]) / int(rec["steps_run"]))
        e["trials"] += 1
        e["trials_by_status"][status] = e["trials_by_status"].get(status, 0) + 1
        examples = int(rec["examples"])
        e["examples_processed"] += examples
        bsteps = int(rec.get("budget", {}).get("steps") or 0)
        e["budget_steps"] = bsteps
        e["eval_every"] = rec.get("budget", {}).get("eval_every")
        if status in FINISHED:
            e["examples_unpruned"] += scaling.unpruned_examples(status, examples, bsteps, b)
        else:  # a killed trial: count what it spent on both sides
            e["examples_unpruned"] += examples
        if status in FINISHED:
            e.setdefault("_points", set()).add(_point(tid, rec))
        if s is not None and (e["steps_to_result"] is None or s < e["steps_to_result"]
                              or (s == e["steps_to_result"] and _order(tid, rec) < e["_best_order"])):
            h = rec.get("hparams", {})
            e.update(steps_to_result=s, best_trial=tid, best_point=_point(tid, rec), _best_order=_order(tid, rec),
                     best_hparams={**h, **{"search": rec.get("search_params")}},
                     best_lr=h.get("lr"), best_momentum=h.get("momentum", 0.0 if optimizer == "sgd" else None),
                     best_effective_lr=scaling.effective_lr(h.get("lr"), h.get("momentum"), optimizer))
    curve = {b: per[b]["steps_to_result"] for b in sorted(per)}
    reg = scaling.regimes(curve)
    knee = scaling.fit_knee(curve)
    savings = scaling.pruning_savings(
        {"status": rec["status"], "examples": int(rec["examples"]),
         "budget_steps": int(rec.get("budget", {}).get("steps") or 0), "batch_size": b}
        for b, _, rec, _ in records if rec.get("status") in FINISHED)
    unfinished = [int(rec["examples"]) for _, _, rec, _ in records if rec.get("status") not in FINISHED]
    extra = sum(unfinished)
    savings["examples_processed"] += extra
    savings["examples_unpruned"] += extra
    savings["fraction_saved"] = (savings["examples_saved"] / savings["examples_unpruned"]
                                 if savings["examples_unpruned"] else None)
    savings.update(unfinished_trials=len(unfinished), examples_unfinished=extra,
                   unfinished_rule="interrupted trials count the examples up to their last evaluation (a lower "
                                   "bound), on both sides: processed and unpruned")
    for b, e in per.items():
        e["points"] = sorted(e.pop("_points", set()))
        e.pop("_best_order", None)
        e["regime"] = reg["by_batch_size"].get(b)
        e["examples_to_result"] = e["steps_to_result"] * b if e["steps_to_result"] is not None else None
        sps = e.pop("_sps", [])
        e["world_size"] = world
        e["s_per_step"] = statistics.median(sps) if sps else None
        e["time_to_result_s"] = times.get(e["best_trial"]) if e["best_trial"] is not None else None
        e["time_to_result_model_s"] = (e["steps_to_result"] * e["s_per_step"]
                                       if e["steps_to_result"] is not None and e["s_per_step"] is not None else None)
    return {"kind": KIND, "workload": cfg["workload"], "optimizer": optimizer, "target": target,
            "world_size": world,
            "batch_sizes": [per[b] for b in sorted(per)],
            "curve": {str(b): s for b, s in curve.items()},
            "regimes": reg, "knee": knee, "pruning": savings,
            "definition": "steps_to_result(B) = min over trials of B of the first eval step with val_error < target",
            "effective_lr": "lr / (1 - momentum) for momentum and nesterov, lr for sgd and adam",
            "time": "s_per_step = median over a batch size's finished trials of wall_s / steps_run (training time, "
                    "evaluation excluded); time_to_result_s = the best trial's training seconds up to its "
                    "steps-to-result; time_to_result_model_s = steps_to_result * s_per_step"}


def _wall_at(rows: list[dict], step: int | None) -> float | None:
    if step is None:
        return None
    for r in rows:
        if int(float(r["step"])) == step and r.get("wall_s") not in (None, ""):
            return float(r["wall_s"])
    return None


def _examples_from_rows(rows: list[dict]) -> int:
    return int(rows[-1]["examples"]) if rows else 0


def _point(tid, rec: dict) -> int | None:
    """A trial's Sobol point; folders written before points existed used point = trial number."""
    p = rec.get("point")
    if isinstance(p, int):
        return p
    n = _num(tid)
    return n[-1] if len(n) == 2 and isinstance(n[-1], int) else None


def _order(tid, rec: dict) -> tuple:
    """Tie-break between trials reaching at the same step: the smaller point, then trial number."""
    p = _point(tid, rec)
    return (p if p is not None else math.inf, _num(tid))


def _num(tid) -> tuple:
    if tid is None:
        return (math.inf,)
    parts = str(tid).lstrip("b").split("-")
    try:
        return tuple(int(p) for p in parts)
    except ValueError:
        return (math.inf, str(tid))
