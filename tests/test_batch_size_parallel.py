"""`feedwise batch-size --data-parallel N`: trials trained by synchronous DDP on N processes."""

import json

import pytest

from feedwise.cli import main
from feedwise.errors import FeedwiseError
from feedwise.report.batch_size import build_overlay, build_sections
from feedwise.studies.batch_size import BatchSizeRequest, Budget, run_batch_size_study, summarize
from feedwise.studies.train import DataOptions

SPACE = {"lr": [0.05, 0.3], "one_minus_momentum": [0.05, 0.3], "end_factor": 1.0, "decay_fraction": 1.0}


def _req(n):
    return BatchSizeRequest(workload="mnist1d-mlp", batch_sizes=[64], trials=3, optimizer="momentum", target=0.6,
                            budget=Budget(max_steps=200, ref_batch=0, eval_every=10), seed=1, space=SPACE,
                            data=DataOptions(num_samples=2000), data_parallel=n)


def _trials(out):
    return {p.parent.name: json.loads(p.read_text()) for p in sorted((out / "trials").glob("*/trial.json"))}


def test_two_worker_study_matches_one_process(tmp_path, data_cache):
    one = run_batch_size_study(_req(1), tmp_path / "w1", threads=1, device="cpu")
    two = run_batch_size_study(_req(2), tmp_path / "w2", threads=1, device="cpu")
    t1, t2 = _trials(tmp_path / "w1"), _trials(tmp_path / "w2")
    assert sorted(t1) == sorted(t2) and len(t2) == 3
    for tid, rec in t2.items():
        assert rec["world_size"] == 2 and rec["backend"] == "gloo" and rec["threads_per_worker"] == 1
        assert rec["mode"] == "sync" and rec["comm_s"] > 0 and rec["batch_size"] == 64
        # same seeds, same global batch: the same trial outcome as the engine's single process
        assert rec["hparams"] == t1[tid]["hparams"]
        assert rec["status"] == t1[tid]["status"], (tid, rec["status"], t1[tid]["status"])
        assert rec["steps_to_result"] == t1[tid]["steps_to_result"]
        assert rec["steps_run"] == t1[tid]["steps_run"]
        assert (tmp_path / "w2" / "trials" / tid / "measurements.csv").exists()
    # exact pruning works under DDP (the worker's stop rule reads the storage)
    assert any(r["status"] == "pruned" for r in t2.values())
    e1, e2 = one["batch_sizes"][0], two["batch_sizes"][0]
    assert e2["steps_to_result"] == e1["steps_to_result"] is not None
    assert two["world_size"] == 2 and e2["world_size"] == 2 and one["world_size"] == 1
    best = t2[e2["best_trial"]]
    assert e2["time_to_result_s"] == pytest.approx(best["time_to_result_s"], abs=1e-5)
    assert e1["time_to_result_s"] is not None and e1["time_to_result_s"] > 0
    fin = sorted(r["wall_s"] / r["steps_run"] for r in t2.values())
    assert e2["s_per_step"] == pytest.approx(fin[1])
    assert e2["time_to_result_model_s"] == pytest.approx(e2["steps_to_result"] * e2["s_per_step"])
    assert summarize(tmp_path / "w2")["batch_sizes"][0]["time_to_result_s"] == e2["time_to_result_s"]
    # report: a wall-clock panel per study, and the world sizes overlaid
    secs = build_sections(tmp_path / "w2", tmp_path / "assets")
    assert [p.name for p in secs[0].images][-1] == "w2_time.png" and secs[0].images[-1].stat().st_size > 1000
    assert "2 synchronous data-parallel workers" in secs[0].markdown
    assert f"| w2 | 2 | 64 | {e2['steps_to_result']} |" in secs[0].markdown
    over = build_overlay([tmp_path / "w1", tmp_path / "w2"], tmp_path / "assets")
    assert over[0].images[-1].name == "overlay_time.png" and over[0].images[-1].exists()
    assert "| w1 (N=1) | 1 | 64 |" in over[0].markdown and "| w2 (N=2) | 2 | 64 |" in over[0].markdown
    # resuming the 2-worker study re-runs nothing
    before = {p: p.stat().st_mtime_ns for p in (tmp_path / "w2" / "trials").glob("*/trial.json")}
    run_batch_size_study(_req(2), tmp_path / "w2", threads=1, device="cpu")
    assert before == {p: p.stat().st_mtime_ns for p in (tmp_path / "w2" / "trials").glob("*/trial.json")}


def test_other_world_size_on_same_out_is_refused(tmp_path, data_cache, capsys):
    args = ["batch-size", "--workload", "mnist1d-mlp", "--num-samples", "2000", "--batch-sizes", "64",
            "--trials", "1", "--target", "0.6", "--max-steps", "20", "--ref-batch", "0", "--eval-every", "10",
            "--out", str(tmp_path / "o")]
    assert main(args + ["--data-parallel", "2"]) == 0
    capsys.readouterr()
    assert main(args + ["--data-parallel", "1"]) == 2
    err = capsys.readouterr().err.strip()
    assert "different study" in err and "data_parallel" in err and len(err.splitlines()) == 1
    with pytest.raises(FeedwiseError, match="--jobs"):
        run_batch_size_study(_req(2), tmp_path / "j", jobs=2)
