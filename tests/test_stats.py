"""feedwise.stats' paired tests and Holm's correction against scipy and a plain reference."""

import itertools

import numpy as np
import pytest
from scipy import stats as sps

from feedwise.stats import holm, paired_t, wilcoxon_exact

RNG = np.random.default_rng(7)
PAIRS = [(RNG.normal(0.10, 0.01, n), RNG.normal(0.11, 0.01, n)) for n in (3, 4, 5, 8)] + \
        [(np.array([0.1, 0.2, 0.3]), np.array([0.12, 0.19, 0.35]))]


@pytest.mark.parametrize("alt", ["two-sided", "less", "greater"])
@pytest.mark.parametrize("k", range(len(PAIRS)))
def test_paired_t_matches_scipy(k, alt):
    a, b = PAIRS[k]
    ours = paired_t(a, b, alt)
    ref = sps.ttest_rel(a, b, alternative=alt)
    assert ours["t"] == pytest.approx(ref.statistic, rel=1e-9)
    assert ours["p"] == pytest.approx(ref.pvalue, rel=1e-9)
    assert ours["mean_diff"] == pytest.approx(np.mean(a - b))


def test_paired_t_shift_is_a_margin_test():
    a, b = PAIRS[1]
    ours = paired_t(a, b, "less", shift=0.01)
    ref = sps.ttest_rel(a - 0.01, b, alternative="less")
    assert ours["p"] == pytest.approx(ref.pvalue, rel=1e-9)
    assert ours["mean_diff"] == pytest.approx(np.mean(a - b))


def test_paired_t_degenerate():
    assert paired_t([0.1], [0.2])["p"] is None
    assert paired_t([0.1, 0.2], [0.1, 0.2])["p"] == 1.0                 # no difference at all
    const = paired_t([1, 2, 3], [2, 3, 4], "less")                       # all differences -1
    assert const["p"] == 0.0 and paired_t([1, 2, 3], [2, 3, 4], "greater")["p"] == 1.0
    with pytest.raises(ValueError):
        paired_t([1, 2], [1, 2, 3])


@pytest.mark.parametrize("alt", ["two-sided", "less", "greater"])
@pytest.mark.parametrize("a,b", [([0.1, 0.2, 0.3], [0.15, 0.18, 0.4]), ([1, 2, 3, 4, 5], [1.5, 2.7, 2, 4.2, 6.1]),
                                 ([3, 1, 4, 1, 5, 9], [2, 7, 1, 8, 2, 8]), ([1, 2, 3, 4], [2, 3, 4, 5.5])])
def test_wilcoxon_matches_scipy_exact(a, b, alt):
    """Inputs without tied |d| (scipy's exact method assumes none; ties are checked by enumeration below)."""
    ours = wilcoxon_exact(a, b, alt)
    ref = sps.wilcoxon(a, b, alternative=alt, method="exact")
    assert ours["p"] == pytest.approx(ref.pvalue, rel=1e-9)


def test_wilcoxon_ties_and_floor():
    # tied |d| (mid-ranks) against a brute-force enumeration
    d = np.array([0.5, -0.5, 1.0, 2.0])
    r = sps.rankdata(np.abs(d))
    w = r[d > 0].sum()
    null = [sum(r[i] for i in range(4) if s[i]) for s in itertools.product([0, 1], repeat=4)]
    assert wilcoxon_exact(d, np.zeros(4), "greater")["p"] == pytest.approx(np.mean(np.array(null) >= w))
    # three seeds: the smallest two-sided p is 2/2^3
    assert wilcoxon_exact([0, 0, 0], [1, 2, 3])["p"] == pytest.approx(0.25)
    assert wilcoxon_exact([1, 2], [1, 2])["p"] == 1.0


def _holm_reference(ps):
    """Holm by the textbook: reject in order while p_(j) ≤ α/(m − j + 1); the adjusted p is the smallest α
    that rejects it — found here by bisection over α for every hypothesis."""
    m = len(ps)
    order = np.argsort(ps, kind="stable")

    def rejected(alpha):
        rej = np.zeros(m, bool)
        for j, i in enumerate(order):
            if ps[i] <= alpha / (m - j):
                rej[i] = True
            else:
                break
        return rej

    adj = []
    for i in range(m):
        lo, hi = 0.0, 1.0
        if not rejected(1.0)[i]:
            adj.append(1.0)
            continue
        for _ in range(60):
            mid = (lo + hi) / 2
            lo, hi = (lo, mid) if rejected(mid)[i] else (mid, hi)
        adj.append(hi)
    return adj


@pytest.mark.parametrize("ps", [[0.01, 0.04, 0.03, 0.2], [0.001, 0.5, 0.02], [0.3, 0.3, 0.01, 0.049, 0.9],
                                [0.02]])
def test_holm_matches_reference(ps):
    assert holm(ps) == pytest.approx(_holm_reference(ps), abs=1e-12)


def test_holm_by_hand_and_none():
    assert holm([0.01, None, 0.04, 0.03]) == pytest.approx([0.03, None, 0.06, 0.06])
    assert holm([]) == [] and holm([None]) == [None]
