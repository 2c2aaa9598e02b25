"""Trials trained together: K runs of one batch size as one batched model.

Each run keeps its own :class:`~feedwise.engine.Trainer`: its model initialised from its own
seed, its own feeder (data order), hyperparameters (learning rate, schedule, momentum, weight
decay), evaluation, callbacks and stop rules, all in the engine's one loop
(:meth:`Trainer.loop`, a generator that asks for steps). What is shared is the step itself: the
K models' parameters are stacked along a leading dimension, the forward pass is the model
applied to each trial's own batch by ``torch.func.vmap`` over ``torch.func.functional_call``,
one backward pass gives every trial's gradient (trial k's loss depends on its parameters only),
and the optimizer update runs on the stacked tensors with a per-trial learning rate and
momentum. Each trial's model parameters are views of its row of the stack, so its evaluation is
the ordinary one. A trial that stops (target, budget, divergence, a callback such as exact
pruning) leaves the batch at that evaluation: its parameters are copied out, and the others go on
with a stack of the remaining rows, their values and optimizer state untouched.

The same maths as one trial alone. On a CPU (torch 2.x) the batched matrix products give the very
gradients of the trial alone, bit for bit, and the update is the same operations, so a trial's
parameters follow the same trajectory; only the recorded training loss (a mean reduced in
another order) differs in its last bits. That is observed, not promised: other kernels (another
CPU, a GPU, where torch's own optimizer uses its fused multi-tensor kernels) may round
differently, and training amplifies any difference over many steps, as any change of kernel does.

What can be batched (anything else is refused with one line, before any training): models
without buffers (batch norm keeps running statistics) and without active dropout (its random
masks would differ from the trial alone), that ``vmap`` can run; feeders that draw plain index
batches (no per-example weights or observations); in-memory data; one process; SGD, momentum,
Nesterov or Adam, the same for every trial; the same batch size, step budget and evaluation
period for every trial (they move in lockstep).
"""

from __future__ import annotations

import copy
import time
from collections.abc import Callable
from dataclasses import dataclass, field

import torch
import torch.nn.functional as F
from torch import nn

from feedwise.config import lr_factor
from feedwise.data.lazy import LazyInputs
from feedwise.engine import Trainer, TrainResult
from feedwise.errors import FeedwiseError


@dataclass
class Member:
    """One trial of the batch: its trainer, what its loop calls, and what to do when it leaves."""

    trainer: Trainer
    callbacks: list = field(default_factory=list)
    on_row: Callable[[dict], None] | None = None
    progress: Callable[[int, int], None] | None = None
    on_done: Callable[[TrainResult], None] | None = None


def why_not_batchable(model: nn.Module) -> str | None:
    """Why a model cannot be trained together with others, or None."""
    for name, m in model.named_modules():
        if isinstance(m, nn.modules.batchnorm._NormBase):
            return f"it has batch norm ({name or type(m).__name__}: running statistics)"
        if isinstance(m, nn.modules.dropout._DropoutNd) and m.p > 0:
            return f"it has dropout ({name or type(m).__name__}: random masks would differ from the trial alone)"
    buffers = [n for n, _ in model.named_buffers()]
    if buffers:
        return f"it has buffers ({', '.join(buffers[:3])})"
    return None


def batched_loss(model: nn.Module, loss_fn=None):
    """``(stacked params, K x B inputs, K x B labels) -> K mean losses``: ``model`` vmapped over trials."""
    base = copy.deepcopy(model)

    def loss_of(params, xb, yb):
        out = torch.func.functional_call(base, params, (xb,))
        return F.cross_entropy(out, yb) if loss_fn is None else loss_fn(out, yb).mean()

    return torch.func.vmap(loss_of)


def check_batchable(model: nn.Module, x, y, loss_fn=None, batched=None) -> None:
    """Refuse (one line) a model, data or loss that trials trained together cannot handle: buffers
    (batch norm), dropout, lazily read inputs, or anything ``vmap`` fails on (a dry run on two rows)."""
    if isinstance(x, LazyInputs):
        raise _refuse("the training inputs are read lazily from a Dataset (in-memory data only)")
    why = why_not_batchable(model)
    if why:
        raise _refuse(f"the model cannot be batched: {why}")
    try:
        fn = batched or batched_loss(model, loss_fn)
        p = {n: torch.stack([q.detach()] * 2) for n, q in model.named_parameters()}
        rows = torch.arange(min(2, len(y)), device=y.device)
        fn(p, torch.stack([x[rows]] * 2).to(next(iter(p.values())).device),
           torch.stack([y[rows]] * 2).to(next(iter(p.values())).device))
    except Exception as e:  # noqa: BLE001 - any failure of vmap on a user model is a refusal
        raise _refuse(f"torch.func.vmap cannot run the model ({type(e).__name__}: "
                      f"{' '.join(str(e).split())[:200]})") from None


def _refuse(why: str) -> FeedwiseError:
    return FeedwiseError(f"--trials-together cannot batch these trials: {why}; run them one at a time "
                         f"(--trials-together 1)")


class TrialsTogether:
    """Train the members' trainers together (see the module's text); :meth:`run` returns their results."""

    def __init__(self, members: list[Member], best=None):
        """``best``: an object with ``add(steps)``, told every member's steps-to-result at the
        evaluation where it reaches the target, before any member's callbacks run (so exact
        pruning of the others can use it at that very step)."""
        if not members:
            raise ValueError("no trials to train together")
        self.members, self.best = members, best
        trs = [m.trainer for m in members]
        t0 = trs[0]
        c0 = t0.cfg
        for tr in trs:
            c = tr.cfg
            if tr.strategy.world > 1 or tr.strategy.name != "single":
                raise _refuse(f"trial strategy '{tr.strategy.name}' (trials together run in one process)")
            if tr.feeder.wants_observations or type(tr.feeder).next_batch is not type(t0.feeder).next_batch:
                raise _refuse(f"feeder {type(tr.feeder).__name__} observes examples or differs between trials")
            if (c.batch_size, tr.budget, c.eval_every, c.optimizer) != (c0.batch_size, t0.budget, c0.eval_every,
                                                                        c0.optimizer):
                raise _refuse("the trials differ in batch size, step budget, evaluation period or optimizer")
            if tr.data is not t0.data or tr.loss_fn is not t0.loss_fn:
                raise _refuse("the trials do not share one dataset (already on their device) and one loss")
            if [(n, p.shape) for n, p in tr.model.named_parameters()] != \
                    [(n, p.shape) for n, p in t0.model.named_parameters()]:
                raise _refuse("the trials' models differ in their parameters")
        if c0.optimizer not in ("sgd", "momentum", "nesterov", "adam"):
            raise _refuse(f"optimizer '{c0.optimizer}'")
        self.names = [n for n, _ in t0.model.named_parameters()]
        self._loss = batched_loss(t0.model, t0.loss_fn)
        check_batchable(t0.model, t0._x, t0._y, t0.loss_fn, batched=self._loss)
        self.active: list[int] = []
        self.stack: dict[str, torch.Tensor] = {}
        self.state: dict[str, list[torch.Tensor]] = {}
        self.train_s = 0.0

    # ------------------------------------------------------------------ the stack
    def _restack(self, keep: list[int]) -> None:
        """Stack the parameters (and optimizer state) of the members ``keep``; the others' models get
        their own copy of their parameters."""
        old, rows = self.active, {k: i for i, k in enumerate(self.active)}
        for k in old:
            if k not in keep:
                for p in self.members[k].trainer.model.parameters():
                    p.data = p.data.clone()
        if not keep:
            self.active, self.stack, self.state = [], {}, {}
            return
        stack, state = {}, {}
        for name in self.names:
            params = [dict(self.members[k].trainer.model.named_parameters())[name] for k in keep]
            stack[name] = torch.stack([p.detach() for p in params]).requires_grad_(True)
            if old:
                sel = torch.tensor([rows[k] for k in keep], device=stack[name].device)
                state[name] = [s.index_select(0, sel) for s in self.state[name]]
            else:
                state[name] = [torch.zeros_like(stack[name].detach()) for _ in range(self._n_state())]
            for i, p in enumerate(params):
                p.data = stack[name].data[i]   # the member's model reads its row of the stack
        self.active, self.stack, self.state = list(keep), stack, state

    def _n_state(self) -> int:
        opt = self.members[0].trainer.cfg.optimizer
        return {"sgd": 0, "momentum": 1, "nesterov": 1, "adam": 2}[opt]

    # ------------------------------------------------------------------ the batched steps
    def train_steps(self, n: int) -> None:
        """``n`` steps of every active member, as one batched model."""
        trs = [self.members[k].trainer for k in self.active]
        t0 = trs[0]
        bs = t0.cfg.batch_size
        x, y = t0._x, t0._y

        leaves = [self.stack[nm] for nm in self.names]
        loss_sum = torch.stack([tr._loss_sum.detach() for tr in trs])
        step0 = t0.step
        for i in range(n):
            step = step0 + i
            lrs = [tr.cfg.lr * lr_factor(tr.cfg, step, tr.budget) for tr in trs]
            draws = [tr.feeder.next_batch(bs) for tr in trs]
            if any(w is not None for _, w in draws):
                raise _refuse("the feeder gives per-example weights")
            idx = torch.stack([d[0] for d in draws])
            losses = self._loss(dict(zip(self.names, leaves)), x[idx], y[idx])
            grads = torch.autograd.grad(losses.sum(), leaves)
            with torch.no_grad():
                self._update(trs, grads, lrs, step + 1)
                loss_sum += losses.detach()
        for j, tr in enumerate(trs):
            tr._loss_sum.copy_(loss_sum[j])
            tr._loss_steps += n
            tr.step += n
            tr.examples += n * bs

    def _update(self, trs, grads, lrs: list[float], t: int) -> None:
        """The optimizer step of every trial: torch's own single-tensor SGD / Adam arithmetic on each
        trial's rows (the same operations with the same scalars as ``torch.optim`` on the trial
        alone, so the same bits on a CPU: the batched forward and backward give bit-identical
        gradients, a vectorised update with per-trial tensors would round differently)."""
        opt = trs[0].cfg.optimizer
        for name, grad in zip(self.names, grads):
            stack, state = self.stack[name].data, self.state[name]
            for j, tr in enumerate(trs):
                p, g, c = stack[j], grad[j], tr.cfg
                if c.weight_decay:
                    g = g.add(p, alpha=c.weight_decay)
                if opt == "adam":
                    m, v = state[0][j], state[1][j]
                    m.lerp_(g, 1 - c.momentum)
                    v.mul_(0.999).addcmul_(g, g, value=1 - 0.999)
                    step_size = lrs[j] / (1 - c.momentum ** t)
                    denom = (v.sqrt() / (1 - 0.999 ** t) ** 0.5).add_(1e-8)
                    p.addcdiv_(m, denom, value=-step_size)
                    continue
                if opt in ("momentum", "nesterov") and c.momentum != 0:
                    buf = state[0][j]
                    if t == 1:
                        buf.copy_(g)
                    else:
                        buf.mul_(c.momentum).add_(g, alpha=1)
                    g = g.add(buf, alpha=c.momentum) if opt == "nesterov" else buf
                p.add_(g, alpha=-lrs[j])

    # ------------------------------------------------------------------ the run
    def run(self) -> list[TrainResult]:
        """Run every member to its own stop; each member's ``on_done`` is called as it leaves."""
        results: dict[int, TrainResult] = {}
        loops, want = {}, {}
        try:
            for k, m in enumerate(self.members):
                loop = m.trainer.loop(m.callbacks, m.on_row, m.progress, pause_after_eval=True)
                try:
                    want[k], loops[k] = next(loop), loop
                except StopIteration as stop:
                    results[k] = stop.value
                    self._done(k, stop.value)
            self._restack(sorted(loops))
            while loops:
                n = min(want[k] for k in self.active)
                if any(want[k] != n for k in self.active):
                    raise RuntimeError(f"trials trained together left lockstep: {[want[k] for k in self.active]}")
                t0 = time.perf_counter()
                self.train_steps(n)
                dt = time.perf_counter() - t0
                self.train_s += dt
                left = []
                for k in self.active:
                    self._resume(k, loops, want, results, left, dt)
                # every member evaluated at this step is paused before its callbacks: first every
                # result of the step, then the callbacks and stop rules of each
                paused = [k for k in self.active if k in loops and want[k] == 0]
                for k in paused:
                    reached = self.members[k].trainer.steps_to_result
                    if reached is not None and self.best is not None:
                        self.best.add(reached)
                for k in paused:
                    self._resume(k, loops, want, results, left, 0.0)
                if left:
                    self._restack([k for k in self.active if k not in left])
                    for k in left:
                        self._done(k, results[k])
        finally:
            for loop in loops.values():
                loop.close()
        return [results[k] for k in range(len(self.members))]

    @staticmethod
    def _resume(k, loops, want, results, left, sent) -> None:
        try:
            want[k] = loops[k].send(sent)
        except StopIteration as stop:
            results[k] = stop.value
            left.append(k)
            del loops[k]

    def _done(self, k: int, result: TrainResult) -> None:
        if self.members[k].on_done is not None:
            self.members[k].on_done(result)
