"""The noise-scale monitor (``feedwise.monitor.NoiseScaleMonitor``): accuracy and cost.

(a) Accuracy at fixed parameters. mnist1d-mlp (MLP 40-256-256-10, 45,000 training examples) is trained
    ``--train-steps`` steps (batch 128, momentum 0.9, lr 0.1: partly trained), then frozen. Exact:
    every example's gradient with ``torch.func.vmap(grad(...))`` over the whole training set (in chunks,
    float64 sums), B_simple = tr(Sigma) / |G|^2 with Sigma the per-example gradient covariance over the N
    examples. Monitor: ``probe`` mode, ``--draws`` probe batches of ``--b-big`` examples drawn without
    replacement, cut into ``--b-small`` chunks; its ratio of means after 50, 100, ... draws, with and
    without the finite-dataset correction. Goal: within 5% of the exact value.
(b) Cost under DDP. Two processes (gloo, one torch thread each, ``torch.multiprocessing`` spawn on a
    ``free_port``) train two copies of the model, each wrapped in its own ``DistributedDataParallel``:
    one with DDP's default communication hook, others with ``monitor.attach(ddp)`` (+ ``monitor.step()``
    after every backward) measuring every step (``every=1``, the communication hook) or one step in 10 (``every=10``: no
    hook; a measured step skips DDP's sync and the monitor all-reduces it). Global batch 128 (64 per rank), identical batches. Protocol: 2 warm-up
    chunks each, then ``--rounds`` rounds of ``--chunk`` steps per model, order alternated every round;
    a chunk's time is the slower rank's; ratio monitored / default per round. Goal: median <= 1.05.
    Also the CPU time of both processes (all their threads) per step, less sensitive to waiting for
    the other rank on a loaded machine. (Three models: the order is rotated every round.)

Output: benchmarks/results/noise_monitor.json.

    .venv/bin/python benchmarks/noise_monitor.py [--draws 2000] [--rounds 60] [--skip-ddp | --skip-accuracy --merge]
"""

from __future__ import annotations

import argparse
import json
import os
import tempfile
import time
from pathlib import Path

import torch
import torch.nn.functional as F

os.environ.setdefault("FEEDWISE_QUIET", "1")

from _common import RESULTS, machine, stats, write_json  # noqa: E402
from feedwise.engine import TrainConfig, train  # noqa: E402
from feedwise.monitor import NoiseScaleMonitor  # noqa: E402
from feedwise.workloads import get_workload  # noqa: E402


# --------------------------------------------------------------------------- (a) accuracy
def exact_noise_scale(model, x, y, chunk: int = 500) -> dict:
    """|G|^2, tr(Sigma) and their ratio from every per-example gradient (float64 sums)."""
    from torch.func import functional_call, grad, vmap

    params = {k: v.detach() for k, v in model.named_parameters()}

    def loss1(p, xi, yi):
        return F.cross_entropy(functional_call(model, p, (xi[None],)), yi[None])

    per_ex = vmap(grad(loss1), in_dims=(None, 0, 0))
    total, sq, n = None, 0.0, len(y)
    for i in range(0, n, chunk):
        g = per_ex(params, x[i:i + chunk], y[i:i + chunk])
        flat = torch.cat([v.reshape(v.shape[0], -1) for v in g.values()], 1).double()
        s = flat.sum(0)
        total = s if total is None else total + s
        sq += float((flat * flat).sum())
    G = total / n
    g2 = float(G @ G)
    trace = sq / n - g2                       # mean_i |g_i - G|^2
    return {"g2": g2, "trace": trace, "b_simple": trace / g2, "num_examples": n}


def accuracy_part(a) -> dict:
    w = get_workload("mnist1d-mlp")
    data = w.load()
    torch.set_num_threads(1)
    cfg = w.train_config(max_steps=a.train_steps, eval_every=a.train_steps, target=None)
    result, trainer = train(data, w.model_fn(data), cfg)
    model = trainer.model
    model.eval()   # no dropout/batch-norm here; eval mode only to make the freeze explicit
    x, y = data.x_train, data.y_train
    n = len(y)
    t0 = time.perf_counter()
    exact = exact_noise_scale(model, x, y)
    exact_s = time.perf_counter() - t0
    print(f"exact B_simple {exact['b_simple']:.2f} (|G|^2 {exact['g2']:.4g}, tr {exact['trace']:.4g}) after "
          f"{a.train_steps} steps (val error {result.final_val_error:.3f}); {exact_s:.0f} s", flush=True)
    with_n, without = NoiseScaleMonitor(num_examples=n, window=10 ** 9), NoiseScaleMonitor(window=10 ** 9)
    gen = torch.Generator().manual_seed(0)
    series, t0 = [], time.perf_counter()
    marks = sorted({m for m in (50, 100, 200, 500, 1000, 2000, 5000) if m <= a.draws} | {a.draws})
    for d in range(1, a.draws + 1):
        idx = torch.randperm(n, generator=gen)[:a.b_big]
        row = with_n.probe(model, F.cross_entropy, x[idx], y[idx], a.b_small)
        without.record(row["g2_small"], row["g2_big"], a.b_small, row["b_big"])
        if d in marks:
            b, b0 = with_n.summary()["b_simple_g2_weighted"], without.summary()["b_simple_g2_weighted"]
            series.append({"draws": d, "b_simple": b, "relative_error": b / exact["b_simple"] - 1,
                           "b_simple_no_correction": b0, "relative_error_no_correction": b0 / exact["b_simple"] - 1})
            print(f"  {d:5d} draws: monitor {b:.2f} ({100 * (b / exact['b_simple'] - 1):+.2f}%), without the "
                  f"finite-N correction {b0:.2f} ({100 * (b0 / exact['b_simple'] - 1):+.2f}%)", flush=True)
    probe_s = time.perf_counter() - t0
    # spread of the estimate: the ratio of means over disjoint blocks of draws (a block = 1/10 of the draws)
    rows = with_n.rows
    k = max(1, len(rows) // 10)
    blocks = []
    for i in range(0, len(rows) - k + 1, k):
        g2 = sum(r["g2"] for r in rows[i:i + k]) / k
        tr = sum(r["trace"] for r in rows[i:i + k]) / k
        blocks.append(tr / g2 / exact["b_simple"] - 1)
    final = series[-1]
    return {"workload": w.name, "train_steps": a.train_steps, "val_error": result.final_val_error,
            "num_examples": n, "exact": exact, "exact_s": exact_s, "b_small": a.b_small, "b_big": a.b_big,
            "draws": a.draws, "probe_s": probe_s, "series": series,
            "relative_error": final["relative_error"],
            "block_relative_errors": {"draws_per_block": k, **stats(blocks)},
            "passes": abs(final["relative_error"]) <= 0.05}


# --------------------------------------------------------------------------- (b) DDP cost
def _ddp_rank(rank, port, cfg, path):
    import torch.distributed as dist
    from torch.nn.parallel import DistributedDataParallel

    torch.set_num_threads(1)
    from feedwise.parallel.launch import leave_group

    dist.init_process_group("gloo", init_method=f"tcp://127.0.0.1:{port}", rank=rank, world_size=2)
    try:
        w = get_workload("mnist1d-mlp")
        data = w.load()
        x, y, n = data.x_train, data.y_train, len(data.y_train)
        make = w.model_fn(data)
        torch.manual_seed(0)
        base = make()
        names = ["default"] + [f"every{e}" for e in cfg["every"]]
        models = {k: make() for k in names}
        for m in models.values():
            m.load_state_dict(base.state_dict())
        ddps = {k: DistributedDataParallel(m) for k, m in models.items()}
        opts = {k: torch.optim.SGD(m.parameters(), lr=0.1, momentum=0.9) for k, m in models.items()}
        monitors = {f"every{e}": NoiseScaleMonitor(batch_size=cfg["batch"], num_examples=n, every=e).attach(
            ddps[f"every{e}"]) for e in cfg["every"]}
        gens = {k: torch.Generator().manual_seed(1) for k in models}   # identical batches for all
        half = cfg["batch"] // 2

        def steps(k, count):
            ddp, opt, g, monitor = ddps[k], opts[k], gens[k], monitors.get(k)
            for _ in range(count):
                idx = torch.randint(n, (cfg["batch"],), generator=g)
                mine = idx[rank * half:(rank + 1) * half]
                loss = F.cross_entropy(ddp(x[mine]), y[mine])
                opt.zero_grad(set_to_none=True)
                loss.backward()
                if monitor is not None:
                    monitor.step()
                opt.step()

        for _ in range(2):
            for k in models:
                steps(k, cfg["chunk"])
        times = {k: [] for k in models}
        cpu = {k: [] for k in models}
        for r in range(cfg["rounds"]):
            for k in names[r % len(names):] + names[:r % len(names)]:
                dist.barrier()
                t0, c0 = time.perf_counter(), time.process_time()
                steps(k, cfg["chunk"])
                dt = torch.tensor([time.perf_counter() - t0], dtype=torch.float64)
                dc = torch.tensor([time.process_time() - c0], dtype=torch.float64)
                dist.all_reduce(dt, op=dist.ReduceOp.MAX)      # the slower rank's time
                dist.all_reduce(dc)                            # CPU seconds of both ranks (all threads)
                times[k].append(float(dt) / cfg["chunk"])
                cpu[k].append(float(dc) / cfg["chunk"])
        if rank == 0:
            Path(path).write_text(json.dumps({"times": times, "cpu": cpu, "monitors": {
                k: {"measurements": m.summary()["measurements"], "b_simple": m.summary()["b_simple_g2_weighted"]}
                for k, m in monitors.items()}}))
    finally:
        leave_group()   # a barrier first: a rank leaving while the other still talks can abort (gloo)


def ddp_part(a) -> dict:
    import torch.multiprocessing as mp

    from feedwise.parallel.launch import free_port

    get_workload("mnist1d-mlp").load()   # generate/cache the data once, before the ranks read it
    cfg = {"batch": 128, "chunk": a.chunk, "rounds": a.rounds, "every": [int(e) for e in a.every.split(",")]}
    with tempfile.TemporaryDirectory() as d:
        path = Path(d) / "ddp.json"
        t0 = time.perf_counter()
        mp.start_processes(_ddp_rank, args=(free_port(), cfg, str(path)), nprocs=2, start_method="spawn")
        wall = time.perf_counter() - t0
        got = json.loads(path.read_text())
    t, c = got["times"], got["cpu"]
    out = {"world_size": 2, "backend": "gloo", "threads_per_rank": 1, "global_batch": 128, **cfg, "wall_s": wall,
           "ms_per_step": {k: stats([1e3 * v for v in vs]) for k, vs in t.items()},
           "cpu_ms_per_step_both_ranks": {k: stats([1e3 * v for v in vs]) for k, vs in c.items()},
           "monitors": got["monitors"], "raw_s_per_step": t, "raw_cpu_s_per_step": c}
    for e in cfg["every"]:
        k = f"every{e}"
        r = stats([m / d for m, d in zip(t[k], t["default"])])
        rc = stats([m / d for m, d in zip(c[k], c["default"])])
        out[f"ratio_{k}_to_default"], out[f"cpu_ratio_{k}_to_default"] = r, rc
        out[f"passes_{k}"] = r["median"] <= 1.05
        print(f"DDP 2x gloo, measuring every {e} step(s): monitored/default median {r['median']:.3f} [q1 {r['q1']:.3f}, "
              f"q3 {r['q3']:.3f}; min {r['min']:.3f}, max {r['max']:.3f}]; {1e3 * stats(t[k])['median']:.2f} vs "
              f"{1e3 * stats(t['default'])['median']:.2f} ms/step; CPU time (both ranks) ratio median "
              f"{rc['median']:.3f} [q1 {rc['q1']:.3f}, q3 {rc['q3']:.3f}]", flush=True)
    return out


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--train-steps", type=int, default=500)
    ap.add_argument("--draws", type=int, default=2000)
    ap.add_argument("--b-small", type=int, default=64)
    ap.add_argument("--b-big", type=int, default=1024)
    ap.add_argument("--rounds", type=int, default=60)
    ap.add_argument("--chunk", type=int, default=50)
    ap.add_argument("--every", default="1,10", help="monitors measuring one step in k, each its own model (DDP part)")
    ap.add_argument("--skip-accuracy", action="store_true")
    ap.add_argument("--skip-ddp", action="store_true")
    ap.add_argument("--out", default=str(RESULTS / "noise_monitor.json"))
    ap.add_argument("--merge", action="store_true",
                    help="keep the parts of --out that this run skips (e.g. --skip-accuracy: the saved accuracy part)")
    a = ap.parse_args()
    load0, t0 = os.getloadavg(), time.perf_counter()
    out = {"benchmark": "noise_monitor", "goals": {"accuracy": "|monitor / exact - 1| <= 0.05",
                                                   "ddp": "monitored / default time per step (median) <= 1.05"},
           "runs_in_this_file": "one run of each part; earlier runs: noise_monitor_before.json (first hook), "
                                "noise_monitor_hook2_run1.json and noise_monitor_hook2_run2.json (second hook, no every=), "
                                "noise_monitor_every_by_hook.json (every=10 through the hook, before the sync-skipping mode)",
           "protocol": __doc__.split("\n\n")[1:3]}
    if not a.skip_accuracy:
        out["accuracy"] = accuracy_part(a)
    if not a.skip_ddp:
        out["ddp"] = ddp_part(a)
    out.update(loadavg_start=load0, loadavg_end=os.getloadavg(), wall_s=time.perf_counter() - t0, machine=machine())
    if a.merge and Path(a.out).exists():
        old = json.loads(Path(a.out).read_text())
        for part in ("accuracy", "ddp"):
            if part not in out and part in old:
                out[part] = {**old[part], "from_earlier_run": {k: old.get(k) for k in ("loadavg_start", "loadavg_end")}}
    write_json(a.out, out)
    print(f"wrote {a.out}")


if __name__ == "__main__":
    main()
