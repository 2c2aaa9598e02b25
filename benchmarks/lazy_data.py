"""Lazily read data: time per training step of feedwise on a map-style Dataset that reads one .npy file per
image, against a plain hand-written ``DataLoader(dataset, batch_size, shuffle=True, num_workers=W)`` loop
over the same Dataset, and against feedwise's in-memory path.

Data: Fashion-MNIST (Debian IDX files), stored once as one uint8 .npy file per image (70,000 files under
``$FEEDWISE_DATA/bench-fashion-npy``, default ~/.cache/feedwise); ``__getitem__`` loads the file and
standardises it (float32 1 x 28 x 28). The files sit in the page cache after the first pass, so this
measures the per-example cost of opening, parsing and collating files, not a disk.

Three loops train the same model (fashion-mnist-mlp: MLP 784-256-256-10, momentum SGD, lr 0.05) at
batch 128 with one torch thread in the main process:

- ``feedwise_lazy``: ``feedwise.data.lazy.from_torch(train, test, in_memory=False, num_workers=W)`` and a
  ``feedwise.engine.Trainer``: the feeder chooses every batch, a DataLoader with W workers fetches it
  (``Trainer.train_steps``, the code ``feedwise train`` runs between evaluations);
- ``plain``: ``DataLoader(Subset(dataset, the same training rows), batch_size=128, shuffle=True,
  num_workers=W)`` and a hand-written step (a new iterator, hence new workers, every epoch, as written);
- ``feedwise_memory``: the same Dataset loaded into memory by ``from_torch(in_memory=True)`` (reference).

Protocol: all three built first, one warm-up chunk each, then ``--rounds`` rounds of ``--chunk`` steps per
loop, order rotated every round; ratios are taken within a round; median, quartiles and range are
reported. Target: feedwise_lazy / plain <= 1.2 (median). Output: benchmarks/results/lazy_data.json.

    .venv/bin/python benchmarks/lazy_data.py [--workers 0,2] [--rounds 20] [--chunk 50]
"""

from __future__ import annotations

import argparse
import gzip
import os
import time
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from torch.utils.data import DataLoader, Dataset, Subset

from _common import RESULTS, machine, stats, write_json
from feedwise.data.lazy import from_torch
from feedwise.engine import TrainConfig, Trainer
from feedwise.workloads import get_workload

FASHION = Path("/usr/share/datasets/fashion-mnist")
TARGET = 1.2


class NpyImages(Dataset):
    """One uint8 .npy file per image; item i = (standardised float32 1 x 28 x 28 tensor, label)."""

    def __init__(self, files: list[str], targets: np.ndarray, mean: float, std: float):
        self.files, self.targets, self.mean, self.std = files, [int(t) for t in targets], mean, std

    def __len__(self):
        return len(self.files)

    def __getitem__(self, i):
        a = np.load(self.files[i])
        x = (torch.from_numpy(a).float().div_(255.0) - self.mean) / self.std
        return x[None], self.targets[i]


def _idx(path: Path, header: int) -> np.ndarray:
    with gzip.open(path, "rb") as f:
        return np.frombuffer(f.read(), dtype=np.uint8, offset=header)


def npy_folder(root: Path) -> tuple[NpyImages, NpyImages]:
    """Write (once) and open the one-file-per-image copy of Fashion-MNIST."""
    xs = {s: _idx(FASHION / f"{p}-images-idx3-ubyte.gz", 16).reshape(-1, 28, 28) for s, p in (("train", "train"), ("test", "t10k"))}
    ys = {s: _idx(FASHION / f"{p}-labels-idx1-ubyte.gz", 8).astype(np.int64) for s, p in (("train", "train"), ("test", "t10k"))}
    out = {}
    for split in ("train", "test"):
        folder = root / split
        done = folder / ".complete"
        files = [str(folder / f"{i:05d}.npy") for i in range(len(ys[split]))]
        if not done.exists():
            folder.mkdir(parents=True, exist_ok=True)
            print(f"writing {len(files)} .npy files under {folder} (once)", flush=True)
            for f, img in zip(files, xs[split]):
                np.save(f, np.ascontiguousarray(img))
            done.write_text("ok\n")
        out[split] = files
    mean, std = float(xs["train"].mean()) / 255.0, float(xs["train"].std()) / 255.0
    return NpyImages(out["train"], ys["train"], mean, std), NpyImages(out["test"], ys["test"], mean, std)


class FeedwiseLoop:
    def __init__(self, data, model_fn, bs, lr, seed):
        cfg = TrainConfig(batch_size=bs, lr=lr, optimizer="momentum", max_steps=10 ** 9, eval_every=10 ** 9, seed=seed)
        self.t = Trainer(data, model_fn, cfg)

    def steps(self, n):
        self.t.train_steps(n)
        if not torch.isfinite(self.t._loss_sum):   # the check Trainer.run makes after every chunk
            raise RuntimeError("diverged")

    def close(self):
        self.t.close()


class PlainLoop:
    """The hand-written baseline: DataLoader(dataset, batch_size, shuffle=True, num_workers=W)."""

    def __init__(self, dataset, model_fn, bs, lr, seed, workers):
        torch.manual_seed(seed)
        self.model = model_fn()
        self.opt = torch.optim.SGD(self.model.parameters(), lr=lr, momentum=0.9)
        self.loader = DataLoader(dataset, batch_size=bs, shuffle=True, num_workers=workers, drop_last=True,
                                 generator=torch.Generator().manual_seed(seed))
        self.it = iter(self.loader)
        self.epochs = 1

    def steps(self, n):
        model, opt = self.model, self.opt
        for _ in range(n):
            try:
                xb, yb = next(self.it)
            except StopIteration:
                self.it = iter(self.loader)
                self.epochs += 1
                xb, yb = next(self.it)
            loss = F.cross_entropy(model(xb), yb)
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()

    def close(self):
        self.it = None


def measure(train_ds, test_ds, workers: int, rounds: int, chunk: int, bs: int = 128, lr: float = 0.05) -> dict:
    t0 = time.perf_counter()
    lazy = from_torch(train_ds, test_ds, val_size=5000, in_memory=False, num_workers=workers, name="fashion-npy")
    mem = from_torch(train_ds, test_ds, val_size=5000, in_memory=True, num_workers=workers, name="fashion-npy")
    load_s = time.perf_counter() - t0
    model_fn = get_workload("fashion-mnist-mlp").model_fn(mem)
    rows = lazy.x_train.positions
    loops = {"feedwise_lazy": FeedwiseLoop(lazy, model_fn, bs, lr, 0),
             "plain": PlainLoop(Subset(train_ds, rows.tolist()), model_fn, bs, lr, 0, workers),
             "feedwise_memory": FeedwiseLoop(mem, model_fn, bs, lr, 0)}
    names = list(loops)
    for n in names:                       # warm-up: starts the workers, fills the caches
        loops[n].steps(chunk)
    per_step = {n: [] for n in names}
    for r in range(rounds):
        order = names[r % 3:] + names[:r % 3]
        for n in order:
            t = time.perf_counter()
            loops[n].steps(chunk)
            per_step[n].append((time.perf_counter() - t) / chunk)
        if r % 5 == 4:
            print(f"  W={workers} round {r + 1}/{rounds}: " + ", ".join(
                f"{n} {1e3 * np.median(per_step[n]):.2f} ms/step" for n in names), flush=True)
    epochs = loops["plain"].epochs
    for lp in loops.values():
        lp.close()
    ratio = lambda a, b: [x / y for x, y in zip(per_step[a], per_step[b])]  # noqa: E731
    return {
        "workers": workers, "batch_size": bs, "rounds": rounds, "chunk_steps": chunk, "num_train": len(rows),
        "prepare_s": load_s, "plain_epochs_started": epochs,
        "ms_per_step": {n: stats([1e3 * v for v in per_step[n]]) for n in names},
        "ratio": {"feedwise_lazy/plain": stats(ratio("feedwise_lazy", "plain")),
                  "feedwise_lazy/feedwise_memory": stats(ratio("feedwise_lazy", "feedwise_memory")),
                  "plain/feedwise_memory": stats(ratio("plain", "feedwise_memory"))},
        "raw_s_per_step": per_step,
    }


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--workers", default="0,2", help="loader workers, comma-separated (each a separate measurement)")
    ap.add_argument("--rounds", type=int, default=20)
    ap.add_argument("--chunk", type=int, default=50)
    ap.add_argument("--out", default=str(RESULTS / "lazy_data.json"))
    a = ap.parse_args()
    torch.set_num_threads(1)
    if not FASHION.is_dir():
        raise SystemExit(f"{FASHION} is missing: apt-get install dataset-fashion-mnist")
    root = Path(os.environ.get("FEEDWISE_DATA", Path.home() / ".cache" / "feedwise")) / "bench-fashion-npy"
    train_ds, test_ds = npy_folder(root)
    load0, t0 = os.getloadavg(), time.perf_counter()
    results = []
    for w in (int(x) for x in a.workers.split(",")):
        r = measure(train_ds, test_ds, w, a.rounds, a.chunk)
        results.append(r)
        q = r["ratio"]["feedwise_lazy/plain"]
        print(f"W={w}: feedwise_lazy/plain median {q['median']:.3f} [q1 {q['q1']:.3f}, q3 {q['q3']:.3f}; "
              f"min {q['min']:.3f}, max {q['max']:.3f}]  lazy/memory "
              f"{r['ratio']['feedwise_lazy/feedwise_memory']['median']:.2f}  "
              f"({', '.join(n + ' ' + format(v['median'], '.2f') for n, v in r['ms_per_step'].items())} ms/step)", flush=True)
    write_json(a.out, {
        "benchmark": "lazy_data", "target": {"feedwise_lazy/plain median": TARGET},
        "data": f"Fashion-MNIST, one uint8 .npy file per image under {root}, standardised in __getitem__",
        "model": "fashion-mnist-mlp (MLP 784-256-256-10), momentum SGD lr 0.05, batch 128, 1 torch thread",
        "method": "interleaved chunks in one process after one warm-up chunk each, order rotated per round; "
                  "ratios per round; median, quartiles, range",
        "loadavg_start": load0, "loadavg_end": os.getloadavg(), "wall_s": time.perf_counter() - t0,
        "machine": machine(), "results": results,
        "passes": {str(r["workers"]): r["ratio"]["feedwise_lazy/plain"]["median"] <= TARGET for r in results},
    })
    print(f"wrote {a.out}")


if __name__ == "__main__":
    main()
