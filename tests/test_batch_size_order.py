"""Best-first order of the batch-size sweep: same points, same steps-to-result, fewer examples."""

import math

import pytest

from feedwise.errors import FeedwiseError
from feedwise.studies.batch_size import order
from feedwise.studies.batch_size.run import (
    BatchSizeRequest,
    Budget,
    run_batch_size_study,
)
from feedwise.studies.train.run import DataOptions


def test_batch_sizes_go_outward_from_the_reference():
    assert order.batch_size_order([16, 64, 256, 1024, 4096], 256) == [256, 64, 1024, 16, 4096]
    assert order.batch_size_order([32, 128], 128) == [128, 32]
    assert order.batch_size_order([8, 4096], 100) == [8, 4096]


def test_lr_rule_is_fitted_not_assumed():
    one = order.lr_rule({256: 1.0})                       # nothing to fit: the stated prior slope
    assert one(1024) == pytest.approx(4.0 ** order.PRIOR_SLOPE)
    rule = order.lr_rule({64: 0.1, 256: 0.4, 1024: 0.5})  # linear, then nearly flat: no single rule
    assert rule(64) == pytest.approx(0.1) and rule(1024) == pytest.approx(0.5)
    assert rule(128) == pytest.approx(0.2)                # interpolated in log-log
    assert rule(4096) == pytest.approx(0.5 * (0.5 / 0.4) ** 1)   # extrapolated with the last segment
    assert rule(16) == pytest.approx(0.025)
    # a batch size's anchor: its own best, else the nearest finished neighbour's, lr moved by the rule
    best = {64: {"lr": 0.1, "end_factor": 0.3}, 256: {"lr": 0.4, "end_factor": 0.5}}
    assert order.anchor(64, best) == best[64]
    a = order.anchor(128, best)
    assert a["lr"] == pytest.approx(0.2) and a["end_factor"] == 0.3
    assert order.anchor(128, {}) is None


def test_points_nearest_to_the_anchor_first():
    space = {"lr": [1e-3, 1.0], "end_factor": [0.01, 1.0], "decay_fraction": 1.0}
    pts = {0: {"lr": 1e-3, "end_factor": 0.1}, 1: {"lr": 0.5, "end_factor": 0.1}, 2: {"lr": 0.05, "end_factor": 0.1}}
    assert order.rank_points([0, 1, 2], pts.get, space, {"lr": 0.4, "end_factor": 0.1}) == [1, 2, 0]
    assert order.rank_points([0, 1, 2], pts.get, space, None) == [0, 1, 2]
    assert math.isclose(order.unit(space, {"lr": 1.0, "end_factor": 0.01})["lr"], 1.0)


def test_best_first_gives_the_given_orders_steps_to_result_with_fewer_examples(tmp_path, data_cache):
    # a wide lr range: in the given (Sobol) order most trials of batch size 32 sit at tiny learning rates
    # and train their whole budget; best-first runs batch size 128 first and starts 32 from its best
    space = {"lr": [1e-4, 2.0], "one_minus_momentum": 0.1, "end_factor": 1.0, "decay_fraction": 1.0}
    got = {}
    for o in ("given", "best-first"):
        req = BatchSizeRequest(workload="mnist1d-mlp", batch_sizes=[32, 128], trials=8, optimizer="momentum",
                               target=0.6, budget=Budget(max_steps=200, ref_batch=0, eval_every=10), seed=1,
                               space=space, data=DataOptions(num_samples=2000))
        s = run_batch_size_study(req, tmp_path / o, threads=1, device="cpu", order=o)
        got[o] = {e["batch_size"]: e for e in s["batch_sizes"]}
    for b in (32, 128):
        g, f = got["given"][b], got["best-first"][b]
        assert g["points"] == f["points"] == list(range(8))
        assert g["steps_to_result"] == f["steps_to_result"] is not None
    ex = {o: sum(e["examples_processed"] for e in got[o].values()) for o in got}
    assert ex["best-first"] < ex["given"]
    assert got["best-first"][32]["examples_processed"] < got["given"][32]["examples_processed"]
    with pytest.raises(FeedwiseError, match="--order"):
        run_batch_size_study(req, tmp_path / "x", order="random")
