"""Training-dynamics scores (EL2N, forgetting events, area under the margin) against plain numpy loops,
coverage-centric selection (CCS) against a hand-computed example, and both in the subset study."""

import math

import numpy as np
import pytest

from feedwise.errors import FeedwiseError
from feedwise.subset import TrainingDynamics, ccs_allocation, select_ccs


def _reference(logits_seq, labels, el2n_first):
    """Straight from the papers' definitions, one example and one evaluation at a time."""
    n, k = logits_seq[0].shape
    el2n, forgetting, aum = [], [], []
    for i in range(n):
        y = labels[i]
        norms, margins, correct = [], [], []
        for c, z in enumerate(logits_seq):
            row = [float(v) for v in z[i]]
            m = max(row)
            e = [math.exp(v - m) for v in row]
            p = [v / sum(e) for v in e]
            if c < el2n_first:
                norms.append(math.sqrt(sum((p[j] - (1.0 if j == y else 0.0)) ** 2 for j in range(k))))
            other = max(row[j] for j in range(k) if j != y)
            margins.append(row[y] - other)
            correct.append(row[y] > other)
        forgets = sum(1 for c in range(1, len(correct)) if correct[c - 1] and not correct[c])
        el2n.append(sum(norms) / len(norms))
        forgetting.append(forgets if any(correct) else len(logits_seq))   # never learned: most forgettable
        aum.append(-sum(margins) / len(margins))
    return np.array(el2n), np.array(forgetting, float), np.array(aum)


@pytest.mark.parametrize("seed,el2n_first", [(0, 1), (1, 2), (2, 5)])
def test_dynamics_scores_match_the_loops(seed, el2n_first):
    rng = np.random.default_rng(seed)
    n, k, c = 9, 3, 5
    labels = rng.integers(0, k, n)
    seq = [rng.normal(0, 2, (n, k)) for _ in range(c)]
    seq[0][0] = [-5, 5, 0] if labels[0] != 1 else [5, -5, 0]        # example 0 never learned ...
    for z in seq[1:]:
        z[0] = seq[0][0]
    d = TrainingDynamics(labels, el2n_checkpoints=el2n_first)
    for z in seq:
        d.add(z)
    el2n, forgetting, aum = _reference(seq, labels, el2n_first)
    assert d.score("el2n") == pytest.approx(el2n, rel=1e-12)
    assert d.score("forgetting") == pytest.approx(forgetting)
    assert d.score("aum") == pytest.approx(aum, rel=1e-12)
    assert d.score("forgetting")[0] == c                             # ... ranks as the most forgettable


def test_forgetting_by_hand_and_bad_input():
    d = TrainingDynamics([0])
    for z in ([[1, 0]], [[0, 1]], [[1, 0]], [[0, 1]], [[1, 0]]):  # correct, wrong, correct, wrong, correct
        d.add(z)
    assert d.score("forgetting").tolist() == [2.0] and d.score("aum").tolist() == [-0.2]
    with pytest.raises(FeedwiseError, match="logits must be"):
        d.add([[1, 0], [0, 1]])
    with pytest.raises(FeedwiseError, match="NaN"):
        d.add([[np.nan, 0]])
    with pytest.raises(FeedwiseError, match="unknown training-dynamics score"):
        d.score("nope")
    with pytest.raises(FeedwiseError, match="no evaluation"):
        TrainingDynamics([0, 1]).score("aum")


def test_ccs_by_hand():
    # 20 examples: difficulty 0..19. beta 0.1 drops the 2 hardest (18, 19); k = 3 strata of [0, 17], width 17/3:
    # [0, 5.67) -> 0..5 (6), [5.67, 11.33) -> 6..11 (6), [11.33, 17] -> 12..17 (6); budget 9 -> 3 per stratum
    scores = np.arange(20, dtype=float)
    sel = select_ccs(scores, 9, seed=0, strata=3, beta=0.1)
    idx = sel.indices
    assert idx.size == 9 and not set(idx) & {18, 19}
    assert [int(((idx >= lo) & (idx <= hi)).sum()) for lo, hi in ((0, 5), (6, 11), (12, 17))] == [3, 3, 3]
    # unequal strata: the smallest ones are filled first, the rest spread evenly
    assert ccs_allocation([1, 10, 2, 10], 12).tolist() == [1, 4, 2, 5]   # 1, 2, then floor(9/2)=4, 5
    assert ccs_allocation([0, 3, 100], 50).tolist() == [0, 3, 47]
    skewed = np.array([0.0] * 10 + [10.0] * 2 + [5.0])                  # strata of 10, 1 and 2 (k = 3, beta 0)
    sel = select_ccs(skewed, 6, seed=1, strata=3, beta=0.0)
    assert set(np.flatnonzero(skewed > 0)) <= set(sel.indices)         # the two small strata given whole
    assert int((skewed[sel.indices] == 0).sum()) == 3


def test_ccs_budget_over_what_pruning_leaves_and_balance():
    scores = np.arange(10, dtype=float)
    sel = select_ccs(scores, 9, seed=0, strata=2, beta=0.5)     # only 1 example can go: the hardest
    assert sel.indices.tolist() == list(range(9))
    labels = np.array([0] * 6 + [1] * 4)
    sel = select_ccs(scores, 5, seed=0, strata=2, beta=0.0, labels=labels, balance="class")
    assert np.bincount(labels[sel.indices]).tolist() == [3, 2]
    with pytest.raises(FeedwiseError, match="beta"):
        select_ccs(scores, 5, beta=1.0)
    with pytest.raises(FeedwiseError, match="finite"):
        select_ccs(np.array([0.0, np.nan]), 1)


def test_study_with_dynamics_and_ccs(tmp_path, data_cache):
    from feedwise.studies.subset.run import SubsetRequest, run_subset_study
    from feedwise.studies.train.run import DataOptions

    req = SubsetRequest(workload="mnist1d-mlp", acquisitions=["entropy", "el2n", "forgetting", "aum", "random"],
                        fractions=[0.25], ensemble="2x3", seeds=1, balances=["none"], budgets=["epochs"],
                        batch_size=32, target_steps=20, acq_steps=12, selections=["top", "ccs"], ccs_strata=5,
                        data=DataOptions(num_samples=2000))
    s, ran = run_subset_study(req, str(tmp_path / "s"), threads=1, device="cpu")
    names = {r["subset"] for r in s["results"]}
    assert names == {f"{a}-0.25" for a in ("entropy", "el2n", "forgetting", "aum", "random")} | \
        {f"{a}-ccs-0.25" for a in ("entropy", "el2n", "forgetting", "aum")}
    assert ran == 2 + 1 + 9
    cells = {r["subset"]: r for r in s["results"]}
    ens = s["cost"]["ensembles"]["oneshot"]
    # the dynamics scores read model 0 only: their search costs one model's training and scoring
    member0 = ens["train_examples"] / 2, ens["scored_examples"] / 2
    assert cells["el2n-0.25"]["search_cost"]["train_examples"] == member0[0]
    assert cells["aum-ccs-0.25"]["search_cost"]["work"] == 3 * member0[0] + member0[1]
    assert cells["entropy-0.25"]["search_cost"]["work"] == 3 * ens["train_examples"] + ens["scored_examples"]
    assert s["selections"] == ["top", "ccs"] and s["subsets"]["el2n-ccs-0.25"]["strata"] == 5
    # only dynamics acquisitions: the search trains the dynamics models alone
    req2 = SubsetRequest(workload="mnist1d-mlp", acquisitions=["aum"], fractions=[0.25], ensemble="2x3", seeds=1,
                         balances=["none"], budgets=["epochs"], batch_size=32, target_steps=20, acq_steps=12,
                         data=DataOptions(num_samples=2000))
    s2, ran2 = run_subset_study(req2, str(tmp_path / "s2"), threads=1, device="cpu")
    assert s2["cost"]["ensembles"]["oneshot"]["members"] == 1 and ran2 == 1 + 2
    # aum from the study equals aum recomputed from the same model's saved state? (same seeds, same subset)
    assert np.array_equal(np.load(tmp_path / "s2" / "subsets" / "aum-0.25.npy"),
                          np.load(tmp_path / "s" / "subsets" / "aum-0.25.npy"))


@pytest.mark.parametrize("kw,msg", [
    (dict(acquisitions=["el2n"], schedule="build-up"), "one-shot"),
    (dict(selections=["ccs"], schedule="build-up"), "one-shot"),
    (dict(selections=["best"]), "unknown selection"),
    (dict(acquisitions=["el2n", "entropy"], ensemble="2x3", dynamics_models=3), "exceeds"),
    (dict(acquisitions=["el2n"], ensemble="2x3", el2n_checkpoints=4), "exceeds"),
    (dict(ccs_beta=1.0), "ccs-beta"),
])
def test_bad_requests(kw, msg):
    from feedwise.studies.subset.run import SubsetRequest

    base = dict(workload="mnist1d-mlp", acquisitions=["el2n", "random"])
    with pytest.raises(FeedwiseError, match=msg):
        SubsetRequest(**{**base, **kw}).validate()


def test_cli_options_reach_the_request():
    import argparse

    from feedwise.studies.subset.cli import register, request_from_args

    p = argparse.ArgumentParser()
    register(p.add_subparsers())
    a = p.parse_args(["subset", "--acquisitions", "el2n,forgetting,aum,random", "--selections", "top,ccs",
                      "--ccs-strata", "7", "--ccs-beta", "0.2", "--dynamics-models", "2", "--el2n-checkpoints", "3",
                      "--out", "x"])
    r = request_from_args(a)
    assert (r.acquisitions, r.selections, r.ccs_strata, r.ccs_beta, r.dynamics_models, r.el2n_checkpoints) == \
        (["el2n", "forgetting", "aum", "random"], ["top", "ccs"], 7, 0.2, 2, 3)
