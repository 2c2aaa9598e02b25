"""Overhead of Active Bias (SPV, WPV) against uniform shuffling, per training step, same process.

mnist1d-mlp (45,000 training examples, MLP 40-256-256-10), batch 128, momentum SGD, one torch
thread. Four engine Trainers (uniform, uniform+history, spv, wpv) with the same seed are first
trained 3.5 epochs, past the burn-in (2 epochs = 704 steps), so that the emphasis path runs (SPV:
per-epoch sampling probabilities from the history; WPV: per-batch loss weights), and all but
uniform record observations.
Then chunks of CHUNK steps are timed round-robin (the order rotates each round) for ROUNDS
rounds; the ratio of each round's time to uniform's is reported as median and quartiles.

Memory: bytes held by each feeder's tensors (history, orders, weights) in the middle of the 4th
epoch and again in the middle of the last epoch after the timing (20+ epochs; the same phase of an
epoch, since a feeder holds a little more between two epochs) — the history is four float64 per
example and does not grow with epochs.

    .venv/bin/python benchmarks/emphasis_overhead.py   ->  benchmarks/results/emphasis_overhead.json
"""

from __future__ import annotations

import json
import os
import sys
import time
from pathlib import Path

os.environ.setdefault("FEEDWISE_QUIET", "1")
ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "src"))

import numpy as np  # noqa: E402
import torch  # noqa: E402

from feedwise.engine import TrainConfig, Trainer  # noqa: E402
from feedwise.feeds.emphasis import EmphasisFeeder  # noqa: E402
from feedwise.feeds import make_feeder  # noqa: E402
from feedwise.workloads import get_workload  # noqa: E402

CHUNK, ROUNDS, THREADS = 100, int(os.environ.get("ROUNDS", 30)), int(os.environ.get("THREADS", 1))
DEVICE = os.environ.get("DEVICE", "cpu")
MACHINE = os.environ.get("MACHINE", "this repository's shared 2-core machine")


def feeder_bytes(feeder) -> int:
    total = 0
    for v in vars(feeder).values():
        if isinstance(v, torch.Tensor):
            total += v.element_size() * v.numel()
    h = getattr(feeder, "history", None)
    if h is not None:
        total += h.nbytes()
    return total


def main() -> None:
    torch.set_num_threads(THREADS)
    w = get_workload("mnist1d-mlp")
    data = w.load()
    cfg = TrainConfig(batch_size=128, lr=w.lr, max_steps=10**6, eval_every=10**6, target=None, seed=0)
    if os.environ.get("FLUSH_DENORMAL"):
        torch.set_flush_denormal(True)
    # "uniform+history": the uniform feeder's exact draws, plus recording the history (the engine's
    # per-example losses and PredictionHistory.update): the bookkeeping cost alone, same model
    names = ["uniform", "uniform+history", "spv", "wpv"]
    feeders = {"uniform": make_feeder("uniform"), "uniform+history": EmphasisFeeder("uniform"),
               "spv": make_feeder("spv"), "wpv": make_feeder("wpv")}
    trainers = {n: Trainer(data, w.model_fn(data), cfg, feeder=feeders[n], device=DEVICE) for n in names}
    steps_per_epoch = data.num_train / cfg.batch_size
    warm = int(3.5 * steps_per_epoch)
    for t in trainers.values():
        t.train_steps(warm)
        t._sync()
    mem_early = {n: feeder_bytes(t.feeder) for n, t in trainers.items()}
    times = {n: [] for n in names}
    for r in range(ROUNDS):
        order = names[r % len(names):] + names[:r % len(names)]
        for n in order:
            t0 = time.perf_counter()
            trainers[n].train_steps(CHUNK)
            trainers[n]._sync()
            times[n].append(time.perf_counter() - t0)
    # train on to the middle of the next epoch and measure the memory again
    late_epochs = int(trainers["uniform"].step / steps_per_epoch) + 1.5
    for t in trainers.values():
        t.train_steps(int(late_epochs * steps_per_epoch) - t.step)
    mem_late = {n: feeder_bytes(t.feeder) for n, t in trainers.items()}
    base = np.array(times["uniform"])
    res = {"device": DEVICE, "machine": MACHINE, "workload": "mnist1d-mlp", "num_train": data.num_train, "batch_size": 128, "threads": THREADS,
           "chunk_steps": CHUNK, "rounds": ROUNDS, "warmup_steps": warm,
           "uniform_ms_per_step_median": float(np.median(base) / CHUNK * 1e3), "methods": {},
           "target_ratio": 1.10}
    res["flush_denormal"] = bool(os.environ.get("FLUSH_DENORMAL"))
    for n in ("uniform+history", "spv", "wpv"):
        ratio = np.array(times[n]) / base
        q1, med, q3 = np.percentile(ratio, [25, 50, 75])
        res["methods"][n] = {
            "ms_per_step_median": float(np.median(times[n]) / CHUNK * 1e3),
            "ratio_median": float(med), "ratio_q1": float(q1), "ratio_q3": float(q3),
            "ratio_min": float(ratio.min()), "ratio_max": float(ratio.max()),
            "meets_target": bool(med <= 1.10),
            "feeder_bytes_early": mem_early[n], "feeder_bytes_late": mem_late[n],
            "history_bytes_per_example": trainers[n].feeder.history.nbytes() / data.num_train,
        }
    res["memory_at_epochs"] = {"early": 3.5, "late": late_epochs}
    res["uniform_feeder_bytes"] = {"early": mem_early["uniform"], "late": mem_late["uniform"]}
    res["epochs_at_end"] = {n: round(t.examples / data.num_train, 2) for n, t in trainers.items()}
    suffix = os.environ.get("SUFFIX", "")
    out = Path(os.environ.get("OUT_DIR", ROOT / "benchmarks" / "results")) / f"emphasis_overhead{suffix}.json"
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(res, indent=1) + "\n")
    print(json.dumps(res, indent=1))


if __name__ == "__main__":
    main()
