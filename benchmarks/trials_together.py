"""Throughput of trials trained together vs one at a time (trials x steps per second).

    .venv/bin/python benchmarks/trials_together.py                 # CPU, 1 torch thread
    .venv/bin/python benchmarks/trials_together.py --device cuda   # when a GPU is lent

K = 8 mnist1d-mlp trials (each its own seed, learning rate and momentum) at batch sizes 32, 128
and 1024: one at a time (8 trainers, each ``train_steps(chunk)`` in turn, the engine's hot loop)
against together (one :class:`feedwise.parallel.together.TrialsTogether` step of all 8). Only
training steps are timed (no evaluation). The two are interleaved in one process, chunk after
chunk, after a warm-up (the machine is shared and noisy); the ratio of each pair is reported as
median and spread. Result: benchmarks/results/trials_together[_<device>].json.
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from pathlib import Path

os.environ.setdefault("FEEDWISE_QUIET", "1")
ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "src"))
sys.path.insert(0, str(ROOT / "benchmarks"))

import torch
from _common import RESULTS, machine, stats, write_json

from feedwise.engine import TrainConfig, Trainer
from feedwise.parallel.together import Member, TrialsTogether
from feedwise.workloads import get_workload


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--k", type=int, default=8)
    ap.add_argument("--batch-sizes", default="32,128,1024")
    ap.add_argument("--rounds", type=int, default=7)
    ap.add_argument("--seconds", type=float, default=1.5, help="target seconds of one timed chunk (one side)")
    a = ap.parse_args()
    torch.set_num_threads(a.threads)
    dev = torch.device(a.device)
    w = get_workload("mnist1d-mlp")
    data = w.load().to(dev)
    mf = w.model_fn(data)
    rows = []
    for bs in [int(b) for b in a.batch_sizes.split(",")]:
        def cfgs(bs=bs):
            return [TrainConfig(batch_size=bs, optimizer="momentum", lr=0.01 * (1 + k), momentum=0.9 - 0.05 * k,
                                schedule="linear", end_factor=0.1, max_steps=10**7, eval_every=10**6, seed=k,
                                evaluate_test=False) for k in range(a.k)]
        alone = [Trainer(data, mf, c, device=dev) for c in cfgs()]
        group = TrialsTogether([Member(Trainer(data, mf, c, device=dev)) for c in cfgs()])
        group._restack(list(range(a.k)))

        def sync():
            if dev.type == "cuda":
                torch.cuda.synchronize()

        def run_alone(n, alone=alone):
            for tr in alone:
                tr.train_steps(n)
            sync()

        def run_together(n, group=group):
            group.train_steps(n)
            sync()

        run_alone(3)   # warm-up, and the chunk size: about --seconds of one-at-a-time training
        run_together(3)
        t = time.perf_counter()
        run_alone(5)
        per = (time.perf_counter() - t) / 5
        run_together(5)   # both sides take the same steps
        n = max(5, int(a.seconds / max(per, 1e-6)))
        ratios, tps_alone, tps_together = [], [], []
        for _ in range(a.rounds):
            t = time.perf_counter()
            run_alone(n)
            ta = time.perf_counter() - t
            t = time.perf_counter()
            run_together(n)
            tt = time.perf_counter() - t
            tps_alone.append(a.k * n / ta)
            tps_together.append(a.k * n / tt)
            ratios.append(ta / tt)
        # the same seeds, data orders and steps on both sides: the parameters agree bit for bit when the
        # batched step computes exactly what each trial alone does (observed on this CPU, not promised)
        same = all(torch.equal(p, q) for tr, m in zip(alone, group.members)
                   for p, q in zip(tr.model.parameters(), m.trainer.model.parameters()))
        gap = max(float((p - q).abs().max()) for tr, m in zip(alone, group.members)
                  for p, q in zip(tr.model.parameters(), m.trainer.model.parameters()))
        row = {"batch_size": bs, "k": a.k, "steps_per_chunk": n, "steps_per_trial": alone[0].step,
               "parameters_bit_identical": same, "parameters_max_abs_difference": gap,
               "trial_steps_per_s_alone": stats(tps_alone),
               "trial_steps_per_s_together": stats(tps_together), "speedup_together": stats(ratios)}
        rows.append(row)
        print(f"batch {bs:5d}: one at a time {row['trial_steps_per_s_alone']['median']:8.1f} trial-steps/s, "
              f"together {row['trial_steps_per_s_together']['median']:8.1f}, speedup "
              f"{row['speedup_together']['median']:.2f}x [{row['speedup_together']['min']:.2f}, "
              f"{row['speedup_together']['max']:.2f}], parameters identical after {alone[0].step} steps: {same}",
              flush=True)
    name = "trials_together" + ("" if dev.type == "cpu" else f"_{dev.type}")
    out = write_json(RESULTS / f"{name}.json", {
        "benchmark": name, "command": "python benchmarks/trials_together.py " + " ".join(sys.argv[1:]),
        "workload": "mnist1d-mlp (MLP 40-256-256-10, momentum, 8 trials with different lr and momentum)",
        "method": "interleaved chunks of training steps (no evaluation) after a warm-up; speedup = time one at "
                  "a time / time together for the same trial-steps, per round; median and spread over rounds",
        "device": str(dev), "machine": machine(), "rows": rows})
    print(out)
    return 0


if __name__ == "__main__":
    sys.exit(main())
