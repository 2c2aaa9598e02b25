"""The α–β / Amdahl model of time-to-result for synchronous data parallelism (pure maths).

Assumptions (stated in the report with the numbers):

- fixed global batch ``B``: synchronous DDP takes the same steps-to-result ``S`` at every world
  size (same maths; tested at N = 2), so time-to-result = ``S · t_step(N)``;
- per-step compute of one worker on a local batch ``b``: ``c(b) = c0 + c1 · b`` (fitted on
  measured steps with the worker's threads); ``c0`` (optimizer step, Python, kernel launches)
  does not shrink with ``N`` — the serial fraction of Amdahl's law is ``c0 / c(B)``;
- every added worker brings the same hardware as a measured worker (its own cores);
- ring all-reduce of ``M`` gradient bytes: ``T_ar(N) = 2 (N-1) α + 2 (N-1)/N · M · β`` with the
  latency ``α`` and inverse bandwidth ``β`` fitted on measured all-reduces between 2 ranks
  (``t(M) = 2α + M β`` at N = 2);
- no overlap of communication with compute (one gradient bucket), no stragglers, evaluation
  not counted.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass


def fit_line(xs: list[float], ys: list[float]) -> tuple[float, float]:
    """Least squares ``y = a + b x``; intercept clipped at 0 (times are not negative)."""
    n = len(xs)
    if n == 0:
        raise ValueError("no points to fit")
    if n == 1:
        return 0.0, ys[0] / xs[0] if xs[0] else 0.0
    mx, my = sum(xs) / n, sum(ys) / n
    sxx = sum((x - mx) ** 2 for x in xs)
    b = sum((x - mx) * (y - my) for x, y in zip(xs, ys)) / sxx if sxx > 0 else 0.0
    a = my - b * mx
    if a < 0:  # refit through the origin
        a = 0.0
        b = sum(x * y for x, y in zip(xs, ys)) / max(1e-300, sum(x * x for x in xs))
    return a, max(0.0, b)


@dataclass
class AlphaBeta:
    alpha_s: float          # latency per message hop (s)
    beta_s_per_byte: float  # inverse bandwidth (s / byte)

    @classmethod
    def fit_two_ranks(cls, sizes_bytes: list[float], times_s: list[float]) -> "AlphaBeta":
        a, b = fit_line(sizes_bytes, times_s)
        return cls(alpha_s=a / 2.0, beta_s_per_byte=b)

    def allreduce_s(self, world: int, nbytes: float) -> float:
        if world <= 1:
            return 0.0
        return 2 * (world - 1) * self.alpha_s + 2 * (world - 1) / world * nbytes * self.beta_s_per_byte


@dataclass
class ComputeModel:
    c0_s: float             # per-step time that does not depend on the local batch (s)
    c1_s_per_example: float

    @classmethod
    def fit(cls, batches: list[float], times_s: list[float]) -> "ComputeModel":
        a, b = fit_line(batches, times_s)
        return cls(a, b)

    def step_s(self, local_batch: float) -> float:
        return self.c0_s + self.c1_s_per_example * local_batch

    def serial_fraction(self, batch: float) -> float:
        t = self.step_s(batch)
        return self.c0_s / t if t > 0 else 0.0


def project(compute: ComputeModel, comm: AlphaBeta, global_batch: int, grad_bytes: float, steps_to_result: int | None,
            worlds: list[int]) -> dict:
    """Time per step and time-to-result at each world size; where communication dominates."""
    rows = []
    t1 = compute.step_s(global_batch)
    for n in [n for n in worlds if n <= global_batch]:   # a worker needs at least one example
        local = global_batch / n
        c = compute.step_s(local)
        m = comm.allreduce_s(n, grad_bytes)
        t = c + m
        rows.append({
            "world_size": n, "local_batch": local, "compute_s_per_step": c, "comm_s_per_step": m,
            "s_per_step": t, "speedup": t1 / t if t > 0 else None,
            "time_to_result_s": steps_to_result * t if steps_to_result else None,
            "comm_dominates": m > c,
        })
    best = min(rows, key=lambda r: r["s_per_step"]) if rows else None
    dominated = [r["world_size"] for r in rows if r["comm_dominates"]]
    s = compute.serial_fraction(global_batch)
    return {
        "compute": asdict(compute), "alpha_beta": asdict(comm), "global_batch": global_batch,
        "grad_bytes": grad_bytes, "steps_to_result": steps_to_result, "serial_fraction": s,
        "amdahl_max_speedup": (1.0 / s) if s > 0 else math.inf,
        "rows": rows, "best_world_size": best["world_size"] if best else None,
        "comm_dominates_from": dominated[0] if dominated else None,
    }
