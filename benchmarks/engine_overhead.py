"""Engine overhead: time per training step of feedwise's engine vs a hand-written PyTorch loop.

Three loops train the same model (mnist1d-mlp: MLP 40-256-256-10, momentum SGD) at the same
batch size on the same in-memory data:

- ``hand``: a hand-written loop slicing the tensors by a random permutation (the baseline);
- ``engine``: ``feedwise.engine.Trainer`` with the uniform feeder, exactly the code that
  ``feedwise train`` runs between evaluations (``train_steps`` in chunks of 100 steps, each
  followed by the divergence check), evaluation disabled;
- ``dataloader``: the usual ``DataLoader(TensorDataset, shuffle=True)`` loop.

They run interleaved in one process (alternating chunks after a warm-up, order rotated
each round) because this machine is shared and noisy; the ratio to ``hand`` is computed per
round and reported as median and quartiles. Output: benchmarks/results/engine_overhead.json.

    .venv/bin/python benchmarks/engine_overhead.py [--rounds 15] [--chunk 100]
"""

from __future__ import annotations

import argparse
import os
import statistics
import time
from pathlib import Path

import torch
import torch.nn.functional as F
from torch.utils.data import DataLoader, TensorDataset

from feedwise.engine import TrainConfig, Trainer
from feedwise.results import machine_info, write_json
from feedwise.workloads import get_workload

OUT = Path(__file__).parent / "results" / "engine_overhead.json"


class HandLoop:
    def __init__(self, data, model_fn, bs, lr, seed):
        torch.manual_seed(seed)
        self.model = model_fn().to(data.x_train.device)
        self.opt = torch.optim.SGD(self.model.parameters(), lr=lr, momentum=0.9)
        self.x, self.y, self.bs = data.x_train, data.y_train, bs
        self.g = torch.Generator().manual_seed(seed)
        self.dev = data.x_train.device
        self.perm, self.pos = torch.randperm(len(self.y), generator=self.g).to(self.dev), 0

    def steps(self, n):
        model, opt, x, y, bs = self.model, self.opt, self.x, self.y, self.bs
        for _ in range(n):
            if self.pos + bs > len(y):
                self.perm, self.pos = torch.randperm(len(y), generator=self.g).to(self.dev), 0
            idx = self.perm[self.pos:self.pos + bs]
            self.pos += bs
            out = model(x[idx])
            loss = F.cross_entropy(out, y[idx])
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()


class EngineLoop:
    def __init__(self, data, model_fn, bs, lr, seed):
        cfg = TrainConfig(batch_size=bs, lr=lr, optimizer="momentum", max_steps=10**9, eval_every=10**9, seed=seed)
        self.t = Trainer(data, model_fn, cfg, device=data.x_train.device)

    def steps(self, n):
        self.t.train_steps(n)
        if not torch.isfinite(self.t._loss_sum):  # the check run() makes after every chunk
            raise RuntimeError("diverged")


class DataLoaderLoop:
    def __init__(self, data, model_fn, bs, lr, seed):
        torch.manual_seed(seed)
        self.dev = data.x_train.device
        self.model = model_fn().to(self.dev)
        self.opt = torch.optim.SGD(self.model.parameters(), lr=lr, momentum=0.9)
        # the usual pattern: CPU tensors in a TensorDataset, batches moved to the device
        self.loader = DataLoader(TensorDataset(data.x_train.cpu(), data.y_train.cpu()), batch_size=bs, shuffle=True,
                                 drop_last=True, generator=torch.Generator().manual_seed(seed))
        self.it = iter(self.loader)

    def steps(self, n):
        model, opt = self.model, self.opt
        for _ in range(n):
            try:
                xb, yb = next(self.it)
            except StopIteration:
                self.it = iter(self.loader)
                xb, yb = next(self.it)
            xb, yb = xb.to(self.dev, non_blocking=True), yb.to(self.dev, non_blocking=True)
            loss = F.cross_entropy(model(xb), yb)
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()


def _sync(dev):
    if dev.type == "cuda":
        torch.cuda.synchronize(dev)


def measure(data, model_fn, bs, rounds, chunk, warmup=2):
    dev = data.x_train.device
    loops = {"hand": HandLoop(data, model_fn, bs, 0.05, 0), "engine": EngineLoop(data, model_fn, bs, 0.05, 0),
             "dataloader": DataLoaderLoop(data, model_fn, bs, 0.05, 0)}
    names = list(loops)
    for _ in range(warmup):
        for n in names:
            loops[n].steps(chunk)
    per_step = {n: [] for n in names}
    for r in range(rounds):
        order = names[r % 3:] + names[:r % 3]
        for n in order:
            _sync(dev)
            t0 = time.perf_counter()
            loops[n].steps(chunk)
            _sync(dev)
            per_step[n].append((time.perf_counter() - t0) / chunk)
    ratios = {n: [a / b for a, b in zip(per_step[n], per_step["hand"])] for n in names if n != "hand"}

    def stats(v):
        q = statistics.quantiles(v, n=4)
        return {"median": statistics.median(v), "q1": q[0], "q3": q[2], "min": min(v), "max": max(v)}

    return {
        "batch_size": bs, "rounds": rounds, "chunk_steps": chunk,
        "seconds_per_step": {n: stats(per_step[n]) for n in names},
        "ratio_to_hand": {n: stats(v) for n, v in ratios.items()},
    }


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--batch-sizes", default="32,128,1024")
    ap.add_argument("--rounds", type=int, default=15)
    ap.add_argument("--chunk", type=int, default=100)
    ap.add_argument("--threads", type=int, default=1, help="torch threads (feedwise's default is 1)")
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--out", default=str(OUT))
    a = ap.parse_args()
    torch.set_num_threads(a.threads)
    w = get_workload("mnist1d-mlp")
    data = w.load().to(a.device)
    model_fn = w.model_fn(data)
    load0 = os.getloadavg()
    results = []
    for bs in [int(b) for b in a.batch_sizes.split(",")]:
        chunk = max(10, a.chunk * 128 // max(bs, 128))
        r = measure(data, model_fn, bs, a.rounds, chunk)
        results.append(r)
        print(f"bs={bs:5d}  engine/hand median {r['ratio_to_hand']['engine']['median']:.3f} "
              f"[{r['ratio_to_hand']['engine']['q1']:.3f}, {r['ratio_to_hand']['engine']['q3']:.3f}]  "
              f"dataloader/hand {r['ratio_to_hand']['dataloader']['median']:.3f}  "
              f"hand {r['seconds_per_step']['hand']['median'] * 1e3:.3f} ms/step")
    write_json(a.out, {
        "benchmark": "engine_overhead", "workload": w.name, "target_ratio": 1.05,
        "method": "interleaved chunks in one process, order rotated per round; ratio per round, median and quartiles",
        "threads": a.threads, "device": a.device, "loadavg_start": load0, "loadavg_end": os.getloadavg(), "machine": machine_info(),
        "results": results,
        "passes": all(r["ratio_to_hand"]["engine"]["median"] <= 1.05 for r in results),
    })
    print(f"wrote {a.out}")


if __name__ == "__main__":
    main()
