"""`feedwise batch-size --data-parallel N`: trials trained by synchronous DDP on N processes."""

import csv
import json
import math

import pytest

from feedwise.cli import main
from feedwise.errors import FeedwiseError
from feedwise.studies.batch_size.report import build_overlay, build_sections
from feedwise.studies.batch_size.run import BatchSizeRequest, Budget, run_batch_size_study, summarize
from feedwise.studies.train.run import DataOptions

# lr is the only tuned parameter. The Sobol points of seed 3 (3 + 64 for B = 64) are lr 0.259,
# 2.1e-4 and 1.6e-5 (known before any training, on any CPU): point 0 reaches the target in about
# 90 steps, points 1 and 2 cannot come near it in 200 steps, so exact pruning stops them in both
# studies whatever the float summation order does to point 0's trajectory.
SPACE = {"lr": [1e-5, 0.3], "one_minus_momentum": 0.1, "end_factor": 1.0, "decay_fraction": 1.0}
# One global batch summed by one process and the same batch summed as two halves plus a gloo
# all-reduce agree to the float summation order (~1e-7 relative per step here); training may
# amplify it (another CPU, EPYC: 2.1e-3 after a short run), so only the first evaluation is
# compared numerically: 10 steps, tolerance 1e-3 relative (10^4 times what was measured).
FIRST_EVAL_REL = 1e-3


def _req(n):
    return BatchSizeRequest(workload="mnist1d-mlp", batch_sizes=[64], trials=3, optimizer="momentum", target=0.6,
                            budget=Budget(max_steps=200, ref_batch=0, eval_every=10), seed=3, space=SPACE,
                            data=DataOptions(num_samples=2000), data_parallel=n)


def _trials(out):
    return {p.parent.name: json.loads(p.read_text()) for p in sorted((out / "trials").glob("*/trial.json"))}


def _rows(out, tid):
    with open(out / "trials" / tid / "measurements.csv") as f:
        return list(csv.DictReader(f))


def _csv_steps_to_result(out, target):
    """Independent of the library: min over trials of the first eval step with val_error < target."""
    firsts = [next((int(r["step"]) for r in _rows(out, tid) if float(r["val_error"]) < target), None)
              for tid in _trials(out)]
    firsts = [f for f in firsts if f is not None]
    return min(firsts) if firsts else None


def test_two_worker_study_agrees_with_one_process(tmp_path, data_cache):
    """What holds on any CPU: the same trials (points, hparams, seeds, global batch), the same
    first evaluation up to summation order, exact pruning in both studies, each summary consistent
    with its own trials, and a resume that re-runs nothing. Not asserted: equal steps-to-result
    after hundreds of steps (chaotic amplification of summation-order differences)."""
    one = run_batch_size_study(_req(1), tmp_path / "w1", threads=1, device="cpu")
    two = run_batch_size_study(_req(2), tmp_path / "w2", threads=1, device="cpu")
    t1, t2 = _trials(tmp_path / "w1"), _trials(tmp_path / "w2")
    assert sorted(t1) == sorted(t2) == ["b64-0", "b64-1", "b64-2"]
    for tid, rec in t2.items():
        ref = t1[tid]
        assert rec["world_size"] == 2 and rec["backend"] == "gloo" and rec["threads_per_worker"] == 1
        assert rec["mode"] == "sync" and rec["comm_s"] > 0 and rec["batch_size"] == 64
        # the same trial: point, metaparameters, seeds, budget and global batch (no training involved)
        for key in ("point", "search_params", "hparams", "seed", "budget"):
            assert rec[key] == ref[key], key
        assert rec["config"]["batch_size"] == ref["config"]["batch_size"] == 64
        # the first evaluation: the same step and examples, the same loss up to summation order
        r2, r1 = _rows(tmp_path / "w2", tid)[0], _rows(tmp_path / "w1", tid)[0]
        assert int(r2["step"]) == int(r1["step"]) == 10 and int(r2["examples"]) == int(r1["examples"]) == 640
        assert math.isclose(float(r2["train_loss"]), float(r1["train_loss"]), rel_tol=FIRST_EVAL_REL)
        assert abs(float(r2["val_error"]) - float(r1["val_error"])) <= 0.01   # a few validation examples
    # exact pruning happened in both studies, by the rule, against each study's own best
    for out, summary, trials in ((tmp_path / "w1", one, t1), (tmp_path / "w2", two, t2)):
        e = summary["batch_sizes"][0]
        assert trials["b64-0"]["status"] == "reached" and e["steps_to_result"] is not None
        assert [trials[t]["status"] for t in ("b64-1", "b64-2")] == ["pruned", "pruned"]
        for t in ("b64-1", "b64-2"):
            assert trials[t]["steps_run"] < trials[t]["budget"]["steps"]
            assert trials[t]["steps_run"] + trials[t]["budget"]["eval_every"] >= e["steps_to_result"]
        # each summary is consistent with its own files
        assert e["steps_to_result"] == _csv_steps_to_result(out, 0.6) == trials[e["best_trial"]]["steps_to_result"]
        assert e["points"] == [0, 1, 2] and e["trials_by_status"] == {"reached": 1, "pruned": 2}
        assert summarize(out)["batch_sizes"][0] == e
    e1, e2 = one["batch_sizes"][0], two["batch_sizes"][0]
    assert two["world_size"] == 2 and e2["world_size"] == 2 and one["world_size"] == 1
    best = t2[e2["best_trial"]]
    assert e2["time_to_result_s"] == pytest.approx(best["time_to_result_s"], abs=1e-5)
    assert e1["time_to_result_s"] is not None and e1["time_to_result_s"] > 0
    fin = sorted(r["wall_s"] / r["steps_run"] for r in t2.values())
    assert e2["s_per_step"] == pytest.approx(fin[1])
    assert e2["time_to_result_model_s"] == pytest.approx(e2["steps_to_result"] * e2["s_per_step"])
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
            "--trials", "1", "--target", "0.6", "--steps", "20", "--ref-batch", "0", "--eval-every", "10",
            "--out", str(tmp_path / "o")]
    assert main(args + ["--data-parallel", "2"]) == 0
    capsys.readouterr()
    assert main(args + ["--data-parallel", "1"]) == 2
    err = capsys.readouterr().err.strip()
    assert "different study" in err and "data_parallel" in err and len(err.splitlines()) == 1
    with pytest.raises(FeedwiseError, match="--jobs"):
        run_batch_size_study(_req(2), tmp_path / "j", jobs=2)
