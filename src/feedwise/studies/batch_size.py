"""The batch-size scaling study (Shallue et al. 2018), tuned with Optuna, resumable.

For every batch size B there is one Optuna study (``bs<B>``) in one storage (``DIR/study.db``
by default, any RDB URL such as ``postgresql://...`` with ``storage=``), sampled by a
scrambled, seeded ``QMCSampler`` over the optimizer's metaparameters:

====================  =============  ==========================================================
parameter             scale          meaning
====================  =============  ==========================================================
``lr``                log-uniform    initial learning rate
``one_minus_momentum`` log-uniform   1 - momentum (momentum / nesterov; Adam's 1 - beta1)
``end_factor``        log-uniform    final lr of the linear decay, as a fraction of ``lr``
``decay_fraction``    uniform        decay length: ``decay_steps = decay_fraction * max_steps``
====================  =============  ==========================================================

Defaults live in ``Workload.search_space`` (``{name: [low, high]}``); a YAML/JSON file can
override any of them (``[low, high]`` or a single number to fix it); an unknown name is an
error. The sampler is told the search space up front, so every trial (the first and concurrent
ones included) is a point of the scrambled Sobol sequence: trial number n gets point n, so
concurrent trials and workers never draw the same point.

Each Optuna trial trains once with the engine into ``trials/b<B>-<number>/`` (``trial.json``
records the Optuna study, trial number and batch size), evaluates every ``eval_every(B)``
steps and stops at the target. **Exact pruning**: after each evaluation that did not reach the
target, the trial reads the best steps-to-result already found for its batch size from the
storage (the finished trials of all workers) and stops as ``pruned`` when its next evaluation
could not come below it (:func:`feedwise.studies.scaling.should_prune`): the minimum over the
batch size is unchanged by construction.

Optuna bookkeeping (``QMCSampler`` ignores objective values; they matter for the pruning rule
and for humans): ``reached`` -> COMPLETE with value = steps-to-result; ``budget`` -> COMPLETE
with value = +inf; ``pruned`` and ``diverged`` -> PRUNED (stopped early, no value). The
engine's status is kept in the trial's user attributes and in ``trial.json``.

**Budget per trial**: ``max_steps(B) = max_steps * max(1, ref_batch / B)``: the step budget
grows below the reference batch size so that small batches get the same number of examples
(``ref_batch = 0`` switches this off). Evaluations every ``eval_every(B) = max(min_eval_every,
round(eval_every * ref_batch / B))`` steps: a fixed number of examples between evaluations, so
every batch size is measured at about the same relative resolution of its steps-to-result
(large batches, which need few steps, are evaluated more often in steps, small ones less).

**Concurrent trials** (``jobs``): the trials of a batch size can run at once in threads of one
process. Exact pruning then bites as soon as *any* trial reaches the target: the others stop at
their next evaluation at or past that step, instead of the trials drawn before the first success
running their whole budget. The steps-to-result of each batch size cannot change (the pruning
rule only stops trials that can no longer lower it); each trial's initialisation is seeded by
its own seed under the engine's lock, so threads do not mix their random streams.

**Resume / several workers**: the storage is opened with heartbeats; trials whose heartbeat
stopped (a killed process) are marked FAIL by Optuna and their folders ``unfinished``. A run
asks for new trials until ``trials`` of them are finished (COMPLETE or PRUNED) for each batch
size, counted in the storage across all workers, so re-running never repeats a finished trial.
With several workers at once the count may overshoot: each worker that starts while trials
are missing asks for all of them, so by at most ``jobs`` trials per extra worker (one with the
default ``jobs = 1``).

**Data parallelism** (``data_parallel = N > 1``, ``feedwise batch-size --data-parallel N``):
each trial is trained by synchronous DDP on N local processes
(:func:`feedwise.parallel.run.run_parallel`, gloo on CPU, 1 torch thread per worker by
default) instead of the single-process engine, into the same trial folder layout (its
``trial.json`` adds ``world_size``, ``backend``, ``compute_s``, ``comm_s``,
``time_to_result_s``). Same seeds, same global batch: the same maths. Exact pruning works the
same way, through the worker's ``stop_rule`` (:class:`StoragePruner`, which reads the best from
the storage on rank 0). N is part of the study config: a different N on the same folder is
refused. ``summary.json`` gives, per batch size, ``world_size``, ``s_per_step`` (median over
the batch size's trials of ``wall_s / steps_run``, training time only), ``time_to_result_s``
(training seconds of the best trial up to its steps-to-result, from its measurements) and
``time_to_result_model_s = steps_to_result * s_per_step``.

Where things live: the search space and its sampler in :mod:`feedwise.studies.search_space`,
the summary (files only) in :mod:`feedwise.studies.batch_size_summary`, the Optuna storage and
exact pruning in :mod:`feedwise.studies.batch_size_storage`, the pure maths in
:mod:`feedwise.studies.scaling`; this module holds the budget, the request and the run.
"""

from __future__ import annotations

import math
import os
import socket
from dataclasses import asdict, dataclass, field
from pathlib import Path

from feedwise.engine import TrainConfig
from feedwise.errors import FeedwiseError
from feedwise.feeders import UniformFeeder
from feedwise.progress import progress_bar
from feedwise.results import StudyDir
from feedwise.studies import scaling
from feedwise.studies.batch_size_storage import (ExactPruner, StoragePruner, finished_count, mark_stale,
                                                 open_storage, redact)
from feedwise.studies.batch_size_summary import FINISHED, KIND, summarize  # noqa: F401  (re-exported)
from feedwise.studies.common import pick_device, run_trial, set_threads
from feedwise.studies.search_space import (LOG_PARAMS, PARAMS, distributions, load_space_file,  # noqa: F401
                                           resolve_space, sampler as _sampler, sobol_point, suggest)
from feedwise.studies.train import DataOptions
from feedwise.workloads import get_workload


# ---------------------------------------------------------------------------------- budget
@dataclass
class Budget:
    """Per-trial budget and evaluation period as functions of the batch size."""

    max_steps: int = 4000
    ref_batch: int = 128
    eval_every: int = 50
    min_eval_every: int = 10

    def steps(self, batch_size: int) -> int:
        if self.ref_batch and batch_size < self.ref_batch:
            return int(math.ceil(self.max_steps * self.ref_batch / batch_size))
        return int(self.max_steps)

    def eval_period(self, batch_size: int) -> int:
        if not self.ref_batch:
            return int(self.eval_every)
        return max(1, self.min_eval_every, int(round(self.eval_every * self.ref_batch / batch_size)))


@dataclass
class BatchSizeRequest:
    workload: str
    batch_sizes: list[int]
    trials: int = 8
    optimizer: str = "momentum"
    target: float | None = None
    budget: Budget | None = None
    seed: int = 0
    space: dict | None = None            # overrides of the workload's defaults
    data: DataOptions = field(default_factory=DataOptions)
    data_parallel: int = 1               # > 1: every trial is synchronous DDP on this many local processes

    def resolved(self) -> tuple["BatchSizeRequest", dict, float, Budget]:
        w = get_workload(self.workload)
        if not self.batch_sizes:
            raise FeedwiseError("give at least one batch size")
        if any(b <= 0 for b in self.batch_sizes):
            raise FeedwiseError(f"batch sizes must be positive, got {self.batch_sizes}")
        if int(self.data_parallel) < 1:
            raise FeedwiseError(f"--data-parallel must be at least 1, got {self.data_parallel}")
        if self.data_parallel > 1 and any(b < self.data_parallel for b in self.batch_sizes):
            raise FeedwiseError(f"every batch size must be at least --data-parallel {self.data_parallel} "
                                f"(one example per worker), got {self.batch_sizes}")
        if self.trials <= 0:
            raise FeedwiseError(f"--trials must be positive, got {self.trials}")
        if self.optimizer not in ("sgd", "momentum", "nesterov", "adam"):
            raise FeedwiseError(f"unknown optimizer '{self.optimizer}' (known: sgd, momentum, nesterov, adam)")
        space = resolve_space(w.search_space, self.space, self.optimizer)
        target = w.resolve_target(self.target, needed_by="the batch-size study (steps-to-result)")
        budget = self.budget or Budget(max_steps=w.max_steps, ref_batch=w.batch_size, eval_every=w.eval_every)
        if budget.max_steps <= 0 or budget.eval_every <= 0:
            raise FeedwiseError("max steps and eval period must be positive")
        return self, space, target, budget


def study_name(batch_size: int) -> str:
    return f"bs{batch_size}"


def trial_id(batch_size: int, number: int) -> str:
    return f"b{batch_size}-{number}"


def make_config(batch_size: int, params: dict, optimizer: str, budget: Budget, target: float, seed: int) -> TrainConfig:
    steps = budget.steps(batch_size)
    momentum = 0.0 if optimizer == "sgd" else 1.0 - params["one_minus_momentum"]
    return TrainConfig(batch_size=batch_size, optimizer=optimizer, lr=params["lr"], momentum=momentum,
                       schedule="linear", end_factor=params["end_factor"],
                       decay_steps=max(1, int(round(params["decay_fraction"] * steps))), max_steps=steps,
                       eval_every=budget.eval_period(batch_size), target=target, stop_at_target=True,
                       seed=seed, evaluate_test=False)


# ---------------------------------------------------------------------------------- the study
def study_config(req: BatchSizeRequest, space: dict, target: float, budget: Budget) -> dict:
    """What defines the results (batch sizes and trial counts may grow on a resume)."""
    cfg = {"workload": req.workload, "optimizer": req.optimizer, "target": target, "budget": asdict(budget),
           "space": space, "seed": req.seed, "data": asdict(req.data), "schedule": "linear"}
    if req.data_parallel > 1:   # absent for one process: studies written before the option resume unchanged
        cfg["data_parallel"] = int(req.data_parallel)
    return cfg


def run_batch_size_study(req: BatchSizeRequest, out: str | Path, storage: str | None = None,
                         threads: int | None = None, device: str = "auto", command: list[str] | None = None,
                         heartbeat: int = 10, jobs: int = 1) -> dict:
    """Run (or resume) the study into ``out``; returns the summary (also written to summary.json).

    ``jobs`` trials of a batch size run at once in this process (threads)."""
    import optuna

    req, space, target, budget = req.resolved()
    if jobs < 1:
        raise FeedwiseError(f"--jobs must be at least 1, got {jobs}")
    world = int(req.data_parallel)
    if world > 1 and jobs > 1:
        raise FeedwiseError("--jobs > 1 cannot be combined with --data-parallel (each trial already uses "
                            f"{world} processes)")
    workload = get_workload(req.workload)
    sd = StudyDir(out)
    n_threads = set_threads(threads)
    dev = pick_device(device)
    data = workload.load(**asdict(req.data))
    for b in req.batch_sizes:
        if b > data.num_train:
            raise FeedwiseError(f"batch size {b} is larger than the training set ({data.num_train} examples)")
    url = storage or f"sqlite:///{Path(out).resolve() / 'study.db'}"
    sd.open(KIND, study_config(req, space, target, budget), command=command,
            extra={"threads": n_threads, "device": str(dev), "dataset": data.describe(),
                   "storage": redact(url), "world_size": world,
                   "threads_per_worker": n_threads if world > 1 else None})
    store = open_storage(url, heartbeat)
    batch_sizes = sorted(set(int(b) for b in req.batch_sizes))
    model_fn = workload.model_fn(data)

    with progress_bar() as bar:
        outer = bar.add_task("batch sizes", total=len(batch_sizes))
        for b in batch_sizes:
            study = optuna.create_study(study_name=study_name(b), storage=store, sampler=_sampler(req.seed + b, space),
                                        direction="minimize", load_if_exists=True)
            study.set_user_attr("batch_size", b)
            mark_stale(study, sd)
            inner = bar.add_task(f"bs={b} trials", total=req.trials, completed=min(req.trials, finished_count(study)))

            def objective(trial, b=b, study=study, inner=inner):
                params = suggest(trial, space)
                seed = req.seed * 1_000_003 + trial.number
                cfg = make_config(b, params, req.optimizer, budget, target, seed)
                tid = trial_id(b, trial.number)
                trial.set_user_attr("trial_dir", tid)
                eff = scaling.effective_lr(cfg.lr, cfg.momentum, cfg.optimizer)
                record = {"batch_size": b, "search_params": params, "effective_lr": eff,
                          "optuna": {"study": study.study_name, "number": trial.number, "trial_id": trial._trial_id},
                          "data": asdict(req.data), "worker": {"host": socket.gethostname(), "pid": os.getpid()},
                          "jobs": jobs}
                if world > 1:
                    result = _run_parallel_trial(sd.trial(tid), req, cfg, record, world, n_threads, dev, data, url,
                                                 study.study_name)
                    return _objective_value(trial, result, bar, inner)
                task = bar.add_task(f"  trial {tid}", total=cfg.budget_steps())
                try:
                    result, _ = run_trial(sd.trial(tid), workload, data, cfg, UniformFeeder(), device=dev,
                                          callbacks=[ExactPruner(study, cfg.eval_every)], record=record,
                                          progress=lambda s, t: bar.update(task, completed=s),
                                          model_fn=model_fn)
                finally:
                    bar.remove_task(task)
                return _objective_value(trial, result, bar, inner)

            while (done := finished_count(study)) < req.trials:
                n = req.trials - done
                try:
                    study.optimize(objective, n_trials=n if jobs > 1 else 1, n_jobs=min(jobs, n), catch=())
                except BaseException:
                    mark_stale(study, sd)  # also turns this process's FAIL trial folder into ``unfinished``
                    raise
                bar.update(inner, completed=min(req.trials, finished_count(study)))
            mark_stale(study, sd)
            bar.remove_task(inner)
            bar.advance(outer)
    summary = summarize(sd)
    sd.write_summary(summary)
    return summary


def _objective_value(trial, result, bar, inner) -> float:
    """Optuna's value of a finished trial (``result``: a TrainResult or a data-parallel record)."""
    import optuna

    get = (lambda k: result[k]) if isinstance(result, dict) else (lambda k: getattr(result, k))
    for k in ("status", "examples", "steps_run"):
        trial.set_user_attr(k, get(k))
    bar.advance(inner)
    if get("status") == "reached":
        return float(get("steps_to_result"))
    if get("status") == "budget":
        return math.inf
    raise optuna.TrialPruned(get("status"))


def _run_parallel_trial(td, req: BatchSizeRequest, cfg: TrainConfig, record: dict, world: int, threads: int,
                        dev, data, url: str, study: str) -> dict:
    """One trial as synchronous DDP on ``world`` local processes (the scale-out worker loop)."""
    from feedwise.parallel.run import run_parallel
    from feedwise.parallel.worker import WorkerSpec

    spec = WorkerSpec(req.workload, cfg, mode="sync", world_size=world, threads_per_worker=threads,
                      data=asdict(req.data), device=dev.type, trial_path=str(td.path), record=record,
                      measure_model=False, callbacks=[StoragePruner(url, study, cfg.eval_every)])
    return run_parallel(spec, data=data)
