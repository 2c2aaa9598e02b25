"""A short device check, for a machine with an accelerator: the parts of issue 15 that run on CUDA.

    .venv/bin/python benchmarks/gpu_check.py                 # without CUDA: prints "no CUDA: skipped", exits 0
    PYTHONPATH=src python3 benchmarks/gpu_check.py           # on a device machine whose python3 holds torch
    .venv/bin/python benchmarks/gpu_check.py --device cpu    # the same checks on the CPU (a dry run of this script)

It needs torch and numpy only (no mnist1d, no Optuna: the data are generated Gaussian blobs), takes
well under a minute on a GPU, prints one line per check and exits 1 if any check failed. Checks:

1. ``engine``: ``feedwise.engine.train`` end to end with the in-memory data on the device (the
   Trainer moves them there), to the target; time per step; the same run on the CPU for reference
   (validation errors within 0.02 of each other).
2. ``cli``: ``feedwise train --device cuda`` through ``feedwise.cli.main`` on a workload file; the trial
   records the device.
3. ``lazy``: a map-style Dataset read lazily (``from_torch(in_memory=False)``, 2 loader workers) trained on
   the device: the loader pins memory; its per-step losses match the in-memory device run (same batches)
   within 1e-4 relative.
4. ``monitor``: ``NoiseScaleMonitor.probe`` on the device model against the same probe on a CPU copy
   (squared norms within 1e-3 relative).
5. ``ddp``: 2 processes, DDP with ``monitor.attach(ddp)``: NCCL with 2 GPUs; with one GPU both ranks share
   it through gloo (NCCL needs one GPU per rank). The monitored run's parameters equal an unmonitored
   twin's (the hook is DDP's all-reduce), and its B_simple is finite.

``--json PATH`` writes the lines and numbers as JSON (e.g. ``$OUT/gpu_check.json`` on the device machine).
"""

from __future__ import annotations

import argparse
import json
import math
import os
import sys
import tempfile
import time
import traceback
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

os.environ.setdefault("FEEDWISE_QUIET", "1")
ROOT = Path(__file__).resolve().parents[1]
if str(ROOT / "src") not in sys.path:
    sys.path.insert(0, str(ROOT / "src"))

WORKLOAD_FILE = '''
import numpy as np
from feedwise.workloads import Workload


def blobs(num_samples=None):
    n = num_samples or 12000
    rng = np.random.default_rng(0)
    centers = rng.normal(0, 0.5, (10, 40))
    y = rng.integers(0, 10, n)
    x = (centers[y] + rng.normal(0, 1, (n, 40))).astype(np.float32)
    cut = n * 5 // 6
    return x[:cut], y[:cut], x[cut:], y[cut:]


BLOBS = Workload("gpu-blobs", dataset=blobs, model="mlp", target=0.1, max_steps=1500, eval_every=25,
                 batch_size=128, lr=0.05, model_options={"widths": (256, 256)}, val_size=0.1)
'''


class Rows(torch.utils.data.Dataset):
    """A map-style view of arrays: item i = (x[i], y[i]); ``targets`` for the labels."""

    def __init__(self, x, y):
        self.x, self.y, self.targets = x, y, [int(v) for v in y]

    def __len__(self):
        return len(self.y)

    def __getitem__(self, i):
        return self.x[i], int(self.y[i])


def _workload(tmp: Path):
    from feedwise.workloads import get_workload

    path = tmp / "gpu_blobs.py"
    path.write_text(WORKLOAD_FILE)
    return get_workload(f"{path}:BLOBS"), path


def check_engine(dev, tmp):
    from feedwise.engine import train

    w, _ = _workload(tmp)
    data = w.load()
    out = {}
    for d in (dev, "cpu") if dev != "cpu" else (dev,):
        result, trainer = train(data, w.model_fn(data), w.train_config(), device=d)
        assert trainer.data.x_train.device.type == torch.device(d).type, "the data did not move to the device"
        out[d] = {"status": result.status, "steps_to_result": result.steps_to_result,
                  "final_val_error": result.final_val_error, "test_error": result.test_error,
                  "ms_per_step": 1e3 * result.wall_s / max(1, result.steps_run)}
    ok = out[dev]["status"] == "reached"
    if dev != "cpu":
        ok = ok and abs(out[dev]["final_val_error"] - out["cpu"]["final_val_error"]) <= 0.02
    line = "; ".join(f"{d}: {v['status']} at {v['steps_to_result']} steps, test error {v['test_error']:.4f}, "
                     f"{v['ms_per_step']:.2f} ms/step" for d, v in out.items())
    return ok, line, out


def check_cli(dev, tmp):
    from feedwise.cli import main

    _, path = _workload(tmp)
    out = tmp / "cli"
    code = main(["train", "--workload", f"{path}:BLOBS", "--device", dev, "--steps", "300", "--out", str(out)])
    rec = json.loads((out / "trials/0/trial.json").read_text()) if code == 0 else {}
    ok = code == 0 and str(rec.get("device", "")).startswith(torch.device(dev).type)
    return ok, f"exit {code}, trial.json device {rec.get('device')}, status {rec.get('status')}", \
        {"exit": code, "device": rec.get("device"), "status": rec.get("status")}


def check_lazy(dev, tmp):
    from feedwise.data.lazy import LazyInputs, from_torch
    from feedwise.engine import Trainer

    w, _ = _workload(tmp)
    x, y, xt, yt = w.dataset()          # the workload file's arrays, as a map-style Dataset below
    lazy = from_torch(Rows(x, y), Rows(xt, yt), val_size=0.1, in_memory=False, num_workers=2)
    mem = from_torch(Rows(x, y), Rows(xt, yt), val_size=0.1, in_memory=True, num_workers=0)
    cfg = w.train_config(max_steps=200, eval_every=50, target=None)
    runs = {}
    for name, data in (("lazy", lazy), ("memory", mem)):
        t = Trainer(data, w.model_fn(data), cfg, device=dev)
        if name == "lazy":
            assert isinstance(t.data.x_train, LazyInputs)
            pinned = t.data.x_train._loader_kwargs()["pin_memory"]
        t0 = time.perf_counter()
        res = t.run()
        runs[name] = {"losses": [r["train_loss"] for r in res.rows], "val": [r["val_error"] for r in res.rows],
                      "ms_per_step": 1e3 * (time.perf_counter() - t0) / res.steps_run}
    rel = max(abs(a - b) / max(abs(b), 1e-12) for a, b in zip(runs["lazy"]["losses"], runs["memory"]["losses"]))
    ok = rel <= 1e-4 and (pinned or torch.device(dev).type == "cpu")
    return ok, (f"pin_memory {pinned}; per-step losses lazy vs memory max relative difference {rel:.2e}; "
                f"{runs['lazy']['ms_per_step']:.2f} vs {runs['memory']['ms_per_step']:.2f} ms/step"), \
        {"pin_memory": pinned, "max_rel_loss_diff": rel, **{k: v["ms_per_step"] for k, v in runs.items()}}


def check_monitor(dev, tmp):
    from feedwise.monitor import NoiseScaleMonitor

    w, _ = _workload(tmp)
    data = w.load()
    torch.manual_seed(0)
    model = w.model_fn(data)()
    twin = w.model_fn(data)()
    twin.load_state_dict(model.state_dict())
    model.to(dev)
    idx = torch.randperm(data.num_train, generator=torch.Generator().manual_seed(0))[:1024]
    xb, yb = data.x_train[idx], data.y_train[idx]
    a = NoiseScaleMonitor(num_examples=data.num_train).probe(model, F.cross_entropy, xb.to(dev), yb.to(dev), 64)
    b = NoiseScaleMonitor(num_examples=data.num_train).probe(twin, F.cross_entropy, xb, yb, 64)
    rel = max(abs(a[k] - b[k]) / abs(b[k]) for k in ("g2_small", "g2_big"))
    return rel <= 1e-3, f"probe on {dev} vs CPU: squared norms within {rel:.2e} relative; B_simple point " \
                        f"{a['b_simple_point']:.1f} vs {b['b_simple_point']:.1f}", {"max_rel_diff": rel}


def _ddp_rank(rank, port, backend, dev_type, path):
    import torch.distributed as dist
    from torch.nn.parallel import DistributedDataParallel

    from feedwise.monitor import NoiseScaleMonitor

    torch.set_num_threads(1)
    from feedwise.parallel.launch import leave_group

    dist.init_process_group(backend, init_method=f"tcp://127.0.0.1:{port}", rank=rank, world_size=2)
    try:
        if dev_type == "cuda":
            gpu = rank if backend == "nccl" else 0
            torch.cuda.set_device(gpu)
            dev = torch.device("cuda", gpu)
        else:
            dev = torch.device("cpu")
        g = torch.Generator().manual_seed(0)
        x, y = torch.randn(4096, 40, generator=g), torch.randint(0, 10, (4096,), generator=g)
        x, y = x.to(dev), y.to(dev)
        torch.manual_seed(0)
        make = lambda: torch.nn.Sequential(torch.nn.Linear(40, 256), torch.nn.ReLU(), torch.nn.Linear(256, 10))  # noqa: E731
        plain, watched = make().to(dev), make().to(dev)
        watched.load_state_dict(plain.state_dict())
        ddp_p = DistributedDataParallel(plain, device_ids=[dev.index] if dev.type == "cuda" else None)
        ddp_w = DistributedDataParallel(watched, device_ids=[dev.index] if dev.type == "cuda" else None)
        monitor = NoiseScaleMonitor(batch_size=256, num_examples=4096).attach(ddp_w)
        opts = [torch.optim.SGD(m.parameters(), lr=0.05, momentum=0.9) for m in (plain, watched)]
        gen = torch.Generator().manual_seed(1)
        t0 = time.perf_counter()
        for _ in range(50):
            idx = torch.randint(4096, (256,), generator=gen)[rank * 128:(rank + 1) * 128].to(dev)
            for k, (ddp, opt) in enumerate(zip((ddp_p, ddp_w), opts)):
                loss = F.cross_entropy(ddp(x[idx]), y[idx])
                opt.zero_grad(set_to_none=True)
                loss.backward()
                if k == 1:
                    monitor.step()
                opt.step()
        if dev.type == "cuda":
            torch.cuda.synchronize(dev)
        wall = time.perf_counter() - t0
        diff = max(float((p - q).detach().abs().max()) for p, q in zip(plain.parameters(), watched.parameters()))
        if rank == 0:
            s = monitor.summary()
            Path(path).write_text(json.dumps({"param_max_abs_diff": diff, "b_simple": s["b_simple_g2_weighted"],
                                              "measurements": s["measurements"], "wall_s": wall}))
    finally:
        leave_group()   # a barrier first: a rank leaving while the other still talks can abort (gloo)


def check_ddp(dev, tmp):
    import torch.multiprocessing as mp

    from feedwise.parallel.launch import free_port

    dev_type = torch.device(dev).type
    backend = "nccl" if dev_type == "cuda" and torch.cuda.device_count() >= 2 else "gloo"
    path = tmp / "ddp.json"
    mp.start_processes(_ddp_rank, args=(free_port(), backend, dev_type, str(path)), nprocs=2, start_method="spawn")
    r = json.loads(path.read_text())
    ok = r["param_max_abs_diff"] <= 1e-5 and r["measurements"] == 50 and r["b_simple"] is not None \
        and math.isfinite(r["b_simple"])
    where = f"{backend} on {'2 GPUs' if backend == 'nccl' else ('one shared GPU' if dev_type == 'cuda' else 'CPU')}"
    return ok, (f"{where}: monitored vs default-hook parameters max |diff| {r['param_max_abs_diff']:.1e} after 50 "
                f"steps, {r['measurements']} measurements, B_simple {r['b_simple']:.1f}"), {"backend": backend, **r}


CHECKS = {"engine": check_engine, "cli": check_cli, "lazy": check_lazy, "monitor": check_monitor, "ddp": check_ddp}


def main(argv=None) -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--device", default="cuda", help="cuda (default), cuda:N, or cpu for a dry run")
    ap.add_argument("--only", default=",".join(CHECKS), help="comma-separated checks")
    ap.add_argument("--json", default=None, help="write the results as JSON here")
    a = ap.parse_args(argv)
    if a.device.startswith("cuda") and not torch.cuda.is_available():
        print("no CUDA: skipped (run with --device cpu for a dry run of the checks)")
        return 0
    torch.set_num_threads(1)
    info = {"torch": torch.__version__, "device": a.device,
            "gpus": torch.cuda.device_count() if torch.cuda.is_available() else 0,
            "name": torch.cuda.get_device_name(0) if torch.cuda.is_available() else None}
    print(f"torch {info['torch']}, device {a.device}, {info['gpus']} GPU(s) {info['name'] or ''}", flush=True)
    results, failed = {}, []
    with tempfile.TemporaryDirectory() as d:
        for name in a.only.split(","):
            t0 = time.perf_counter()
            try:
                ok, line, data = CHECKS[name](a.device, Path(d))
            except Exception as e:   # a check that breaks is a failed check, with its traceback
                ok, line, data = False, f"{type(e).__name__}: {e}", {"traceback": traceback.format_exc()}
            dt = time.perf_counter() - t0
            print(f"{'ok  ' if ok else 'FAIL'} {name:8s} {line}  ({dt:.1f} s)", flush=True)
            results[name] = {"ok": ok, "line": line, "seconds": dt, **data}
            if not ok:
                failed.append(name)
    if a.json:
        Path(a.json).parent.mkdir(parents=True, exist_ok=True)
        Path(a.json).write_text(json.dumps({"info": info, "results": results}, indent=2, default=str) + "\n")
    print("all checks passed" if not failed else f"failed: {', '.join(failed)}")
    return 1 if failed else 0


if __name__ == "__main__":
    raise SystemExit(main())
