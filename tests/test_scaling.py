"""The batch-size study's maths, without training."""

import itertools
import math

import pytest

from feedwise.studies.batch_size import scaling
from feedwise.studies.noise_scale.run import b_simple, estimate


def rows(*pairs):
    return [{"step": s, "val_error": v} for s, v in pairs]


def test_first_step_below_is_strict_and_ordered():
    r = rows((50, 0.3), (100, 0.15), (150, 0.149), (200, 0.1))
    assert scaling.first_step_below(r, 0.15) == 150          # 0.15 itself does not count
    assert scaling.first_step_below(r, 0.05) is None
    assert scaling.first_step_below(rows((10, float("nan")), (20, 0.1)), 0.2) == 20
    assert scaling.first_step_below([{"step": 5, "val_error": ""}, {"step": 6, "val_error": "0.1"}], 0.2) == 6


def test_steps_to_result_is_min_over_trials_or_none():
    a = rows((50, 0.3), (100, 0.1))
    b = rows((50, 0.12), (100, 0.05))
    c = rows((50, 0.5))
    assert scaling.steps_to_result([a, b, c], 0.15) == 50
    assert scaling.steps_to_result([a, c], 0.15) == 100
    assert scaling.steps_to_result([c], 0.15) is None
    assert scaling.steps_to_result([], 0.15) is None


def test_perfect_scaling_line():
    assert scaling.perfect_scaling([16, 64, 256], 16, 8000) == [8000, 2000, 500]


def test_regimes_follow_the_stated_slope_rule():
    # 16->64 perfect (slope -1), 64->256 diminishing (-0.5), 256->1024 flat (0), 4096 unreached
    curve = {16: 8000, 64: 2000, 256: 1000, 1024: 1000, 4096: None}
    reg = scaling.regimes(curve)
    assert reg["by_batch_size"] == {16: "perfect scaling", 64: "perfect scaling", 256: "diminishing returns",
                                    1024: "maximal data parallelism", 4096: "unreached"}
    assert [round(s["slope"], 6) for s in reg["segments"]] == [-1.0, -0.5, 0.0]
    assert reg["largest_perfect"] == 64 and reg["largest_useful"] == 256
    # boundaries: slope exactly -0.75 is perfect, exactly -0.25 is maximal
    assert scaling.classify_slope(-0.75) == "perfect scaling"
    assert scaling.classify_slope(-0.2500001) == "diminishing returns"
    assert scaling.classify_slope(-0.25) == "maximal data parallelism"
    assert scaling.regimes({16: None})["by_batch_size"] == {16: "unreached"}
    # a batch size that reached the target is never labelled unreached, whatever its neighbours did
    assert scaling.regimes({32: None, 128: 50})["by_batch_size"] == {32: "unreached", 128: "single point"}
    r = scaling.regimes({16: None, 64: 800, 256: 200})
    assert r["by_batch_size"] == {16: "unreached", 64: "perfect scaling", 256: "perfect scaling"}


def test_no_perfect_segment_means_no_largest_perfect_batch_and_the_sentence_agrees():
    # issue 13: slopes -0.73 then -0.45 from B = 64: the table labels 64 "diminishing returns",
    # so there is no perfect-scaling batch size (summary, table, sentence and README agree)
    reg = scaling.regimes({64: 1000, 256: 364, 1024: 196})
    assert [round(s["slope"], 2) for s in reg["segments"]] == [-0.73, -0.45]
    assert set(reg["by_batch_size"].values()) == {"diminishing returns"}
    assert reg["largest_perfect"] is None and reg["largest_useful"] == 1024
    text = scaling.regime_sentence(reg)
    assert "no perfect scaling" in text and "up to B = 64" not in text and "perfect scaling from" not in text
    # every "largest" number is read off the labels: the leading run of that label
    for curve in ({16: 8000, 64: 2000, 256: 1000, 1024: 1000}, {16: 100, 64: 90, 256: 20},
                  {16: 100, 64: 25, 256: 24, 1024: 5}, {16: 100}, {16: 100, 64: 25}):
        r = scaling.regimes(curve)
        labels = [r["by_batch_size"][b] for b in sorted(curve)]
        lead = [b for b, _ in zip(sorted(curve), labels)][:next(
            (i for i, lab in enumerate(labels) if lab != "perfect scaling"), len(labels))]
        assert r["largest_perfect"] == (lead[-1] if lead else None), curve
        if r["largest_perfect"] is not None:
            assert f"up to B = {r['largest_perfect']}" in scaling.regime_sentence(r)
        else:
            assert "perfect scaling from" not in scaling.regime_sentence(r)
    assert scaling.regimes({16: 100, 64: 90})["largest_useful"] is None  # first segment already maximal
    assert scaling.regimes({16: 100})["largest_perfect"] is None  # one point: no segment, no regime


def test_saved_benchmark_summaries_agree_with_the_regime_definition():
    """The saved sweeps' regimes (and so the README's "largest perfect-scaling batch") are what
    the current definition computes from their saved curves."""
    import json
    from pathlib import Path

    res = Path(__file__).resolve().parents[1] / "benchmarks" / "results"
    for name in ("batch_size_mnist1d_momentum", "batch_size_mnist1d_sgd", "batch_size_fashion_momentum"):
        s = json.loads((res / f"{name}.json").read_text())["summary"]
        reg = scaling.regimes({int(b): v for b, v in s["curve"].items()})
        saved = s["regimes"]
        assert reg["largest_perfect"] == saved["largest_perfect"], name
        assert reg["largest_useful"] == saved["largest_useful"], name
        assert {str(b): lab for b, lab in reg["by_batch_size"].items()} == saved["by_batch_size"], name


def test_fit_knee_recovers_the_model():
    s_min, b_crit = 120.0, 300.0
    bs = [16, 64, 256, 1024, 4096]
    curve = {b: s for b, s in zip(bs, scaling.knee_model(bs, s_min, b_crit))}
    fit = scaling.fit_knee(curve)
    assert fit["s_min"] == pytest.approx(s_min, rel=1e-6)
    assert fit["b_crit"] == pytest.approx(b_crit, rel=1e-6)
    # perfect scaling everywhere: no floor in sight
    assert scaling.fit_knee({16: 6400, 64: 1600, 256: 400})["b_crit"] == math.inf
    assert scaling.fit_knee({16: 100})["b_crit"] is None


def test_effective_lr_and_pruning_rules():
    assert scaling.effective_lr(0.1, 0.9, "momentum") == pytest.approx(1.0)
    assert scaling.effective_lr(0.1, 0.9, "nesterov") == pytest.approx(1.0)
    assert scaling.effective_lr(0.3, 0.0, "sgd") == 0.3
    assert not scaling.should_prune(100, 50, None)
    assert not scaling.should_prune(100, 50, 200)     # can still reach at 150 < 200
    assert scaling.should_prune(150, 50, 200)         # next chance 200 ties the best
    trials = [{"status": "reached", "examples": 100, "budget_steps": 50, "batch_size": 4},
              {"status": "pruned", "examples": 40, "budget_steps": 50, "batch_size": 4},
              {"status": "diverged", "examples": 8, "budget_steps": 50, "batch_size": 4},
              {"status": "budget", "examples": 200, "budget_steps": 50, "batch_size": 4}]
    s = scaling.pruning_savings(trials)
    assert s["examples_processed"] == 348
    assert s["examples_unpruned"] == 200 + 200 + 8 + 200
    assert s["fraction_saved"] == pytest.approx((608 - 348) / 608)


def test_exact_floor_is_the_best_trial_to_its_result_and_the_others_to_one_evaluation_before():
    t = lambda b, run, s, e=10: {"batch_size": b, "steps_run": run, "steps_to_result": s, "eval_every": e}  # noqa: E731
    # B=4: best reaches at 50; another reaches at 70 (floor: 40), a budget trial (40), a divergence at 20 (20)
    # B=8: nothing reaches: every trial to its own stop
    trials = [t(4, 50, 50), t(4, 70, 70), t(4, 100, None), t(4, 20, None), t(8, 30, None), t(8, 12, None)]
    assert scaling.exact_floor(trials) == 4 * (40 + 40 + 40 + 20 + 10) + 8 * (30 + 12)
    assert scaling.exact_floor([]) == 0
    # every order's exact pruning processes at least the floor, and the best order exactly it
    spent_by_order = []
    curves = {0: 50, 1: 70, 2: None}   # first step below the target; None = never (budget 100)
    for order in itertools.permutations(curves):
        best, spent = None, 0
        for i in order:
            stop = 100
            for step in range(10, 101, 10):
                if curves[i] is not None and step >= curves[i]:
                    stop, best = step, step if best is None else min(best, step)
                    break
                if scaling.should_prune(step, 10, best):
                    stop = step
                    break
            spent += stop
        spent_by_order.append(spent)
    assert min(spent_by_order) == scaling.exact_floor([t(1, 50, 50), t(1, 70, 70), t(1, 100, None)]) == 130
    assert max(spent_by_order) > 130


def test_noise_scale_estimator_is_unbiased_on_synthetic_gradients():
    import torch

    torch.manual_seed(0)
    d, b_small, b_big = 20, 8, 64
    g = torch.randn(d, dtype=torch.float64) * 0.3
    scales = torch.linspace(0.5, 2.0, d, dtype=torch.float64)   # Sigma = diag(scales^2)
    true_tr, true_g2 = float((scales ** 2).sum()), float(g @ g)
    g2s, trs = [], []
    for _ in range(3000):
        per_example = g + torch.randn(b_big, d, dtype=torch.float64) * scales
        chunks = per_example.view(b_big // b_small, b_small, d).mean(1)
        small = float((chunks ** 2).sum(1).mean())
        big = float(per_example.mean(0) @ per_example.mean(0))
        g2, tr = estimate(small, big, b_small, b_big)
        g2s.append(g2)
        trs.append(tr)
    assert sum(trs) / len(trs) == pytest.approx(true_tr, rel=0.03)
    assert sum(g2s) / len(g2s) == pytest.approx(true_g2, rel=0.1)
    assert b_simple(g2s, trs) == pytest.approx(true_tr / true_g2, rel=0.12)
    with pytest.raises(Exception):
        estimate(1.0, 1.0, 64, 64)
