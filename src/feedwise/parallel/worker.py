"""The training loop of one rank, shared by synchronous DDP, local SGD and Hogwild.

It is the engine's loop (:class:`feedwise.engine.Trainer`) spread over ``world_size``
processes, built from the engine's pieces (``TrainConfig``, ``make_optimizer``, ``lr_factor``,
``derive_seed``, the feeders):

- every rank seeds the model and the data order exactly as ``Trainer`` does, so every rank
  draws the *same global batch* of ``batch_size`` indices each step and keeps its shard
  (rows ``rank::N``, or a contiguous chunk with ``shard="chunk"``);
- a "step" always consumes one global batch (``batch_size`` examples over all ranks), so
  ``steps_to_result`` × ``batch_size`` is the examples needed, whatever the mode;
- training time (``wall_s``) is measured on rank 0 between evaluations; evaluation runs on
  rank 0 only, while the other ranks wait at the broadcast of the stop decision, and is not
  counted (``eval_s`` apart), as in the engine;
- ``comm_s`` is the communication the strategy measured (the DDP all-reduce, the local-SGD
  averaging, the Hogwild evaluation barrier); ``compute_s = wall_s - comm_s``.

Rank 0 writes ``trial.json`` and ``measurements.csv`` (the results layout) when given a trial
folder, and returns the trial record.
"""

from __future__ import annotations

import math
import os
import time
from dataclasses import asdict, dataclass, field

import torch
import torch.distributed as dist
import torch.nn.functional as F

from feedwise.engine import TrainConfig, derive_seed, lr_factor, make_optimizer
from feedwise.errors import FeedwiseError
from feedwise.feeders import make_feeder
from feedwise.parallel.launch import cuda_device, default_backend, init_group, leave_group
from feedwise.results import MEASUREMENT_COLUMNS, TrialDir
from feedwise.workloads import get_workload

COLUMNS = MEASUREMENT_COLUMNS + ["compute_s", "comm_s"]


@dataclass
class WorkerSpec:
    """Everything a rank needs (picklable: it travels to spawned processes)."""

    workload: str
    config: TrainConfig
    mode: str = "sync"                  # sync | local-sgd | hogwild
    world_size: int = 1
    threads_per_worker: int = 1         # torch intra-op threads of each rank
    local_steps: int = 8                # local SGD: average parameters every H steps
    feed: str = "uniform"
    data: dict = field(default_factory=dict)   # keyword arguments of Workload.load
    device: str = "cpu"                 # cpu | cuda
    backend: str | None = None          # default: gloo on CPU, nccl on CUDA
    init_method: str | None = None      # tcp://127.0.0.1:PORT for spawned ranks; None = env:// (torchrun)
    shard: str = "strided"              # strided: rows rank::N | chunk: contiguous rows
    trial_path: str | None = None       # rank 0 writes the trial here
    record: dict = field(default_factory=dict)   # extra fields for trial.json
    record_step_loss: bool = False      # keep the training loss of every step (global batch mean)
    measure_model: bool = True          # sync: after training, measure all-reduce times and compute per local batch
    stop_rule: object | None = None     # picklable callable(step, row) -> status | None, called on rank 0 after
                                        # each evaluation that did not stop the run (e.g. exact pruning)

    @property
    def resolved_backend(self) -> str:
        return self.backend or default_backend(self.device)


class Strategy:
    """How ranks keep their models in step. Subclasses time their own communication."""

    name = "base"

    def __init__(self, spec: WorkerSpec, rank: int):
        self.spec, self.rank, self.world = spec, rank, spec.world_size
        self.comm_s = 0.0   # cumulated, read by the loop at each evaluation

    def wrap(self, model: torch.nn.Module) -> torch.nn.Module:
        return model

    def loss(self, out: torch.Tensor, yb: torch.Tensor, global_batch: int) -> tuple[torch.Tensor, torch.Tensor]:
        """(loss to differentiate, sum of per-example losses for the record)."""
        s = F.cross_entropy(out, yb, reduction="sum")
        return s / max(1, len(yb)), s.detach()

    def after_step(self, step: int, model: torch.nn.Module) -> None:
        pass

    def end_chunk(self, step: int, model: torch.nn.Module) -> None:
        """Called (timed) before each evaluation: make the evaluated model the shared one."""

    def close(self) -> None:
        pass

    def describe(self) -> dict:
        """Fields of trial.json about the communication (how it was measured)."""
        return {}

    def post_train(self, model: torch.nn.Module, data, device: torch.device) -> dict:
        """Untimed measurements after training (all ranks call it); rank 0's dict joins trial.json."""
        return {}


def make_strategy(spec: WorkerSpec, rank: int) -> Strategy:
    if spec.mode == "sync":
        from feedwise.parallel.ddp import SyncDDP
        return SyncDDP(spec, rank)
    if spec.mode == "local-sgd":
        from feedwise.parallel.local_sgd import LocalSGD
        return LocalSGD(spec, rank)
    if spec.mode == "hogwild":
        from feedwise.parallel.hogwild import Hogwild
        return Hogwild(spec, rank)
    raise FeedwiseError(f"unknown mode '{spec.mode}' (known: sync, local-sgd, hogwild)")


def shard_of(idx: torch.Tensor, rank: int, world: int, how: str) -> torch.Tensor:
    if world == 1:
        return idx
    if how == "chunk":
        return torch.tensor_split(idx, world)[rank]
    return idx[rank::world]


@torch.no_grad()
def evaluate(model: torch.nn.Module, x: torch.Tensor, y: torch.Tensor, chunk: int = 8192) -> tuple[float, float]:
    """(error rate, mean cross-entropy), as ``Trainer.evaluate``."""
    was = model.training
    model.eval()
    wrong, loss = 0, 0.0
    for i in range(0, len(y), chunk):
        out = model(x[i:i + chunk]).float()
        wrong += int((out.argmax(1) != y[i:i + chunk]).sum())
        loss += float(F.cross_entropy(out, y[i:i + chunk], reduction="sum"))
    model.train(was)
    n = max(1, len(y))
    return wrong / n, loss / n


def _all_sum(t: torch.Tensor, world: int) -> torch.Tensor:
    if world > 1:
        dist.all_reduce(t)
    return t


def _broadcast_flag(value: int, world: int, device: torch.device) -> int:
    if world == 1:
        return value
    t = torch.tensor([value], dtype=torch.int64, device=device)
    dist.broadcast(t, 0)
    return int(t.item())


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def train_worker(rank: int, spec: WorkerSpec, data=None, shared_model: torch.nn.Module | None = None,
                 local_rank: int | None = None) -> dict | None:
    """Train as rank ``rank`` of ``spec.world_size``; rank 0 returns (and writes) the record."""
    world = spec.world_size
    torch.set_num_threads(max(1, spec.threads_per_worker))
    device = cuda_device(rank if local_rank is None else local_rank) if spec.device.startswith("cuda") \
        else torch.device("cpu")
    if device.type == "cuda":
        torch.cuda.set_device(device)
    init_group(rank, world, spec.resolved_backend, spec.init_method)
    try:
        return _train(rank, spec, device, data, shared_model)
    finally:
        if spec.init_method is not None:   # spawned: we own the group; under torchrun the caller does
            leave_group()


def _train(rank: int, spec: WorkerSpec, device: torch.device, data, shared_model) -> dict | None:
    world, cfg = spec.world_size, spec.config
    load0 = os.getloadavg()
    workload = get_workload(spec.workload)
    if data is None:
        data = workload.load(**spec.data)
    cfg.validate(data.num_train)
    if data.x_train.device != device:
        data = data.to(device)
    init_seed = cfg.init_seed if cfg.init_seed is not None else derive_seed(cfg.seed, "init")
    data_seed = cfg.data_seed if cfg.data_seed is not None else derive_seed(cfg.seed, "data")
    if shared_model is not None:
        model = shared_model
    else:
        model_fn = workload.model_fn(data)   # builds one model to validate: before seeding, as run_trial
        torch.manual_seed(init_seed)
        model = model_fn().to(device)
    model.train()
    strategy = make_strategy(spec, rank)
    net = strategy.wrap(model)
    opt = make_optimizer(model.parameters(), cfg)
    generator = torch.Generator().manual_seed(data_seed)
    feeder = make_feeder(spec.feed).bind(data.num_train, generator, device)
    if feeder.wants_observations:
        raise FeedwiseError(f"feed '{spec.feed}' needs per-example observations; data-parallel runs support "
                            "feeds that only order the data (uniform, scan)")
    x, y, bs = data.x_train, data.y_train, cfg.batch_size
    budget = cfg.budget_steps()
    decays = cfg.schedule != "constant"

    trial = TrialDir(spec.trial_path) if (rank == 0 and spec.trial_path) else None
    base = {
        "workload": spec.workload, "hparams": cfg.hparams(), "seed": cfg.seed,
        "budget": {"steps": budget, "examples": cfg.max_examples, "eval_every": cfg.eval_every},
        "target": cfg.target, "feed": feeder.state(), "config": asdict(cfg),
        "mode": spec.mode, "world_size": world, "backend": spec.resolved_backend if world > 1 else None,
        "threads_per_worker": spec.threads_per_worker, "local_steps": spec.local_steps if spec.mode == "local-sgd" else None,
        "shard": spec.shard, "device": str(device), **spec.record,
    }
    if trial is not None:
        trial.start({"id": trial.id, **base}, columns=COLUMNS)

    step, wall_s, eval_s = 0, 0.0, 0.0
    loss_acc = torch.zeros(2, dtype=torch.float64, device=device)   # [sum of losses, examples]
    step_losses: list[torch.Tensor] = []
    rows: list[dict] = []
    status, steps_to_result, time_to_result, best, last_val = None, None, None, None, None
    while step < budget and status is None:
        n = min(cfg.eval_every - step % cfg.eval_every, budget - step)
        t0 = time.perf_counter()
        for _ in range(n):
            if decays:
                f = lr_factor(cfg, step, budget)
                for g in opt.param_groups:
                    g["lr"] = cfg.lr * f
            idx, _w = feeder.next_batch(bs)
            idx = shard_of(idx, rank, world, spec.shard)
            out = net(x[idx])
            loss, loss_sum = strategy.loss(out, y[idx], bs)
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            step += 1
            strategy.after_step(step, model)
            loss_acc[0] += loss_sum
            loss_acc[1] += len(idx)
            if spec.record_step_loss:
                step_losses.append(torch.stack([loss_sum.double(), torch.tensor(float(len(idx)), dtype=torch.float64,
                                                                                  device=device)]))
        strategy.end_chunk(step, model)
        _sync(device)
        wall_s += time.perf_counter() - t0
        # bookkeeping, untimed as in the engine: the mean training loss over the global batches
        red = _all_sum(loss_acc.clone(), world)
        loss_acc.zero_()
        train_loss = float(red[0] / red[1]) if red[1] > 0 else float("nan")
        if not math.isfinite(train_loss):
            status = "diverged"
            row = _row(step, bs, data.num_train, wall_s, eval_s, train_loss, float("nan"), float("nan"), cfg, budget,
                       wall_s - strategy.comm_s, strategy.comm_s)
            rows.append(row)
            if trial is not None:
                trial.add_row(row)
            break
        flag = 0
        if rank == 0:
            t1 = time.perf_counter()
            val_err, val_loss = evaluate(model, data.x_val, data.y_val)
            eval_s += time.perf_counter() - t1
            row = _row(step, bs, data.num_train, wall_s, eval_s, train_loss, val_err, val_loss, cfg, budget,
                       wall_s - strategy.comm_s, strategy.comm_s)
            rows.append(row)
            if trial is not None:
                trial.add_row(row)
            last_val = val_err
            best = val_err if best is None else min(best, val_err)
            if cfg.target is not None and steps_to_result is None and val_err < cfg.target:
                steps_to_result, time_to_result = step, wall_s
                flag = 1 if cfg.stop_at_target else 0
            if not flag and spec.stop_rule is not None and step < budget and spec.stop_rule(step, row):
                flag = 2
        flag = _broadcast_flag(flag, world, device)
        if flag:
            status = "reached" if flag == 1 else "pruned"
    if status is None:
        status = "reached" if steps_to_result is not None else "budget"
    losses = None
    if spec.record_step_loss and step_losses:
        st = _all_sum(torch.stack(step_losses), world)
        losses = (st[:, 0] / st[:, 1]).tolist()
    extra = strategy.post_train(model, data, device) if spec.measure_model else {}
    strategy.close()
    if rank != 0:
        return None
    test_error = None
    if cfg.evaluate_test and status != "diverged":
        t1 = time.perf_counter()
        test_error, _ = evaluate(model, data.x_test, data.y_test)
        eval_s += time.perf_counter() - t1
    load1 = os.getloadavg()
    record = {
        **({"id": trial.id} if trial is not None else {}), **base,
        "status": status, "steps_run": step, "examples": step * bs, "steps_to_result": steps_to_result,
        "time_to_result_s": time_to_result, "wall_s": wall_s, "eval_s": eval_s,
        "compute_s": wall_s - strategy.comm_s, "comm_s": strategy.comm_s,
        "s_per_step": wall_s / max(1, step), "comm_s_per_step": strategy.comm_s / max(1, step),
        "final_val_error": last_val, "best_val_error": best, "test_error": test_error,
        "threads": spec.threads_per_worker, "load_avg_start": list(load0), "load_avg_end": list(load1),
        "cpu_count": os.cpu_count(), **strategy.describe(), **extra,
    }
    if losses is not None:
        record["step_losses"] = losses
    if trial is not None:
        trial.finish(record)
    record["rows"] = rows
    return record


def _row(step, bs, num_train, wall_s, eval_s, train_loss, val_err, val_loss, cfg, budget, compute_s, comm_s) -> dict:
    return {
        "step": step, "examples": step * bs, "epoch": round(step * bs / num_train, 4),
        "wall_s": round(wall_s, 6), "eval_s": round(eval_s, 6), "train_loss": train_loss,
        "val_error": val_err, "val_loss": val_loss, "lr": cfg.lr * lr_factor(cfg, max(0, step - 1), budget),
        "compute_s": round(compute_s, 6), "comm_s": round(comm_s, 6),
    }
