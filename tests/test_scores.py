"""feedwise.scores: one registry of per-example scores shared by emphasis, acquisition and flag."""

import math

import numpy as np
import pytest
import torch

from feedwise.emphasis import METHODS, PredictionHistory
from feedwise.errors import FeedwiseError
from feedwise.scores import SCORES, emphasis, fill_value, get_score
from feedwise.subset.scorer import ACQUISITIONS, EnsembleScorer, stacked_scores


def test_every_user_of_scores_reads_the_one_registry():
    assert {m.score for m in METHODS.values()} - {"none"} <= set(SCORES)
    assert set(ACQUISITIONS) == {n for n, s in SCORES.items() if s.source == "ensemble"}
    from feedwise.studies.flag.run import SCORE_OF
    from feedwise.studies.subset.run import HISTORY_ACQUISITIONS

    assert set(SCORE_OF.values()) <= set(SCORES) and set(HISTORY_ACQUISITIONS.values()) <= set(SCORES)
    with pytest.raises(FeedwiseError, match="unknown score 'nope'"):
        get_score("nope")


def test_history_scores_equal_a_straightforward_reference():
    rng = np.random.default_rng(0)
    obs = {i: list(rng.uniform(0.01, 0.99, size=i % 4)) for i in range(12)}   # 0..3 observations each
    h = PredictionHistory(12)
    for i, xs in obs.items():
        for x in xs:
            h.update(torch.tensor([i]), torch.tensor([x]))
    for i, xs in obs.items():
        n = len(xs)
        mean = float(np.mean(xs)) if n else math.nan
        var = float(np.var(xs, ddof=1)) if n >= 2 else math.nan
        ref = {"easy": mean, "hard": 1 - mean, "closeness": mean * (1 - mean),
               "variance": math.sqrt(var + var * var / (n - 1)) if n >= 2 else math.nan}
        for name, want in ref.items():
            got = float(get_score(name)(h)[i])
            assert (math.isnan(got) and math.isnan(want)) or got == pytest.approx(want, rel=1e-9, abs=1e-12), name


def test_ensemble_scores_equal_the_stacked_reference():
    rng = np.random.default_rng(1)
    members = rng.dirichlet(np.ones(4), size=(7, 30))
    sc = EnsembleScorer(30, 4)
    for m in members:
        sc.add(m)
    for name in ("entropy", "bald", "variation-ratio", "margin"):
        assert np.allclose(get_score(name)(sc.state), stacked_scores(members, name), atol=1e-12)


def test_emphasis_fills_undefined_clamps_and_adds_epsilon():
    s = torch.tensor([0.2, math.nan, 0.4, -1e-17], dtype=torch.float64)
    assert fill_value(s) == pytest.approx((0.2 + 0.4 - 1e-17) / 3)
    e = emphasis(s, 0.05)
    assert e.tolist() == pytest.approx([0.25, fill_value(s) + 0.05, 0.45, 0.05])
    rel = emphasis(torch.tensor([1.0, 3.0], dtype=torch.float64), 0.5, relative=True)
    assert rel.tolist() == pytest.approx([2.0, 4.0])          # + 0.5 x mean(1, 3)
    assert fill_value(torch.tensor([math.nan])) == 0.0 and fill_value(np.array([math.nan, 1.0])) == 1.0
