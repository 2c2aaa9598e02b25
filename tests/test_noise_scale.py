"""The noise scale's estimators against brute-force references: every subset / every draw of a
tiny dataset enumerated (exact expectations), and a dense Hessian for B_noise."""

import itertools
import math

import pytest
import torch

from feedwise.monitor import hvps, measure_gradients
from feedwise.stats import finite_c, noise_estimate, noise_summaries, ratio_of_means


def test_finite_c_is_the_variance_of_a_mean_drawn_without_replacement():
    # E|mean of B of the N vectors|^2 over all C(N, B) subsets = |G|^2 + c(B) tr(Sigma), Sigma with divisor N
    g = torch.Generator().manual_seed(0)
    n, d = 7, 3
    v = torch.randn(n, d, generator=g, dtype=torch.float64) + 0.5
    G = v.mean(0)
    tr = float(((v - G) ** 2).sum(1).mean())
    for b in range(1, n + 1):
        subsets = list(itertools.combinations(range(n), b))
        mean_sq = sum(float(v[list(s)].mean(0) @ v[list(s)].mean(0)) for s in subsets) / len(subsets)
        assert mean_sq == pytest.approx(float(G @ G) + finite_c(b, n) * tr, rel=1e-12)
    # without the correction (1/B) the expectation is off by the factor (N - B)/(N - 1)
    assert finite_c(4, n) * 4 == pytest.approx((n - 4) / (n - 1))
    assert finite_c(4, None) == 0.25


def test_two_batch_estimator_is_exactly_unbiased_over_every_draw():
    # the probe's scheme: B_big drawn without replacement, cut in chunks of B_small; averaged over all
    # ordered draws the estimates are exactly |G|^2 and tr(Sigma) (with N); the 1/B version is not
    g = torch.Generator().manual_seed(1)
    n, d, bs, bb = 6, 4, 2, 4
    v = torch.randn(n, d, generator=g, dtype=torch.float64) * 2 + 0.3
    G = v.mean(0)
    true_g2, true_tr = float(G @ G), float(((v - G) ** 2).sum(1).mean())
    est, naive = [], []
    for draw in itertools.permutations(range(n), bb):
        x = v[list(draw)]
        chunks = x.view(bb // bs, bs, d).mean(1)
        small, big = float((chunks ** 2).sum(1).mean()), float(x.mean(0) @ x.mean(0))
        est.append(noise_estimate(small, big, bs, bb, n))
        naive.append(noise_estimate(small, big, bs, bb))
    g2s, trs = zip(*est)
    assert sum(g2s) / len(g2s) == pytest.approx(true_g2, rel=1e-10)
    assert sum(trs) / len(trs) == pytest.approx(true_tr, rel=1e-10)
    # with 1/B instead of c(B) tr(Sigma) comes out (c(2) - c(4)) / (1/2 - 1/4) = 1.2 times too big here
    factor = (finite_c(bs, n) - finite_c(bb, n)) / (1 / bs - 1 / bb)
    assert sum(t for _, t in naive) / len(naive) == pytest.approx(factor * true_tr, rel=1e-10) and factor > 1.19


def test_summaries_name_what_they_weigh():
    # B_simple rising from 100 to 1,000 while |G|^2 falls 10x: the |G|^2-weighted ratio sits near the start
    steps = list(range(0, 400, 50))
    g2 = [10.0, 10.0, 4.0, 4.0, 2.0, 2.0, 1.0, 1.0]
    b = [100.0, 100.0, 250.0, 250.0, 500.0, 500.0, 1000.0, 1000.0]
    tr = [x * y for x, y in zip(g2, b)]
    s = noise_summaries(steps, g2, tr, target_step=300, block=2)
    assert s["time_average"] == pytest.approx((100 + 250 + 500 + 1000) / 4)
    assert s["g2_weighted"] == pytest.approx(sum(tr) / sum(g2)) and s["g2_weighted"] < 0.6 * s["time_average"]
    assert s["near_target"] == pytest.approx(ratio_of_means(g2[5:7], tr[5:7]))   # the 2 measurements up to 300
    assert s["late_window"] == pytest.approx(1000.0) and s["at_start"] == pytest.approx(100.0)
    assert s["at_target"] == pytest.approx(1000.0)
    assert math.isnan(noise_summaries(steps, g2, tr)["near_target"])          # target not reached


class Tiny(torch.nn.Module):
    def __init__(self):
        super().__init__()
        self.a, self.b = torch.nn.Linear(3, 4), torch.nn.Linear(4, 3)

    def forward(self, x):
        return self.b(torch.tanh(self.a(x)))


def _flat_loss(model, x, y):
    names = [k for k, _ in model.named_parameters()]
    shapes = [p.shape for p in model.parameters()]

    def f(w):
        ps, i = {}, 0
        for k, sh in zip(names, shapes):
            ps[k] = w[i:i + sh.numel()].view(sh)
            i += sh.numel()
        return torch.nn.functional.cross_entropy(torch.func.functional_call(model, ps, (x,)), y)
    return f


def test_b_noise_matches_a_dense_hessian_exactly():
    torch.manual_seed(0)
    model = Tiny().double()
    n = 5
    x, y = torch.randn(n, 3, dtype=torch.float64), torch.tensor([0, 1, 2, 1, 0])
    w0 = torch.cat([p.detach().reshape(-1) for p in model.parameters()])
    H = torch.autograd.functional.hessian(_flat_loss(model, x, y), w0)        # dense, of the mean loss over N
    v = torch.randn(2, w0.numel(), dtype=torch.float64)
    for hv, vi in zip(hvps(model, torch.nn.functional.cross_entropy, x, y, list(v)), v):
        assert torch.allclose(hv, H @ vi, rtol=1e-10, atol=1e-12)
    per = torch.stack([torch.func.grad(_flat_loss(model, x[i:i + 1], y[i:i + 1]))(w0) for i in range(n)])
    G = per.mean(0)
    exact_ghg = float(G @ H @ G)
    exact_trhs = float(torch.einsum("id,de,ie->", per - G, H, per - G) / n)   # tr(H Sigma), Sigma over the N
    # every ordered draw of 4 of the 5 examples in 2 chunks of 2, H on all N: the mean estimate is exact
    hs, hb = [], []
    for draw in itertools.permutations(range(n), 4):
        idx = list(draw)
        m = measure_gradients(model, torch.nn.functional.cross_entropy, x[idx], y[idx], 2, hessian=(x, y))
        c = [per[idx[:2]].mean(0), per[idx[2:]].mean(0)]
        assert m["h_small"] == pytest.approx(float(sum(g @ H @ g for g in c) / 2), rel=1e-9)
        assert m["h_big"] == pytest.approx(float((c[0] + c[1]) @ H @ (c[0] + c[1]) / 4), rel=1e-9)
        hs.append(m["h_small"])
        hb.append(m["h_big"])
    ghg, trhs = noise_estimate(sum(hs) / len(hs), sum(hb) / len(hb), 2, 4, n)
    assert ghg == pytest.approx(exact_ghg, rel=1e-8) and trhs == pytest.approx(exact_trhs, rel=1e-8)
    assert all(p.grad is None for p in model.parameters())


def test_hessian_chunks_group_the_chunk_gradients():
    torch.manual_seed(1)
    model = Tiny().double()
    x, y = torch.randn(8, 3, dtype=torch.float64), torch.randint(0, 3, (8,))
    m = measure_gradients(model, torch.nn.functional.cross_entropy, x, y, 2, hessian=(x, y), hessian_chunks=2)
    assert (m["hb_small"], m["hb_big"]) == (4, 8) and (m["b_small"], m["b_big"]) == (2, 8)
    m2 = measure_gradients(model, torch.nn.functional.cross_entropy, x, y, 4, hessian=(x, y))
    assert m["h_small"] == pytest.approx(m2["h_small"], rel=1e-9) and m["h_big"] == pytest.approx(m2["h_big"], rel=1e-9)
    with pytest.raises(Exception, match="hessian_chunks"):
        measure_gradients(model, torch.nn.functional.cross_entropy, x, y, 2, hessian=(x, y), hessian_chunks=5)


def test_the_monitor_probe_records_b_noise():
    from feedwise.monitor import NoiseScaleMonitor

    torch.manual_seed(2)
    model = Tiny().double()
    x, y = torch.randn(16, 3, dtype=torch.float64), torch.randint(0, 3, (16,))
    ce = torch.nn.functional.cross_entropy
    mon = NoiseScaleMonitor(num_examples=16)
    g = torch.Generator().manual_seed(0)
    rows = []
    for _ in range(3):
        p = torch.randperm(16, generator=g)[:8]
        r = mon.probe(model, ce, x[p], y[p], 2, hessian=(x, y), hessian_chunks=2)
        m = measure_gradients(model, ce, x[p], y[p], 2, hessian=(x, y), hessian_chunks=2)
        assert (r["gHg"], r["trace_HS"]) == pytest.approx(noise_estimate(m["h_small"], m["h_big"], 4, 8, 16))
        rows.append(r)
    s = mon.summary()
    assert s["b_noise_measurements"] == 3
    assert s["b_noise_weighted"] == pytest.approx(sum(r["trace_HS"] for r in rows) / sum(r["gHg"] for r in rows))
    plain = NoiseScaleMonitor(num_examples=16)
    plain.probe(model, ce, x[:8], y[:8], 2)
    assert "b_noise_time_average" not in plain.summary()
