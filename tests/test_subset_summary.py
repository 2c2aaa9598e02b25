"""The subset study's break-even (docs/definitions.md): never under the `steps` budget rule (issue 13)."""

import json
from pathlib import Path

import pytest

from feedwise.results import StudyDir, write_json
from feedwise.studies.subset.summary import cell_break_even, summarize

RESULTS = Path(__file__).resolve().parents[1] / "benchmarks" / "results"


def test_steps_rule_never_breaks_even_even_when_its_seconds_look_cheaper():
    # Fashion one-shot bald 1/4 under the steps rule: 12.09 s vs 16.09 s for identical work gave "17.5"
    search = {"examples": 1_484_000, "seconds": 70.08}
    full = {"examples": 192_000.0, "seconds": 16.09}
    same_work = {"examples": 192_000.0, "seconds": 12.09}
    assert cell_break_even("steps", "bald", search, full, same_work, 0.128, 0.128, 0.01) == \
        {"examples": None, "seconds": None}
    assert cell_break_even("steps", "random", {"examples": 0, "seconds": 0.0}, full, same_work, 0.128, 0.128,
                           0.01) == {"examples": None, "seconds": None}
    half = {"examples": 96_000.0, "seconds": 8.0}
    be = cell_break_even("epochs", "bald", search, full, half, 0.130, 0.128, 0.01)
    assert be["examples"] == pytest.approx(1_484_000 / 96_000) and be["seconds"] == pytest.approx(70.08 / 8.09)
    assert cell_break_even("epochs", "bald", search, full, half, 0.2, 0.128, 0.01) == \
        {"examples": None, "seconds": None}  # outside the tolerance: pays for nothing


def _fake_subset_study(root: Path, under_half: tuple = ()) -> None:
    """A finished one-shot subset study written by hand: one ensemble member, one acquisition,
    full data and the subset under both budget rules (steps: same work, fewer seconds by chance)."""
    sd = StudyDir(root)
    sd.open("subset", {"workload": "mnist1d-mlp", "tolerance": 0.01, "acquisitions": ["bald"], "fractions": [0.5],
                       "balances": ["none"], "budgets": ["steps", "epochs"], "schedule": "one-shot",
                       "ensemble": "1x1", "seeds": 1, "target_steps": 100})
    trials = {
        "acq-0": {"role": "acquisition", "ensemble": "oneshot", "examples": 1000, "scored_examples": 500,
                  "wall_s": 3.0, "score_s": 1.0},
        "target-full-s0": {"role": "target", "examples": 12_800, "wall_s": 16.0, "test_error": 0.20},
        "bald-steps": {"role": "target", "subset": "bald-0.5", "acquisition": "bald", "fraction": 0.5,
                       "balance": "none", "budget": "steps", "examples": 12_800, "wall_s": 12.0,
                       "steps_run": 100, "test_error": 0.20},
        "bald-epochs": {"role": "target", "subset": "bald-0.5", "acquisition": "bald", "fraction": 0.5,
                        "balance": "none", "budget": "epochs", "examples": 6_400, "wall_s": 8.0,
                        "steps_run": 50, "test_error": 0.205},
    }
    for tid, rec in trials.items():
        t = sd.trial(tid)
        t.start({"id": tid, **rec})
        t.finish({"id": tid, "status": "budget", **rec})
    (root / "subsets").mkdir()
    write_json(root / "subsets" / "bald-0.5.json", {"ensemble": ["oneshot"], "size": 500, "tie_filled": 0,
                                                     "composition": {"counts": [50] * 10, "share": [50.0] * 10,
                                                                     "under_half": list(under_half)}})


def test_summary_gives_no_break_even_under_the_steps_rule(tmp_path):
    _fake_subset_study(tmp_path / "s")
    s = summarize(tmp_path / "s")
    cells = {r["budget"]: r for r in s["results"]}
    assert cells["steps"]["target_cost"]["seconds"] < s["full"]["cost"]["seconds"]  # looks cheaper in seconds
    assert cells["steps"]["break_even"] == {"examples": None, "seconds": None}
    assert cells["epochs"]["break_even"]["examples"] == pytest.approx(1500 / 6400)
    assert cells["epochs"]["break_even"]["seconds"] == pytest.approx(4.0 / 8.0)
    assert "Always null under the steps budget rule" in s["break_even_rule"]


@pytest.mark.parametrize("name", ["subset_study_mnist1d-mlp", "subset_study_fashion-mnist-mlp",
                                  "subset_study_mnist1d-mlp_build-up", "subset_study_fashion-mnist-mlp_build-up"])
def test_saved_subset_benchmarks_follow_the_break_even_rule(name):
    d = json.loads((RESULTS / f"{name}.json").read_text())
    full = d["full_data"]
    for r in d["results"]:
        be = cell_break_even(r["budget"], r["acquisition"], r["search_cost"], full["cost"], r["target_cost"],
                             r["test_error"]["mean"], full["test_error"]["mean"], d["tolerance"])
        assert r["break_even"] == pytest.approx(be), (r["acquisition"], r["fraction"], r["budget"])
        if r["budget"] == "steps":
            assert r["break_even"] == {"examples": None, "seconds": None}


def test_report_says_a_class_imbalance_once(tmp_path):
    """issue 13: each class-imbalance warning was printed three times (two sections and the caveats)."""
    from feedwise.report.page import build_report

    _fake_subset_study(tmp_path / "s", under_half=(3, 7))
    StudyDir(tmp_path / "s").write_summary(summarize(tmp_path / "s"))
    page = build_report([tmp_path / "s"])
    for text in (page.read_text(), (page.parent / "report.md").read_text()):
        assert text.count("Class imbalance: 1 of 1 subsets hold a class under half its proportional share "
                          "(bald-0.5: class 3, 7)") == 1
        assert "under half its proportional share 50.0" not in text  # the per-class lines are not repeated
