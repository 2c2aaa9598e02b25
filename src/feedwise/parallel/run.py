"""Run one data-parallel training: in this process (one worker), spawned local processes, or
as one rank of a torchrun launch."""

from __future__ import annotations

import json
import os
import tempfile
from dataclasses import replace

import torch

from feedwise.engine import init_model
from feedwise.errors import FeedwiseError
from feedwise.feeds import make_feeder
from feedwise.parallel import MODES
from feedwise.parallel.launch import local_init_method, spawn, torchrun_env
from feedwise.parallel.worker import WorkerSpec, train_worker
from feedwise.results import write_json
from feedwise.workloads import get_workload


def check_spec(spec: WorkerSpec) -> None:
    if spec.mode not in MODES:
        raise FeedwiseError(f"unknown mode '{spec.mode}' (known: {', '.join(MODES)})")
    if spec.world_size < 1:
        raise FeedwiseError(f"the number of workers must be at least 1, got {spec.world_size}")
    if spec.local_steps < 1:
        raise FeedwiseError(f"--local-steps must be at least 1, got {spec.local_steps}")
    if spec.shard not in ("strided", "chunk"):
        raise FeedwiseError(f"unknown shard '{spec.shard}' (known: strided, chunk)")
    if spec.config.batch_size < spec.world_size:
        raise FeedwiseError(f"batch size {spec.config.batch_size} is smaller than the {spec.world_size} workers")
    if spec.mode == "hogwild" and spec.device.startswith("cuda"):
        raise FeedwiseError("hogwild runs on CPU shared memory; use --device cpu")
    if spec.mode == "hogwild" and spec.world_size > 1 and make_feeder(spec.feed).wants_observations:
        raise FeedwiseError(f"feed '{spec.feed}' observes every example, which needs the workers to meet every "
                            "step; Hogwild's do not (use --modes sync or local-sgd)")


def _spawned(rank: int, spec: WorkerSpec, data, shared_model, result_path: str) -> None:
    rec = train_worker(rank, spec, data=data, shared_model=shared_model)
    if rank == 0 and rec is not None:
        write_json(result_path, rec)


def shared_model_for(spec: WorkerSpec, data) -> torch.nn.Module:
    """Hogwild's model, built once in the parent as any run initialises it, in shared memory."""
    model = init_model(get_workload(spec.workload).model_fn(data), spec.config)
    model.share_memory()
    return model


def run_parallel(spec: WorkerSpec, data=None) -> dict:
    """Train ``spec`` on ``spec.world_size`` local workers and return rank 0's trial record.

    One worker runs in this process; more are spawned (``MASTER_ADDR=127.0.0.1``, a free port).
    ``data`` (a loaded Dataset) is handed to the workers through shared memory; without it each
    worker loads ``spec.data`` itself."""
    check_spec(spec)
    if data is None:
        data = get_workload(spec.workload).load(**spec.data)
    spec.config.validate(data.num_train)
    shared = shared_model_for(spec, data) if spec.mode == "hogwild" and spec.world_size > 1 else None
    if spec.world_size == 1:
        old = torch.get_num_threads()
        try:
            return train_worker(0, spec, data=data, shared_model=shared)
        finally:
            torch.set_num_threads(old)
    spec = replace(spec, init_method=local_init_method())
    fd, result_path = tempfile.mkstemp(prefix="feedwise-rank0-", suffix=".json")
    os.close(fd)
    try:
        spawn(_spawned, spec.world_size, (spec, data, shared, result_path))
        with open(result_path) as f:
            return json.load(f)
    finally:
        os.unlink(result_path)


def run_as_torchrun_rank(spec: WorkerSpec, data=None) -> dict | None:
    """This process is one rank of a torchrun launch: train, return the record on rank 0."""
    env = torchrun_env()
    if env is None:
        raise FeedwiseError("not launched by torchrun (RANK/WORLD_SIZE are not set)")
    if spec.mode == "hogwild":
        raise FeedwiseError("hogwild shares memory between processes of one launcher; run it without torchrun "
                            "(feedwise parallel --modes hogwild --workers N)")
    spec = replace(spec, world_size=env.world_size, init_method=None)
    check_spec(spec)
    return train_worker(env.rank, spec, data=data, local_rank=env.local_rank)
