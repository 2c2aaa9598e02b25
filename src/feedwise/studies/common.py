"""Shared plumbing of every study: one trial into its folder, seeds, threads."""

from __future__ import annotations

import os
import re
from typing import Callable, Iterable, NamedTuple

import torch

from feedwise.data.sources import Dataset
from feedwise.engine import DEFAULT_THREADS, Callback, TrainConfig, TrainResult, Trainer, record_run
from feedwise.feeds.base import Feeder
from feedwise.progress import say
from feedwise.files import Claim
from feedwise.results import TrialDir
from feedwise.workloads import Workload



def set_threads(threads: int | None) -> int:
    """Set torch's intra-op threads explicitly and return the number.

    The default is one thread: the workloads here are small, and on a shared machine a process
    with 2 threads ran up to 115x slower per step than with 1 while other jobs held the cores
    (benchmarks/results/scale_out_mnist1d.json, ``threads_oversubscription``). Ask for more
    with ``--threads`` on an idle machine or for the CNN workloads."""
    n = DEFAULT_THREADS if threads is None else int(threads)
    if n <= 0:
        from feedwise.errors import FeedwiseError
        raise FeedwiseError(f"--threads must be positive, got {threads}")
    n = min(n, os.cpu_count() or n)
    torch.set_num_threads(n)
    return n


def pick_device(device: str = "auto") -> torch.device:
    """``auto`` (CUDA when there is one, else the CPU), ``cpu``, ``cuda`` or ``cuda:N`` for a device that
    exists; anything else is one :class:`FeedwiseError` (checked before any folder is written)."""
    from feedwise.errors import FeedwiseError

    name = "auto" if device is None else str(device)
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if name == "cpu":
        return torch.device("cpu")
    m = re.fullmatch(r"cuda(?::(\d+))?", name)
    if m is None:
        raise FeedwiseError(f"unknown --device {name!r} (use auto, cpu, cuda or cuda:N)")
    if not torch.cuda.is_available():
        raise FeedwiseError(f"--device {name} asked but no CUDA device is available")
    if m.group(1) is not None and int(m.group(1)) >= torch.cuda.device_count():
        raise FeedwiseError(f"--device {name}: no such CUDA device (this machine has {torch.cuda.device_count()}: "
                            f"cuda:0..cuda:{torch.cuda.device_count() - 1})")
    return torch.device(name)


def run_trial(trial: TrialDir, workload: Workload, data: Dataset, cfg: TrainConfig, feeder: Feeder,
              device: torch.device | str = "cpu", callbacks: Iterable[Callback] = (), record: dict | None = None,
              progress: Callable[[int, int], None] | None = None, model_fn=None) -> tuple[TrainResult, Trainer]:
    """Train one run in this process and write ``trial.json`` + ``measurements.csv`` (rows as they come).

    The trial is claimed for the run (see :class:`feedwise.results.TrialDir`): by the caller, who
    holds it across what it adds afterwards, or else here; another process holding it is an error."""
    trainer = Trainer(data, model_fn or workload.model_fn(data), cfg, feeder=feeder, device=device,
                      loss_fn=workload.loss)
    result = record_run(trial, trainer, workload.name, record=record, callbacks=callbacks, progress=progress)
    return result, trainer


class Job(NamedTuple):
    """One piece of claimed work: ``run()`` is called while ``claim`` is held, unless ``done()``."""

    claim: Claim | TrialDir
    done: Callable[[], bool]
    run: Callable[[], object]
    name: str


def run_claimed(jobs: Iterable[Job]) -> None:
    """Run every job that is not done, each while holding its claim, so that several processes
    sharing one results folder split the work and never do one job twice.

    A job another process holds is passed over on the first pass and waited for on a second: when
    its holder finishes it, it is done; when the holder died, its claim is free and it runs here."""
    pending = []
    for job in jobs:
        if job.done():
            continue
        with job.claim.hold(wait=False) as got:
            if not got:
                pending.append(job)
            elif not job.done():
                job.run()
    for job in pending:
        if job.done():
            continue
        with job.claim.hold(waiting=lambda who, job=job: say(f"waiting for {job.name}, which {who} is running")):
            if not job.done():
                job.run()
