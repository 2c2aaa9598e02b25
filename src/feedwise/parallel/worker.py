"""One rank of a data-parallel run: set up the process, then train through the engine's one loop.

:func:`train_worker` joins the process group, builds the strategy of ``spec.mode``
(:mod:`feedwise.parallel.ddp`, :mod:`~feedwise.parallel.local_sgd`,
:mod:`~feedwise.parallel.hogwild`), and runs a :class:`feedwise.engine.Trainer` with it; rank 0
writes the trial folder (:func:`feedwise.engine.record_run`) when given one and returns the
trial record. What the strategies share (shards, gathering observations, meeting at
evaluations) is in :mod:`feedwise.parallel.sharded`.

Times: training time (``wall_s``) is measured on rank 0 between evaluations; evaluation runs on
rank 0 only, while the other ranks wait for its decision, and is not counted (``eval_s`` apart),
as in any run; ``comm_s`` is the communication the strategy measured (the DDP all-reduce, the
local-SGD averaging, the Hogwild evaluation barrier); ``compute_s = wall_s - comm_s``.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field

import torch

from feedwise.engine import TrainConfig, Trainer, record_run
from feedwise.errors import FeedwiseError
from feedwise.feeds import make_feeder
from feedwise.parallel.ddp import SyncDDP
from feedwise.parallel.hogwild import Hogwild
from feedwise.parallel.launch import cuda_device, default_backend, init_group, leave_group
from feedwise.parallel.local_sgd import LocalSGD
from feedwise.parallel.sharded import Sharded, shard_of  # noqa: F401  (shard_of re-exported)
from feedwise.results import TrialDir
from feedwise.workloads import get_workload

STRATEGIES = {"sync": SyncDDP, "local-sgd": LocalSGD, "hogwild": Hogwild}


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
    feed_options: dict = field(default_factory=dict)   # keyword arguments of the feeder (e.g. burn_in)
    data: dict = field(default_factory=dict)   # keyword arguments of Workload.load
    device: str = "cpu"                 # cpu | cuda
    backend: str | None = None          # default: gloo on CPU, nccl on CUDA
    init_method: str | None = None      # tcp://127.0.0.1:PORT for spawned ranks; None = env:// (torchrun)
    shard: str = "strided"              # strided: rows rank::N | chunk: contiguous rows
    trial_path: str | None = None       # rank 0 writes the trial here
    record: dict = field(default_factory=dict)   # extra fields for trial.json
    measure_model: bool = True          # sync: after training, measure all-reduce times and compute per local batch
    callbacks: list = field(default_factory=list)   # picklable engine callbacks, run on rank 0 after each
                                                    # evaluation (e.g. exact pruning)

    @property
    def resolved_backend(self) -> str:
        return self.backend or default_backend(self.device)


def make_strategy(spec: WorkerSpec, rank: int) -> Sharded:
    if spec.mode not in STRATEGIES:
        raise FeedwiseError(f"unknown mode '{spec.mode}' (known: {', '.join(STRATEGIES)})")
    return STRATEGIES[spec.mode](spec, rank)


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
    model_fn = (lambda: shared_model) if shared_model is not None else workload.model_fn(data)
    strategy = make_strategy(spec, rank)
    trainer = Trainer(data, model_fn, cfg, feeder=make_feeder(spec.feed, **spec.feed_options), device=device,
                      strategy=strategy,
                      loss_fn=workload.loss)
    trial = TrialDir(spec.trial_path) if spec.trial_path else None
    record = {
        "mode": spec.mode, "world_size": world, "backend": spec.resolved_backend if world > 1 else None,
        "threads_per_worker": spec.threads_per_worker, "local_steps": spec.local_steps if spec.mode == "local-sgd" else None,
        "shard": spec.shard, **spec.record,
    }

    def finish(result) -> dict:
        return {"compute_s": result.wall_s - strategy.comm_s, "comm_s": strategy.comm_s,
                "s_per_step": result.wall_s / max(1, result.steps_run),
                "comm_s_per_step": strategy.comm_s / max(1, result.steps_run),
                "threads": spec.threads_per_worker, "load_avg_start": list(load0), "load_avg_end": list(os.getloadavg()),
                "cpu_count": os.cpu_count()}

    if trial is not None:
        result = record_run(trial, trainer, spec.workload, record=record, callbacks=spec.callbacks, finish=finish)
        strategy.close()
        if rank != 0:
            return None
        rec = trial.read()
    else:
        result = trainer.run(callbacks=spec.callbacks)
        extra = strategy.post_train(trainer)
        strategy.close()
        if rank != 0:
            return None
        rec = {"workload": spec.workload, "hparams": cfg.hparams(), "seed": cfg.seed, "target": cfg.target,
               "feed": trainer.feeder.state(), **record, **result.summary(), "device": str(device),
               **strategy.describe(), **extra, **finish(result)}
    rec["rows"] = result.rows
    return rec
