"""`feedwise parallel`: results layout, resume, summary, report sections; Hogwild on 2 workers."""

import json
from pathlib import Path

import pytest

from feedwise.cli import main
from feedwise.data.sources import load_dataset
from feedwise.engine import TrainConfig
from feedwise.parallel.run import run_parallel
from feedwise.parallel.worker import WorkerSpec

TINY = ["--num-samples", "2000", "--steps", "60", "--eval-every", "20", "--batch-size", "32", "--target", "0.8"]


def test_parallel_command_layout_resume_and_report(tmp_path, data_cache, capsys):
    out = tmp_path / "par"
    args = ["parallel", "--modes", "sync,local-sgd,hogwild", "--workers", "1", "--local-steps", "4", *TINY,
            "--threads", "1", "--out", str(out)]
    assert main(args) == 0
    ids = sorted(p.name for p in (out / "trials").iterdir())
    assert ids == ["hogwild-w1-s0", "local-sgd-h4-w1-s0", "sync-w1-s0"]
    study = json.loads((out / "study.json").read_text())
    assert study["kind"] == "scale-out" and study["threads"] == 1
    rec = json.loads((out / "trials/sync-w1-s0/trial.json").read_text())
    for key in ("world_size", "backend", "threads_per_worker", "compute_s", "comm_s", "steps_to_result",
                "time_to_result_s", "wall_s", "eval_s", "load_avg_start", "load_avg_end", "compute_curve"):
        assert key in rec, key
    assert rec["world_size"] == 1 and rec["threads_per_worker"] == 1 and rec["status"] in ("reached", "budget")
    header = (out / "trials/sync-w1-s0/measurements.csv").read_text().splitlines()[0]
    assert header.endswith("compute_s,comm_s")
    summary = json.loads((out / "summary.json").read_text())
    assert {(g["mode"], g["world_size"]) for g in summary["groups"]} == {("sync", 1), ("local-sgd", 1), ("hogwild", 1)}
    # same maths on one worker: the three modes reach the target at the same step
    assert len({g["steps_to_result"] for g in summary["groups"]}) == 1
    printed = capsys.readouterr().out
    assert "steps_to_result" in printed and "sync" in printed
    # resume: nothing is run again, the records are untouched
    before = (out / "trials/sync-w1-s0/trial.json").read_text()
    assert main(args) == 0
    assert (out / "trials/sync-w1-s0/trial.json").read_text() == before
    # a different study in the same folder is refused in one line
    assert main(["parallel", "--modes", "sync", "--workers", "1", *TINY, "--lr", "0.3", "--out", str(out)]) == 2
    assert "holds a different study" in capsys.readouterr().err
    assert main(["parallel", "--modes", "gossip", "--workers", "1", *TINY, "--out", str(tmp_path / "x")]) == 2
    assert "unknown mode 'gossip'" in capsys.readouterr().err

    from feedwise.studies.scale_out.report import build_sections

    sections = build_sections(out, tmp_path / "assets")
    assert sections[0].kind == "scale-out" and "steps-to-result" in sections[0].markdown
    assert all(Path(p).exists() and Path(p).stat().st_size > 0 for s in sections for p in s.images)


def test_hogwild_two_workers_train_shared_parameters(data_cache):
    data = load_dataset("mnist1d", num_samples=2000, val_size=0.2)
    cfg = TrainConfig(batch_size=64, lr=0.1, max_steps=60, eval_every=20, seed=2, evaluate_test=False)
    rec = run_parallel(WorkerSpec("mnist1d-mlp", cfg, mode="hogwild", world_size=2, threads_per_worker=1), data=data)
    assert rec["world_size"] == 2 and rec["steps_run"] == 60 and rec["examples"] == 60 * 64
    errs = [r["val_error"] for r in rec["rows"]]
    assert errs[-1] < 0.85   # the shared model learned (chance is 0.9)
    assert rec["rows"][-1]["train_loss"] < rec["rows"][0]["train_loss"]
    assert rec["comm_s"] >= 0 and rec["compute_s"] > 0


def test_train_data_parallel_hook(tmp_path, data_cache):
    """`feedwise train --data-parallel N` as cli.py will wire it: add_data_parallel(train parser)."""
    import argparse

    from feedwise.options import add_run_args as _add_run_args, add_train_args as _add_train_args
    from feedwise.studies.train.cli import cmd_train
    from feedwise.studies.scale_out.cli import add_data_parallel

    p = argparse.ArgumentParser()
    _add_train_args(p)
    _add_run_args(p)
    p.set_defaults(func=cmd_train)
    add_data_parallel(p)
    out = tmp_path / "dp"
    a = p.parse_args([*TINY, "--threads", "2", "--data-parallel", "2", "--out", str(out)])
    assert a.func(a) == 0
    rec = json.loads((out / "trials/sync-w2-s0/trial.json").read_text())
    assert rec["world_size"] == 2 and rec["threads_per_worker"] == 1 and rec["backend"] == "gloo"
    assert rec["allreduce_calls"] == rec["steps_run"] and rec["comm_s"] > 0
    a = p.parse_args([*TINY, "--out", str(tmp_path / "plain")])
    assert a.data_parallel == 1 and a.func(a) == 0
    assert json.loads((tmp_path / "plain/study.json").read_text())["kind"] == "train"


def test_projection_from_measured_runs(tmp_path):
    from feedwise.results import StudyDir
    from feedwise.studies.scale_out.run import summarize

    sd = StudyDir(tmp_path / "s")
    base = {"workload": "w", "hparams": {"batch_size": 128}, "target": 0.1, "status": "reached", "seed": 0,
            "threads_per_worker": 1, "backend": "gloo", "local_steps": None, "eval_s": 0.1}
    for n, steps, wall, comm in ((1, 500, 5.0, 0.0), (2, 500, 3.0, 1.0)):
        rec = {**base, "id": f"sync-w{n}-s0", "mode": "sync", "world_size": n, "steps_run": steps,
               "steps_to_result": steps, "time_to_result_s": wall, "wall_s": wall, "s_per_step": wall / steps,
               "compute_s": wall - comm, "comm_s": comm, "grad_bytes": 4e5,
               "compute_curve": [{"local_batch": b, "median_s": 1e-3 + b * 1e-5} for b in (128, 64, 32)]}
        if n == 2:
            rec["allreduce_sweep"] = [{"bytes": m, "median_s": 2e-4 + m * 1e-9} for m in (1e3, 1e5, 1e6)]
        sd.trial(rec["id"]).write(rec)
    s = summarize(sd)
    g = {x["world_size"]: x for x in s["groups"]}
    assert g[2]["speedup_vs_sync_w1"] == pytest.approx(5 / 3)
    p = s["projection"]
    assert p["from_trial"] == "sync-w2-s0" and p["steps_to_result"] == 500
    assert p["alpha_beta"]["alpha_s"] == pytest.approx(1e-4)
    assert p["compute"]["c0_s"] == pytest.approx(1e-3)
    assert [r["world_size"] for r in p["rows"]][:3] == [1, 2, 4] and p["comm_dominates_from"] is not None
