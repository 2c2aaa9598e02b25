"""Local SGD (periodic parameter averaging).

Each rank takes its shard (``B / N`` examples) of every global batch, computes the mean loss
over it and steps its own optimizer with no communication; every ``H`` steps
(``local_steps``) the parameters are averaged with one all-reduce of a flat buffer. Momentum
buffers stay local. The model is also averaged before each evaluation (an extra averaging
when the evaluation step is not a multiple of ``H``), so the evaluated model is the shared
one. With ``H = 1`` and SGD or heavy-ball momentum (linear updates) this is synchronous SGD.

``comm_s`` is the wall time of the averaging calls (blocking, so it includes waiting for the
slower rank).
"""

from __future__ import annotations

import time

import torch
import torch.distributed as dist
from torch.nn.utils import parameters_to_vector, vector_to_parameters

from feedwise.parallel.sharded import Sharded


class LocalSGD(Sharded):
    name = "local-sgd"

    def __init__(self, spec, rank):
        super().__init__(spec, rank)
        self.H = max(1, int(spec.local_steps))
        self.averages = 0
        self._last_avg_step = 0

    def grad_scale(self, local_n, global_n):
        return 1.0 / local_n      # each rank steps on the mean loss of its own shard

    @torch.no_grad()
    def average(self, model) -> None:
        if self.world == 1:
            return
        t0 = time.perf_counter()
        params = list(model.parameters())
        flat = parameters_to_vector(params)
        dist.all_reduce(flat)
        flat.div_(self.world)
        vector_to_parameters(flat, params)
        self.comm_s += time.perf_counter() - t0
        self.averages += 1

    def after_step(self, step, model):
        if step % self.H == 0:
            self.average(model)
            self._last_avg_step = step

    def before_eval(self, step, model):
        if step != self._last_avg_step:
            self.average(model)
            self._last_avg_step = step

    def describe(self) -> dict:
        return {"comm_method": "wall time of the blocking parameter all-reduce" if self.world > 1 else None,
                "averages": self.averages, "local_steps": self.H}
