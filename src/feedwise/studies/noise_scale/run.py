"""The simple gradient noise scale (McCandlish et al. 2018, *An Empirical Model of Large-Batch
Training*, appendix A) from one short training run.

With the true gradient G and the per-example gradient covariance Σ, a batch of B examples has
``E|G_B|² = |G|² + tr(Σ)/B``. Two batch sizes B_small < B_big give unbiased estimates

    |G|²   ≈ (B_big |G_big|² − B_small |G_small|²) / (B_big − B_small)
    tr(Σ)  ≈ (|G_small|² − |G_big|²) / (1/B_small − 1/B_big)

and ``B_simple = tr(Σ) / |G|²``. Each measurement draws ``B_big`` training examples, splits them
into ``B_big / B_small`` disjoint chunks, takes |G_small|² as the mean squared norm of the chunk
gradients and |G_big|² as the squared norm of their mean (the data-parallel estimator). Both
estimates are noisy, so — as the paper advises — they are averaged separately over the run and
divided at the end (a ratio of means, not a mean of ratios).

The prediction for the critical batch size is ``B_simple`` averaged over the whole short run
(``predicted_critical_batch``); the estimate over the last quarter of the measurements, closer
to the target, is recorded next to it (``b_simple_last``). Compute is counted in examples:
training steps plus the gradient measurements (evaluations are not counted, as in the sweep).
"""

from __future__ import annotations

import csv
import math
from dataclasses import asdict, dataclass, field
from pathlib import Path

import torch
import torch.nn.functional as F

from feedwise.engine import TrainConfig
from feedwise.seeds import derive_seed
from feedwise.errors import FeedwiseError
from feedwise.feeds.base import UniformFeeder
from feedwise.progress import progress_bar, say
from feedwise.results import StudyDir
from feedwise.studies.common import pick_device, run_trial, set_threads
from feedwise.studies.train.run import DataOptions
from feedwise.workloads import get_workload

KIND = "noise-scale"


def estimate(g2_small: float, g2_big: float, b_small: int, b_big: int) -> tuple[float, float]:
    """(|G|², tr Σ) from the squared gradient norms at two batch sizes (unbiased, may be < 0)."""
    if not b_small < b_big:
        raise FeedwiseError(f"b_small ({b_small}) must be below b_big ({b_big})")
    g2 = (b_big * g2_big - b_small * g2_small) / (b_big - b_small)
    tr = (g2_small - g2_big) / (1.0 / b_small - 1.0 / b_big)
    return g2, tr


def b_simple(g2s: list[float], trs: list[float]) -> float:
    """Ratio of the means: mean(tr Σ) / mean(|G|²); ``nan`` when the mean |G|² is not positive."""
    if not g2s:
        return math.nan
    g2, tr = sum(g2s) / len(g2s), sum(trs) / len(trs)
    return tr / g2 if g2 > 0 else math.nan


def gradient_norms(model: torch.nn.Module, x: torch.Tensor, y: torch.Tensor, b_small: int) -> tuple[float, float]:
    """(|G_small|² averaged over chunks, |G_big|²) for one big batch ``x, y`` cut in chunks of b_small."""
    params = [p for p in model.parameters() if p.requires_grad]
    n_chunks = len(y) // b_small
    total = None
    sq = 0.0
    for c in range(n_chunks):
        sl = slice(c * b_small, (c + 1) * b_small)
        loss = F.cross_entropy(model(x[sl]), y[sl])
        grads = torch.autograd.grad(loss, params)
        flat = torch.cat([g.reshape(-1) for g in grads]).double()
        sq += float(flat @ flat)
        total = flat if total is None else total + flat
    mean = total / n_chunks
    return sq / n_chunks, float(mean @ mean)


class NoiseProbe:
    """Engine callback: measures the two gradient norms after every evaluation."""

    def __init__(self, b_small: int, b_big: int, seed: int, path: Path):
        self.b_small, self.b_big = b_small, b_big
        self.gen = torch.Generator().manual_seed(derive_seed(seed, "noise-scale"))
        self.rows: list[dict] = []
        self.path = path
        self._f = open(path, "w", newline="")
        self._w = csv.DictWriter(self._f, fieldnames=["step", "g2_small", "g2_big", "g2", "trace", "b_simple_point",
                                                      "b_simple_running"])
        self._w.writeheader()

    def __call__(self, trainer, row) -> None:
        n = trainer.data.num_train
        idx = torch.randperm(n, generator=self.gen)[: self.b_big].to(trainer.device)
        x, y = trainer.data.x_train[idx], trainer.data.y_train[idx]
        g2s, g2b = gradient_norms(trainer.model, x, y, self.b_small)
        g2, tr = estimate(g2s, g2b, self.b_small, self.b_big)
        r = {"step": trainer.step, "g2_small": g2s, "g2_big": g2b, "g2": g2, "trace": tr,
             "b_simple_point": tr / g2 if g2 > 0 else math.nan}
        self.rows.append(r)
        r["b_simple_running"] = b_simple([q["g2"] for q in self.rows], [q["trace"] for q in self.rows])
        self._w.writerow(r)
        self._f.flush()
        return None

    def close(self) -> None:
        self._f.close()


@dataclass
class NoiseScaleRequest:
    workload: str
    batch_size: int | None = None
    optimizer: str = "momentum"
    lr: float | None = None
    momentum: float = 0.9
    b_small: int = 32
    b_big: int = 1024
    measure_every: int = 50
    max_steps: int | None = None
    target: float | None = None
    seed: int = 0
    data: DataOptions = field(default_factory=DataOptions)


def _positive_int(name: str, v) -> int:
    if isinstance(v, bool) or not isinstance(v, int) or v <= 0:
        raise FeedwiseError(f"{name} must be a positive integer, got {v!r}")
    return v


def _finite(name: str, v, low: float | None = None, high: float | None = None) -> float:
    if isinstance(v, bool) or not isinstance(v, (int, float)) or not math.isfinite(v) \
            or (low is not None and v < low) or (high is not None and v > high):
        where = f" in [{low:g}, {high:g}]" if low is not None and high is not None else ""
        raise FeedwiseError(f"{name} must be a finite number{where}, got {v!r}")
    return float(v)


def resolve_request(req: NoiseScaleRequest) -> TrainConfig:
    """Validate the request (nothing is written before this passes) and build its training config.

    An option left at None takes the workload's default; a given value is used as given (0 is
    an error, not "the default")."""
    w = get_workload(req.workload)
    for name, v in (("--b-small", req.b_small), ("--b-big", req.b_big), ("--measure-every", req.measure_every)):
        _positive_int(name, v)
    if req.b_big <= req.b_small or req.b_big % req.b_small:
        raise FeedwiseError(f"need 0 < b_small < b_big with b_big a multiple of b_small, got {req.b_small}, {req.b_big}")
    batch_size = w.batch_size if req.batch_size is None else _positive_int("--batch-size", req.batch_size)
    max_steps = w.max_steps if req.max_steps is None else _positive_int("--steps", req.max_steps)
    lr = w.lr if req.lr is None else _finite("--lr", req.lr)
    if lr <= 0:
        raise FeedwiseError(f"--lr must be positive, got {lr!r}")
    momentum = 0.0 if req.optimizer == "sgd" else _finite("--momentum", req.momentum, 0.0, 1.0)
    if momentum >= 1:
        raise FeedwiseError(f"--momentum must be below 1, got {momentum!r}")
    target = w.resolve_target(req.target)
    if isinstance(req.seed, bool) or not isinstance(req.seed, int) or req.seed < 0:
        raise FeedwiseError(f"--seed must be an integer >= 0, got {req.seed!r}")
    cfg = TrainConfig(batch_size=batch_size, optimizer=req.optimizer, lr=lr, momentum=momentum,
                      max_steps=max_steps, eval_every=req.measure_every, target=target, seed=req.seed,
                      evaluate_test=False)
    if max_steps < req.measure_every:
        raise FeedwiseError(f"--steps {max_steps} is below --measure-every {req.measure_every}: no gradient "
                            f"measurement would be taken")
    return cfg


def run_noise_scale(req: NoiseScaleRequest, out: str | Path, threads: int | None = None, device: str = "auto",
                    command: list[str] | None = None) -> dict:
    w = get_workload(req.workload)
    cfg = resolve_request(req)
    sd = StudyDir(out)
    n_threads = set_threads(threads)
    dev = pick_device(device)
    data = w.load(**asdict(req.data))
    cfg.validate(data.num_train)
    if req.b_big > data.num_train:
        raise FeedwiseError(f"b_big {req.b_big} is larger than the training set ({data.num_train})")
    config = {"workload": req.workload, "train": asdict(cfg), "b_small": req.b_small, "b_big": req.b_big,
              "measure_every": req.measure_every, "data": req.data.identity(data)}
    sd.open(KIND, config, command=command, extra={"threads": n_threads, "device": str(dev), "dataset": data.describe()})
    trial = sd.trial(0)
    # another process running this very study holds trial 0: wait for it instead of measuring twice
    with trial.hold(waiting=lambda who: say(f"waiting for trial 0 in {out}, which {who} is running")):
        if trial.finished() and sd.summary_path.exists():
            return sd.read_summary()
        probe = NoiseProbe(req.b_small, req.b_big, req.seed, trial.path / "noise_scale.csv")
        try:
            with progress_bar() as bar:
                task = bar.add_task(f"noise scale {req.workload} bs={cfg.batch_size}", total=cfg.budget_steps())
                result, _ = run_trial(trial, w, data, cfg, UniformFeeder(), device=dev, callbacks=[probe],
                                      record={"b_small": req.b_small, "b_big": req.b_big},
                                      progress=lambda s, t: bar.update(task, completed=s))
        finally:
            probe.close()
        rows = probe.rows
        g2s, trs = [r["g2"] for r in rows], [r["trace"] for r in rows]
        q = max(1, len(rows) // 4)
        mean_all = b_simple(g2s, trs)
        last = b_simple(g2s[-q:], trs[-q:])
        ex_grad = len(rows) * req.b_big
        summary = {
            "kind": KIND, "workload": req.workload, "b_small": req.b_small, "b_big": req.b_big,
            "train": {"batch_size": cfg.batch_size, "optimizer": cfg.optimizer, "lr": cfg.lr, "momentum": cfg.momentum,
                      "status": result.status, "steps_run": result.steps_run, "steps_to_result": result.steps_to_result,
                      "target": cfg.target},
            "measurements": len(rows), "b_simple": mean_all, "b_simple_last": last,
            "predicted_critical_batch": mean_all,
            "prediction_rule": "B_simple = mean(tr Sigma)/mean(|G|^2) over all measurements of the short run",
            "mean_g2": sum(g2s) / len(g2s) if g2s else None, "mean_trace": sum(trs) / len(trs) if trs else None,
            "compute": {"examples_train": result.examples, "examples_gradient": ex_grad,
                        "examples_total": result.examples + ex_grad, "wall_s": result.wall_s + result.eval_s},
            "series": [{k: r[k] for k in ("step", "g2", "trace", "b_simple_point", "b_simple_running")} for r in rows],
        }
        if not rows:
            raise FeedwiseError("no gradient measurement was taken: lower --measure-every or raise --steps")
        sd.write_summary(summary)
        return summary
