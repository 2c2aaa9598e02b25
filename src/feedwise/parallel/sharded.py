"""What every data-parallel strategy shares: one rank of ``world`` trains on its shard of every
global batch, through the engine's one loop (:class:`feedwise.engine.Trainer`).

- every rank seeds the model and the data order exactly as a single process does, so every rank
  draws the *same global batch* of ``batch_size`` indices each step and keeps its shard (rows
  ``rank::N``, or a contiguous chunk with ``shard="chunk"``);
- a "step" always consumes one global batch (``batch_size`` examples over all ranks), so
  ``steps_to_result`` × ``batch_size`` is the examples needed, whatever the mode;
- feeders that observe examples (the Active Bias family) see the per-example losses of the
  whole global batch: each rank's are all-gathered every step, so every rank's feeder stays the
  same (synchronous modes only: Hogwild's ranks do not meet every step);
- ``comm_s`` is the communication the strategy measured; each measurement row gets
  ``compute_s = wall_s - comm_s`` and ``comm_s``.
"""

from __future__ import annotations

import torch
import torch.distributed as dist

from feedwise.engine import STATUSES, Strategy
from feedwise.errors import FeedwiseError


def shard_of(idx: torch.Tensor, rank: int, world: int, how: str) -> torch.Tensor:
    """The rows of a global batch that rank ``rank`` of ``world`` trains on."""
    if world == 1:
        return idx
    if how == "chunk":
        return torch.tensor_split(idx, world)[rank]
    return idx[rank::world]


class Sharded(Strategy):
    """Base of the data-parallel strategies (``spec`` is a :class:`feedwise.parallel.worker.WorkerSpec`)."""

    extra_columns = ("compute_s", "comm_s")
    observes_every_step = True   # False: the ranks cannot all-gather observations each step

    def __init__(self, spec, rank: int):
        self.spec, self.rank, self.world = spec, rank, spec.world_size
        self.how = spec.shard
        self.comm_s = 0.0        # cumulated, read at each evaluation
        self._positions: dict[int, list[torch.Tensor]] = {}

    # ------------------------------------------------------------------ the shard of each batch
    def local(self, idx, w):
        return shard_of(idx, self.rank, self.world, self.how), \
            (None if w is None else shard_of(w, self.rank, self.world, self.how))

    def _rank_positions(self, n: int, device) -> list[torch.Tensor]:
        pos = self._positions.get(n)
        if pos is None:
            pos = [shard_of(torch.arange(n, device=device), r, self.world, self.how) for r in range(self.world)]
            self._positions[n] = pos
        return pos

    def gather(self, per: torch.Tensor, global_n: int) -> torch.Tensor:
        """The global batch's per-example losses, in its order, from every rank's shard."""
        if self.world == 1:
            return per
        if not self.observes_every_step:
            raise FeedwiseError(f"{self.name}: feeds that observe examples need the ranks to meet every step")
        pos = self._rank_positions(global_n, per.device)
        m = max(len(p) for p in pos)
        buf = torch.zeros(m, dtype=per.dtype, device=per.device)
        buf[:len(per)] = per
        parts = [torch.empty_like(buf) for _ in range(self.world)]
        dist.all_gather(parts, buf)
        out = torch.empty(global_n, dtype=per.dtype, device=per.device)
        for r, p in enumerate(pos):
            out[p] = parts[r][:len(p)]
        return out

    # ------------------------------------------------------------------ meeting at evaluations
    def all_sum(self, t: torch.Tensor) -> torch.Tensor:
        if self.world > 1:
            dist.all_reduce(t)
        return t

    def decide(self, status: str | None) -> str | None:
        if self.world == 1:
            return status
        if status is not None and status not in STATUSES:
            raise FeedwiseError(f"unknown trial status '{status}' (known: {', '.join(STATUSES)})")
        dev = torch.device("cuda", torch.cuda.current_device()) if self.spec.device.startswith("cuda") else "cpu"
        t = torch.tensor([0 if status is None else STATUSES.index(status) + 1], dtype=torch.int64, device=dev)
        dist.broadcast(t, 0)
        code = int(t.item())
        return None if code == 0 else STATUSES[code - 1]

    def row(self, wall_s: float) -> dict:
        return {"compute_s": round(wall_s - self.comm_s, 6), "comm_s": round(self.comm_s, 6)}
