"""The subset study's summary: verdicts on validation error, paired over seeds and Holm-corrected (issue 16),
test error only for the chosen cells, the FLOP-weighted cost account and break-even (never under `steps`)."""

import json
from pathlib import Path

import numpy as np
import pytest
from scipy import stats as sps

from feedwise.results import StudyDir, write_json
from feedwise.studies.subset.summary import cell_break_even, summarize

RESULTS = Path(__file__).resolve().parents[1] / "benchmarks" / "results"


def test_steps_rule_never_breaks_even_even_when_its_seconds_look_cheaper():
    # Fashion one-shot bald 1/4 under the steps rule: 12.09 s vs 16.09 s for identical work gave "17.5"
    search = {"examples": 1_484_000, "work": 3_000_000.0, "seconds": 70.08}
    full = {"examples": 192_000.0, "work": 576_000.0, "seconds": 16.09}
    same_work = {"examples": 192_000.0, "work": 576_000.0, "seconds": 12.09}
    none = {"examples": None, "work": None, "seconds": None}
    assert cell_break_even("steps", "bald", search, full, same_work, True) == none
    assert cell_break_even("steps", "random", {"examples": 0, "work": 0.0, "seconds": 0.0}, full, same_work,
                           True) == none
    half = {"examples": 96_000.0, "work": 288_000.0, "seconds": 8.0}
    be = cell_break_even("epochs", "bald", search, full, half, True)
    assert be["examples"] == pytest.approx(1_484_000 / 96_000) and be["seconds"] == pytest.approx(70.08 / 8.09)
    assert be["work"] == pytest.approx(3_000_000 / 288_000)
    assert cell_break_even("epochs", "bald", search, full, half, False) == none   # not within tolerance
    assert cell_break_even("epochs", "bald", search, full, half, None) == none    # no verdict
    assert cell_break_even("epochs", "random", {"examples": 0, "work": 0.0, "seconds": 0.0}, full, half,
                           True) == {"examples": 0.0, "work": 0.0, "seconds": 0.0}


FULL_VAL = [0.200, 0.210, 0.190]
CELLS = {  # (acquisition, budget) -> per-seed validation errors, examples, wall_s
    ("bald", "steps"): ([0.180, 0.195, 0.172], 12_800, 12.0),
    ("bald", "epochs"): ([0.199, 0.212, 0.190], 6_400, 8.0),
    ("random", "steps"): ([0.230, 0.236, 0.221], 12_800, 12.5),
    ("random", "epochs"): ([0.240, 0.262, 0.229], 6_400, 8.5),
}


def _fake_subset_study(root: Path, under_half: tuple = (), seeds: int = 3) -> None:
    """A finished one-shot subset study written by hand: one ensemble member, bald and random at 1/2 under both
    budget rules, ``seeds`` target seeds with the validation errors above (test error = val + 0.01)."""
    sd = StudyDir(root)
    sd.open("subset", {"workload": "mnist1d-mlp", "tolerance": 0.01, "acquisitions": ["bald", "random"],
                       "fractions": [0.5], "balances": ["none"], "budgets": ["steps", "epochs"],
                       "schedule": "one-shot", "ensemble": "1x1", "seeds": seeds, "target_steps": 100})
    trials = {"acq-oneshot-m0": {"role": "acquisition", "ensemble": "oneshot", "member": 0, "examples": 1000,
                                 "scored_examples": 500, "wall_s": 3.0, "score_s": 1.0}}
    for s in range(seeds):
        trials[f"target-full-s{s}"] = {"role": "target", "seed": s, "examples": 12_800, "wall_s": 16.0,
                                       "final_val_error": FULL_VAL[s], "test_error": FULL_VAL[s] + 0.01}
        for (a, rule), (val, ex, wall) in CELLS.items():
            trials[f"target-{a}-0.5-none-{rule}-s{s}"] = {
                "role": "target", "seed": s, "subset": f"{a}-0.5", "acquisition": a, "fraction": 0.5,
                "balance": "none", "budget": rule, "examples": ex, "wall_s": wall, "steps_run": ex // 128,
                "final_val_error": val[s], "test_error": val[s] + 0.01}
    for tid, rec in trials.items():
        t = sd.trial(tid)
        t.start({"id": tid, **rec})
        t.finish({"id": tid, "status": "budget", **rec})
    (root / "subsets").mkdir()
    for a in ("bald", "random"):
        write_json(root / "subsets" / f"{a}-0.5.json", {"ensemble": ["oneshot"] if a == "bald" else [], "size": 500,
                                                        "tie_filled": 0,
                                                        "composition": {"counts": [50] * 10, "share": [50.0] * 10,
                                                                        "under_half": list(under_half)}})


def _holm(ps):
    order = np.argsort(ps)
    m, out, run = len(ps), [0.0] * len(ps), 0.0
    for j, i in enumerate(order):
        run = max(run, min(1.0, (m - j) * ps[i]))
        out[i] = run
    return out


def test_verdicts_are_paired_one_sided_on_validation_with_holm(tmp_path):
    _fake_subset_study(tmp_path / "s")
    s = summarize(tmp_path / "s")
    cells = {(r["acquisition"], r["budget"]): r for r in s["results"]}
    # beats random: one family of two tests (bald under each rule), paired t on validation, one-sided
    raw = {rule: sps.ttest_rel(CELLS[("bald", rule)][0], CELLS[("random", rule)][0], alternative="less").pvalue
           for rule in ("steps", "epochs")}
    adj = dict(zip(raw, _holm(list(raw.values()))))
    for rule in ("steps", "epochs"):
        vr = cells[("bald", rule)]["vs_random"]
        assert vr["p"] == pytest.approx(raw[rule]) and vr["p_holm"] == pytest.approx(adj[rule])
        assert vr["wilcoxon_p"] == pytest.approx(0.125)      # all three seeds lower: the exact floor 1/2^3
        assert cells[("bald", rule)]["beats_random"] == (adj[rule] < 0.05)
    # within tolerance: non-inferiority d = cell - full - 0.01 < 0, one family of four tests
    keys = list(CELLS)
    raw_full = [sps.ttest_rel(np.array(CELLS[k][0]) - 0.01, FULL_VAL, alternative="less").pvalue for k in keys]
    for k, p, pa in zip(keys, raw_full, _holm(raw_full)):
        assert cells[k]["vs_full"]["p"] == pytest.approx(p) and cells[k]["vs_full"]["p_holm"] == pytest.approx(pa)
        assert cells[k]["within_tolerance"] == (pa < 0.05)
    assert cells[("bald", "steps")]["within_tolerance"] and not cells[("random", "epochs")]["within_tolerance"]
    # choices on validation; test error only for the chosen cell and its random baseline
    chosen = {c["budget"]: c for c in s["chosen"]}
    assert chosen["steps"]["subset"] == "bald-0.5" and chosen["steps"]["test_error"]["mean"] == \
        pytest.approx(np.mean(CELLS[("bald", "steps")][0]) + 0.01)
    assert chosen["steps"]["random_test_error"]["mean"] == pytest.approx(np.mean(CELLS[("random", "steps")][0]) + 0.01)
    assert all(r["test_error"] is not None for r in s["results"])   # both cells here are chosen or random
    assert "validation" in s["verdict_rule"] and "Holm" in s["verdict_rule"]


def test_break_even_in_examples_work_and_seconds(tmp_path):
    _fake_subset_study(tmp_path / "s")
    s = summarize(tmp_path / "s")
    cells = {(r["acquisition"], r["budget"]): r for r in s["results"]}
    steps, epochs = cells[("bald", "steps")], cells[("bald", "epochs")]
    assert steps["target_cost"]["seconds"] < s["full"]["cost"]["seconds"]  # looks cheaper in seconds
    assert steps["break_even"] == {"examples": None, "work": None, "seconds": None}
    assert epochs["search_cost"]["work"] == 3 * 1000 + 500                 # forward 1, backward 2
    assert epochs["within_tolerance"]
    assert epochs["break_even"]["examples"] == pytest.approx(1500 / 6400)     # scored examples count 1 each
    assert epochs["break_even"]["work"] == pytest.approx(3500 / (3 * 6400))  # a scored example is 1/3
    assert epochs["break_even"]["seconds"] == pytest.approx(4.0 / 8.0)
    assert cells[("random", "epochs")]["break_even"]["work"] is None        # random is not within tolerance
    assert "Always null under the steps budget rule" in s["break_even_rule"]


def test_fewer_than_three_seeds_give_no_verdict(tmp_path):
    _fake_subset_study(tmp_path / "s", seeds=2)
    s = summarize(tmp_path / "s")
    for r in s["results"]:
        assert r["within_tolerance"] is None and r["beats_random"] is None
        assert r["break_even"] == {"examples": None, "work": None, "seconds": None}


@pytest.mark.parametrize("name", ["subset_study_mnist1d-mlp", "subset_study_fashion-mnist-mlp",
                                  "subset_study_mnist1d-mlp_build-up", "subset_study_fashion-mnist-mlp_build-up"])
def test_saved_subset_benchmarks_never_break_even_under_steps(name):
    d = json.loads((RESULTS / f"{name}.json").read_text())
    for r in d["results"]:
        if r["budget"] == "steps":
            assert all(v is None for v in r["break_even"].values())


def test_report_says_a_class_imbalance_once(tmp_path):
    """issue 13: each class-imbalance warning was printed three times (two sections and the caveats)."""
    from feedwise.report.page import build_report

    _fake_subset_study(tmp_path / "s", under_half=(3, 7))
    StudyDir(tmp_path / "s").write_summary(summarize(tmp_path / "s"))
    page = build_report([tmp_path / "s"])
    for text in (page.read_text(), (page.parent / "report.md").read_text()):
        assert text.count("Class imbalance: 2 of 2 subsets hold a class under half its proportional share "
                          "(bald-0.5: class 3, 7; random-0.5: class 3, 7)") == 1
        assert "under half its proportional share 50.0" not in text  # the per-class lines are not repeated
