"""Hogwild-style asynchronous SGD on shared-memory parameters (one machine).

The parent builds the model once (seeded as the engine does), calls ``share_memory()`` and
spawns ``N`` processes with ``torch.multiprocessing``; each takes its shard (``B / N``
examples) of every global batch, computes the mean loss over it and steps its own optimizer
directly on the shared parameters, without locks (Niu et al. 2011). Momentum buffers are
per process. A "step" is one global batch, i.e. ``N`` asynchronous updates of ``B / N``
examples. Workers meet only at evaluations (every ``eval_every`` steps): a barrier, rank 0
evaluates the shared parameters, the stop decision is broadcast. ``comm_s`` is the time in
that barrier (waiting for the slowest worker); there is no gradient communication.
"""

from __future__ import annotations

import time

import torch.distributed as dist

from feedwise.errors import FeedwiseError
from feedwise.parallel.sharded import Sharded


class Hogwild(Sharded):
    name = "hogwild"
    observes_every_step = False

    def __init__(self, spec, rank):
        super().__init__(spec, rank)
        if spec.device.startswith("cuda") and spec.world_size > 1:
            raise FeedwiseError("hogwild runs on CPU shared memory; use --device cpu")

    def grad_scale(self, local_n, global_n):
        return 1.0 / local_n      # each process steps on the mean loss of its own shard

    def before_eval(self, step, model):
        if self.world > 1:
            t0 = time.perf_counter()
            dist.barrier()
            self.comm_s += time.perf_counter() - t0

    def describe(self) -> dict:
        return {"comm_method": "time in the barrier before each evaluation (no gradient communication)"
                if self.world > 1 else None}
