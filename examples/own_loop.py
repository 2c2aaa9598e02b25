"""Your own plain PyTorch loop, with three feedwise pieces bolted on; then ``feedwise flag`` on what it saved.

- :class:`~feedwise.emphasis.PredictionHistory`: every training step records, per example in the batch,
  the probability the model gives its label (``history.update(idx, true_class_probs(logits, y))``);
- :class:`~feedwise.emphasis.ActiveBiasSampler`: the order of the examples, ``uniform`` (a fresh
  permutation every epoch, the default) or an Active Bias method (``spv``, ``stc``, ...);
- :class:`~feedwise.monitor.NoiseScaleMonitor`: every ``--probe-every`` steps a probe batch is cut into
  small batches and B_simple = tr(Sigma)/|G|^2 (the critical batch size) is estimated; its series goes
  to ``OUT/noise.csv`` and a summary to ``OUT/noise.json``.

At the end the loop saves ``OUT/history.pt`` (``torch.save(history.state_dict(), ...)``) and
``OUT/labels.npy`` (the labels it trained on, one per training row), and runs::

    feedwise flag --labels OUT/labels.npy --history OUT/history.pt --out OUT/flag-history

With ``--cross-fit K`` it also trains K models on K-1 folds each, predicts the held-out fold (so every
row's probabilities are out of sample), saves ``OUT/pred_probs.npy`` and runs confident learning::

    feedwise flag --labels OUT/labels.npy --pred-probs OUT/pred_probs.npy --out OUT/flag-pred-probs

Data: mnist1d arrays from ``get_workload("mnist1d-mlp").load(...)`` (generated locally, 60,000
samples; ``--num-samples`` for fewer), optionally with injected label noise (``--label-noise``: the
flipped rows are saved in ``OUT/flipped.npy``, to check the flags against). Run from the repository
root::

    .venv/bin/python examples/own_loop.py --out runs/own-loop                               # ~1 min
    .venv/bin/python examples/own_loop.py --label-noise 0.2 --cross-fit 2 --out runs/own-loop-noisy
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from feedwise.emphasis import ActiveBiasSampler, PredictionHistory, true_class_probs
from feedwise.monitor import NoiseScaleMonitor
from feedwise.workloads import get_workload


def make_model(num_inputs: int, num_classes: int, hidden: int = 256) -> nn.Module:
    return nn.Sequential(nn.Linear(num_inputs, hidden), nn.ReLU(), nn.Linear(hidden, hidden), nn.ReLU(),
                         nn.Linear(hidden, num_classes))


def batches(sampler: ActiveBiasSampler, batch_size: int):
    """Index batches, epoch after epoch: the sampler's order, cut into batches (an epoch's last
    partial batch is dropped)."""
    while True:
        order = torch.tensor(list(iter(sampler)), dtype=torch.long)
        for i in range(0, len(order) - batch_size + 1, batch_size):
            yield order[i:i + batch_size]


@torch.no_grad()
def error_rate(model: nn.Module, x: torch.Tensor, y: torch.Tensor) -> float:
    model.eval()
    wrong = int((model(x).argmax(1) != y).sum()) if len(y) else 0
    model.train()
    return wrong / max(1, len(y))


def train_loop(x, y, *, steps: int = 4000, batch_size: int = 128, lr: float = 0.1, seed: int = 0,
               method: str = "uniform", history: PredictionHistory | None = None,
               monitor: NoiseScaleMonitor | None = None, probe_every: int = 100, probe_batch: int = 1024,
               probe_small: int = 64, num_classes: int | None = None) -> nn.Module:
    """A plain loop: momentum SGD on ``x, y`` (tensors in memory). Records ``history`` at every step and
    probes ``monitor`` every ``probe_every`` steps, when given."""
    torch.manual_seed(seed)
    k = num_classes or int(y.max()) + 1
    model = make_model(x.shape[1], k)
    opt = torch.optim.SGD(model.parameters(), lr=lr, momentum=0.9)
    g = torch.Generator().manual_seed(seed)
    order = batches(ActiveBiasSampler(history or PredictionHistory(len(y)), method, generator=g), batch_size)
    probe_gen = torch.Generator().manual_seed(seed + 1)
    for step in range(1, steps + 1):
        idx = next(order)
        xb, yb = x[idx], y[idx]
        logits = model(xb)
        if history is not None:
            history.update(idx, true_class_probs(logits, yb))          # the label's probability, per example
        loss = F.cross_entropy(logits, yb)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        if monitor is not None and step % probe_every == 0:             # a probe: extra forward/backward passes
            big = torch.randperm(len(y), generator=probe_gen)[:probe_batch]
            monitor.probe(model, F.cross_entropy, x[big], y[big], probe_small, step=step)
    return model


def cross_fit_probs(x, y, folds: int = 2, seed: int = 0, **train_kwargs) -> np.ndarray:
    """Out-of-sample predicted probabilities: the rows are cut into ``folds`` random folds; a model trained
    on the other folds predicts each fold. Returns N x K (float64)."""
    n, k = len(y), int(y.max()) + 1
    fold_of = np.random.default_rng(seed).permutation(n) % folds
    probs = np.zeros((n, k))
    for f in range(folds):
        held = torch.from_numpy(np.flatnonzero(fold_of == f))
        fit = torch.from_numpy(np.flatnonzero(fold_of != f))
        model = train_loop(x[fit], y[fit], seed=seed + 100 + f, num_classes=k, **train_kwargs)
        model.eval()
        with torch.no_grad():
            probs[held.numpy()] = torch.softmax(model(x[held]), 1).double().numpy()
    return probs


def run(out, *, num_samples: int | None = None, steps: int = 4000, batch_size: int = 128, lr: float = 0.1,
        label_noise: float = 0.0, noise_seed: int = 0, seed: int = 0, method: str = "uniform",
        probe_every: int = 100, probe_batch: int = 1024, probe_small: int = 64, cross_fit: int = 0,
        cross_fit_steps: int | None = None, threads: int = 1, flag: bool = True) -> dict:
    """Train, save the history, labels and noise-scale series under ``out``, then flag (see the module)."""
    from feedwise.cli import main as feedwise

    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    old_threads = torch.get_num_threads()
    torch.set_num_threads(threads)   # these models are small: one thread is fastest on a shared machine
    try:
        data = get_workload("mnist1d-mlp").load(num_samples=num_samples, label_noise=label_noise,
                                                noise_seed=noise_seed)
        x, y = data.x_train, data.y_train                       # y: the labels we train on (noisy if asked)
        history = PredictionHistory(len(y))
        monitor = NoiseScaleMonitor(num_examples=len(y), out=out / "noise.csv")
        t0 = time.perf_counter()
        model = train_loop(x, y, steps=steps, batch_size=batch_size, lr=lr, seed=seed, method=method,
                           history=history, monitor=monitor, probe_every=probe_every, probe_batch=probe_batch,
                           probe_small=probe_small, num_classes=data.num_classes)
        train_s = time.perf_counter() - t0
        noise = monitor.close()
        torch.save(history.state_dict(), out / "history.pt")
        np.save(out / "labels.npy", y.numpy())
        np.save(out / "flipped.npy", np.asarray(data.noisy_indices, dtype=np.int64))
        result = {"num_train": len(y), "steps": steps, "train_s": train_s, "label_noise": label_noise,
                  "val_error": error_rate(model, data.x_val, data.y_val),
                  "test_error": error_rate(model, data.x_test, data.y_test),
                  "b_simple_time_average": noise["b_simple_time_average"],
                  "b_simple_g2_weighted": noise["b_simple_g2_weighted"], "b_simple_recent": noise["b_simple_recent"],
                  "files": {"history": str(out / "history.pt"), "labels": str(out / "labels.npy"),
                            "flipped": str(out / "flipped.npy"), "noise": str(out / "noise.csv")}}
        if cross_fit:
            t0 = time.perf_counter()
            probs = cross_fit_probs(x, y, cross_fit, seed=seed, steps=cross_fit_steps or steps,
                                    batch_size=batch_size, lr=lr)
            result["cross_fit_s"] = time.perf_counter() - t0
            np.save(out / "pred_probs.npy", probs)
            result["files"]["pred_probs"] = str(out / "pred_probs.npy")
    finally:
        torch.set_num_threads(old_threads)
    if flag:
        code = feedwise(["flag", "--labels", str(out / "labels.npy"), "--history", str(out / "history.pt"),
                         "--out", str(out / "flag-history")])
        result["flag_history"] = {"exit": code, "summary": str(out / "flag-history" / "summary.json")}
        if cross_fit:
            code = feedwise(["flag", "--labels", str(out / "labels.npy"), "--pred-probs", str(out / "pred_probs.npy"),
                             "--out", str(out / "flag-pred-probs")])
            result["flag_pred_probs"] = {"exit": code, "summary": str(out / "flag-pred-probs" / "summary.json")}
    (out / "result.json").write_text(json.dumps(result, indent=2) + "\n")
    return result


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--out", required=True, help="folder for history.pt, labels.npy, noise.csv, flag results")
    ap.add_argument("--num-samples", type=int, default=None, help="mnist1d samples to generate (default 60,000)")
    ap.add_argument("--steps", type=int, default=4000)
    ap.add_argument("--batch-size", type=int, default=128)
    ap.add_argument("--lr", type=float, default=0.1)
    ap.add_argument("--label-noise", type=float, default=0.0, help="fraction of training labels flipped")
    ap.add_argument("--noise-seed", type=int, default=0)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--method", default="uniform", help="uniform, or an Active Bias sampling method: spv, stc, se, sd")
    ap.add_argument("--probe-every", type=int, default=100, help="steps between noise-scale probes")
    ap.add_argument("--probe-batch", type=int, default=1024, help="examples in a probe (the big batch)")
    ap.add_argument("--probe-small", type=int, default=64, help="the small batch of the probe")
    ap.add_argument("--cross-fit", type=int, default=0, metavar="K",
                    help="also train K models on K-1 folds for out-of-sample probabilities (flag --pred-probs)")
    ap.add_argument("--cross-fit-steps", type=int, default=None, help="steps of each fold's model (default --steps)")
    ap.add_argument("--threads", type=int, default=1)
    a = ap.parse_args(argv)
    r = run(a.out, num_samples=a.num_samples, steps=a.steps, batch_size=a.batch_size, lr=a.lr,
            label_noise=a.label_noise, noise_seed=a.noise_seed, seed=a.seed, method=a.method,
            probe_every=a.probe_every, probe_batch=a.probe_batch, probe_small=a.probe_small, cross_fit=a.cross_fit,
            cross_fit_steps=a.cross_fit_steps, threads=a.threads)
    print(f"trained {r['steps']} steps on {r['num_train']} examples in {r['train_s']:.1f} s: "
          f"val error {r['val_error']:.4f}, test error {r['test_error']:.4f}")
    print(f"noise scale B_simple: time-average {r['b_simple_time_average']:.0f}, |G|^2-weighted ratio of sums "
          f"{r['b_simple_g2_weighted']:.0f}, {r['b_simple_recent']:.0f} over the last probes ({r['files']['noise']})")
    return 0 if all(r[k]["exit"] == 0 for k in ("flag_history", "flag_pred_probs") if k in r) else 1


if __name__ == "__main__":
    raise SystemExit(main())
