"""Intervals on steps-to-result, the knee and the regimes: the bootstrap over the trial set against a
plain loop, its treatment of pruned (censored) trials, and the interval rule for regime labels."""

import math

import numpy as np
import pytest

from feedwise.studies.batch_size import scaling
from feedwise.studies.batch_size.scaling import bootstrap, regime_from_interval, trial_outcome

INF = math.inf


def _lower(xs, q):
    xs = sorted(xs)
    return xs[math.floor(q * (len(xs) - 1))]


def _higher(xs, q):
    xs = sorted(xs)
    return xs[math.ceil(q * (len(xs) - 1))]


def _fin(v):
    return None if v is None or not math.isfinite(v) else v


OUTCOMES = {
    64: [(1500, 1500), (1600, 1600), (1300, INF), (INF, INF), (2100, 2100)],          # one pruned below 1500
    256: [(600, 600), (700, INF), (650, 650), (INF, INF)],
    1024: [(460, 460), (470, INF), (INF, INF), (520, 520), (430, INF), (900, 900)],
}


def test_bootstrap_matches_a_plain_loop():
    R, level = 300, 0.9
    got = bootstrap(OUTCOMES, resamples=R, level=level, seed=7)
    rng = np.random.default_rng(7)
    draws = {b: rng.integers(0, len(OUTCOMES[b]), size=(R, len(OUTCOMES[b]))) for b in sorted(OUTCOMES)}
    lo = {b: [] for b in OUTCOMES}
    hi = {b: [] for b in OUTCOMES}
    for r in range(R):
        for b in sorted(OUTCOMES):
            picked = [OUTCOMES[b][i] for i in draws[b][r]]
            lo[b].append(min(p[0] for p in picked))
            hi[b].append(min(p[1] for p in picked))
    for b in OUTCOMES:
        ci = got["steps_to_result"][b]
        assert ci["low"] == _fin(_lower(lo[b], 0.05)) and ci["high"] == _fin(_higher(hi[b], 0.95))
        assert ci["censored_fraction"] == pytest.approx(sum(a < c for a, c in zip(lo[b], hi[b])) / R)
        assert ci["unreached_fraction"] == pytest.approx(sum(math.isinf(c) for c in hi[b]) / R)
    ks, kb = [], []
    for r in range(R):
        k = []
        for mins in (lo, hi):
            curve = {b: (int(mins[b][r]) if math.isfinite(mins[b][r]) else None) for b in OUTCOMES}
            k.append(scaling.fit_knee(curve)["b_crit"])
        k = [x for x in k if x is not None]      # None: fewer than two batch sizes reached in that curve
        if k:
            ks.append(min(k))
            kb.append(max(k))
    assert got["knee"]["low"] == pytest.approx(_fin(_lower(ks, 0.05)))
    assert got["knee"]["high"] == _fin(_higher(kb, 0.95)) or got["knee"]["high"] == pytest.approx(_higher(kb, 0.95))
    for seg in got["segments"]:
        b0, b1 = seg["from"], seg["to"]
        lb = math.log(b1 / b0)
        s_low = [math.log(lo[b1][r] / hi[b0][r]) / lb if math.isfinite(hi[b0][r]) else -INF for r in range(R)]
        s_high = [math.log(hi[b1][r] / lo[b0][r]) / lb if math.isfinite(hi[b1][r]) else INF for r in range(R)]
        assert seg["slope_low"] == pytest.approx(_fin(_lower(s_low, 0.05)))
        assert seg["slope_high"] == _fin(_higher(s_high, 0.95)) or seg["slope_high"] == pytest.approx(
            _higher(s_high, 0.95))
        assert seg["regime"] == regime_from_interval(seg["slope_low"], seg["slope_high"])


def test_a_pruned_trial_censors_only_resamples_without_a_smaller_reached_value():
    # a pruned bound at or above every reached value matters only when nothing in the resample reached
    clean = {16: [(400, 400), (900, INF), (800, 800)], 64: [(200, 200)]}
    b = bootstrap(clean, resamples=4000, seed=1)
    assert b["steps_to_result"][16]["censored_fraction"] == pytest.approx((1 / 3) ** 3, abs=0.01)
    # a bound below the smallest reached value: resamples without the 400 trial are censored in [bound, 800]
    cens = {16: [(400, 400), (300, INF), (800, 800)], 64: [(200, 200)]}
    b = bootstrap(cens, resamples=2000, seed=1)
    ci = b["steps_to_result"][16]
    # censored exactly when the pruned trial is drawn (its bound 300 lies below every reached value)
    assert ci["censored_fraction"] == pytest.approx(1 - (2 / 3) ** 3, abs=0.03)
    assert ci["low"] == 300                    # the optimistic end reaches down to the bound
    # only pruned trials: nothing is known but the bound; the pessimistic end is unreached (None)
    only = bootstrap({16: [(300, INF), (500, INF)], 64: [(200, 200)]}, resamples=100, seed=0)
    assert only["steps_to_result"][16]["low"] == 300 and only["steps_to_result"][16]["high"] is None
    assert only["steps_to_result"][16]["unreached_fraction"] == 1.0


def test_trial_outcomes():
    assert trial_outcome("reached", 600, 600, 25) == (600, 600)
    assert trial_outcome("pruned", None, 400, 25) == (425, INF)
    assert trial_outcome("budget", None, 1200, 25) == (INF, INF)
    assert trial_outcome("diverged", None, 50, 25) == (INF, INF)


def test_regime_labels_only_where_the_interval_separates():
    assert regime_from_interval(-1.3, -0.8) == "perfect scaling"
    assert regime_from_interval(-0.7, -0.3) == "diminishing returns"
    assert regime_from_interval(-0.2, 0.4) == "maximal data parallelism"
    assert regime_from_interval(-1.2, -0.5) == "undetermined (perfect, diminishing)"
    assert regime_from_interval(-0.5, 0.0) == "undetermined (diminishing, maximal)"
    assert regime_from_interval(None, None) == "undetermined (perfect, diminishing, maximal)"
    # one trial per batch size: every resample is the same curve, the intervals are points and the labels
    # are the plain ones
    curve = {16: 4000, 64: 1000, 256: 600, 1024: 550}
    b = bootstrap({k: [(v, v)] for k, v in curve.items()}, resamples=50)
    assert b["by_batch_size"] == scaling.regimes(curve)["by_batch_size"]
    assert b["knee"]["low"] == pytest.approx(scaling.fit_knee(curve)["b_crit"])
    assert b["knee"]["high"] == pytest.approx(scaling.fit_knee(curve)["b_crit"])
    # search noise: 16 -> 64 could be anything from better than perfect to diminishing returns
    noisy = {16: [(4000, 4000), (7000, 7000)], 64: [(1000, 1000), (2500, 2500)], 256: [(600, 600)]}
    nb = bootstrap(noisy, resamples=500)
    assert nb["by_batch_size"][64].startswith("undetermined")


def test_seeds_rerun_the_best_configuration_and_summarize_the_spread(tmp_path, data_cache):
    from dataclasses import asdict

    from feedwise.engine import TrainConfig
    from feedwise.results import StudyDir
    from feedwise.studies.batch_size.run import BatchSizeRequest
    from feedwise.studies.batch_size.seeds import rerun_best
    from feedwise.studies.batch_size.summary import summarize
    from feedwise.studies.train.run import DataOptions

    sd = StudyDir(tmp_path / "bs")
    sd.open("batch-size", {"workload": "mnist1d-mlp", "optimizer": "sgd", "target": 0.7, "seed": 0})
    for b, errs in ((32, [0.8, 0.6]), (128, [0.65])):
        cfg = TrainConfig(batch_size=b, optimizer="sgd", lr=0.5, max_steps=60, eval_every=20, target=0.7, seed=1,
                          evaluate_test=False)
        t = sd.trial(f"b{b}-0")
        rec = {"batch_size": b, "hparams": cfg.hparams(), "budget": {"steps": 60, "eval_every": 20},
               "config": asdict(cfg)}
        t.start(rec)
        for k, e in enumerate(errs):
            t.add_row({"step": 20 * (k + 1), "examples": 20 * (k + 1) * b, "val_error": e})
        t.finish({**rec, "status": "reached", "examples": 20 * len(errs) * b, "steps_run": 20 * len(errs)})
    req = BatchSizeRequest(workload="mnist1d-mlp", batch_sizes=[32, 128], optimizer="sgd",
                           data=DataOptions(num_samples=2000))
    s = rerun_best(req, tmp_path / "bs", 3, threads=1, device="cpu")
    seeds = s["seeds"]["by_batch_size"]
    assert set(seeds) == {"32", "128"} and all(d["of"] == 3 for d in seeds.values())
    assert len({r["seed"] for r in seeds["32"]["runs"]}) == 3           # three different fresh seeds
    assert (tmp_path / "bs" / "seeds" / "b32-s3" / "trial.json").exists()
    assert summarize(sd)["seeds"] == s["seeds"]                          # recomputed from the files
    assert s["bootstrap"]["steps_to_result"]["32"]["low"] == 40          # one trial each: a point interval
    with pytest.raises(Exception, match="--seeds"):
        rerun_best(req, tmp_path / "bs", 0)
