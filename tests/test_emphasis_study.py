"""The emphasis study: its maths without training, then a tiny real run (resume, report, errors)."""

import json
from pathlib import Path

import numpy as np
import pytest
from scipy import stats

from feedwise.stats import auroc, top_share
from feedwise.studies.emphasis.summary import holm, paired_tests, summarise


def test_paired_tests_match_scipy():
    u = [0.20, 0.22, 0.19, 0.25, 0.21]
    m = [0.18, 0.21, 0.19, 0.22, 0.20]
    t = paired_tests(u, m)
    assert t["p"] == t["t_p"] == pytest.approx(stats.ttest_rel(m, u).pvalue)
    assert t["wilcoxon_p"] == pytest.approx(stats.wilcoxon(m, u).pvalue)
    assert t["mean_diff"] == pytest.approx(np.mean(np.subtract(m, u)))
    # with 5 seeds the exact two-sided Wilcoxon p cannot go below 1/16
    assert paired_tests([1, 2, 3, 4, 5], [0, 1, 2.5, 3.2, 4.1])["wilcoxon_p"] == pytest.approx(0.0625)


def test_holm_step_down():
    adj = holm({"a": 0.01, "b": 0.04, "c": 0.03, "d": None})
    # sorted 0.01, 0.03, 0.04 -> 3*0.01, max(0.03, 2*0.03), max(0.06, 1*0.04)
    assert adj == {"a": pytest.approx(0.03), "c": pytest.approx(0.06), "b": pytest.approx(0.06), "d": None}
    assert holm({"x": 0.6, "y": 0.7}) == {"x": 1.0, "y": 1.0}


def test_auroc_and_top_share():
    pos = np.array([1, 1, 0, 0, 0], bool)
    assert auroc(np.array([0.9, 0.8, 0.1, 0.2, 0.3]), pos) == 1.0
    assert auroc(np.array([0.1, 0.2, 0.9, 0.8, 0.7]), pos) == 0.0
    assert auroc(np.array([0.5, 0.5, 0.5, 0.5, 0.5]), pos) == 0.5
    rng = np.random.default_rng(0)
    s, p = rng.random(400), rng.random(400) < 0.3
    # the Mann-Whitney U statistic / (n_pos n_neg) is the AUROC
    u = stats.mannwhitneyu(s[p], s[~p]).statistic
    assert auroc(s, p) == pytest.approx(u / (p.sum() * (~p).sum()))
    assert top_share(np.array([0.9, 0.1, 0.8, 0.2, 0.3]), pos) == 0.5
    assert auroc(s, np.zeros(400, bool)) is None


def _rec(method, seed, err, best):
    return {"method": method, "seed": seed, "status": "budget", "test_error": err, "best_ckpt_test_error": best,
            "wall_s": 1.0, "best_step": 10}


def test_summarise_relative_reduction_and_holm():
    recs = []
    rng = np.random.default_rng(1)
    for s in range(5):
        base = 0.20 + 0.01 * rng.standard_normal()
        recs += [_rec("uniform", s, base, base - 0.01), _rec("spv", s, base * 0.9, base - 0.01),
                 _rec("scan", s, base + 0.001 * rng.standard_normal(), base)]
    out = summarise(recs, ["uniform", "spv", "scan"])
    c = out["comparisons"]["final"]["spv"]
    assert c["relative_reduction"] == pytest.approx(0.1)
    assert c["p"] < 1e-6 and c["significant_holm"] and c["n"] == 5
    assert out["comparisons"]["final"]["scan"]["significant_holm"] is False
    assert out["comparisons"]["best"]["spv"]["relative_reduction"] == pytest.approx(0.0, abs=1e-12)
    assert out["methods"]["spv"]["final"]["test_error_std"] > 0
    assert any("spv (final model): reduces test error" in line for line in out["statement"])


def test_study_end_to_end_resume_and_report(tmp_path, data_cache):
    from feedwise.cli import main
    from feedwise.studies.emphasis.report import build_sections
    from feedwise.results import StudyDir, read_json

    out = tmp_path / "emph"
    args = ["emphasis", "--num-samples", "2000", "--steps", "60", "--eval-every", "20", "--batch-size", "64",
            "--methods", "uniform,spv,wpv", "--seeds", "2", "--label-noise", "0.2", "--burn-in", "1",
            "--threads", "1", "--out", str(out)]
    assert main(args) == 0
    study = StudyDir(out)
    ids = sorted(t.id for t in study.trials())
    assert ids == ["spv-s0", "spv-s1", "uniform-s0", "uniform-s1", "wpv-s0", "wpv-s1"]
    recs = {t.id: t.read() for t in study.trials()}
    # paired: same seed -> same noise draw and init stream across methods; different seeds differ
    assert recs["uniform-s0"]["data"]["noise_seed"] == recs["spv-s0"]["data"]["noise_seed"] == 0
    assert recs["uniform-s1"]["data"]["noise_seed"] == 1
    assert recs["spv-s1"]["seed"] == 1 and recs["spv-s1"]["config"]["seed"] == 1
    for r in recs.values():
        assert 0 <= r["test_error"] <= 1 and 0 <= r["best_ckpt_test_error"] <= 1
        assert r["best_step"] in (20, 40, 60)
        d = r["diagnostics"]
        assert 0 <= d["auroc_std"] <= 1 and 0 <= d["auroc_mean"] <= 1 and 0 <= d["auroc_loss"] <= 1
        assert abs(d["noisy_fraction"] - 0.2) < 0.01
    s = read_json(out / "summary.json")
    assert set(s["methods"]) == {"uniform", "spv", "wpv"}
    assert set(s["comparisons"]["final"]) == {"spv", "wpv"} and "p_holm" in s["comparisons"]["best"]["spv"]
    assert s["curves"]["uniform"]["step"] == [20, 40, 60]
    # resume: nothing is run again (trial files untouched)
    mtimes = {p: p.stat().st_mtime_ns for p in out.glob("trials/*/trial.json")}
    assert main(args) == 0
    assert mtimes == {p: p.stat().st_mtime_ns for p in out.glob("trials/*/trial.json")}
    # a different study in the same folder is refused
    assert main(args[:-2] + ["--seeds", "3", "--out", str(out)]) == 2
    # report sections from the files alone
    secs = build_sections(out, tmp_path / "assets")
    assert len(secs) == 3 and all(Path(p).exists() for sec in secs for p in sec.images)
    assert "survives Holm" in secs[0].markdown and "AUROC" in secs[2].markdown


def test_study_bad_input(tmp_path, data_cache, capsys):
    from feedwise.cli import main

    base = ["emphasis", "--num-samples", "2000", "--steps", "20", "--threads", "1"]
    assert main(base + ["--methods", "uniform,nope", "--out", str(tmp_path / "a")]) == 2
    assert "unknown emphasis method 'nope'" in capsys.readouterr().err
    assert main(base + ["--methods", "spv", "--out", str(tmp_path / "b")]) == 2
    assert "must include uniform" in capsys.readouterr().err
    assert main(base + ["--epsilon", "-0.5", "--out", str(tmp_path / "c")]) == 2
    assert "epsilon" in capsys.readouterr().err
    assert main(base + ["--label-noise", "1.0", "--out", str(tmp_path / "d")]) == 2
    assert "label noise must be in [0, 1)" in capsys.readouterr().err
    assert main(base + ["--label-noise", "-0.1", "--out", str(tmp_path / "e")]) == 2
    assert not any((tmp_path / x).exists() and any((tmp_path / x).iterdir()) for x in "abcde")


def test_tune_runs_optuna_and_uses_the_best_params(tmp_path, data_cache):
    from feedwise.cli import main
    from feedwise.results import read_json

    out = tmp_path / "tuned"
    args = ["emphasis", "--num-samples", "2000", "--steps", "40", "--eval-every", "20", "--batch-size", "64",
            "--methods", "uniform,wpv", "--seeds", "1", "--tune", "2", "--threads", "1", "--out", str(out)]
    assert main(args) == 0
    s = read_json(out / "summary.json")
    assert set(s["tuned"]) == {"uniform", "wpv"}
    assert set(s["tuned"]["wpv"]) >= {"lr", "epsilon", "burn_in", "val_error"}
    rec = read_json(out / "trials" / "wpv-s0" / "trial.json")
    assert rec["hparams"]["lr"] == pytest.approx(s["tuned"]["wpv"]["lr"])
    assert rec["feed"]["epsilon"] == pytest.approx(s["tuned"]["wpv"]["epsilon"])
    assert (out / "study.db").exists() and (out / "trials" / "tune-wpv-1" / "trial.json").exists()
    assert main(args) == 0  # resume: optuna has its 2 trials per method, none is added
    import optuna
    st = optuna.load_study(study_name="tune-wpv", storage=f"sqlite:///{out / 'study.db'}")
    assert len(st.trials) == 2
    json.dumps(s)


def test_the_study_keeps_its_paired_design_for_library_callers(tmp_path, data_cache, capsys):
    """Every method trains the whole budget: a library caller's default config (stop at the target)
    does not stop a run early, and the CLI no longer offers --no-stop (it had no effect)."""
    from feedwise.cli import main
    from feedwise.engine import TrainConfig
    from feedwise.studies.emphasis.run import EmphasisRequest, emphasis_study
    from feedwise.data.options import DataOptions

    cfg = TrainConfig(batch_size=32, lr=0.1, max_steps=60, eval_every=20, target=0.99)   # stop_at_target=True
    emphasis_study(EmphasisRequest("mnist1d-mlp", cfg, methods=["uniform", "spv"], seeds=1,
                                   data=DataOptions(num_samples=2000)), str(tmp_path / "e"), threads=1, device="cpu")
    import json

    for t in ("uniform-s0", "spv-s0"):
        rec = json.loads((tmp_path / "e" / "trials" / t / "trial.json").read_text())
        assert rec["steps_run"] == 60 and rec["steps_to_result"] == 20
    assert main(["emphasis", "--no-stop", "--out", str(tmp_path / "x")]) == 2
    assert "unrecognized arguments: --no-stop" in capsys.readouterr().err
