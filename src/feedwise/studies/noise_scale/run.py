"""The gradient noise scale (McCandlish et al. 2018, *An Empirical Model of Large-Batch
Training*, appendix A) along one short training run.

With the true gradient G (the mean over the N training examples) and the per-example gradient
covariance Σ (divisor N), the mean gradient of B examples drawn **without replacement** has
``E|G_B|² = |G|² + c(B) tr(Σ)``, ``c(B) = (N − B) / (B (N − 1))`` (:func:`feedwise.stats.finite_c`;
``1/B`` for an infinite dataset: the correction is ≈ B/N, negligible at N = 45,000 and B = 1,024,
but it moves tr(Σ) by a third at N = 4,000). Two batch sizes B_small < B_big give unbiased estimates

    tr(Σ)  ≈ (|G_small|² − |G_big|²) / (c(B_small) − c(B_big))
    |G|²   ≈ |G_big|² − c(B_big) tr(Σ)

and ``B_simple = tr(Σ) / |G|²``. Each measurement draws ``B_big`` training examples without
replacement, splits them into ``B_big / B_small`` disjoint chunks, takes |G_small|² as the mean
squared norm of the chunk gradients and |G_big|² as the squared norm of their mean.

Measurements are taken at step 0 (before training) and after every evaluation, the last one at
the step the target is reached; those two take ``precise_draws`` independent big batches each.
B_simple grows during training (on mnist1d-mlp about 7x from step 0 to the target), so one
number for a run is a choice; the summary keeps the series and gives every summary of
:func:`feedwise.stats.noise_summaries`: the time-average, the |G|²-weighted ratio of sums (what
an earlier version called "the mean over the run"; it leans on early training), the value near
the target, a late window, step 0 and the target step. Which one tracks a measured knee is a
benchmark question (benchmarks/noise_scale_knees.py), not a definition.

With ``hessian=True`` every measurement also estimates the curvature-weighted noise scale
``B_noise = tr(HΣ) / GᵀHG`` (the quantity B_simple approximates when H ∝ I), H the Hessian of the
mean loss on an independently drawn batch of ``hessian_batch`` examples, from Hessian-vector
products (:func:`feedwise.monitor.measure_gradients`): the same two-batch-size algebra on
H-weighted squared norms. Compute is counted in examples: training steps, the gradient
measurements, and each Hessian-vector product as 2 passes over the Hessian batch plus the one
gradient pass it differentiates (evaluations are not counted, as in the sweep).
"""

from __future__ import annotations

import csv
import math
from dataclasses import asdict, dataclass, field
from pathlib import Path

import torch
import torch.nn.functional as F

from feedwise.engine import TrainConfig, Trainer, record_run
from feedwise.errors import FeedwiseError
from feedwise.feeds.base import UniformFeeder
from feedwise.monitor import measure_gradients
from feedwise.progress import progress_bar, say
from feedwise.results import StudyDir
from feedwise.seeds import derive_seed
from feedwise.stats import (
    NOISE_SUMMARY_RULES,
    noise_estimate,
    noise_summaries,
    ratio_of_means,
)
from feedwise.studies.common import pick_device, set_threads
from feedwise.studies.train.run import DataOptions
from feedwise.workloads import get_workload

KIND = "noise-scale"


estimate = noise_estimate        # (|G|², tr Σ) from two squared norms; n = N for the finite-dataset correction
b_simple = ratio_of_means        # Σ tr Σ / Σ |G|²


def gradient_norms(model: torch.nn.Module, x: torch.Tensor, y: torch.Tensor, b_small: int) -> tuple[float, float]:
    """(|G_small|² averaged over chunks, |G_big|²) for one big batch ``x, y`` cut in chunks of b_small."""
    m = measure_gradients(model, F.cross_entropy, x, y, b_small)
    return m["g2_small"], m["g2_big"]


SERIES = ["step", "draws", "g2_small", "g2_big", "g2", "trace", "b_simple_point", "b_simple_window",
          "h_small", "h_big", "gHg", "trace_HS", "b_noise_point"]


class NoiseProbe:
    """Engine callback: measures the gradient norms (and with a Hessian batch the H-weighted ones)
    after every evaluation; ``measure`` is also called at step 0."""

    def __init__(self, b_small: int, b_big: int, seed: int, path: Path, *, num_examples: int | None,
                 loss_fn=F.cross_entropy, hessian_batch: int = 0, hessian_chunks: int = 4,
                 precise_draws: int = 8, block: int = 4, target: float | None = None):
        self.b_small, self.b_big, self.n = b_small, b_big, num_examples
        self.loss_fn, self.hessian_batch, self.hessian_chunks = loss_fn, hessian_batch, hessian_chunks
        self.precise_draws, self.block, self.target = precise_draws, block, target
        self.gen = torch.Generator().manual_seed(derive_seed(seed, "noise-scale"))
        self.rows: list[dict] = []
        self.draws_total = 0
        self.path = path
        self._f = open(path, "w", newline="")
        self._w = csv.DictWriter(self._f, fieldnames=SERIES, extrasaction="ignore")
        self._w.writeheader()

    def measure(self, trainer, step: int, draws: int = 1) -> dict:
        n_train = trainer.data.num_train
        acc: dict[str, float] = {}
        for _ in range(draws):
            idx = torch.randperm(n_train, generator=self.gen)[: self.b_big].to(trainer.device)
            hess = None
            if self.hessian_batch:   # drawn independently of the gradient batch: E[g^T H g] uses the mean Hessian
                hidx = torch.randperm(n_train, generator=self.gen)[: self.hessian_batch].to(trainer.device)
                hess = (trainer.data.x_train[hidx], trainer.data.y_train[hidx])
            m = measure_gradients(trainer.model, self.loss_fn, trainer.data.x_train[idx], trainer.data.y_train[idx],
                                  self.b_small, hessian=hess, hessian_chunks=self.hessian_chunks if hess else None)
            for k, v in m.items():
                acc[k] = acc.get(k, 0.0) + v / draws
        self.draws_total += draws
        g2, tr = noise_estimate(acc["g2_small"], acc["g2_big"], self.b_small, self.b_big, self.n)
        r = {"step": int(step), "draws": draws, "g2_small": acc["g2_small"], "g2_big": acc["g2_big"], "g2": g2,
             "trace": tr, "b_simple_point": tr / g2 if g2 > 0 else math.nan}
        if "h_small" in acc:
            ghg, trh = noise_estimate(acc["h_small"], acc["h_big"], round(acc["hb_small"]), round(acc["hb_big"]),
                                      self.n)
            r.update(h_small=acc["h_small"], h_big=acc["h_big"], gHg=ghg, trace_HS=trh,
                     b_noise_point=trh / ghg if ghg > 0 else math.nan)
        self.rows.append(r)
        w = self.rows[-self.block:]
        r["b_simple_window"] = ratio_of_means([q["g2"] for q in w], [q["trace"] for q in w])
        self._w.writerow(r)
        self._f.flush()
        return r

    def __call__(self, trainer, row) -> None:
        v = row.get("val_error")
        reached = self.target is not None and v is not None and math.isfinite(float(v)) and float(v) < self.target
        self.measure(trainer, trainer.step, self.precise_draws if reached else 1)

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
    hessian: bool = False        # also B_noise = tr(H Sigma) / G^T H G (Hessian-vector products)
    hessian_batch: int = 1024    # examples of the Hessian's batch (drawn independently of the gradients)
    hessian_chunks: int = 4      # Hessian-vector products per measurement (groups of the probe's chunks)
    precise_draws: int = 8       # big batches measured at step 0 and at the target step
    block: int = 4               # measurements per block of the time-average and of the near-target window


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
    for name, v in (("--b-small", req.b_small), ("--b-big", req.b_big), ("--measure-every", req.measure_every),
                    ("--precise-draws", req.precise_draws), ("--block", req.block),
                    ("--hessian-batch", req.hessian_batch), ("--hessian-chunks", req.hessian_chunks)):
        _positive_int(name, v)
    if not isinstance(req.hessian, bool):
        raise FeedwiseError(f"hessian must be true or false, got {req.hessian!r}")
    if req.b_big <= req.b_small or req.b_big % req.b_small:
        raise FeedwiseError(f"need 0 < b_small < b_big with b_big a multiple of b_small, got {req.b_small}, {req.b_big}")
    if req.hessian and not 2 <= req.hessian_chunks <= req.b_big // req.b_small:
        raise FeedwiseError(f"--hessian-chunks must be in [2, {req.b_big // req.b_small}] (the chunks of "
                            f"--b-big / --b-small), got {req.hessian_chunks}")
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
    if req.hessian and req.hessian_batch > data.num_train:
        raise FeedwiseError(f"--hessian-batch {req.hessian_batch} is larger than the training set ({data.num_train})")
    config = {"workload": req.workload, "train": asdict(cfg), "b_small": req.b_small, "b_big": req.b_big,
              "measure_every": req.measure_every, "data": req.data.identity(data),
              "estimator": {"finite_dataset_correction": True, "precise_draws": req.precise_draws,
                            "block": req.block, "step0": True},
              "hessian": ({"batch": req.hessian_batch, "chunks": req.hessian_chunks} if req.hessian else None)}
    sd.open(KIND, config, command=command, extra={"threads": n_threads, "device": str(dev), "dataset": data.describe()})
    trial = sd.trial(0)
    loss = F.cross_entropy if w.loss is None else (lambda out, y: w.loss(out, y).mean())
    # another process running this very study holds trial 0: wait for it instead of measuring twice
    with trial.hold(waiting=lambda who: say(f"waiting for trial 0 in {out}, which {who} is running")):
        if trial.finished() and sd.summary_path.exists():
            return sd.read_summary()
        probe = NoiseProbe(req.b_small, req.b_big, req.seed, trial.path / "noise_scale.csv",
                           num_examples=data.num_train, loss_fn=loss,
                           hessian_batch=req.hessian_batch if req.hessian else 0, hessian_chunks=req.hessian_chunks,
                           precise_draws=req.precise_draws, block=req.block, target=cfg.target)
        try:
            with progress_bar() as bar:
                task = bar.add_task(f"noise scale {req.workload} bs={cfg.batch_size}", total=cfg.budget_steps())
                trainer = Trainer(data, w.model_fn(data), cfg, feeder=UniformFeeder(), device=dev, loss_fn=w.loss)
                probe.measure(trainer, 0, req.precise_draws)      # step 0: before any training
                result = record_run(trial, trainer, w.name, record={"b_small": req.b_small, "b_big": req.b_big},
                                    callbacks=[probe], progress=lambda s, t: bar.update(task, completed=s))
        finally:
            probe.close()
        summary = summarize(probe.rows, req, cfg, result, probe.draws_total, data.num_train)
        sd.write_summary(summary)
        return sd.read_summary()     # as written (NaN -> null), the same dict a resumed run returns


def summarize(rows: list[dict], req: NoiseScaleRequest, cfg: TrainConfig, result, draws_total: int,
              num_examples: int) -> dict:
    """summary.json of a noise-scale run from its measurements (``rows`` in step order)."""
    if not rows:
        raise FeedwiseError("no gradient measurement was taken: lower --measure-every or raise --steps")
    steps = [r["step"] for r in rows]
    target_step = result.steps_to_result if result.status == "reached" else None
    simple = noise_summaries(steps, [r["g2"] for r in rows], [r["trace"] for r in rows],
                             target_step=target_step, block=req.block)
    noise = None
    if "gHg" in rows[0]:
        noise = noise_summaries(steps, [r["gHg"] for r in rows], [r["trace_HS"] for r in rows],
                                target_step=target_step, block=req.block)
    ex_grad = draws_total * req.b_big
    # a Hessian-vector product by double backward: the gradient pass it differentiates + ~2 passes
    ex_hess = draws_total * (3 * req.hessian_batch * req.hessian_chunks) if noise else 0
    headline = "time_average"
    return {
        "kind": KIND, "workload": req.workload, "b_small": req.b_small, "b_big": req.b_big,
        "num_examples": num_examples,
        "train": {"batch_size": cfg.batch_size, "optimizer": cfg.optimizer, "lr": cfg.lr, "momentum": cfg.momentum,
                  "status": result.status, "steps_run": result.steps_run, "steps_to_result": result.steps_to_result,
                  "target": cfg.target},
        "measurements": len(rows),
        "b_simple": {k: simple[k] for k in NOISE_SUMMARY_RULES},
        "b_noise": {k: noise[k] for k in NOISE_SUMMARY_RULES} if noise else None,
        "summary_rules": {**NOISE_SUMMARY_RULES, "block": req.block, "late_fraction": simple["late_fraction"],
                          "precise_draws": f"{req.precise_draws} big batches at step 0 and at the target step, one "
                                           f"elsewhere"},
        "predicted_critical_batch": simple[headline],
        "prediction_rule": f"B_simple {headline}: {NOISE_SUMMARY_RULES[headline]}; the other summaries are beside it "
                           "(which one tracks a measured knee: benchmarks/noise_scale_knees.py)",
        "estimator": f"unbiased two-batch-size estimator with the without-replacement factor c(B) = (N-B)/(B(N-1)), "
                     f"N = {num_examples}",
        "hessian": ({"batch": req.hessian_batch, "chunks": req.hessian_chunks,
                     "rule": "B_noise = tr(H Sigma) / G^T H G from H-weighted squared norms g^T H g (H on an "
                             "independent batch; Hessian-vector products by double backward)"} if noise else None),
        "compute": {"examples_train": result.examples, "examples_gradient": ex_grad, "examples_hessian": ex_hess,
                    "examples_total": result.examples + ex_grad + ex_hess, "wall_s": result.wall_s + result.eval_s},
        "series": [{k: r.get(k) for k in SERIES if k in r} for r in rows],
    }
