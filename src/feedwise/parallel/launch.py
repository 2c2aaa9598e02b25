"""Starting the processes of a data-parallel run.

Two launchers, one worker function:

- ``torchrun --nproc-per-node N -m feedwise.cli parallel ...`` (or ``--nnodes`` > 1): torchrun
  sets ``RANK``, ``WORLD_SIZE``, ``LOCAL_RANK``, ``MASTER_ADDR`` and ``MASTER_PORT``; every rank
  runs the command and joins the process group with ``init_method="env://"``.
- ``spawn(fn, world_size, args)``: N local processes through ``torch.multiprocessing`` with
  ``MASTER_ADDR=127.0.0.1`` and a free port.
"""

from __future__ import annotations

import gc
import os
import socket
from dataclasses import dataclass

import torch
import torch.distributed as dist
import torch.multiprocessing as mp

from feedwise.errors import FeedwiseError


@dataclass(frozen=True)
class TorchrunEnv:
    rank: int
    world_size: int
    local_rank: int


def torchrun_env() -> TorchrunEnv | None:
    """The rank and world size set by torchrun (or any env:// launcher), else None."""
    env = os.environ
    if "RANK" in env and "WORLD_SIZE" in env:
        try:
            return TorchrunEnv(int(env["RANK"]), int(env["WORLD_SIZE"]), int(env.get("LOCAL_RANK", env["RANK"])))
        except ValueError:
            raise FeedwiseError("RANK/WORLD_SIZE/LOCAL_RANK must be integers") from None
    return None


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def default_backend(device: str) -> str:
    return "nccl" if str(device).startswith("cuda") else "gloo"


def init_group(rank: int, world_size: int, backend: str, init_method: str | None) -> None:
    """Join the default process group (no-op for one process or when already joined)."""
    if world_size <= 1 or dist.is_initialized():
        return
    if init_method is None:  # torchrun / env://
        dist.init_process_group(backend)
    else:
        dist.init_process_group(backend, init_method=init_method, rank=rank, world_size=world_size)


def leave_group() -> None:
    """Leave together: a rank that tears its connections down while another still talks to it
    can abort the process (gloo), so meet at a barrier first. Collect garbage before: a finished
    run's DDP reducer or communication-hook futures kept alive by a reference cycle also hold the
    group, which then outlives ``destroy_process_group`` and is torn down during interpreter
    finalisation, where gloo's threads can abort the process (``terminate called without an
    active exception``). Callers should drop their own DDP objects first."""
    if dist.is_initialized():
        gc.collect()
        dist.barrier()
        dist.destroy_process_group()


PRELOAD = ["torch", "torch.distributed", "torch._dynamo", "torch.optim", "feedwise.parallel.worker",
           "feedwise.parallel.ddp", "feedwise.parallel.local_sgd", "feedwise.parallel.hogwild", "feedwise.parallel.run"]


def start_method() -> str:
    """``forkserver`` where available: one clean server process imports torch (and torch._dynamo,
    which the first optimizer pulls in: seconds) once, and every
    worker is forked from it (fast, and safe: the server never ran an OpenMP pool); else spawn.
    ``FEEDWISE_START_METHOD=spawn`` forces fresh interpreters."""
    import multiprocessing

    asked = os.environ.get("FEEDWISE_START_METHOD")
    if asked:
        return asked
    return "forkserver" if "forkserver" in multiprocessing.get_all_start_methods() else "spawn"


def spawn(fn, world_size: int, args: tuple) -> None:
    """Run ``fn(rank, *args)`` in ``world_size`` new processes and wait for all of them.

    A worker that raises or dies is reported as one FeedwiseError line (its last line)."""
    method = start_method()
    if method == "forkserver":
        import multiprocessing

        multiprocessing.set_forkserver_preload(PRELOAD)
    try:
        mp.start_processes(fn, args=args, nprocs=world_size, join=True, start_method=method)
    except mp.ProcessRaisedException as e:
        lines = [ln for ln in str(e).strip().splitlines() if ln.strip()]
        raise FeedwiseError(f"a worker failed: {lines[-1] if lines else e}") from None
    except mp.ProcessExitedException as e:
        raise FeedwiseError(f"a worker died: {e}") from None


def local_init_method() -> str:
    return f"tcp://127.0.0.1:{free_port()}"


def cuda_device(local_rank: int) -> torch.device:
    n = torch.cuda.device_count()
    if n == 0:
        raise FeedwiseError("--device cuda asked but no CUDA device is available")
    return torch.device("cuda", local_rank % n)
