"""Difficulty-aware subset selection (Sorscher et al. 2022): --keep hardest | easiest | auto."""

import numpy as np
import pytest

from feedwise.cli import main
from feedwise.errors import FeedwiseError
from feedwise.results import read_json
from feedwise.studies.subset.run import SubsetRequest, run_subset_study
from feedwise.studies.train.run import DataOptions
from feedwise.subset.scorer import EnsembleScorer
from feedwise.subset.select import (AUTO_SPLIT, difficulty_scores, proportional_quotas, resolve_keep, select_top,
                                    subset_size)


def test_resolve_keep_rule():
    assert resolve_keep("hardest", 0.1) == "hardest" and resolve_keep("easiest", 0.9) == "easiest"
    assert resolve_keep("auto", 0.1) == "easiest" and resolve_keep("auto", AUTO_SPLIT - 1e-9) == "easiest"
    assert resolve_keep("auto", AUTO_SPLIT) == "hardest" and resolve_keep("auto", 0.9) == "hardest"
    with pytest.raises(FeedwiseError):
        resolve_keep("middle", 0.5)


def test_easiest_keeps_lowest_scores_and_balance_holds():
    rng = np.random.default_rng(0)
    s = rng.random(1000)
    labels = rng.integers(0, 4, 1000)
    easy = select_top(difficulty_scores(s, "easiest", 0.2), 200).indices
    hard = select_top(difficulty_scores(s, "hardest", 0.2), 200).indices
    assert s[easy].max() < np.delete(s, easy).min()
    assert s[hard].min() > np.delete(s, hard).max()
    bal = select_top(difficulty_scores(s, "auto", 0.2), 200, labels=labels, balance="class")
    counts = np.bincount(labels[bal.indices], minlength=4)
    assert counts.tolist() == proportional_quotas(labels, 200).tolist()
    for c in range(4):   # within each class, the easiest
        inside, outside = s[bal.indices][labels[bal.indices] == c], s[(labels == c)]
        assert inside.max() <= np.sort(outside)[counts[c] - 1]
    # outside-the-pool entries (-inf) are never kept, whatever the orientation
    s2 = s.copy()
    s2[:10] = -np.inf
    assert not set(range(10)) & set(select_top(difficulty_scores(s2, "easiest", 0.2), 200).indices)


def test_study_auto_keeps_easy_small_and_hard_large(tmp_path, data_cache):
    req = SubsetRequest(workload="mnist1d-mlp", acquisitions=["entropy"], fractions=[0.25, 0.5], ensemble="1x2",
                        seeds=1, balances=["none"], budgets=["steps"], batch_size=32, target_steps=20, acq_steps=10,
                        keep="auto", data=DataOptions(num_samples=2000))
    out = tmp_path / "run"
    summary, _ = run_subset_study(req, str(out), threads=1, device="cpu")
    assert summary["keep"] == "auto" and "0.5" in summary["keep_rule"]
    z = np.load(out / "scores" / "oneshot.npz")
    sc = EnsembleScorer(len(z["sum_p"]), z["sum_p"].shape[1])
    sc.load_state_dict(z)
    ent = sc.scores("entropy")
    n = len(ent)
    small, large = np.load(out / "subsets" / "entropy-0.25.npy"), np.load(out / "subsets" / "entropy-0.5.npy")
    assert small.size == subset_size(0.25, n) and large.size == subset_size(0.5, n)
    assert ent[small].max() <= np.delete(ent, small).min()      # easiest at 0.25
    assert ent[large].min() >= np.delete(ent, large).max()      # hardest at 0.5
    assert read_json(out / "subsets" / "entropy-0.25.json")["keep"] == "easiest"
    assert read_json(out / "subsets" / "entropy-0.5.json")["keep"] == "hardest"
    # a different --keep on the same folder is a different study
    with pytest.raises(FeedwiseError):
        run_subset_study(SubsetRequest(**{**req.__dict__, "keep": "hardest"}), str(out), threads=1, device="cpu")


def test_cli_rejects_bad_keep(tmp_path, capsys):
    assert main(["subset", "--keep", "middle", "--out", str(tmp_path / "x")]) == 2
    assert "invalid choice: 'middle'" in capsys.readouterr().err
