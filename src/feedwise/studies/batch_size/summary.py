"""The batch-size study's summary, built from its files only (study.json and trials/):
steps-to-result per batch size (the exact definition in :mod:`feedwise.studies.batch_size.scaling`),
best hyperparameters, trials by status, the Sobol points evaluated, regimes, knee, pruning
savings, and wall-clock; 90% bootstrap intervals over the trial set for steps-to-result, the knee
and the regime labels (:func:`feedwise.studies.batch_size.scaling.bootstrap`, pruned trials as
censored values), and the fresh-seed re-runs of the best hyperparameters when ``<out>/seeds/`` holds
them (:mod:`feedwise.studies.batch_size.seeds`).

The compute account is true: a trial interrupted before it finished (Ctrl-C, a killed worker,
status ``unfinished`` or ``running``) is counted with the examples its measurements show (up to
its last evaluation, a lower bound) on both sides of the account, processed and unpruned; its
point is trained again by the resumed study, so a resumed study processes the examples of the
uninterrupted one plus those of its interrupted attempts (``pruning.examples_unfinished``)."""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass, field
import statistics
from pathlib import Path

from feedwise.results import StudyDir, TrialDir, read_json
from feedwise.studies.batch_size import scaling

KIND = "batch-size"
FINISHED = ("reached", "budget", "pruned", "diverged")


@dataclass
class BatchSizeEntry:
    """What the trials of one batch size add up to (one entry of ``summary.json["batch_sizes"]``)."""

    batch_size: int
    steps_to_result: int | None = None
    best_trial: str | None = None
    best_point: int | None = None
    best_hparams: dict | None = None
    best_lr: float | None = None
    best_momentum: float | None = None
    best_effective_lr: float | None = None
    trials: int = 0
    trials_by_status: dict = field(default_factory=dict)
    examples_processed: int = 0
    examples_unpruned: int = 0
    budget_steps: int | None = None
    eval_every: int | None = None
    points: set = field(default_factory=set)             # the Sobol points of its finished trials
    seconds_per_step: list = field(default_factory=list)  # of its finished trials (training time)
    best_order: tuple = (math.inf,)                       # tie-break of trials reaching at the same step

    def add(self, tid: str, rec: dict, step: int | None, optimizer: str) -> None:
        """Count one trial: ``step`` is its first evaluation below the target (None: never)."""
        b = self.batch_size
        status = rec.get("status", "running")
        if status in FINISHED and rec.get("wall_s") is not None and rec.get("steps_run"):
            self.seconds_per_step.append(float(rec["wall_s"]) / int(rec["steps_run"]))
        self.trials += 1
        self.trials_by_status[status] = self.trials_by_status.get(status, 0) + 1
        examples = int(rec["examples"])
        self.examples_processed += examples
        bsteps = int(rec.get("budget", {}).get("steps") or 0)
        self.budget_steps = bsteps
        self.eval_every = rec.get("budget", {}).get("eval_every")
        if status in FINISHED:
            self.examples_unpruned += scaling.unpruned_examples(status, examples, bsteps, b)
            self.points.add(_point(tid, rec))
        else:  # a killed trial: count what it spent on both sides
            self.examples_unpruned += examples
        if step is not None and (self.steps_to_result is None or step < self.steps_to_result
                                 or (step == self.steps_to_result and _order(tid, rec) < self.best_order)):
            h = rec.get("hparams", {})
            self.steps_to_result, self.best_trial, self.best_point = step, tid, _point(tid, rec)
            self.best_order = _order(tid, rec)
            self.best_hparams = {**h, **{"search": rec.get("search_params")}}
            self.best_lr = h.get("lr")
            self.best_momentum = h.get("momentum", 0.0 if optimizer == "sgd" else None)
            self.best_effective_lr = scaling.effective_lr(h.get("lr"), h.get("momentum"), optimizer)

    def finish(self, regimes: dict, world: int, times: dict, boot: dict | None = None) -> dict:
        """The entry as written to summary.json."""
        d = {k: v for k, v in asdict(self).items() if k not in ("points", "seconds_per_step", "best_order")}
        ci = ((boot or {}).get("steps_to_result") or {}).get(self.batch_size)
        d.update(steps_to_result_interval=[ci["low"], ci["high"]] if ci else None,
                 steps_to_result_censored_fraction=ci["censored_fraction"] if ci else None,
                 regime_bootstrap=((boot or {}).get("by_batch_size") or {}).get(self.batch_size))
        s, b = self.steps_to_result, self.batch_size
        sps = statistics.median(self.seconds_per_step) if self.seconds_per_step else None
        d.update(points=sorted(self.points), regime=regimes["by_batch_size"].get(b),
                 examples_to_result=s * b if s is not None else None, world_size=world, s_per_step=sps,
                 time_to_result_s=times.get(self.best_trial) if self.best_trial is not None else None,
                 time_to_result_model_s=s * sps if s is not None and sps is not None else None)
        return d


def summarize(sd: StudyDir | str | Path) -> dict:
    """summary.json from the files only (study.json + trials/), so it can always be recomputed."""
    sd = sd if isinstance(sd, StudyDir) else StudyDir(sd)
    study = read_json(sd.study_path)
    cfg = study["config"]
    target, optimizer = cfg["target"], cfg["optimizer"]
    per: dict[int, BatchSizeEntry] = {}
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
        per.setdefault(b, BatchSizeEntry(b)).add(tid, rec, s, optimizer)
    curve = {b: per[b].steps_to_result for b in sorted(per)}
    reg = scaling.regimes(curve)
    knee = scaling.fit_knee(curve)
    outcomes: dict[int, list] = {}
    for b, _, rec, s in records:
        if rec.get("status") in FINISHED:
            outcomes.setdefault(b, []).append(scaling.trial_outcome(
                rec["status"], s, rec.get("steps_run"), (rec.get("budget") or {}).get("eval_every")))
    boot = scaling.bootstrap(outcomes, resamples=BOOTSTRAP_RESAMPLES, level=BOOTSTRAP_LEVEL) if outcomes else None
    if boot is not None:
        knee = {**knee, "b_crit_interval": [boot["knee"]["low"], boot["knee"]["high"]]}
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
    floor = scaling.exact_floor(
        {"batch_size": b, "steps_run": int(rec.get("steps_run") or 0), "steps_to_result": s,
         "eval_every": (rec.get("budget") or {}).get("eval_every") or 1}
        for b, _, rec, s in records if rec.get("status") in FINISHED)
    savings.update(examples_floor=floor, floor_fraction=(floor / savings["examples_unpruned"]
                                                         if savings["examples_unpruned"] else None),
                   floor_rule=scaling.EXACT_FLOOR_RULE)
    savings.update(unfinished_trials=len(unfinished), examples_unfinished=extra,
                   unfinished_rule="interrupted trials count the examples up to their last evaluation (a lower "
                                   "bound), on both sides: processed and unpruned")
    return {"kind": KIND, "workload": cfg["workload"], "optimizer": optimizer, "target": target,
            "world_size": world,
            "batch_sizes": [per[b].finish(reg, world, times, boot) for b in sorted(per)],
            "curve": {str(b): s for b, s in curve.items()},
            "regimes": reg, "knee": knee, "pruning": savings,
            "bootstrap": _jsonable_boot(boot), "seeds": seeds_summary(sd),
            "definition": "steps_to_result(B) = min over trials of B of the first eval step with val_error < target",
            "effective_lr": "lr / (1 - momentum) for momentum and nesterov, lr for sgd and adam",
            "time": "s_per_step = median over a batch size's finished trials of wall_s / steps_run (training time, "
                    "evaluation excluded); time_to_result_s = the best trial's training seconds up to its "
                    "steps-to-result; time_to_result_model_s = steps_to_result * s_per_step"}


BOOTSTRAP_RESAMPLES = 1000
BOOTSTRAP_LEVEL = 0.9


def _jsonable_boot(boot: dict | None) -> dict | None:
    if boot is None:
        return None
    return {**boot, "steps_to_result": {str(b): v for b, v in boot["steps_to_result"].items()},
            "by_batch_size": {str(b): v for b, v in boot["by_batch_size"].items()}}


def seeds_summary(sd: StudyDir) -> dict | None:
    """The best hyperparameters of each batch size re-run with other seeds (``<out>/seeds/``, written by
    :func:`feedwise.studies.batch_size.seeds.rerun_best`): steps-to-result per seed, median and range."""
    root = Path(sd.root) / "seeds"
    if not root.is_dir():
        return None
    target = read_json(sd.study_path)["config"]["target"]
    by: dict[int, list] = {}
    for d in sorted(p for p in root.iterdir() if p.is_dir() and (p / "trial.json").exists()):
        rec = read_json(d / "trial.json")
        if rec.get("status") not in FINISHED:
            continue
        s = scaling.first_step_below(TrialDir(d).measurements(), target)
        by.setdefault(int(rec["hparams"]["batch_size"]), []).append(
            {"seed": rec.get("seed"), "of_trial": rec.get("of_trial"), "status": rec["status"], "steps_to_result": s})
    out = {}
    for b, runs in sorted(by.items()):
        vals = sorted(r["steps_to_result"] for r in runs if r["steps_to_result"] is not None)
        out[str(b)] = {"runs": runs, "reached": len(vals), "of": len(runs),
                       "median": statistics.median(vals) if vals else None,
                       "min": vals[0] if vals else None, "max": vals[-1] if vals else None}
    return {"by_batch_size": out,
            "rule": "each batch size's best trial (its exact configuration) trained again with fresh seeds (new "
                    "initialisation and data order), without pruning; steps-to-result of each run, their median and "
                    "range (the search trial's own value, selected as a minimum, is the batch size's "
                    "steps_to_result and is not among them)"}


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
