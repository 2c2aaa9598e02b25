"""The one training loop.

``Trainer`` owns a model, an optimizer, a feeder and the in-memory data. Its hot loop
(:meth:`Trainer.train_steps`) gathers a batch by index, takes one optimizer step and
nothing else; evaluation, divergence checks, stop rules and recording happen between
chunks of steps in :meth:`Trainer.run`. Training time (``wall_s``) and evaluation time
(``eval_s``) are measured separately.

Parallelism plugs in as a :class:`Strategy` (one process by default; synchronous DDP, local
SGD and Hogwild live in :mod:`feedwise.parallel`), never as a second loop: every rank draws the
same global batch from its feeder and trains on its shard; rank 0 evaluates, runs the
callbacks and decides; the decision reaches every rank.

Stop rules, applied after every evaluated row has reached every callback: the step budget (or
example budget), the target validation error (``stop_at_target``), a NaN/inf loss (status
``diverged``), and any callback that returns a status (for example ``pruned`` from the
batch-size study).
"""

from __future__ import annotations

import math
import threading
import time
from dataclasses import asdict, dataclass, field
from typing import Callable, Iterable, Protocol

import torch
import torch.nn.functional as F
from torch import nn

from feedwise.data.lazy import FeederBatches, LazyInputs
from feedwise.data.sources import Dataset
from feedwise.config import OPTIMIZERS, SCHEDULES, STATUSES, TrainConfig, lr_factor  # noqa: F401
from feedwise.errors import FeedwiseError
from feedwise.seeds import derive_seed  # noqa: F401  (re-exported)
from feedwise.feeds.base import Feeder, UniformFeeder
from feedwise.results import MEASUREMENT_COLUMNS, TrialDir

_INIT_LOCK = threading.Lock()


def make_optimizer(params: Iterable[torch.nn.Parameter], cfg: TrainConfig) -> torch.optim.Optimizer:
    if cfg.optimizer == "sgd":
        return torch.optim.SGD(params, lr=cfg.lr, weight_decay=cfg.weight_decay)
    if cfg.optimizer in ("momentum", "nesterov"):
        return torch.optim.SGD(params, lr=cfg.lr, momentum=cfg.momentum, nesterov=cfg.optimizer == "nesterov",
                               weight_decay=cfg.weight_decay)
    return torch.optim.Adam(params, lr=cfg.lr, betas=(cfg.momentum, 0.999), weight_decay=cfg.weight_decay)


def _chunks(x, chunk: int):
    """``x`` in consecutive chunks of rows: slices of a tensor, or batches fetched by loader workers."""
    if isinstance(x, LazyInputs):
        yield from x.batches(chunk)
    else:
        for i in range(0, len(x), chunk):
            yield x[i:i + chunk]


def init_model(model_fn: Callable[[], nn.Module], config: TrainConfig) -> nn.Module:
    """A fresh model from ``model_fn``, initialised from the run's init stream.

    torch's global RNG state is left untouched, and the lock makes trials that run in parallel
    threads (the batch-size study's --jobs) get exactly the initialisation of a serial run: no
    other thread may reseed in between."""
    init_seed = config.init_seed if config.init_seed is not None else derive_seed(config.seed, "init")
    with _INIT_LOCK, torch.random.fork_rng(devices=[]):
        torch.manual_seed(init_seed)
        return model_fn()


@dataclass
class TrainResult:
    status: str                      # reached | budget | diverged | pruned
    steps_run: int
    examples: int
    steps_to_result: int | None      # first eval step with val_error < target
    wall_s: float                    # training time only
    eval_s: float                    # evaluation time only
    final_val_error: float | None
    best_val_error: float | None
    test_error: float | None
    time_to_result_s: float | None = None   # training time up to steps_to_result
    rows: list[dict] = field(default_factory=list)

    def summary(self) -> dict:
        d = asdict(self)
        d.pop("rows")
        return d


class Callback(Protocol):
    def __call__(self, trainer: "Trainer", row: dict) -> str | None:
        """Called after each evaluation; return a status string to stop the run."""


class Strategy:
    """How one training run is spread over processes. This base is one process: every hook is
    the identity or a no-op. The data-parallel strategies (:mod:`feedwise.parallel`) override
    the hooks; the :class:`Trainer` calls them and never knows which strategy runs.

    - ``wrap(model)``: the module the forward pass calls (DDP wraps the model);
    - ``local(idx, w)``: the rows of the global batch (indices, weights) this rank trains on;
    - ``grad_scale(local_n, global_n)``: the factor on ``sum(w * loss)`` over the local rows whose
      gradient this rank back-propagates (one process: ``1 / B``, the mean loss);
    - ``gather(per, global_n)``: the per-example losses of the whole global batch in its order,
      from each rank's local ones (feeders that observe examples see every example);
    - ``after_step(step, model)``: after each optimizer step (local SGD averages here);
    - ``before_eval(step, model)``: before each evaluation, timed as training (make the
      evaluated model the shared one);
    - ``all_sum(t)``: a tensor summed over the ranks (training-loss records, divergence);
    - ``decide(status)``: rank 0's stop decision, known to every rank;
    - ``row()``: extra fields of each measurement row (``extra_columns``);
    - ``describe()``, ``post_train(trainer)``: fields of the trial record (the second untimed,
      after training, called on every rank); ``close()``.
    """

    name = "single"
    rank = 0
    world = 1
    comm_s = 0.0
    extra_columns: tuple[str, ...] = ()

    @property
    def is_main(self) -> bool:
        return self.rank == 0

    def wrap(self, model: nn.Module) -> nn.Module:
        return model

    def local(self, idx: torch.Tensor, w: torch.Tensor | None) -> tuple[torch.Tensor, torch.Tensor | None]:
        return idx, w

    def grad_scale(self, local_n: int, global_n: int) -> float:
        return 1.0 / global_n

    def gather(self, per: torch.Tensor, global_n: int) -> torch.Tensor:
        return per

    def after_step(self, step: int, model: nn.Module) -> None:
        pass

    def before_eval(self, step: int, model: nn.Module) -> None:
        pass

    def all_sum(self, t: torch.Tensor) -> torch.Tensor:
        return t

    def decide(self, status: str | None) -> str | None:
        return status

    def row(self, wall_s: float) -> dict:
        return {}

    def describe(self) -> dict:
        return {}

    def post_train(self, trainer: "Trainer") -> dict:
        return {}

    def close(self) -> None:
        pass


class Trainer:
    """One training run over in-memory data. Construct, then :meth:`run` (or drive
    :meth:`train_steps` yourself, as the overhead benchmark does)."""

    def __init__(self, data: Dataset, model_fn: Callable[[], nn.Module], config: TrainConfig,
                 feeder: Feeder | None = None, device: str | torch.device = "cpu", strategy: Strategy | None = None,
                 loss_fn: Callable[[torch.Tensor, torch.Tensor], torch.Tensor] | None = None):
        config.validate(data.num_train)
        self.cfg = config
        # per-example loss(logits, labels) -> N losses; None: cross-entropy (feeders that observe
        # examples read exp(-loss) as the label's probability, exact for cross-entropy)
        self.loss_fn = loss_fn
        self.device = torch.device(device)
        self.strategy = strategy or Strategy()
        self.data = data if data.x_train.device == self.device else data.to(self.device)
        data_seed = config.data_seed if config.data_seed is not None else derive_seed(config.seed, "data")
        self.model = init_model(model_fn, config).to(self.device)
        self.model.train()
        self.net = self.strategy.wrap(self.model)
        self.optimizer = make_optimizer(self.model.parameters(), config)
        # every rank draws the same global batches: the data order depends on the seed only
        self.generator = torch.Generator().manual_seed(data_seed)
        self.feeder = (feeder or UniformFeeder()).bind(data.num_train, self.generator, self.device)
        self.budget = config.budget_steps()
        self.step = 0
        self.examples = 0
        self.wall_s = 0.0
        self.eval_s = 0.0
        self._loss_sum = torch.zeros((), device=self.device)
        self._loss_steps = 0
        self._x, self._y = self.data.x_train, self.data.y_train
        self._grad_cache: torch.Tensor | None = None
        # inputs read lazily from a map-style Dataset: loader workers fetch the feeder's batches ahead
        self._lazy = isinstance(self._x, LazyInputs)
        self.steps_to_result: int | None = None   # of the running loop, as of its last evaluation
        self._batches: FeederBatches | None = None
        self._fetch = None
        if self.feeder.wants_model_losses:
            if self._lazy or self.strategy.world > 1:
                raise FeedwiseError(f"feed '{self.feeder.name}' looks at the model's losses on candidates: it needs "
                                    "in-memory data and one process")
            self.feeder.attach(self.losses_of)

    @torch.no_grad()
    def losses_of(self, idx: torch.Tensor) -> torch.Tensor:
        """Per-example training loss of the current model on training rows ``idx``: a forward pass without
        gradient, in eval mode (no batch-norm statistics move), for feeders that choose among candidates."""
        was_training = self.model.training
        self.model.eval()
        out = self.model(self._x[idx])
        y = self._y[idx]
        per = F.cross_entropy(out, y, reduction="none") if self.loss_fn is None else self.loss_fn(out, y)
        self.model.train(was_training)
        return per.float()

    def _next_lazy_batch(self):
        """(indices, weights, local indices, local weights, local inputs) of the next step, from the
        loader whose batch sampler the feeder feeds (created at the first step)."""
        if self._fetch is None:
            strat = self.strategy
            self._batches = FeederBatches(self.feeder, self.cfg.batch_size, self.budget - self.step,
                                          local=strat.local if strat.world > 1 else None)
            self._fetch = self._x.fetcher(self._batches)
        xb = next(self._fetch)
        idx, w, lidx, lw = self._batches.queue.popleft()
        return idx, w, lidx, lw, xb.to(self.device, non_blocking=True)

    def close(self) -> None:
        """Stop the loader workers of lazily read inputs (a later step starts new ones)."""
        self._fetch, self._batches = None, None

    # ------------------------------------------------------------------ hot loop
    def train_steps(self, n: int) -> None:
        """Take ``n`` optimizer steps. Nothing here but gather, forward, backward, step.

        The recorded loss of a step is the (weighted) mean loss over its global batch; with
        several ranks each adds its rows' share and the ranks' sums are added at evaluation."""
        model, net, opt, feeder, cfg, strat = self.model, self.net, self.optimizer, self.feeder, self.cfg, self.strategy
        x, y, bs = self._x, self._y, cfg.batch_size
        observe = feeder.wants_observations
        decays = cfg.schedule != "constant"
        sharded = strat.world > 1
        lazy = self._lazy
        custom = self.loss_fn
        loss_sum = self._loss_sum
        for _ in range(n):
            if decays:
                f = lr_factor(cfg, self.step, self.budget)
                for g in opt.param_groups:
                    g["lr"] = cfg.lr * f
            if lazy:
                idx, w, lidx, lw, xb = self._next_lazy_batch()
            else:
                idx, w = feeder.next_batch(bs)
                lidx, lw = strat.local(idx, w) if sharded else (idx, w)
                xb = x[lidx]
            yb = y[lidx]
            out = net(xb)
            opt.zero_grad(set_to_none=True)
            if lw is None and not observe:
                if sharded:
                    s = F.cross_entropy(out, yb, reduction="sum") if custom is None else custom(out, yb).sum()
                    (s * strat.grad_scale(len(lidx), bs)).backward()
                    loss = s.detach() * (1.0 / bs)
                else:
                    loss = F.cross_entropy(out, yb) if custom is None else custom(out, yb).mean()
                    loss.backward()
                    loss = loss.detach()
                opt.step()
                loss_sum += loss
            else:
                # per-example losses serve the weights and the observations. The loss is
                # mean(w * per); its gradient with respect to ``per`` is ``grad = w / B``, handed to
                # backward directly (no multiply/mean nodes in the graph), and the loss value for the
                # record is one dot product
                per = F.cross_entropy(out, yb, reduction="none") if custom is None else custom(out, yb)
                if sharded:
                    scale = strat.grad_scale(len(lidx), bs)
                    grad = torch.full_like(per, scale) if lw is None else (lw * scale).to(per.dtype)
                    rec = (1.0 / bs) if lw is None else (lw * (1.0 / bs)).to(per.dtype)
                else:
                    grad = self._mean_grad(len(per), per) if lw is None else (lw * (1.0 / len(lw))).to(per.dtype)
                    rec = grad
                per.backward(grad)
                opt.step()
                per = per.detach()
                loss_sum += per.sum() * rec if isinstance(rec, float) else torch.dot(per, rec)
                if observe:
                    feeder.observe_losses(idx, strat.gather(per, bs) if sharded else per)
            self.step += 1
            if sharded:
                strat.after_step(self.step, model)
        self.examples += n * bs
        self._loss_steps += n

    def _mean_grad(self, k: int, like: torch.Tensor) -> torch.Tensor:
        """The constant gradient of mean(per) with respect to ``per`` (1/k each), built once."""
        g = self._grad_cache
        if g is None or g.shape[0] != k or g.dtype != like.dtype:
            g = self._grad_cache = torch.full((k,), 1.0 / k, dtype=like.dtype, device=like.device)
        return g

    # ------------------------------------------------------------------ evaluation
    @torch.no_grad()
    def evaluate(self, split: str = "val", chunk: int = 8192) -> tuple[float, float]:
        """(error rate, mean loss) of the current model on ``val`` or ``test`` (cross-entropy unless the
        run has its own ``loss_fn``)."""
        x, y = (self.data.x_val, self.data.y_val) if split == "val" else (self.data.x_test, self.data.y_test)
        if len(y) == 0:
            return math.nan, math.nan   # no such split (e.g. flag training on every row of a file)
        was_training = self.model.training
        self.model.eval()
        wrong, loss, i = 0, 0.0, 0
        for xb in _chunks(x, chunk):
            out = self.model(xb).float()
            yb = y[i:i + len(xb)]
            i += len(xb)
            wrong += int((out.argmax(1) != yb).sum())
            loss += float(F.cross_entropy(out, yb, reduction="sum") if self.loss_fn is None
                          else self.loss_fn(out, yb).float().sum())
        self.model.train(was_training)
        n = max(1, len(y))
        return wrong / n, loss / n

    @torch.no_grad()
    def predict_proba(self, x: torch.Tensor, chunk: int = 8192) -> torch.Tensor:
        """Softmax probabilities of the current model on ``x`` (N x K), in eval mode."""
        was_training = self.model.training
        self.model.eval()
        out = torch.cat([torch.softmax(self.model(xb.to(self.device)).float(), 1) for xb in _chunks(x, chunk)])
        self.model.train(was_training)
        return out

    def _sync(self) -> None:
        if self.device.type == "cuda":
            torch.cuda.synchronize(self.device)

    # ------------------------------------------------------------------ orchestration
    def run(self, callbacks: Iterable[Callback] = (), on_row: Callable[[dict], None] | None = None,
            progress: Callable[[int, int], None] | None = None, check_every: int = 100) -> TrainResult:
        """Train to the budget or a stop rule. Every evaluated row reaches ``on_row`` and every
        callback (all of them, in order), then the stop rules apply: the target (with
        ``stop_at_target``), else the first status a callback returned. With several ranks, rank 0
        evaluates and decides; the others wait for its decision."""
        loop = self.loop(callbacks, on_row, progress, check_every)
        try:
            n = next(loop)
            while True:
                t0 = time.perf_counter()
                self.train_steps(n)
                n = loop.send(time.perf_counter() - t0)
        except StopIteration as stop:
            return stop.value

    def loop(self, callbacks: Iterable[Callback] = (), on_row: Callable[[dict], None] | None = None,
             progress: Callable[[int, int], None] | None = None, check_every: int = 100,
             pause_after_eval: bool = False):
        """The run as a generator: it yields the number of steps to take next and is sent back the
        seconds they took once someone took them (:meth:`run`: :meth:`train_steps`; trials trained
        together, :mod:`feedwise.parallel.together`: one batched step of several trials); it returns
        the :class:`TrainResult`. Evaluation, divergence, callbacks and stop rules all happen here.
        With ``pause_after_eval`` it also yields 0 after each evaluation, before the callbacks
        (``self.steps_to_result`` is then up to date): trials trained together learn every trial's
        result of that step before any of them decides to stop."""
        cfg, budget, strat = self.cfg, self.budget, self.strategy
        main = strat.is_main
        if strat.world > 1:
            check_every = cfg.eval_every   # ranks meet only at evaluations
        callbacks = list(callbacks)
        rows: list[dict] = []
        status, steps_to_result, time_to_result, best, last_val = None, None, None, None, None
        while self.step < budget and status is None:
            to_eval = cfg.eval_every - self.step % cfg.eval_every
            n = min(to_eval, check_every, budget - self.step)
            trained_s = yield n
            t0 = time.perf_counter()
            at_eval = self.step % cfg.eval_every == 0 or self.step >= budget
            if at_eval:
                strat.before_eval(self.step, self.model)
            self._sync()
            self.wall_s += float(trained_s or 0.0) + time.perf_counter() - t0
            if progress is not None:
                progress(self.step, budget)
            loss_total = strat.all_sum(self._loss_sum.detach().clone()) if strat.world > 1 else self._loss_sum
            if not torch.isfinite(loss_total):
                status = "diverged"
                rows.append(self._row(float("nan"), float("nan"), loss_total))
                if on_row and main:
                    on_row(rows[-1])
                break
            if not at_eval:
                continue
            decision = None
            if main:
                t0 = time.perf_counter()
                val_err, val_loss = self.evaluate("val")
                self.eval_s += time.perf_counter() - t0
                row = self._row(val_err, val_loss, loss_total)
                rows.append(row)
                if on_row:
                    on_row(row)
                last_val = val_err
                if not math.isnan(val_err):
                    best = val_err if best is None else min(best, val_err)
                reached_now = cfg.target is not None and steps_to_result is None and val_err < cfg.target
                if reached_now:
                    steps_to_result, time_to_result = self.step, self.wall_s
                self.steps_to_result = steps_to_result
                if pause_after_eval:   # 0 steps: the driver may look at every run's evaluation before callbacks
                    yield 0
                for cb in callbacks:   # every row reaches every callback, then the stop rule applies
                    s = cb(self, row)
                    if s and decision is None:
                        decision = s
                if reached_now and cfg.stop_at_target:
                    decision = "reached"
            else:
                self._loss_sum.zero_()
                self._loss_steps = 0
            status = strat.decide(decision)
        self.close()
        if status is None:
            status = "reached" if steps_to_result is not None else "budget"
        test_error = None
        if cfg.evaluate_test and status != "diverged" and main:
            t0 = time.perf_counter()
            test_error, _ = self.evaluate("test")
            self.eval_s += time.perf_counter() - t0
        return TrainResult(status, self.step, self.examples, steps_to_result, self.wall_s, self.eval_s,
                           last_val, best, test_error, time_to_result, rows)

    def _row(self, val_error: float, val_loss: float, loss_total: torch.Tensor | None = None) -> dict:
        total = self._loss_sum if loss_total is None else loss_total
        train_loss = float(total) / max(1, self._loss_steps)
        self._loss_sum.zero_()
        self._loss_steps = 0
        return {
            "step": self.step, "examples": self.examples, "epoch": round(self.examples / self.data.num_train, 4),
            "wall_s": round(self.wall_s, 6), "eval_s": round(self.eval_s, 6), "train_loss": train_loss,
            "val_error": val_error, "val_loss": val_loss,
            "lr": self.cfg.lr * lr_factor(self.cfg, max(0, self.step - 1), self.budget),
            **self.strategy.row(self.wall_s),
        }


DEFAULT_THREADS = 1  # torch intra-op threads of every run, library and CLI alike (see studies.common.set_threads)


def train(data: Dataset, model_fn: Callable[[], nn.Module], config: TrainConfig | None = None,
          feeder: Feeder | None = None, device: str = "cpu", threads: int | None = DEFAULT_THREADS,
          strategy: Strategy | None = None, loss_fn=None, **run_kwargs) -> tuple[TrainResult, Trainer]:
    """Convenience: build a :class:`Trainer` and run it. Returns (result, trainer).

    ``config`` defaults to ``TrainConfig()``; take a workload's defaults (batch size, lr, step
    budget, eval period, target: what ``feedwise train`` uses) with ``workload.train_config()``.
    ``threads``: torch intra-op threads for this run, restored afterwards. The default, 1, is
    the CLI's: these models are small, and torch's own default (one thread per core) ran the
    README's example 17x slower on a shared 2-core machine (2 min 52 s vs 10 s). ``None``
    leaves torch's setting alone."""
    old = torch.get_num_threads()
    if threads is not None:
        if int(threads) <= 0:
            raise FeedwiseError(f"threads must be positive, got {threads}")
        torch.set_num_threads(int(threads))
    try:
        trainer = Trainer(data, model_fn, config if config is not None else TrainConfig(), feeder=feeder,
                          device=device, strategy=strategy, loss_fn=loss_fn)
        return trainer.run(**run_kwargs), trainer
    finally:
        torch.set_num_threads(old)


def record_run(trial: TrialDir, trainer: Trainer, workload: str, record: dict | None = None,
               callbacks: Iterable[Callback] = (), progress: Callable[[int, int], None] | None = None,
               finish: Callable[[TrainResult], dict] | None = None) -> TrainResult:
    """Run ``trainer`` and write its trial folder: ``trial.json`` (status ``running`` first) and
    ``measurements.csv`` row by row as the evaluations come. With several ranks every rank trains
    and rank 0 writes. The record holds the run's hyperparameters and budget, ``record``, the result,
    the strategy's description and its untimed ``post_train`` measurements, and ``finish(result)``."""
    base = record_start(trial, trainer, workload, record)
    try:
        result = trainer.run(callbacks=callbacks, on_row=trial.add_row if trainer.strategy.is_main else None,
                             progress=progress)
    except BaseException:
        if trainer.strategy.is_main:
            trial.abort()   # stays ``running``: trained again from step 0 on resume
        raise
    return record_end(trial, trainer, base, result, finish)


def record_start(trial: TrialDir, trainer: Trainer, workload: str, record: dict | None = None) -> dict:
    """The first half of :func:`record_run`: ``trial.json`` with status ``running`` (rank 0);
    returns the record's base fields for :func:`record_end`."""
    cfg, strat = trainer.cfg, trainer.strategy
    base = {
        "id": trial.id, "workload": workload, "hparams": cfg.hparams(), "seed": cfg.seed,
        "budget": {"steps": cfg.budget_steps(), "examples": cfg.max_examples, "eval_every": cfg.eval_every},
        "target": cfg.target, "feed": trainer.feeder.state(), "config": asdict(cfg), **(record or {}),
    }
    if strat.is_main:
        trial.start(base, columns=[*MEASUREMENT_COLUMNS, *strat.extra_columns])
    return base


def record_end(trial: TrialDir, trainer: Trainer, base: dict, result: TrainResult,
               finish: Callable[[TrainResult], dict] | None = None) -> TrainResult:
    """The second half of :func:`record_run`: the strategy's untimed ``post_train`` (every rank),
    then the finished ``trial.json`` (rank 0)."""
    strat = trainer.strategy
    extra = strat.post_train(trainer)
    if strat.is_main:
        trial.finish({**base, **result.summary(), "threads": torch.get_num_threads(), "device": str(trainer.device),
                      **strat.describe(), **extra, **(finish(result) if finish else {})})
    return result
