"""The gradient noise scale of your own training loop, online (McCandlish et al. 2018, appendix A).

With the true gradient G and the per-example gradient covariance Σ, the gradient of the mean loss
over B examples drawn without replacement from N has ``E|G_B|² = |G|² + c(B)·tr(Σ)`` with
``c(B) = (N − B) / (B (N − 1))`` (``1/B`` when N is unknown or infinite). Two batch sizes
B_small < B_big give unbiased estimates

    tr(Σ)  ≈ (|G_small|² − |G_big|²) / (c(B_small) − c(B_big))
    |G|²   ≈ |G_big|² − c(B_big) · tr(Σ)

and the simple noise scale ``B_simple = tr(Σ) / |G|²`` (``finite_c`` states the without-replacement
factor). Each estimate is noisy, so they are averaged separately and divided (a ratio of means).
B_simple grows as training proceeds, so one number for a run is a choice: the summary gives the
time-average (equal weight to each stretch of training), the |G|²-weighted ratio of sums over the
whole series (which leans on early, high-gradient training) and a recent window; the series itself
is in the CSV. :func:`measure_gradients` also measures the curvature-weighted B_noise = tr(HΣ)/GᵀHG
with Hessian-vector products.

:class:`NoiseScaleMonitor` gets the two gradient norms from what your loop computes anyway:

- under DDP (``monitor.attach(ddp_model)``): each rank's local gradient is a small batch and the
  all-reduced one the big batch, read at no extra forward or backward pass. With ``every=1`` a
  communication hook reads both norms: it replaces DDP's default hook with the same all-reduce,
  takes each bucket's squared norm before it, and sends this rank's total local squared norm as
  one extra element of the last bucket's all-reduce (a copy of that bucket; a last bucket over
  ``PACK_LIMIT`` elements or in half precision is sent as is, and the norms by one small
  all-reduce in :meth:`NoiseScaleMonitor.step`). With ``every=k > 1`` no hook is installed: the
  steps that are not measured run DDP's own (C++) all-reduce untouched, and on a measured step the
  monitor switches DDP's gradient sync off for that one backward (what ``ddp.no_sync()`` does),
  reads the local gradient and all-reduces it itself in ``step()``, with the local squared norm as
  one extra element (one collective, no overlap with the backward pass on that step only);
- with gradient accumulation (``monitor.micro_batch()`` after each micro-batch's backward): each
  micro-batch is a small batch and their mean the big batch (one copy of the gradients is kept);
- otherwise ``monitor.probe(loss_fn, inputs, targets)`` every k steps: a big batch cut into small
  ones, at the cost of their forward and backward passes.

Each measured step costs two squared norms and a copy of the gradients (about 15% of a 4 ms step
of a 79k-parameter MLP on a loaded 2-core machine, ``benchmarks/results/noise_monitor*.json``);
``every=k`` measures one step in k and leaves the others to DDP untouched. With ``every > 1`` the
monitor sets ``ddp_model.require_backward_grad_sync`` itself before each measured step: do not
combine it with your own ``no_sync()`` gradient accumulation.

Three lines in a DDP loop::

    monitor = NoiseScaleMonitor(batch_size=256, num_examples=len(train_set), out="noise.csv")  # 1
    monitor.attach(ddp_model)                                                                 # 2
    for x, y in loader:
        loss = F.cross_entropy(ddp_model(x), y)
        opt.zero_grad(); loss.backward()
        monitor.step()                                                                        # 3
        opt.step()

The series goes to ``out`` (CSV, one row per measurement, written as it comes), a JSON summary
next to it at :meth:`close`, and to TensorBoard when ``tensorboard`` names a log folder and the
``tensorboard`` package is installed.
"""

from __future__ import annotations

import csv
import json
import math
from pathlib import Path

import torch

from feedwise.errors import FeedwiseError
from feedwise.stats import finite_c, noise_estimate, noise_summaries, ratio_of_means  # noqa: F401

COLUMNS = ["step", "b_small", "b_big", "g2_small", "g2_big", "g2", "trace", "b_simple_point", "b_simple_g2_weighted",
           "gHg", "trace_HS", "b_noise_point"]   # the last three only from probe(..., hessian=...)
PACK_LIMIT = 1 << 22    # elements of a last DDP bucket copied to carry the local squared norm in its all-reduce


def estimate(g2_small: float, g2_big: float, b_small: float, b_big: float, n: int | None = None) -> tuple[float, float]:
    """(|G|², tr Σ) from the squared gradient norms at two batch sizes (unbiased; may be < 0)."""
    return noise_estimate(g2_small, g2_big, b_small, b_big, n)


def hvps(model: torch.nn.Module, loss_fn, inputs: torch.Tensor, targets: torch.Tensor,
         vectors: list[torch.Tensor]) -> list[torch.Tensor]:
    """Hessian-vector products ``H v`` of the mean loss over ``inputs, targets`` (double backward: one
    forward and backward with the graph kept, then one backward per vector); ``v`` and ``H v`` are flat
    over the trainable parameters, returned in float64."""
    params = [p for p in model.parameters() if p.requires_grad]
    grads = torch.autograd.grad(loss_fn(model(inputs), targets), params, create_graph=True)
    flat = torch.cat([g.reshape(-1) for g in grads])
    out = []
    for i, v in enumerate(vectors):
        hv = torch.autograd.grad(flat @ v.to(flat.dtype).to(flat.device), params,
                                 retain_graph=i < len(vectors) - 1, allow_unused=True)
        out.append(torch.cat([(h if h is not None else torch.zeros_like(p)).reshape(-1)
                              for h, p in zip(hv, params)]).double())
    return out


def measure_gradients(model: torch.nn.Module, loss_fn, inputs: torch.Tensor, targets: torch.Tensor, b_small: int,
                      hessian: tuple[torch.Tensor, torch.Tensor] | None = None,
                      hessian_chunks: int | None = None) -> dict:
    """Squared gradient norms of one big batch ``inputs, targets`` cut into chunks of ``b_small``:
    ``g2_small`` (mean over chunks of |g_chunk|²) and ``g2_big`` (|mean of the chunks|²), for the B_simple
    estimator; the model's ``.grad`` is left untouched.

    With ``hessian = (x_h, y_h)``, a batch drawn independently of the big one, also the H-weighted
    norms for B_noise = tr(HΣ)/GᵀHG, H the Hessian of the mean loss on that batch: the chunk gradients
    are grouped into ``hessian_chunks`` groups (default: one per chunk) of ``m`` chunks each, and
    ``h_small`` = mean over groups of ``g_grpᵀ H g_grp`` (batch ``m·b_small``), ``h_big`` = ``ḡᵀ H ḡ``
    over the groups' mean (batch ``hessian_chunks·m·b_small``), from ``hessian_chunks`` Hessian-vector
    products (``H ḡ`` is the mean of the ``H g_grp``). Because H is independent of the gradients,
    ``E[g_Bᵀ H g_B] = GᵀHG + c(B) tr(HΣ)`` and the two-batch-size algebra of
    :func:`feedwise.stats.noise_estimate` applies unchanged."""
    params = [p for p in model.parameters() if p.requires_grad]
    k = len(targets) // int(b_small)
    if k < 2:
        raise FeedwiseError(f"the probe batch ({len(targets)}) must hold at least two chunks of {b_small}")
    flats = []
    for c in range(k):
        sl = slice(c * b_small, (c + 1) * b_small)
        grads = torch.autograd.grad(loss_fn(model(inputs[sl]), targets[sl]), params)
        flats.append(torch.cat([g.reshape(-1) for g in grads]).double())
    mean = torch.stack(flats).mean(0)
    out = {"g2_small": float(sum(f @ f for f in flats) / k), "g2_big": float(mean @ mean),
           "b_small": int(b_small), "b_big": int(b_small) * k}
    if hessian is not None:
        kh = k if hessian_chunks is None else int(hessian_chunks)
        if not 2 <= kh <= k:
            raise FeedwiseError(f"hessian_chunks must be in [2, {k}] (the chunks of the probe), got {hessian_chunks}")
        m = k // kh
        groups = [torch.stack(flats[j * m:(j + 1) * m]).mean(0) for j in range(kh)]
        hv = hvps(model, loss_fn, hessian[0], hessian[1], groups)
        gbar = torch.stack(groups).mean(0)
        out.update(h_small=float(sum(g @ h for g, h in zip(groups, hv)) / kh),
                   h_big=float(gbar @ torch.stack(hv).mean(0)), hb_small=int(b_small) * m,
                   hb_big=int(b_small) * m * kh)
    return out


def _sq_norm(tensors) -> float:
    return float(sum(t.detach().double().pow(2).sum() for t in tensors if t is not None))


class NoiseScaleMonitor:
    """Online B_simple = tr(Σ)/|G|² of a training loop (see the module docs for the three modes).

    ``batch_size``: the big batch (the global batch under DDP; the whole accumulated batch with
    micro-batches). ``num_examples``: the dataset size N, for the without-replacement correction.
    ``window``: measurements in the recent-window summary. ``out``: a CSV path; ``tensorboard``: a
    log folder. ``every``: under DDP, measure one step in ``every`` (the first, then every
    ``every``-th); the other steps run DDP's plain all-reduce (``step()`` returns None for them)."""

    def __init__(self, batch_size: int | None = None, *, num_examples: int | None = None, window: int = 50,
                 out: str | Path | None = None, tensorboard: str | Path | None = None, every: int = 1):
        self.batch_size, self.num_examples, self.window = batch_size, num_examples, int(window)
        self.block = max(1, min(10, self.window))   # measurements per block of the time-average
        if batch_size is not None and int(batch_size) < 2:
            raise FeedwiseError(f"batch_size must be at least 2, got {batch_size}")
        if self.window < 1:
            raise FeedwiseError(f"window must be at least 1, got {window}")
        self.every = int(every)
        if self.every < 1:
            raise FeedwiseError(f"every must be at least 1, got {every}")
        self._measure = True   # whether the DDP hook measures the current step
        self.rows: list[dict] = []
        self._sum_g2 = self._sum_trace = 0.0   # running sums: the series' ratio of means in O(1) per step
        self.steps = 0
        self._ddp = None
        self._local_parts: list[torch.Tensor] = []   # this step's per-bucket local squared norms (not yet sent)
        self._packed: torch.Tensor | None = None      # the last bucket + this rank's local squared norm, all-reduced
        self._reduced: list[torch.Tensor] = []        # the other all-reduced buckets (the big batch's gradient)
        self._buckets = 0
        self._micro: list[tuple[float, int]] = []
        self._prev: list[torch.Tensor] | None = None
        self._params: list[torch.nn.Parameter] | None = None
        self.path = Path(out) if out is not None else None
        self._file = self._csv = None
        if self.path is not None:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            self._file = open(self.path, "w", newline="")
            self._csv = csv.DictWriter(self._file, fieldnames=COLUMNS)
            self._csv.writeheader()
        self._tb = None
        if tensorboard is not None:
            try:
                from torch.utils.tensorboard import SummaryWriter
            except Exception:  # tensorboard not installed: the CSV/JSON series still holds everything
                self._tb = None
            else:
                self._tb = SummaryWriter(str(tensorboard))

    # ------------------------------------------------------------------ recording
    def record(self, g2_small: float, g2_big: float, b_small: float, b_big: float, step: int | None = None,
               hessian: dict | None = None) -> dict:
        """Add one measurement: the squared gradient norms at the small and the big batch size (and, from
        :func:`measure_gradients` with a Hessian batch, its H-weighted norms for B_noise)."""
        g2, tr = estimate(g2_small, g2_big, b_small, b_big, self.num_examples)
        row = {"step": self.steps if step is None else step, "b_small": b_small, "b_big": b_big,
               "g2_small": g2_small, "g2_big": g2_big, "g2": g2, "trace": tr,
               "b_simple_point": tr / g2 if g2 > 0 else math.nan}
        if hessian is not None:
            ghg, trh = estimate(hessian["h_small"], hessian["h_big"], hessian["hb_small"], hessian["hb_big"],
                                self.num_examples)
            row.update(gHg=ghg, trace_HS=trh, b_noise_point=trh / ghg if ghg > 0 else math.nan)
        self.rows.append(row)
        self._sum_g2 += g2
        self._sum_trace += tr
        # the running |G|^2-weighted ratio sum(tr)/sum(|G|^2) of every row so far (= ratio_of_means(all rows))
        row["b_simple_g2_weighted"] = self._sum_trace / self._sum_g2 if self._sum_g2 > 0 else math.nan
        if self._csv is not None:
            self._csv.writerow(row)
            self._file.flush()
        if self._tb is not None:
            for k in ("b_simple_g2_weighted", "b_simple_point", "g2", "trace"):
                if math.isfinite(row[k]):
                    self._tb.add_scalar(f"noise_scale/{k}", row[k], row["step"])
        return row

    # ------------------------------------------------------------------ DDP: local and all-reduced gradients
    def attach(self, ddp_model) -> "NoiseScaleMonitor":
        """Measure at every step of a ``DistributedDataParallel`` model from its own all-reduce.

        Replaces DDP's default communication hook by the same all-reduce (divide by N, sum) that
        also reads the squared norm of each bucket before (the local gradient) and after (the
        all-reduced one). ``batch_size`` is the global batch; each rank's is ``batch_size / N``."""
        import torch.distributed as dist

        if not dist.is_initialized():
            raise FeedwiseError("attach() needs an initialised torch.distributed process group (DDP)")
        if self.batch_size is None:
            raise FeedwiseError("give batch_size (the global batch) to measure under DDP")
        self.world = dist.get_world_size()
        if self.world < 2:
            raise FeedwiseError("attach() needs at least two ranks; with one process use micro_batch() or probe()")
        self._ddp = ddp_model
        if self.every == 1:
            ddp_model.register_comm_hook(self, _noise_hook)
        else:   # measured steps skip DDP's sync; step() all-reduces them (see the module docstring)
            self._params = [p for p in ddp_model.module.parameters() if p.requires_grad]
            ddp_model.require_backward_grad_sync = not self._measure
        return self

    def step(self, step: int | None = None) -> dict | None:
        """After ``backward()`` (DDP), or after the last micro-batch: record this step's measurement."""
        self.steps += 1
        if self._ddp is not None and self.every > 1:
            measured, self._measure = self._measure, self.steps % self.every == 0
            row = self._sync_step(step) if measured else None
            self._ddp.require_backward_grad_sync = not self._measure   # for the next step's forward
            return row
        if self._ddp is not None:
            measured, self._measure = self._measure, self.steps % self.every == 0
            if not measured:
                if not self._buckets:
                    raise FeedwiseError("no gradient bucket went through the monitor's hook: call step() after "
                                        "backward()")
                self._buckets = 0
                return None
            return self._ddp_step(step)
        if self._micro:
            return self._micro_step(step)
        return None

    def _ddp_step(self, step):
        import torch.distributed as dist

        if not self._buckets:
            raise FeedwiseError("no gradient bucket went through the monitor's hook: call step() after backward()")
        parts = self._reduced                   # the all-reduced buckets: the big batch's gradient
        packed = self._packed
        if packed is not None:                  # sent inside the last bucket's all-reduce, divided by N with it:
            n = packed.numel() - 1              # the mean over ranks of the local squared norms
            g2_small = float(packed[n])
            parts.append(packed[:n])
        else:                                   # the last bucket was too big or half precision: one float64
            local = torch.stack([t.double() for t in self._local_parts]).sum().reshape(1)
            dist.all_reduce(local)
            g2_small = float(local) / self.world
        g2_big = float(_sq(parts[0]) if len(parts) == 1 else torch.stack([_sq(t).double() for t in parts]).sum())
        self._local_parts, self._packed, self._reduced, self._buckets = [], None, [], 0
        b_big = float(self.batch_size)
        return self.record(g2_small, g2_big, b_big / self.world, b_big, step)

    def _sync_step(self, step):
        """A measured step under ``every > 1``: DDP did not sync this backward; each rank's ``.grad`` is
        its local gradient. All-reduce the gradients (mean over ranks, as DDP) with this rank's local
        squared norm as one extra element, and write the mean back into ``.grad``."""
        import torch.distributed as dist

        grads = [p.grad for p in self._params]
        if all(g is None for g in grads):
            raise FeedwiseError("no gradient to measure: call step() after backward()")
        grads = [torch.zeros_like(p) if g is None else g for p, g in zip(self._params, grads)]
        same = {g.dtype for g in grads}
        dt = same.pop() if len(same) == 1 and grads[0].dtype in (torch.float32, torch.float64) else torch.float64
        flat = torch.cat([*(g.reshape(-1).to(dt) for g in grads), _sq_norm_t(grads).to(dt).view(1)])
        flat.div_(self.world)
        dist.all_reduce(flat)
        n = flat.numel() - 1
        g2_small = float(flat[n])
        g2_big = float(_sq(flat[:n]))
        o = 0
        for p, g in zip(self._params, grads):
            k = g.numel()
            if p.grad is None:
                p.grad = flat[o:o + k].view_as(p).to(p.dtype).clone()
            else:
                p.grad.copy_(flat[o:o + k].view_as(g))
            o += k
        b_big = float(self.batch_size)
        return self.record(g2_small, g2_big, b_big / self.world, b_big, step)

    # ------------------------------------------------------------------ micro-batches (gradient accumulation)
    def micro_batch(self, model: torch.nn.Module, size: int, loss_scale: float) -> None:
        """Call after each micro-batch's ``backward()``: ``size`` examples, whose mean loss was multiplied
        by ``loss_scale`` before backward (usually 1 / the number of micro-batches)."""
        if self._params is None:
            self._params = [p for p in model.parameters() if p.requires_grad]
        cur = [p.grad.detach().double().clone() if p.grad is not None else torch.zeros_like(p, dtype=torch.float64)
               for p in self._params]
        prev = self._prev
        diff = cur if prev is None else [c - q for c, q in zip(cur, prev)]
        self._micro.append((_sq_norm(diff) / (loss_scale * loss_scale), int(size), loss_scale))
        self._prev = cur

    def _micro_step(self, step):
        micro, total, self._micro, self._prev = self._micro, self._prev, [], None
        sizes = {s for _, s, _ in micro}
        if len(micro) < 2 or len(sizes) != 1:
            raise FeedwiseError("micro-batch measurements need at least two micro-batches of one size per step")
        b_small = sizes.pop()
        scale = sum(ls for _, _, ls in micro)   # the accumulated gradient is the sum of loss_scale x micro gradients
        g2_big = _sq_norm(total) / (scale * scale)
        g2_small = sum(g for g, _, _ in micro) / len(micro)
        return self.record(g2_small, g2_big, b_small, b_small * len(micro), step)

    # ------------------------------------------------------------------ a probe (extra compute)
    def probe(self, model: torch.nn.Module, loss_fn, inputs: torch.Tensor, targets: torch.Tensor, b_small: int,
              step: int | None = None, hessian: tuple[torch.Tensor, torch.Tensor] | None = None,
              hessian_chunks: int | None = None) -> dict:
        """Measure on one big batch ``inputs, targets`` cut into chunks of ``b_small``: costs one forward
        and backward pass over it; the model's ``.grad`` is left untouched. With ``hessian = (x_h, y_h)``, a
        batch drawn independently of the big one, also B_noise = tr(HΣ)/GᵀHG from ``hessian_chunks``
        Hessian-vector products on it (see :func:`measure_gradients`)."""
        m = measure_gradients(model, loss_fn, inputs, targets, b_small, hessian=hessian, hessian_chunks=hessian_chunks)
        return self.record(m["g2_small"], m["g2_big"], m["b_small"], m["b_big"], step,
                           hessian=m if "h_small" in m else None)

    # ------------------------------------------------------------------ results
    def summary(self) -> dict:
        """The series' summaries: ``b_simple_g2_weighted`` (Σ tr Σ / Σ |G|² over every measurement, which
        weighs each by its |G|² and so leans on early training: not a mean over the run),
        ``b_simple_time_average`` (the plain mean over blocks of ``block`` measurements of each block's
        ratio of means) and ``b_simple_recent`` (ratio of means over the last ``window``)."""
        g2s, trs = [r["g2"] for r in self.rows], [r["trace"] for r in self.rows]
        w = self.window
        ns = noise_summaries([r["step"] for r in self.rows], g2s, trs, block=self.block)
        hr = [r for r in self.rows if "gHg" in r]
        bn = noise_summaries([r["step"] for r in hr], [r["gHg"] for r in hr], [r["trace_HS"] for r in hr],
                             block=self.block) if hr else None
        return {"measurements": len(self.rows), "b_simple_g2_weighted": ns["g2_weighted"],
                "b_simple_time_average": ns["time_average"],
                **({"b_noise_time_average": bn["time_average"], "b_noise_weighted": bn["g2_weighted"],
                    "b_noise_recent": ratio_of_means([r["gHg"] for r in hr[-w:]], [r["trace_HS"] for r in hr[-w:]]),
                    "b_noise_measurements": len(hr)} if bn else {}),
                "b_simple_recent": ratio_of_means(g2s[-w:], trs[-w:]), "window": w, "block": self.block,
                "rule": f"g2_weighted: sum(tr Sigma) / sum(|G|^2) over all measurements; time_average: plain mean "
                        f"over blocks of {self.block} measurements of each block's ratio of means; recent: ratio of "
                        f"means over the last {w}; finite-dataset correction c(B) = (N-B)/(B(N-1)) with "
                        f"N = {self.num_examples}",
                "num_examples": self.num_examples}

    def close(self) -> dict:
        """Finish the CSV, write ``<out>.json`` (the summary), close TensorBoard; returns the summary."""
        s = self.summary()
        if self._file is not None:
            self._file.close()
            self._file = self._csv = None
            tmp = self.path.with_suffix(".json.tmp")
            tmp.write_text(json.dumps({k: (v if not (isinstance(v, float) and not math.isfinite(v)) else None)
                                       for k, v in s.items()}, indent=2) + "\n")
            tmp.replace(self.path.with_suffix(".json"))
        if self._tb is not None:
            self._tb.close()
            self._tb = None
        return s


def _sq_norm_t(tensors) -> torch.Tensor:
    """Sum of squared norms of several tensors as a 0-d float64 tensor (no host sync)."""
    return torch.stack([_sq(t.reshape(-1)).double() for t in tensors]).sum()


def _sq(flat: torch.Tensor) -> torch.Tensor:
    """Squared norm of a 1-D tensor as a 0-d tensor on its device (no host sync); float32/64 summed in
    their dtype, others in float64."""
    if flat.dtype in (torch.float32, torch.float64):
        return torch.dot(flat, flat)
    return flat.double().pow(2).sum()


def _noise_hook(monitor: NoiseScaleMonitor, bucket):
    """DDP's default all-reduce hook (divide by N, all-reduce) that also takes the bucket's local squared
    norm; the last bucket carries this rank's total as one extra element. No annotations: DDP inspects them."""
    import torch.distributed as dist

    buf = bucket.buffer()
    monitor._buckets += 1
    if not monitor._measure:                    # a step that is not measured: DDP's plain all-reduce
        buf.div_(monitor.world)
        return dist.all_reduce(buf, async_op=True).get_future().then(lambda f: f.value()[0])
    local = _sq(buf)
    if bucket.is_last() and buf.dtype in (torch.float32, torch.float64) and buf.numel() <= PACK_LIMIT:
        parts, n = monitor._local_parts, buf.numel()
        total = local if not parts else torch.stack([*parts, local]).sum()
        packed = torch.cat((buf, total.view(1)))   # read in step(), once DDP has waited for the all-reduce
        packed.div_(monitor.world)
        monitor._packed, monitor._local_parts = packed, []
        fut = dist.all_reduce(packed, async_op=True).get_future()
        return fut.then(lambda f: f.value()[0][:n])   # DDP copies the bucket's gradients from this view
    monitor._local_parts.append(local)
    buf.div_(monitor.world)
    monitor._reduced.append(buf)                # all-reduced in place
    return dist.all_reduce(buf, async_op=True).get_future().then(lambda f: f.value()[0])
