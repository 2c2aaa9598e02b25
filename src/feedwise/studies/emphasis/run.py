"""`feedwise emphasis`: does Active Bias beat uniform sampling? Paired seeds, one budget.

Every method trains for the same step budget with the same seeds. Seed ``s`` fixes the
model init and the data-order stream (``TrainConfig(seed=s)``) and, with label noise, the
noise draw (``noise_seed + s``), so the runs of one seed differ only by the method: a
paired design. Each (method, seed) run is the trial ``trials/<method>-s<seed>/``; a
finished trial is never run again.

Per trial we record the test error of the final model and of the best-validation
checkpoint (a callback keeps a copy of the best ``state_dict``), and diagnostics of the
prediction history: do flipped labels get emphasised (std̂ of clean vs flipped examples), and
how well do std̂, p̄ and the final model's loss flag the flipped labels (AUROC)?

The summary holds, per method, mean and std of test error, relative error reduction vs
uniform, paired tests on the per-seed differences (paired t-test — the primary test — and
Wilcoxon signed-rank), and Holm's correction across the methods compared with uniform.
With n = 5 seeds the exact two-sided Wilcoxon p-value cannot go below 1/16 = 0.0625, which
is why the t-test is the primary test here.

The summary's maths (``paired_tests``, ``holm``, ``summarise``) lives in
:mod:`feedwise.studies.emphasis.summary`, the flagged-label maths in :mod:`feedwise.stats`.
"""

from __future__ import annotations

import copy
from dataclasses import asdict, dataclass, field, replace

import numpy as np

from feedwise.data.sources import Dataset
from feedwise.feeds.base import Feeder
from feedwise.feeds.emphasis import EmphasisFeeder
from feedwise.feeds.rho import RhoFeeder
from feedwise.emphasis.methods import DEFAULT_BURN_IN, check_burn_in, check_epsilon, get_method
from feedwise.engine import TrainConfig, Trainer
from feedwise.errors import FeedwiseError
from feedwise.progress import progress_bar, say
from feedwise.seeds import stream
from feedwise.results import StudyDir, TrialDir
from feedwise.studies.emphasis.checkpoint import BestCheckpoint  # noqa: F401  (re-exported)
from feedwise.studies.common import Job, pick_device, run_claimed, run_trial, set_threads
from feedwise.stats import auroc, top_share
from feedwise.studies.emphasis.irreducible import RhoOptions, irreducible_losses, matched_steps
from feedwise.studies.emphasis.summary import MATCHED, primary_test_text, summarise
from feedwise.studies.train.run import DataOptions
from feedwise.workloads import get_workload

DEFAULT_METHODS = ["uniform", "scan", "se", "sd", "spv", "stc", "wpv", "wtc", "loss"]
RHO = "rho"   # RHO-LOSS (Mindermann et al. 2022): not an Active Bias method, opt in with --methods ...,rho
STD_BINS = np.linspace(0.0, 0.5, 26)
MEAN_BINS = np.linspace(0.0, 1.0, 26)


@dataclass
class EmphasisRequest:
    workload: str
    config: TrainConfig                     # the shared budget and optimiser; its seed is replaced per seed
    methods: list[str] = field(default_factory=lambda: list(DEFAULT_METHODS))
    seeds: int = 5                          # seeds 0 .. seeds-1, paired across methods
    epsilon: float | None = None            # None: each method's default (0.05; loss: 1.0)
    burn_in: float = DEFAULT_BURN_IN        # uniform epochs before emphasis
    data: DataOptions = field(default_factory=DataOptions)
    tune: int = 0                           # Optuna trials per method on validation error (0: no tuning)
    rho: RhoOptions = field(default_factory=RhoOptions)   # RHO-LOSS's ratio, IL holdout and IL budget
    matched_compute: bool = False           # also train uniform for as many steps as rho's compute buys

    def trial_methods(self) -> list[str]:
        """The methods, and the matched-compute uniform when asked for: one trial each per seed."""
        return [*self.methods, *([MATCHED] if self.matched_compute else [])]

    def validate(self) -> None:
        get_workload(self.workload)
        self.config.validate()
        self.data.validate()
        if not self.methods:
            raise FeedwiseError("--methods is empty")
        for m in self.methods:
            if m != RHO:
                get_method(m)
        if len(set(self.methods)) != len(self.methods):
            raise FeedwiseError(f"--methods lists a method twice: {','.join(self.methods)}")
        if "uniform" not in self.methods:
            raise FeedwiseError("--methods must include uniform, the baseline every method is compared with")
        if self.epsilon is not None:
            check_epsilon(self.epsilon)
        check_burn_in(self.burn_in)
        if self.seeds < 1:
            raise FeedwiseError(f"--seeds must be at least 1, got {self.seeds}")
        if self.tune < 0:
            raise FeedwiseError(f"--tune must be >= 0 trials, got {self.tune}")
        if RHO in self.methods:
            self.rho.validate()
            if self.tune:
                raise FeedwiseError("--tune does not tune rho yet: run rho without --tune, or tune a study without it")
        if self.matched_compute and RHO not in self.methods:
            raise FeedwiseError("--matched-compute gives uniform the compute rho spent: add rho to --methods")


# --------------------------------------------------------------------------- one trial
class SelectionTrace:
    """Engine callback for a selecting feeder (rho): between evaluations, the share of flipped labels
    among the examples it trained on, and the share of rows it picked at least once so far."""

    def __init__(self, data: Dataset):
        self.noisy = None
        if len(data.noisy_indices):
            self.noisy = np.zeros(data.num_train, bool)
            self.noisy[np.asarray(data.noisy_indices, dtype=np.int64)] = True
        self.prev = None
        self.rows: list[dict] = []

    def __call__(self, trainer: Trainer, row: dict):
        sel = trainer.feeder.selected.cpu().numpy().astype(np.int64)
        new = sel if self.prev is None else sel - self.prev
        self.prev = sel
        r = {"step": row["step"], "seen_share": float((sel > 0).mean())}
        if self.noisy is not None and new.sum() > 0:
            r["noisy_share"] = float(new[self.noisy].sum() / new.sum())
        self.rows.append(r)


def rho_diagnostics(trainer: Trainer, feeder: RhoFeeder, data: Dataset) -> dict:
    """Which examples RHO-LOSS trained on: the flipped labels' share of its selections (against their
    share of the data), how well the IL loss and the final model's loss flag them (AUROC)."""
    probs = trainer.predict_proba(data.x_train)
    p_label = probs.gather(1, data.y_train.to(probs.device)[:, None]).squeeze(1).cpu().numpy().astype(np.float64)
    loss = -np.log(np.clip(p_label, 1e-12, None))
    noisy = np.zeros(data.num_train, bool)
    noisy[np.asarray(data.noisy_indices, dtype=np.int64)] = True
    sel = feeder.selected.cpu().numpy().astype(np.float64)
    il = feeder.il.losses.cpu().numpy().astype(np.float64)
    d = {"noisy_fraction": float(noisy.mean()), "selected_once_share": float((sel > 0).mean()),
         "selected_max": int(sel.max()) if len(sel) else 0}
    if noisy.any():
        d["selected_noisy_share"] = float(sel[noisy].sum() / max(1.0, sel.sum()))
        d["auroc_loss"] = auroc(loss, noisy)
        d["top_share_loss"] = top_share(loss, noisy)
        fin = np.isfinite(il)
        d["auroc_il"] = auroc(il[fin], noisy[fin])          # high IL loss flags
    return d


def diagnostics(trainer: Trainer, feeder: EmphasisFeeder, data: Dataset) -> dict:
    """History statistics of clean vs flipped examples, and AUROC of flagging the flipped ones."""
    h = feeder.history
    std = h.std().cpu().numpy()
    mean = h.mean().cpu().numpy()
    probs = trainer.predict_proba(data.x_train)
    p_label = probs.gather(1, data.y_train.to(probs.device)[:, None]).squeeze(1).cpu().numpy().astype(np.float64)
    loss = -np.log(np.clip(p_label, 1e-12, None))
    noisy = np.zeros(data.num_train, bool)
    noisy[np.asarray(data.noisy_indices, dtype=np.int64)] = True
    finite = np.isfinite(std)
    d = {"noisy_fraction": float(noisy.mean()), "history_observations_mean": float(h.count().double().mean()),
         "std_clean_mean": float(np.nanmean(std[~noisy])) if (~noisy & finite).any() else None,
         "std_noisy_mean": float(np.nanmean(std[noisy])) if (noisy & finite).any() else None}
    clean_hist = np.histogram(np.clip(std[~noisy & finite], 0, 0.4999), STD_BINS)[0]
    noisy_hist = np.histogram(np.clip(std[noisy & finite], 0, 0.4999), STD_BINS)[0]
    d["std_hist"] = {"bins": STD_BINS.tolist(), "clean": clean_hist.tolist(), "noisy": noisy_hist.tolist()}
    if noisy.any():
        d["auroc_std"] = auroc(std, noisy)               # high std̂ flags
        d["auroc_mean"] = auroc(-mean, noisy)            # low p̄ flags
        d["auroc_loss"] = auroc(loss, noisy)             # high final loss flags
        d["top_share_std"] = top_share(std, noisy)
        d["top_share_mean"] = top_share(-mean, noisy)
        d["top_share_loss"] = top_share(loss, noisy)
        if feeder.method.how != "order":
            # share of the emphasis (sampling probability / loss weight mass) on flipped examples
            s = feeder.emphasis_scores().cpu().numpy()
            d["emphasis_mass_noisy"] = float(s[noisy].sum() / s.sum())
    return d


def _data_for_seed(workload, opts: DataOptions, seed: int) -> Dataset:
    o = asdict(opts)
    if opts.label_noise > 0:
        o["noise_seed"] = opts.noise_seed + seed
    return workload.load(**o)


def finished_record(trial: TrialDir) -> dict | None:
    """The trial's record when it finished with everything this study adds to it, else None."""
    if trial.finished():
        rec = trial.read()
        if "best_ckpt_test_error" in rec:
            return rec
    return None


def run_one(study: StudyDir, workload, data: Dataset, cfg: TrainConfig, method: str, seed: int,
            trial_id: str, epsilon: float | None, burn_in: float, device, progress=None, record: dict | None = None) -> dict:
    """The record of one (method, seed) run: read when it finished, else trained here while holding
    the trial's claim (waiting, when another process runs it, for that process to finish it)."""
    trial = study.trial(trial_id)
    rec = finished_record(trial)
    if rec is not None:
        return rec
    with trial.hold(waiting=lambda who: say(f"waiting for trial {trial_id}, which {who} is running")):
        rec = finished_record(trial)
        if rec is not None:
            return rec
        return train_one(trial, workload, data, cfg, method, epsilon, burn_in, device, progress, record)


def train_one(trial: TrialDir, workload, data: Dataset, cfg: TrainConfig, method: str, epsilon: float | None,
              burn_in: float, device, progress=None, record: dict | None = None, feeder: Feeder | None = None) -> dict:
    """Train one (method, seed) run into ``trial`` (the caller holds its claim); returns its record.
    ``feeder``: the method's feeder when it is not an Active Bias one (rho, the matched-compute uniform)."""
    feeder = feeder or EmphasisFeeder(method, epsilon=epsilon, burn_in=burn_in)
    best = BestCheckpoint()
    trace = SelectionTrace(data) if isinstance(feeder, RhoFeeder) else None
    result, trainer = run_trial(trial, workload, data, cfg, feeder, device=device,
                                callbacks=[best] + ([trace] if trace else []),
                                progress=progress, record={"method": method, **(record or {})})
    rec = trial.read()
    rec["best_step"] = best.best_step
    rec["best_ckpt_val_error"] = None if best.state is None else best.best_error
    if best.state is not None and result.status != "diverged":
        final = copy.deepcopy(trainer.model.state_dict())
        trainer.model.load_state_dict(best.state)
        rec["best_ckpt_test_error"] = trainer.evaluate("test")[0]
        trainer.model.load_state_dict(final)
    else:
        rec["best_ckpt_test_error"] = result.test_error
    if isinstance(feeder, RhoFeeder):
        rec["compute"] = feeder.cost(result.examples)
        rec["il"] = feeder.il.info
    else:
        rec["compute"] = {"train_examples": int(result.examples), "forward_examples": 0}
    if result.status != "diverged":
        rec["diagnostics"] = (rho_diagnostics if isinstance(feeder, RhoFeeder) else diagnostics)(
            trainer, feeder, trainer.data)
        if trace is not None and trace.rows:
            rec["diagnostics"]["selection_trace"] = trace.rows
    trial.write(rec)
    return rec


# --------------------------------------------------------------------------- the study
def emphasis_study(req: EmphasisRequest, out: str, threads: int | None = None, device: str = "auto",
                   command: list[str] | None = None) -> dict:
    # the paired design: every method trains the same budget, whatever config the caller passed
    req = replace(req, config=replace(req.config, stop_at_target=False))
    req.validate()
    workload = get_workload(req.workload)
    n_threads = set_threads(threads)
    dev = pick_device(device)
    study = StudyDir(out)
    probe = _data_for_seed(workload, req.data, 0)
    req.config.validate(probe.num_train)
    config = {"workload": req.workload, "train": asdict(replace(req.config, seed=0)), "methods": req.methods,
              "seeds": req.seeds, "epsilon": req.epsilon, "burn_in": req.burn_in, "data": req.data.identity(probe),
              "tune": req.tune}
    if RHO in req.methods:   # only then: studies without rho keep the identity they had
        config["rho"] = asdict(req.rho)
    if req.matched_compute:
        config["matched_compute"] = True
        config["matched_steps"] = matched_steps(req.rho, req.config, probe.num_train)
    study.open("emphasis", config, command=command,
               extra={"threads": n_threads, "device": str(dev), "dataset": probe.describe()})
    tuned = {}
    if req.tune:
        tuned = tune_methods(study, req, workload, probe, dev)
    order = [(seed, method) for seed in range(req.seeds) for method in req.trial_methods()]
    datasets = {0: probe}

    def data_for(seed):
        if seed not in datasets:
            datasets[seed] = probe if req.data.label_noise == 0 else _data_for_seed(workload, req.data, seed)
        return datasets[seed]

    def job(seed, method, bar, task):
        trial = study.trial(f"{method}-s{seed}")

        def run():
            data = data_for(seed)
            params = tuned.get(method, {})
            cfg = replace(req.config, seed=seed, lr=params.get("lr", req.config.lr))
            feeder, extra = None, {}
            if method == RHO:
                il = irreducible_losses(study, workload, data, cfg, req.rho, seed, dev)
                feeder, extra = RhoFeeder(il, req.rho.ratio), {"rho": asdict(req.rho)}
            elif method == MATCHED:   # uniform, for the steps rho's compute buys
                cfg = replace(cfg, max_steps=matched_steps(req.rho, req.config, data.num_train), max_examples=None)
                feeder, extra = EmphasisFeeder("uniform"), {"matched_to": RHO}
            train_one(trial, workload, data, cfg, method, params.get("epsilon", req.epsilon),
                      params.get("burn_in", req.burn_in), dev,
                      record={"data": {**asdict(req.data), "noise_seed": data.info.get("noise_seed")},
                              "tuned": params or None, **extra}, feeder=feeder)
            bar.advance(task)
            write_summary()
        return Job(trial, lambda: finished_record(trial) is not None, run, f"trial {trial.id}")

    def write_summary():
        # from the files, in the fixed (seed, method) order: any process sharing the folder writes the same
        records = [r for seed, m in order if (r := finished_record(study.trial(f"{m}-s{seed}"))) is not None]
        s = _summary(req, records, tuned, study)
        study.write_summary(s)
        return s

    with progress_bar() as bar:
        already = sum(finished_record(study.trial(f"{m}-s{seed}")) is not None for seed, m in order)
        task = bar.add_task(f"emphasis {req.workload}", total=len(order), completed=already)
        run_claimed([job(seed, method, bar, task) for seed, method in order])
    summary = write_summary()
    for line in summary["statement"]:
        say(line)
    return summary


# --------------------------------------------------------------------------- tuning
# tuning run k is seeded by stream(0, "emphasis tuning", k) (feedwise.seeds): never an evaluation seed 0..K-1


def search_space(method: str, lr: float) -> dict:
    """Optuna ranges (log-uniform unless int) per method: lr around the workload's, ε and burn-in."""
    space = {"lr": ("log", lr / 3, lr * 3)}
    m = get_method(method)
    if m.how != "order":
        space["epsilon"] = ("log", 0.1, 10.0) if m.scorer.relative_epsilon else ("log", 1e-3, 1.0)
        space["burn_in"] = ("int", 1, 4)
    return space


TUNE_HEARTBEAT_S = 10   # Optuna heartbeat of a tuning trial; one silent for 3x this is stale (failed)


def tune_methods(study: StudyDir, req: EmphasisRequest, workload, data: Dataset, dev) -> dict:
    """Per method, ``req.tune`` Optuna (TPE) trials minimising the best validation error.

    Storage is ``study.db`` (SQLite, with heartbeats); re-running resumes and gives what an
    uninterrupted run gives: tuning trial ``k`` (its position in the sequence, its folder
    ``tune-<method>-<k>`` and its training seed) draws its parameters from a sampler seeded
    with ``k``, so a resumed TPE neither starts its random start-up sequence over nor skips a
    position; a position whose folder finished but whose Optuna trial did not (interrupted in
    between) takes the folder's parameters and value instead of training again. One process at a
    time tunes a method (a claim in ``.locks/``); others sharing the folder tune other methods."""
    tuned = {}
    with progress_bar() as bar:
        task = bar.add_task("tune", total=req.tune * len(req.methods))
        jobs = []
        for method in req.methods:
            def run(method=method):
                tuned[method] = _tune_method(study, req, workload, data, dev, method, lambda: bar.advance(task))
            jobs.append(Job(study.lock(f"tune-{method}"), lambda method=method: method in tuned, run,
                            f"the tuning of {method}"))
        run_claimed(jobs)   # a method another process tuned is read from the storage once its claim is free
    return {m: tuned[m] for m in req.methods}


def _tune_method(study: StudyDir, req: EmphasisRequest, workload, data: Dataset, dev, method: str, advance) -> dict:
    """Run the missing tuning positions of ``method`` (the caller holds its claim); returns the best."""
    import optuna

    from feedwise.studies.batch_size.storage import open_storage

    storage = open_storage(f"sqlite:///{study.db_path}", heartbeat=TUNE_HEARTBEAT_S)
    space = search_space(method, req.config.lr)
    name = f"tune-{method}"

    def load(position: int):
        return optuna.create_study(study_name=name, storage=storage, direction="minimize", load_if_exists=True,
                                   sampler=optuna.samplers.TPESampler(seed=position))

    def complete(ostudy) -> dict[int, optuna.trial.FrozenTrial]:
        done = {}
        for t in ostudy.get_trials(deepcopy=False, states=(optuna.trial.TrialState.COMPLETE,)):
            done.setdefault(int(t.user_attrs.get("position", t.number)), t)
        return done

    def objective(trial, position: int):
        trial.set_user_attr("position", position)
        p = {}
        for pname, (kind, lo, hi) in space.items():
            p[pname] = trial.suggest_int(pname, lo, hi) if kind == "int" else trial.suggest_float(pname, lo, hi, log=True)
        seed = stream(0, "emphasis tuning", position)
        cfg = replace(req.config, seed=seed, lr=p["lr"])
        rec = run_one(study, workload, data, cfg, method, seed, f"tune-{method}-{position}",
                      p.get("epsilon", req.epsilon), p.get("burn_in", req.burn_in), dev,
                      record={"tuning": True, "params": p, "position": position})
        advance()
        v = rec.get("best_ckpt_val_error")
        return v if v is not None else 1.0

    done = complete(load(0))
    for _ in done:
        advance()
    while (todo := [k for k in range(req.tune) if k not in done]):
        position = todo[0]
        ostudy = load(position)
        _drop_unfinished(ostudy)
        on_disk = finished_record(study.trial(f"tune-{method}-{position}"))
        if on_disk is not None:   # trained, but interrupted before Optuna heard of it
            ostudy.enqueue_trial(on_disk["params"], user_attrs={"position": position})
        ostudy.optimize(lambda t: objective(t, position), n_trials=1)
        done = complete(ostudy)
    best = min((done[k] for k in range(req.tune)), key=lambda t: (t.value, int(t.user_attrs.get("position", t.number))))
    return {**best.params, "val_error": best.value}


def _drop_unfinished(ostudy) -> None:
    """Fail the method's RUNNING and WAITING trials: the caller holds the method's claim, so they are
    left by an interrupted process (a WAITING one would hand its parameters to the next position)."""
    import optuna

    TS = optuna.trial.TrialState
    for t in ostudy.get_trials(deepcopy=False, states=(TS.RUNNING, TS.WAITING)):
        ostudy._storage.set_trial_state_values(t._trial_id, TS.FAIL)


def _summary(req: EmphasisRequest, records: list[dict], tuned: dict, study: StudyDir) -> dict:
    s = summarise(records, req.trial_methods())
    curves = {}
    for m in req.trial_methods():
        rows_by_seed = [study.trial(f"{m}-s{seed}").measurements() for seed in range(req.seeds)
                        if finished_record(study.trial(f"{m}-s{seed}")) is not None]
        if not rows_by_seed:
            continue
        steps = sorted({r["step"] for rows in rows_by_seed for r in rows})
        mean_curve = []
        for st in steps:
            v = [r["val_error"] for rows in rows_by_seed for r in rows
                 if r["step"] == st and r["val_error"] is not None]
            mean_curve.append(float(np.mean(v)) if v else None)
        curves[m] = {"step": steps, "val_error_mean": mean_curve}
    return {"kind": "emphasis", "workload": req.workload, "label_noise": req.data.label_noise,
            "seeds": req.seeds, "steps": req.config.budget_steps(), "batch_size": req.config.batch_size,
            "lr": req.config.lr, "epsilon": req.epsilon, "burn_in": req.burn_in, "tuned": tuned or None,
            **({"rho_options": asdict(req.rho)} if RHO in req.methods else {}),
            **({"matched_steps": next((r["budget"]["steps"] for r in records if r.get("method") == MATCHED), None)}
               if req.matched_compute else {}),
            "primary_test": primary_test_text(req.seeds),
            **s, "curves": curves}
