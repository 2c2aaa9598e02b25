"""Synchronous data parallelism with ``torch.distributed`` ``DistributedDataParallel``.

The maths equal the single-process run: every rank draws the same global batch of ``B``
indices and keeps its shard; its loss is the *sum* of per-example losses times ``N / B``, so
after DDP averages the gradients over the ``N`` ranks the update is the gradient of the mean
loss over the global batch — exactly the engine's ``cross_entropy(mean)`` step, also when
``B`` is not divisible by ``N`` (shards of unequal size).

Communication time is measured with a DDP communication hook that is DDP's default one
(divide by ``N``, all-reduce the bucket) plus two clock readings: when DDP hands a bucket to
the hook (its gradients are ready) and when the all-reduce future completes (in gloo's
thread). ``comm_s`` sums, per step, the union of these intervals. With one bucket (the models
here have far less than DDP's 25 MB bucket), the all-reduce starts after the backward pass
ends, so the interval is communication not overlapped with compute — including the wait for
a slower rank, which on a shared machine is part of what synchronous SGD pays. With several
buckets, overlap with the rest of the backward pass is counted as communication (an upper
bound). On CUDA (NCCL) the future completes asynchronously on the stream, so the interval
measures launch, not transfer; trust it on CPU/gloo only.
"""

from __future__ import annotations

import copy
import statistics
import threading
import time

import torch
import torch.distributed as dist
import torch.nn.functional as F
from torch.nn.parallel import DistributedDataParallel

from feedwise.engine import make_optimizer
from feedwise.parallel.sharded import Sharded

SWEEP_BYTES = [4 * 2 ** k for k in range(6, 21, 2)]    # 256 B .. 4 MiB of float32


def allreduce_sweep(sizes_bytes=SWEEP_BYTES, reps: int = 10, device=None) -> list[dict]:
    """Median wall time of a blocking all-reduce of float32 buffers of each size (all ranks call)."""
    out = []
    for nbytes in sizes_bytes:
        buf = torch.zeros(max(1, nbytes // 4), device=device)
        dist.all_reduce(buf)  # warm-up
        times = []
        for _ in range(reps):
            dist.barrier()
            t0 = time.perf_counter()
            dist.all_reduce(buf)
            if buf.is_cuda:
                torch.cuda.synchronize(buf.device)
            times.append(time.perf_counter() - t0)
        out.append({"bytes": nbytes, "median_s": statistics.median(times), "min_s": min(times)})
    return out


def compute_curve(model, x, y, cfg, batches, reps: int = 15, warmup: int = 3) -> list[dict]:
    """Median time of one local training step (forward, backward, optimizer; no communication) of a
    copy of ``model`` at each local batch size, with this process's threads."""
    m = copy.deepcopy(model)
    m.train()
    opt = make_optimizer(m.parameters(), cfg)
    g = torch.Generator().manual_seed(0)
    out = []
    for b in batches:
        times = []
        for i in range(warmup + reps):
            idx = torch.randint(0, len(y), (b,), generator=g).to(x.device)
            t0 = time.perf_counter()
            loss = F.cross_entropy(m(x[idx]), y[idx])
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            if x.is_cuda:
                torch.cuda.synchronize(x.device)
            if i >= warmup:
                times.append(time.perf_counter() - t0)
        out.append({"local_batch": b, "median_s": statistics.median(times), "min_s": min(times)})
    return out


class CommTimer:
    """Collects (start, end) intervals of all-reduce calls from DDP's comm hook."""

    def __init__(self, world_size: int):
        self.world = world_size
        self._lock = threading.Lock()
        self._open: list[tuple[float, float]] = []
        self.total_s = 0.0
        self.calls = 0

    def add(self, t0: float, t1: float) -> None:
        with self._lock:
            self._open.append((t0, t1))
            self.calls += 1

    def flush(self) -> float:
        """Fold the intervals recorded so far (one step's buckets) into ``total_s``."""
        with self._lock:
            iv, self._open = sorted(self._open), []
        covered, end = 0.0, float("-inf")
        for a, b in iv:
            if a > end:
                covered += b - a
                end = b
            elif b > end:
                covered += b - end
                end = b
        self.total_s += covered
        return covered


def timed_allreduce_hook(state, bucket):
    """DDP's default allreduce hook, timed. (No annotations: DDP checks them, and this module
    uses postponed annotations, which would turn them into strings.)"""
    t0 = time.perf_counter()
    buf = bucket.buffer()
    buf.div_(state.world)
    fut = dist.all_reduce(buf, async_op=True).get_future()

    def done(f):
        state.add(t0, time.perf_counter())
        return f.value()[0]

    return fut.then(done)


class SyncDDP(Sharded):
    name = "sync"

    def wrap(self, model):
        self.timer = None
        if self.world == 1:
            return model
        self.timer = CommTimer(self.world)
        dev = next(model.parameters()).device
        ddp = DistributedDataParallel(model, device_ids=[dev] if dev.type == "cuda" else None)
        ddp.register_comm_hook(self.timer, timed_allreduce_hook)
        self.bucket_cap_mb = 25
        self.param_bytes = sum(p.numel() * p.element_size() for p in model.parameters())
        return ddp

    def grad_scale(self, local_n, global_n):
        # DDP averages the gradients over the N ranks: N/B on each rank's sum is the global mean's gradient
        return self.world / global_n

    def after_step(self, step, model):
        if self.timer is not None:
            self.timer.flush()
            self.comm_s = self.timer.total_s

    def post_train(self, trainer) -> dict:
        """The inputs of the α–β / Amdahl model, measured on these very processes after training."""
        out = {}
        if not self.spec.measure_model:
            return out
        device = trainer.device
        if self.world > 1:
            out["allreduce_sweep"] = allreduce_sweep(device=device if device.type == "cuda" else None)
        if self.rank == 0:
            B = self.spec.config.batch_size
            batches = sorted({max(1, B // k) for k in (1, 2, 4, 8, 16)}, reverse=True)
            out["compute_curve"] = compute_curve(trainer.model, trainer.data.x_train, trainer.data.y_train,
                                                 self.spec.config, batches)
            out["grad_bytes"] = sum(p.numel() * p.element_size() for p in trainer.model.parameters())
        return out

    def describe(self) -> dict:
        if self.world == 1 or self.timer is None:
            return {"comm_method": None}
        return {"comm_method": "DDP comm hook: bucket ready -> all-reduce future done (exposed comm incl. wait "
                               "for the slower rank)", "allreduce_calls": self.timer.calls,
                "allreduce_bytes": self.param_bytes}
