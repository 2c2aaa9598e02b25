"""`feedwise parallel`: one workload trained by synchronous DDP, local SGD and Hogwild at
several world sizes; steps-to-result and time-to-result of each, and the α–β / Amdahl
projection of synchronous DDP to larger world sizes.

Trials are ``<mode>[-h<H>]-w<N>-s<seed>``; the grid (modes, world sizes, seeds, H) is not part of
the study's definition, so a later command on the same ``--out`` can add to it. Finished trials
are never run again. Under torchrun every rank calls :func:`scale_out_study`; rank 0 owns the
files.
"""

from __future__ import annotations

import os
import statistics
from dataclasses import asdict, dataclass, field, replace

import torch
import torch.distributed as dist

from feedwise.engine import TrainConfig
from feedwise.errors import FeedwiseError
from feedwise.feeds import make_feeder
from feedwise.parallel import MODES
from feedwise.parallel.launch import torchrun_env
from feedwise.parallel.perfmodel import AlphaBeta, ComputeModel, project
from feedwise.parallel.run import check_spec, run_as_torchrun_rank, run_parallel
from feedwise.parallel.worker import WorkerSpec
from feedwise.progress import say
from feedwise.results import StudyDir
from feedwise.studies.common import pick_device
from feedwise.studies.train.run import DataOptions
from feedwise.workloads import get_workload

KIND = "scale-out"
SHARDS = ("strided", "chunk")
PROJECT_WORLDS = [1, 2, 4, 8, 16, 32, 64, 128, 256]


@dataclass
class ScaleOutRequest:
    workload: str
    config: TrainConfig
    modes: list[str] = field(default_factory=lambda: ["sync"])
    workers: list[int] = field(default_factory=lambda: [1, 2])
    seeds: list[int] = field(default_factory=lambda: [0])
    local_steps: list[int] = field(default_factory=lambda: [8])
    feed: str = "uniform"
    data: DataOptions = field(default_factory=DataOptions)
    shard: str = "strided"
    threads_per_worker: int | None = None   # default: max(1, threads // N)

    def validate(self) -> None:
        """Everything that can be checked without the data (the batch size is checked against it later).
        Steps- and time-to-result need a target: a workload without one needs ``--target``."""
        get_workload(self.workload).resolve_target(self.config.target, needed_by="parallel (time-to-result)")
        self.config.validate()
        self.data.validate()
        if not self.modes or not self.workers or not self.seeds:
            raise FeedwiseError("give at least one mode, one world size and one seed")
        for m in self.modes:
            if m not in MODES:
                raise FeedwiseError(f"unknown mode '{m}' (known: {', '.join(MODES)})")
        if any(n < 1 for n in self.workers):
            raise FeedwiseError(f"world sizes must be at least 1, got {self.workers}")
        if any(h < 1 for h in self.local_steps):
            raise FeedwiseError(f"--local-steps must be at least 1, got {self.local_steps}")
        if self.shard not in SHARDS:
            raise FeedwiseError(f"unknown shard '{self.shard}' (known: {', '.join(SHARDS)})")
        if self.threads_per_worker is not None and self.threads_per_worker < 1:
            raise FeedwiseError(f"--threads-per-worker must be at least 1, got {self.threads_per_worker}")
        make_feeder(self.feed)


def trial_id(mode: str, world: int, seed: int, local_steps: int | None = None) -> str:
    h = f"-h{local_steps}" if mode == "local-sgd" else ""
    return f"{mode}{h}-w{world}-s{seed}"


def plan(req: ScaleOutRequest) -> list[tuple[str, str, int, int, int | None]]:
    """(trial id, mode, world size, seed, H) in run order: seeds outermost, then world sizes
    interleaved with modes, so a cut-short run still holds comparable trials."""
    out = []
    for seed in req.seeds:
        for n in req.workers:
            for mode in req.modes:
                hs = req.local_steps if mode == "local-sgd" else [None]
                for h in hs:
                    out.append((trial_id(mode, n, seed, h), mode, n, seed, h))
    return out


def _validate(req: ScaleOutRequest) -> None:
    req.validate()


def study_config(req: ScaleOutRequest, data=None) -> dict:
    """What defines the study; ``data`` (the loaded Dataset) adds the fingerprint of its files."""
    train = asdict(req.config)
    train.pop("seed")
    return {"workload": req.workload, "train": train, "feed": req.feed,
            "data": asdict(req.data) if data is None else req.data.identity(data), "shard": req.shard}


def scale_out_study(req: ScaleOutRequest, out: str, threads: int | None = None, device: str = "auto",
                    command: list[str] | None = None) -> dict | None:
    """Run (or resume) the grid into ``out`` and write summary.json; returns the summary (rank 0)."""
    _validate(req)
    env = torchrun_env()
    if env is not None:
        return _torchrun_study(req, out, env, threads, device, command)
    workload = get_workload(req.workload)
    dev = pick_device(device)
    cores = threads or os.cpu_count() or 1
    data = workload.load(**asdict(req.data))
    req.config.validate(data.num_train)
    study = StudyDir(out)
    for tid, mode, n, seed, h in plan(req):   # every trial's spec, before anything is written
        check_spec(_spec(req, mode, n, seed, h, cores, dev, str(study.trial(tid).path)))
    study.open(KIND, study_config(req, data), command=command,
               extra={"threads": cores, "device": str(dev), "dataset": data.describe(),
                      "note": "threads = the cores given to the run; each of N workers gets max(1, threads // N)"})
    for tid, mode, n, seed, h in plan(req):
        trial = study.trial(tid)
        if trial.finished():
            continue
        spec = _spec(req, mode, n, seed, h, cores, dev, str(trial.path))
        check_spec(spec)
        say(f"[bold]{tid}[/]: {mode} on {n} worker(s) x {spec.threads_per_worker} thread(s)")
        rec = run_parallel(spec, data=data)
        say(f"  {rec['status']}: steps_to_result={rec['steps_to_result']} time_to_result_s="
            f"{_fmt(rec['time_to_result_s'])} s/step={rec['s_per_step']:.4f} comm_s={rec['comm_s']:.2f}")
    summary = summarize(study)
    study.write_summary(summary)
    return summary


def _fmt(v):
    return "null" if v is None else f"{v:.2f}"


def _spec(req, mode, n, seed, h, cores, dev, trial_path) -> WorkerSpec:
    return WorkerSpec(
        workload=req.workload, config=replace(req.config, seed=seed), mode=mode, world_size=n,
        threads_per_worker=req.threads_per_worker or max(1, cores // n), local_steps=h or 1, feed=req.feed, data=asdict(req.data),
        device=dev.type, shard=req.shard, trial_path=trial_path,
        record={"seed": seed, "threads_budget": cores, "launcher": "spawn" if n > 1 else "in-process"})


def _torchrun_study(req, out, env, threads, device, command):
    req = replace(req, workers=[env.world_size])   # torchrun decides the world size
    if "hogwild" in req.modes:
        raise FeedwiseError("hogwild needs one launcher process per machine; run it without torchrun")
    dev = pick_device(device)
    cores = threads or os.cpu_count() or 1   # per node
    local_world = int(os.environ.get("LOCAL_WORLD_SIZE", env.world_size))
    workload = get_workload(req.workload)
    data = workload.load(**asdict(req.data))
    study = StudyDir(out)
    if env.rank == 0:
        study.open(KIND, study_config(req, data), command=command,
                   extra={"threads": cores, "device": str(dev), "dataset": data.describe(), "launcher": "torchrun"})
    for tid, mode, n, seed, h in plan(req):
        done = torch.tensor([1 if (env.rank == 0 and study.trial(tid).finished()) else 0])
        spec = _spec(req, mode, n, seed, h, cores, dev, str(study.trial(tid).path))
        spec = replace(spec, threads_per_worker=req.threads_per_worker or max(1, cores // local_world),
                       record={**spec.record, "launcher": "torchrun"})
        # rank 0 decides; the group is created by the first trial's worker when needed
        if not dist.is_initialized():
            dist.init_process_group(spec.resolved_backend)
        dist.broadcast(done, 0)
        if int(done.item()):
            continue
        run_as_torchrun_rank(spec, data=data)
    if dist.is_initialized():
        dist.destroy_process_group()
    if env.rank != 0:
        return None
    summary = summarize(study)
    study.write_summary(summary)
    return summary


# ---------------------------------------------------------------------------------- summary
def summarize(study: StudyDir) -> dict:
    """summary.json from trials/ only (so it can always be recomputed)."""
    records = [t.read() for t in study.trials()]
    records = [r for r in records if r.get("status") not in (None, "running")]
    groups: dict[tuple, list[dict]] = {}
    for r in records:
        groups.setdefault((r["mode"], r.get("local_steps"), r["world_size"]), []).append(r)
    rows = []
    for (mode, h, n), rs in sorted(groups.items(), key=lambda kv: (MODES.index(kv[0][0]), kv[0][1] or 0, kv[0][2])):
        reached = [r for r in rs if r.get("steps_to_result") is not None]
        rows.append({
            "mode": mode, "local_steps": h, "world_size": n, "trials": len(rs), "reached": len(reached),
            "seeds": sorted(r["seed"] for r in rs),
            "steps_to_result": min((r["steps_to_result"] for r in reached), default=None),
            "steps_to_result_median": _median([r["steps_to_result"] for r in reached]),
            "time_to_result_s_median": _median([r["time_to_result_s"] for r in reached]),
            "time_to_result_s": [r.get("time_to_result_s") for r in rs],
            "s_per_step_median": _median([r["s_per_step"] for r in rs]),
            "compute_s_per_step_median": _median([r["compute_s"] / max(1, r["steps_run"]) for r in rs]),
            "comm_s_per_step_median": _median([r["comm_s"] / max(1, r["steps_run"]) for r in rs]),
            "threads_per_worker": rs[0].get("threads_per_worker"), "backend": rs[0].get("backend"),
            "load_avg_start": [r.get("load_avg_start") for r in rs], "load_avg_end": [r.get("load_avg_end") for r in rs],
        })
    base = next((g for g in rows if g["mode"] == "sync" and g["world_size"] == 1), None)
    for g in rows:
        b, t = (base or {}).get("time_to_result_s_median"), g["time_to_result_s_median"]
        g["speedup_vs_sync_w1"] = (b / t) if (b and t) else None
    first = records[0] if records else {}
    return {"kind": KIND, "workload": first.get("workload"), "target": first.get("target"),
            "batch_size": (first.get("hparams") or {}).get("batch_size"), "cpu_count": os.cpu_count(),
            "groups": rows, "projection": projection(records)}


def _median(xs):
    xs = [x for x in xs if x is not None]
    return statistics.median(xs) if xs else None


def projection(records: list[dict]) -> dict | None:
    """The α–β / Amdahl projection from the sync trial with the most workers that measured both
    the all-reduce sweep and the compute curve (see feedwise.parallel.perfmodel)."""
    cands = [r for r in records if r.get("mode") == "sync" and r.get("allreduce_sweep") and r.get("compute_curve")]
    if not cands:
        return None
    r = max(cands, key=lambda r: (r["world_size"], -(r.get("seed") or 0)))
    sweep, curve = r["allreduce_sweep"], r["compute_curve"]
    comm = AlphaBeta.fit_two_ranks([p["bytes"] for p in sweep], [p["median_s"] for p in sweep]) \
        if r["world_size"] == 2 else _fit_ring(sweep, r["world_size"])
    compute = ComputeModel.fit([p["local_batch"] for p in curve], [p["median_s"] for p in curve])
    sync = [x for x in records if x.get("mode") == "sync" and x.get("steps_to_result") is not None]
    steps = min((x["steps_to_result"] for x in sync), default=None)
    out = project(compute, comm, r["hparams"]["batch_size"], r["grad_bytes"], steps, PROJECT_WORLDS)
    measured_comm = r["comm_s"] / max(1, r["steps_run"])
    out.update({"from_trial": r.get("id"), "threads_per_worker": r.get("threads_per_worker"),
                "measured_world_size": r["world_size"], "measured_comm_s_per_step": measured_comm,
                "predicted_comm_s_per_step_at_measured": comm.allreduce_s(r["world_size"], r["grad_bytes"]),
                "allreduce_sweep": sweep, "compute_curve": curve,
                "assumptions": [
                    "fixed global batch: sync DDP needs the same steps-to-result at every world size "
                    "(tested at N=2), taken as the smallest sync steps-to-result measured",
                    "per-step compute of a worker on local batch b is c0 + c1*b (fitted on the measured curve, "
                    f"{r.get('threads_per_worker')} thread(s) per worker); every added worker brings the same "
                    "hardware",
                    "ring all-reduce 2(N-1)*alpha + 2(N-1)/N*M*beta with alpha, beta fitted on all-reduces between "
                    f"{r['world_size']} local processes (gloo over loopback); a real network has larger alpha "
                    "and beta",
                    "no overlap of communication with compute (one gradient bucket), no stragglers, "
                    "evaluation not counted"]})
    return out


def _fit_ring(sweep, world) -> AlphaBeta:
    """α, β from a sweep measured at ``world`` ranks: t = 2(N-1)α + 2(N-1)/N · M β."""
    from feedwise.parallel.perfmodel import fit_line
    a, b = fit_line([p["bytes"] for p in sweep], [p["median_s"] for p in sweep])
    return AlphaBeta(alpha_s=a / (2 * (world - 1)), beta_s_per_byte=b * world / (2 * (world - 1)))
