"""The batch-size scaling study (Shallue et al. 2018), tuned with Optuna, resumable.

For every batch size B there is one Optuna study (``feedwise-bs<B>-<fingerprint>``, named by
the study's identity, see :mod:`feedwise.studies.batch_size.trials`) in one storage
(``DIR/study.db`` by default, any RDB URL such as ``postgresql://...`` with ``storage=``). Its
trials are the points of a scrambled, seeded Sobol sequence over the optimizer's metaparameters:

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
error. **Points**: ``--trials N`` means the Sobol points ``0..N-1`` of each batch size (seed
``seed + B``), point k trained with seed ``stream(seed, "batch-size trial", k)`` (:mod:`feedwise.seeds`). A point is enqueued in the
storage and trained by the trial that pops it; a point whose trial was interrupted (Ctrl-C, a
killed worker) is trained again from its start, so a resumed or shared study evaluates exactly
the points of an uninterrupted one and gets its steps-to-result.

Each trial trains once with the engine into ``trials/b<B>-<number>/`` (``trial.json`` records
the Optuna study, trial number, point and batch size), evaluates every ``eval_every(B)`` steps
and stops at the target. **Exact pruning**: after each evaluation that did not reach the
target, the trial reads the best steps-to-result already found for its batch size from the
storage (the finished trials of all workers) and stops as ``pruned`` when its next evaluation
could not come below it (:func:`feedwise.studies.batch_size.scaling.should_prune`): the minimum over the
batch size is unchanged by construction (and so independent of the order the points run in).

Optuna bookkeeping: ``reached`` -> COMPLETE with value = steps-to-result; ``budget`` ->
COMPLETE with value = +inf; ``pruned`` and ``diverged`` -> PRUNED (stopped early, no value);
interrupted -> FAIL (its folder ``unfinished``, its examples counted in the compute account).
The engine's status is kept in the trial's user attributes and in ``trial.json``.

**Budget per trial**: ``max_steps(B) = max_steps * max(1, ref_batch / B)``: the step budget
grows below the reference batch size so that small batches get the same number of examples
(``ref_batch = 0`` switches this off). Evaluations every ``eval_every(B) = max(min_eval_every,
round(eval_every * ref_batch / B))`` steps: a fixed number of examples between evaluations, so
every batch size is measured at about the same relative resolution of its steps-to-result
(large batches, which need few steps, are evaluated more often in steps, small ones less).

**Order** (``order``, ``--order``): ``best-first`` (the default) starts at the batch size nearest
the reference one and moves outward; each batch size trains its points nearest to the best
hyperparameters known for it first (its own best trial, else its nearest finished neighbour's best
with the learning rate moved by a rule fitted on the finished batch sizes' best learning rates),
so exact pruning gets a good bound early (:mod:`feedwise.studies.batch_size.order`). ``given``
trains ascending batch sizes, points in order. The same points either way: the same
steps-to-result, fewer examples best-first. The order is not part of the study's identity: a
study may be resumed with the other one.

**Trials trained together** (``trials_together = K``, ``--trials-together K``): K points of a batch
size are trained at once as one batched model (:mod:`feedwise.parallel.together`: stacked
parameters, ``torch.func.vmap``), each an Optuna trial with its own heartbeat, folder, seed, data
order and stop; one that reaches the target bounds the others at their next evaluation (the
batch's best is read without waiting for the storage). Every trial's ``wall_s`` is the wall-clock
of its batch. Refused (one line, before anything is written) for models with batch norm or
dropout, models ``vmap`` cannot run, lazily read data, ``--jobs`` and ``--data-parallel``. Like
the order it is not part of the study's identity (on a CPU it trains the same parameters as one
trial alone; on other kernels float rounding may differ).

**Concurrent trials** (``jobs``): up to ``jobs`` points of a batch size run at once in threads
of one process. Exact pruning then bites as soon as *any* trial reaches the target: the others
stop at their next evaluation at or past that step. The steps-to-result of each batch size
cannot change; each trial's initialisation is seeded by its own seed under the engine's lock.

**Resume / several workers**: the storage is opened with heartbeats and every storage call is
retried through a short outage (:mod:`feedwise.studies.batch_size.storage`); trials whose
heartbeat stopped are marked FAIL and their folders ``unfinished``. A run trains the missing
points of each batch size, then waits for the points other workers are still training (taking
over those whose worker died), so every worker ends with the same complete study. Re-running
never repeats a finished point and never overwrites a trial folder; a storage that lost the
study (deleted ``study.db``, another ``--storage``) is rebuilt from the trial folders.

**Data parallelism** (``data_parallel = N > 1``, ``feedwise batch-size --data-parallel N``):
each trial is trained by synchronous DDP on N local processes
(:func:`feedwise.parallel.run.run_parallel`, gloo on CPU, 1 torch thread per worker by
default) instead of the single-process engine, into the same trial folder layout (its
``trial.json`` adds ``world_size``, ``backend``, ``compute_s``, ``comm_s``,
``time_to_result_s``). Same seeds, same global batch: the same maths, up to the order of float
summation (two half-batch gradients summed by an all-reduce instead of one batch), which
training amplifies: steps-to-result may differ from a one-process study by an evaluation or
two. Exact pruning is the same engine callback (:class:`ExactPruner`, made from the storage URL so
that it travels to the ranks; rank 0 reads the best from the storage). N is part of the
study config: a different N on the same folder is refused. ``summary.json`` gives, per batch
size, ``world_size``, ``s_per_step`` (median over the batch size's trials of ``wall_s /
steps_run``, training time only), ``time_to_result_s`` (training seconds of the best trial up
to its steps-to-result, from its measurements) and ``time_to_result_model_s = steps_to_result *
s_per_step``.

Where things live: the search space and its sampler in :mod:`feedwise.studies.batch_size.search_space`,
the summary (files only) in :mod:`feedwise.studies.batch_size.summary`, the storage connection
(URLs, secrets, retries) in :mod:`feedwise.studies.batch_size.storage`, the study's identity,
points, rebuilding and exact pruning in :mod:`feedwise.studies.batch_size.trials`, the pure
maths in :mod:`feedwise.studies.batch_size.scaling`; this module holds the budget, the request and the run.
"""

from __future__ import annotations

import math
import os
import socket
import sys
import time
import warnings
from dataclasses import asdict, dataclass, field
from pathlib import Path

from feedwise.engine import TrainConfig, Trainer
from feedwise.seeds import stream
from feedwise.errors import FeedwiseError
from feedwise.feeds.base import UniformFeeder
from feedwise.progress import progress_bar
from feedwise.results import StudyDir
from feedwise.studies.batch_size import order as _order
from feedwise.studies.batch_size import scaling
from feedwise.studies.batch_size.storage import (DEFAULT_RETRY_S, check_driver, normalize_url, open_storage,
                                                 redact, redact_command)
from feedwise.studies.batch_size.summary import FINISHED, KIND, summarize  # noqa: F401  (re-exported)
from feedwise.studies.batch_size.trials import (ExactPruner, FolderClash, SkipTrial,  # noqa: F401
                                                best_params, enqueue_points, fingerprint, is_duplicate, mark_stale, open_study,
                                                point_params, points_state, skip, study_name, trial_id)
from feedwise.studies.common import pick_device, run_trial, set_threads
from feedwise.studies.batch_size.search_space import (LOG_PARAMS, PARAMS, distributions, load_space_file,  # noqa: F401
                                           resolve_space, sampler as _sampler, sobol_point, suggest)
from feedwise.studies.train.run import DataOptions
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

    def validate(self) -> None:
        for name, v, low in (("--steps", self.max_steps, 1), ("--eval-every", self.eval_every, 1),
                             ("--min-eval-every", self.min_eval_every, 1), ("--ref-batch", self.ref_batch, 0)):
            if isinstance(v, bool) or not isinstance(v, int) or v < low:
                raise FeedwiseError(f"{name} must be an integer >= {low}, got {v!r}")


def _int_at_least(name: str, v, low: int) -> int:
    if isinstance(v, bool) or not isinstance(v, int) or v < low:
        raise FeedwiseError(f"{name} must be an integer >= {low}, got {v!r}")
    return v


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
        """Validate everything (nothing is written before this passes)."""
        w = get_workload(self.workload)
        if not self.batch_sizes:
            raise FeedwiseError("give at least one batch size")
        if any(isinstance(b, bool) or not isinstance(b, int) or b <= 0 for b in self.batch_sizes):
            raise FeedwiseError(f"batch sizes must be positive integers, got {self.batch_sizes}")
        _int_at_least("--data-parallel", self.data_parallel, 1)
        if self.data_parallel > 1 and any(b < self.data_parallel for b in self.batch_sizes):
            raise FeedwiseError(f"every batch size must be at least --data-parallel {self.data_parallel} "
                                f"(one example per worker), got {self.batch_sizes}")
        if isinstance(self.trials, bool) or not isinstance(self.trials, int) or self.trials <= 0:
            raise FeedwiseError(f"--trials must be positive, got {self.trials}")
        _int_at_least("--seed", self.seed, 0)
        if self.optimizer not in ("sgd", "momentum", "nesterov", "adam"):
            raise FeedwiseError(f"unknown optimizer '{self.optimizer}' (known: sgd, momentum, nesterov, adam)")
        space = resolve_space(w.search_space, self.space, self.optimizer)
        target = w.resolve_target(self.target, needed_by="the batch-size study (steps-to-result)")
        budget = self.budget or Budget(max_steps=w.max_steps, ref_batch=w.batch_size, eval_every=w.eval_every)
        budget.validate()
        return self, space, target, budget


def make_config(batch_size: int, params: dict, optimizer: str, budget: Budget, target: float, seed: int) -> TrainConfig:
    steps = budget.steps(batch_size)
    momentum = 0.0 if optimizer == "sgd" else 1.0 - params["one_minus_momentum"]
    return TrainConfig(batch_size=batch_size, optimizer=optimizer, lr=params["lr"], momentum=momentum,
                       schedule="linear", end_factor=params["end_factor"],
                       decay_steps=max(1, int(round(params["decay_fraction"] * steps))), max_steps=steps,
                       eval_every=budget.eval_period(batch_size), target=target, stop_at_target=True,
                       seed=seed, evaluate_test=False)


def trial_seed(seed: int, point: int) -> int:
    return stream(seed, "batch-size trial", point)


# ---------------------------------------------------------------------------------- the study
def study_config(req: BatchSizeRequest, space: dict, target: float, budget: Budget, data=None) -> dict:
    """What defines the results (batch sizes and trial counts may grow on a resume)."""
    cfg = {"workload": req.workload, "optimizer": req.optimizer, "target": target, "budget": asdict(budget),
           "space": space, "seed": req.seed, "schedule": "linear",
           "data": req.data.identity(data) if data is not None else asdict(req.data)}
    if req.data_parallel > 1:   # absent for one process: studies written before the option resume unchanged
        cfg["data_parallel"] = int(req.data_parallel)
    return cfg


def check_run_options(jobs, heartbeat, storage_retry, world: int) -> None:
    _int_at_least("--jobs", jobs, 1)
    _int_at_least("--heartbeat", heartbeat, 1)
    if isinstance(storage_retry, bool) or not isinstance(storage_retry, (int, float)) \
            or not math.isfinite(storage_retry) or storage_retry < 0:
        raise FeedwiseError(f"--storage-retry must be a number of seconds >= 0, got {storage_retry!r}")
    if world > 1 and jobs > 1:
        raise FeedwiseError("--jobs > 1 cannot be combined with --data-parallel (each trial already uses "
                            f"{world} processes)")


def run_batch_size_study(req: BatchSizeRequest, out: str | Path, storage: str | None = None,
                         threads: int | None = None, device: str = "auto", command: list[str] | None = None,
                         heartbeat: int = 10, jobs: int = 1, storage_retry: float = DEFAULT_RETRY_S,
                         order: str = "best-first", trials_together: int = 1) -> dict:
    """Run (or resume) the study into ``out``; returns the summary (also written to summary.json).

    ``jobs`` points of a batch size run at once in this process (threads); ``storage_retry``
    seconds of storage outage are survived (then one clear error). ``order``: ``best-first``
    (batch sizes outward from the reference one, each batch size's points nearest to the best
    hyperparameters known for it first, see :mod:`feedwise.studies.batch_size.order`) or
    ``given`` (ascending batch sizes, points 0..N-1); the same points either way, so the same
    steps-to-result. ``trials_together``: K > 1 trains K points of a batch size at once as one
    batched model (:mod:`feedwise.parallel.together`); a model or data that cannot be batched is
    refused before anything is written."""
    req, space, target, budget = req.resolved()
    world = int(req.data_parallel)
    check_run_options(jobs, heartbeat, storage_retry, world)
    together = _int_at_least("--trials-together", trials_together, 1)
    if together > 1 and (world > 1 or jobs > 1):
        raise FeedwiseError("--trials-together cannot be combined with --data-parallel or --jobs (its trials "
                            "already share one batched step)")
    if order not in _order.ORDERS:
        raise FeedwiseError(f"--order must be one of {', '.join(_order.ORDERS)}, got {order!r}")
    url = normalize_url(storage) if storage else None
    if url:
        check_driver(url)
    workload = get_workload(req.workload)
    sd = StudyDir(out)
    n_threads = set_threads(threads)
    dev = pick_device(device)
    data = workload.load(**asdict(req.data))
    for b in req.batch_sizes:
        if b > data.num_train:
            raise FeedwiseError(f"batch size {b} is larger than the training set ({data.num_train} examples)")
    if together > 1:
        from feedwise.parallel.together import check_batchable

        check_batchable(workload.model_fn(data)(), data.x_train, data.y_train, workload.loss)
    config = study_config(req, space, target, budget, data)
    fp = fingerprint(config)
    given = url
    url = url or f"sqlite:///{Path(out).resolve() / 'study.db'}"

    def open_out():   # creates study.json, or checks (writing nothing) that --out holds this study
        sd.open(KIND, config, command=redact_command(command),
                extra={"threads": n_threads, "device": str(dev), "dataset": data.describe(),
                       "storage": redact(url), "fingerprint": fp, "world_size": world,
                       "threads_per_worker": n_threads if world > 1 else None, "order": order,
                       "trials_together": together})

    if sd.study_path.exists() or not given:   # a resume is checked first; the default storage lives in --out
        open_out()
        store = open_storage(url, heartbeat, storage_retry)
    else:                                     # a new study on a given storage: an unreachable one writes nothing
        store = open_storage(url, heartbeat, storage_retry)
        open_out()
    batch_sizes = sorted(set(int(b) for b in req.batch_sizes))
    model_fn = workload.model_fn(data)
    studies = {b: open_study(store, url, b, fp, config, sd, space, _sampler(req.seed + b, space))
               for b in batch_sizes}
    if order == "best-first":
        batch_sizes = _order.batch_size_order(batch_sizes, budget.ref_batch or workload.batch_size)

    def next_points(b: int, missing: list[int]) -> list[int]:
        if order == "given":
            return missing
        best = {bb: p for bb in batch_sizes if (p := best_params(studies[bb])) is not None}
        return _order.rank_points(missing, lambda p: point_params(space, p, req.seed + b), space,
                                  _order.anchor(b, best))

    data_on_dev = data.to(dev) if together > 1 and data.x_train.device != dev else data   # one copy for the batch

    def prepare(trial, b, study):
        """(config, trial folder, record) of a popped trial; SkipTrial when it must not train."""
        point = trial.user_attrs.get("point")
        if not isinstance(point, int) or point >= req.trials:
            skip(trial, "no point of this run")
        if is_duplicate(study, trial._trial_id, point):
            skip(trial, f"point {point} belongs to another trial")
        params = suggest(trial, space)
        cfg = make_config(b, params, req.optimizer, budget, target, trial_seed(req.seed, point))
        tid = trial_id(b, trial.number)
        td = sd.trial(tid)
        if td.path.exists():
            raise FolderClash(f"trial folder {td.path} already exists but storage {redact(url)} gives its "
                              f"number to a new trial: the storage does not match --out {sd.root}")
        trial.set_user_attr("trial_dir", tid)
        eff = scaling.effective_lr(cfg.lr, cfg.momentum, cfg.optimizer)
        record = {"batch_size": b, "point": point, "search_params": params, "effective_lr": eff,
                  "optuna": {"study": study.study_name, "number": trial.number, "trial_id": trial._trial_id},
                  "study_fingerprint": fp, "data": asdict(req.data),
                  "worker": {"host": socket.gethostname(), "pid": os.getpid()}, "jobs": jobs}
        if together > 1:
            record["trials_together"] = together
        return cfg, td, record

    def objective(trial, b, study, bar, inner):
        cfg, td, record = prepare(trial, b, study)
        tid, point = td.id, record["point"]
        if world > 1:
            result = _run_parallel_trial(td, req, cfg, record, world, n_threads, dev, data, url,
                                         study.study_name, storage_retry)
            return _objective_value(trial, result, bar, inner)
        task = bar.add_task(f"  trial {tid} (point {point})", total=cfg.budget_steps())
        try:
            result, _ = run_trial(td, workload, data, cfg, UniformFeeder(), device=dev,
                                  callbacks=[ExactPruner(study, cfg.eval_every)], record=record,
                                  progress=lambda s, t: bar.update(task, completed=s), model_fn=model_fn)
        finally:
            bar.remove_task(task)
        return _objective_value(trial, result, bar, inner)

    with progress_bar() as bar:
        outer = bar.add_task("batch sizes", total=len(batch_sizes))
        inners = {}
        complete: set[int] = set()
        while True:
            for b in batch_sizes:
                if b in complete:
                    continue
                study = studies[b]
                if b not in inners:
                    inners[b] = bar.add_task(f"bs={b} points", total=req.trials)
                while True:
                    mark_stale(study, sd)
                    missing, done, running = points_state(study, req.trials)
                    running &= set(range(req.trials))
                    bar.update(inners[b], completed=len(done & set(range(req.trials))))
                    if not missing:
                        break
                    k = min(max(jobs, together), len(missing))
                    enqueue_points(study, next_points(b, missing)[:k], space, req.seed + b)
                    if together > 1:
                        _run_together(study, sd, k, lambda t, b=b, study=study: prepare(t, b, study),
                                      lambda cfg: Trainer(data_on_dev, model_fn, cfg, feeder=UniformFeeder(), device=dev,
                                                          loss_fn=workload.loss),
                                      workload.name, bar, inners[b])
                        continue
                    _optimize(study, sd, lambda t, b=b, study=study: objective(t, b, study, bar, inners[b]), k)
                if not running:
                    complete.add(b)
                    bar.remove_task(inners.pop(b))
                    bar.advance(outer)
            if len(complete) == len(batch_sizes):
                break
            time.sleep(max(0.5, min(2.0, float(heartbeat))))   # other workers are training the last points
    summary = summarize(sd)
    sd.write_summary(summary)
    return summary


def _optimize(study, sd: StudyDir, objective, k: int) -> None:
    """Run ``k`` enqueued points (threads when k > 1); an interrupted one leaves its folder unfinished."""
    from optuna.exceptions import UpdateFinishedTrialError

    try:
        study.optimize(objective, n_trials=k, n_jobs=k, catch=(SkipTrial,))
    except UpdateFinishedTrialError:
        # a storage outage longer than the heartbeat grace period: another worker declared this
        # trial dead and its point is run again; its folder stays as the record of what it did
        print("feedwise: warning: a trial was marked failed by another worker while it ran (a storage outage "
              "longer than 3 heartbeats); its point is trained again", file=sys.stderr)
    except BaseException:
        mark_stale(study, sd)  # also turns this process's FAIL trial folder into ``unfinished``
        raise


def _run_together(study, sd: StudyDir, k: int, prepare, make_trainer, workload: str, bar, inner) -> None:
    """Pop ``k`` enqueued points and train them together (:class:`TrialsTogether`). Each trial is an
    Optuna trial with its own heartbeat and folder; it is told to the storage the moment it leaves
    the batch, and its steps-to-result bounds the others at that very evaluation (exact pruning)."""
    import optuna
    from optuna.storages._heartbeat import get_heartbeat_thread
    from optuna.trial import TrialState

    from feedwise.engine import record_end, record_start
    from feedwise.parallel.together import Member, TrialsTogether

    local = _GroupBest()
    members, live = [], {}

    def leave(trial, td, trainer, base, beat, task, result):
        record_end(td, trainer, base, result)
        bar.remove_task(task)
        try:
            study.tell(trial, _objective_value(trial, result, bar, inner))
        except optuna.TrialPruned:
            study.tell(trial, state=TrialState.PRUNED)
        beat.__exit__(None, None, None)
        live.pop(trial.number, None)

    try:
        for _ in range(k):
            with warnings.catch_warnings():   # the heartbeat is run here, as Study.optimize would
                warnings.filterwarnings("ignore", message="Heartbeat of storage is supposed")
                trial = study.ask()
            try:
                cfg, td, record = prepare(trial)
            except SkipTrial:
                study.tell(trial, state=TrialState.FAIL)
                continue
            beat = get_heartbeat_thread(trial._trial_id, study._storage)
            beat.__enter__()
            trainer = make_trainer(cfg)
            live[trial.number] = (trial, td, beat)
            base = record_start(td, trainer, workload, record)
            task = bar.add_task(f"  trial {td.id} (point {record['point']}, together)", total=cfg.budget_steps())
            members.append(Member(
                trainer, [ExactPruner(study, cfg.eval_every, local=local)], td.add_row,
                lambda s, t, task=task: bar.update(task, completed=s),
                lambda result, a=(trial, td, trainer, base, beat, task): leave(*a, result)))
        if members:
            TrialsTogether(members, best=local).run()
    except BaseException:
        for trial, td, beat in list(live.values()):   # interrupted: trained again from step 0 on resume
            if td.exists() and td.read().get("status") == "running":
                td.abort()
            try:
                study.tell(trial, state=TrialState.FAIL)
            except Exception:  # noqa: BLE001 - the storage may be what failed
                pass
            beat.__exit__(None, None, None)
        mark_stale(study, sd)
        raise


class _GroupBest:
    """The best steps-to-result among the trials of one batch trained together (read by their pruners)."""

    def __init__(self):
        self.best = None

    def add(self, steps: int) -> None:
        self.best = steps if self.best is None else min(self.best, steps)


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
                        dev, data, url: str, study: str, storage_retry: float) -> dict:
    """One trial as synchronous DDP on ``world`` local processes (the scale-out worker loop)."""
    from feedwise.parallel.run import run_parallel
    from feedwise.parallel.worker import WorkerSpec

    spec = WorkerSpec(req.workload, cfg, mode="sync", world_size=world, threads_per_worker=threads,
                      data=asdict(req.data), device=dev.type, trial_path=str(td.path), record=record,
                      measure_model=False,
                      callbacks=[ExactPruner(eval_every=cfg.eval_every, url=url, study_name=study,
                                                   retry_s=storage_retry)])
    return run_parallel(spec, data=data)
