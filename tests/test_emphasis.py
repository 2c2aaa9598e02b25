"""Active Bias: history statistics, methods, sampler, weights, engine feeders, bad input."""

import math

import numpy as np
import pytest
import torch
from torch.utils.data import DataLoader, TensorDataset

from feedwise.emphasis import (METHODS, ActiveBiasSampler, PredictionHistory, WithIndex, emphasis_weights,
                               probabilities, true_class_probs)
from feedwise.feeds.emphasis import EmphasisFeeder
from feedwise.engine import TrainConfig, train
from feedwise.errors import FeedwiseError
from feedwise.feeds import feeder_names, make_feeder
from feedwise.workloads import get_workload


def _reference(obs: dict[int, list[float]], n: int):
    """Straightforward statistics from the full list of observations (float64 numpy)."""
    count, mean, std, tc = np.zeros(n), np.full(n, np.nan), np.full(n, np.nan), np.full(n, np.nan)
    for i, xs in obs.items():
        xs = np.asarray(xs, dtype=np.float64)
        count[i] = len(xs)
        mean[i] = xs.mean()
        tc[i] = mean[i] * (1 - mean[i])
        if len(xs) >= 2:
            var = xs.var(ddof=1)
            std[i] = math.sqrt(var + var ** 2 / (len(xs) - 1))
    return count, mean, std, tc


@pytest.mark.parametrize("regime", ["uniform", "confident", "repeats"])
def test_history_matches_reference_with_repeated_indices(regime):
    rng = np.random.default_rng(0)
    n = 50
    h = PredictionHistory(n)
    obs: dict[int, list[float]] = {}
    for step in range(200):
        idx = rng.integers(0, n if regime != "repeats" else 7, size=16)  # repeats within a call
        if regime == "confident":  # near-constant values close to 1: where raw sums of squares cancel
            p = 1 - 1e-6 * rng.random(16)
        else:
            p = rng.random(16)
        p32 = torch.tensor(p, dtype=torch.float32)
        h.update(torch.tensor(idx), p32)
        for i, x in zip(idx, p32.double().numpy()):
            obs.setdefault(int(i), []).append(float(x))
    count, mean, std, tc = _reference(obs, n)
    assert np.array_equal(h.count().numpy(), count)
    np.testing.assert_allclose(h.mean().numpy(), mean, rtol=1e-12, atol=1e-15, equal_nan=True)
    np.testing.assert_allclose(h.std().numpy(), std, rtol=1e-10, atol=1e-15, equal_nan=True)
    if regime == "confident":
        # raw sums of squares (Σx² − (Σx)²/n) would lose about three digits here; the shifted sums do not
        i = max(obs, key=lambda k: len(obs[k]))
        xs = np.asarray(obs[i])
        naive_var = (np.sum(xs * xs) - np.sum(xs) ** 2 / len(xs)) / (len(xs) - 1)
        assert abs(naive_var - xs.var(ddof=1)) > 1e-6 * xs.var(ddof=1)
        assert abs(float(h.var()[i]) - xs.var(ddof=1)) < 1e-12 * xs.var(ddof=1)
    np.testing.assert_allclose(h.threshold_closeness().numpy(), tc, rtol=1e-9, atol=1e-15, equal_nan=True)
    # subsets of indices give the same numbers
    sub = torch.tensor([3, 0, 3])
    np.testing.assert_allclose(h.std(sub).numpy(), std[[3, 0, 3]], rtol=1e-10, atol=1e-15, equal_nan=True)


def test_history_nan_below_two_observations_and_memory_is_o_n():
    h = PredictionHistory(5)
    h.update(torch.tensor([0, 1, 1]), torch.tensor([0.5, 0.2, 0.6]))
    assert h.count().tolist() == [1, 2, 0, 0, 0]
    std = h.std()
    assert math.isnan(std[0]) and not math.isnan(std[1]) and math.isnan(std[2])
    assert math.isnan(h.mean()[2]) and h.mean()[0] == 0.5
    before = h.nbytes()
    for _ in range(100):  # many "epochs": memory does not move
        h.update(torch.arange(5), torch.rand(5))
    assert h.nbytes() == before == 5 * 4 * 8


def test_history_state_dict_round_trip_and_size_check():
    h = PredictionHistory(10)
    h.update(torch.randint(0, 10, (40,)), torch.rand(40))
    g = PredictionHistory(10)
    g.load_state_dict(h.state_dict())
    assert torch.equal(g.count(), h.count()) and torch.allclose(g.std(), h.std(), equal_nan=True)
    with pytest.raises(FeedwiseError, match="10 examples"):
        PredictionHistory(11).load_state_dict(h.state_dict())


def _filled(n=100, seed=0):
    torch.manual_seed(seed)
    h = PredictionHistory(n)
    for _ in range(5):
        h.update(torch.arange(n), torch.rand(n))
    return h


def test_probabilities_follow_the_scores():
    h = _filled()
    p = probabilities(h, "spv", epsilon=0.1)
    ref = h.std() + 0.1
    assert torch.allclose(p, ref / ref.sum()) and abs(float(p.sum()) - 1) < 1e-12
    tc = probabilities(h, "stc", epsilon=0.0)
    assert torch.allclose(tc, h.threshold_closeness() / h.threshold_closeness().sum())
    hard = probabilities(h, "sd", epsilon=0.0)
    assert torch.argmax(hard) == torch.argmin(h.mean())


def test_weights_mean_one_and_proportional():
    h = _filled()
    idx = torch.tensor([1, 5, 5, 9, 42])
    w = emphasis_weights(h, idx, "wpv", epsilon=0.05)
    s = h.std(idx) + 0.05
    assert abs(float(w.mean()) - 1) < 1e-6
    assert torch.allclose(w.double(), s / s.mean(), atol=1e-6)


def test_sampler_in_a_dataloader_loop_emphasises_high_variance():
    n = 60
    x, y = torch.randn(n, 3), torch.randint(0, 2, (n,))
    history = PredictionHistory(n)
    sampler = ActiveBiasSampler(history, method="spv", epsilon=0.0, burn_in=1, generator=torch.Generator().manual_seed(0))
    loader = DataLoader(WithIndex(TensorDataset(x, y)), batch_size=10, sampler=sampler)
    # epoch 0 (burn-in) is a permutation
    seen = torch.cat([idx for _, _, idx in loader])
    assert sorted(seen.tolist()) == list(range(n))
    # examples 0..9 get varying probabilities, the others constant ones: std̂ = 0 for the others
    for r in range(4):
        history.update(torch.arange(n), torch.cat([torch.rand(10), torch.full((n - 10,), 0.7)]))
    counts = torch.zeros(n)
    for _ in range(5):
        for xb, yb, idx in loader:
            logits = torch.randn(len(idx), 2)
            assert true_class_probs(logits, yb).shape == (len(idx),)
            counts += torch.bincount(idx, minlength=n)
    assert counts[:10].sum() == counts.sum()  # ε = 0: only varying examples are drawn


def test_bad_input_gets_clear_errors(tiny):
    h = PredictionHistory(10)
    with pytest.raises(FeedwiseError, match="unknown emphasis method 'nope'"):
        ActiveBiasSampler(h, method="nope")
    with pytest.raises(FeedwiseError, match="epsilon"):
        ActiveBiasSampler(h, method="spv", epsilon=-0.1)
    with pytest.raises(FeedwiseError, match="epsilon"):
        emphasis_weights(h, [1, 2], "wpv", epsilon=-1)
    with pytest.raises(FeedwiseError, match="draws from 10 examples; it cannot use a history of 12"):
        ActiveBiasSampler(h, method="spv").probabilities(PredictionHistory(12))
    with pytest.raises(FeedwiseError, match="11 examples from a history of 10"):
        probabilities(h, "spv", num_examples=11)
    with pytest.raises(FeedwiseError, match="has 11 examples"):
        ActiveBiasSampler(h, data_source=list(range(11)))
    with pytest.raises(FeedwiseError, match="weights the loss"):
        ActiveBiasSampler(h, method="wpv")
    with pytest.raises(FeedwiseError, match="burn-in"):
        make_feeder("spv", burn_in=-1)
    with pytest.raises(FeedwiseError, match="outside"):
        emphasis_weights(h, [10], "wpv")
    with pytest.raises(FeedwiseError, match="label noise must be in"):
        get_workload("mnist1d-mlp").load(num_samples=2000, label_noise=1.0)


def test_every_method_is_an_engine_feeder():
    for name in METHODS:
        assert name in feeder_names()


def _run_feeder(feeder, n=200, bs=16, steps=80, seed=0):
    feeder.bind(n, torch.Generator().manual_seed(seed))
    drawn, weights = [], []
    for _ in range(steps):
        idx, w = feeder.next_batch(bs)
        drawn.append(idx)
        weights.append(w)
        p = torch.where(idx < 20, torch.rand(len(idx)), torch.full((len(idx),), 0.9))  # 0..19 vary
        feeder.observe(idx, p)
    return drawn, weights


def test_feeder_burn_in_then_emphasis():
    n, bs = 200, 16
    drawn, weights = _run_feeder(EmphasisFeeder("spv", epsilon=0.0, burn_in=2), n, bs, steps=80)
    flat = torch.cat(drawn)
    assert sorted(flat[:n].tolist()) == list(range(n)) and sorted(flat[n:2 * n].tolist()) == list(range(n))
    assert all(w is None for w in weights)
    after = flat[3 * n:]
    assert (after < 20).all()  # ε = 0: only the examples with varying predictions are sampled
    drawn, weights = _run_feeder(EmphasisFeeder("wpv", epsilon=0.01, burn_in=2), n, bs, steps=80)
    flat = torch.cat(drawn)
    assert sorted(flat[2 * n:3 * n].tolist()) == list(range(n))  # weighting keeps uniform shuffling
    late = [(i, w) for i, w in zip(drawn[30:], weights[30:])]
    assert all(w is not None and abs(float(w.mean()) - 1) < 1e-5 for _, w in late)
    i, w = torch.cat([a for a, _ in late]), torch.cat([b for _, b in late])
    assert w[i < 20].mean() > 3 * w[i >= 20].mean()


def test_loss_importance_sampling_is_unbiased_weighted():
    f = EmphasisFeeder("loss", burn_in=1)
    drawn, weights = _run_feeder(f, 200, 20, steps=60)
    ws = [w for w in weights[20:] if w is not None]
    assert ws, "loss sampling must return 1/(N p) weights after burn-in"
    p = f.epoch_probs  # drawn at the start of the last epoch (200 / 20: no batch crosses epochs)
    i = drawn[-1]
    assert torch.allclose(weights[-1].double(), 1.0 / (200 * p[i]), rtol=1e-4)
    assert float(1.0 / (200 * p.min())) <= 2.0 + 1e-6  # ε = 1: weights bounded by 2


@pytest.mark.parametrize("feed", ["spv", "wpv", "stc", "loss"])
def test_engine_trains_with_emphasis_reproducibly(tiny, feed):
    w = get_workload("mnist1d-mlp")
    cfg = TrainConfig(batch_size=64, lr=0.05, max_steps=120, eval_every=60, target=None, seed=1)
    a, ta = train(tiny, w.model_fn(tiny), cfg, feeder=make_feeder(feed, burn_in=1))
    b, _ = train(tiny, w.model_fn(tiny), cfg, feeder=make_feeder(feed, burn_in=1))
    assert a.status == "budget" and 0 <= a.test_error <= 1
    assert [r["val_error"] for r in a.rows] == [r["val_error"] for r in b.rows]
    assert ta.feeder.history.count().sum() == 120 * 64  # every forward pass observed


def test_cli_train_with_feed_spv(tmp_path, data_cache):
    from feedwise.cli import main
    from feedwise.results import read_json

    out = tmp_path / "t"
    rc = main(["train", "--feed", "spv", "--threads", "1", "--num-samples", "2000", "--steps", "60", "--eval-every", "30",
               "--batch-size", "64", "--out", str(out)])
    assert rc == 0
    rec = read_json(out / "trials" / "0" / "trial.json")
    assert rec["status"] == "budget" and rec["feed"]["feed"] == "spv" and rec["feed"]["epsilon"] == 0.05
    assert main(["train", "--feed", "nope", "--num-samples", "2000", "--out", str(tmp_path / "u")]) == 2


def test_wpv_weights_taken_at_epoch_start_equal_the_current_history_weights():
    """Under shuffling without replacement, the per-epoch scores are each example's history at its visit."""
    n, bs = 200, 16
    f = EmphasisFeeder("wpv", epsilon=0.05, burn_in=2, flush_every=5)
    f.bind(n, torch.Generator().manual_seed(0))
    checked = 0
    for step in range(100):
        idx, w = f.next_batch(bs)
        if w is not None and f._pos >= bs and len(set(idx.tolist())) == bs:  # not an epoch-crossing batch
            ref = emphasis_weights(f.history, idx, "wpv", epsilon=0.05)  # .history flushes everything pending
            assert torch.allclose(w, ref, rtol=1e-5, atol=1e-6)
            checked += 1
        f.observe(idx, torch.rand(len(idx)))
    assert checked > 30


def test_observations_are_deferred_but_never_lost():
    f = EmphasisFeeder("spv", flush_every=7)
    f.bind(50, torch.Generator().manual_seed(0))
    for _ in range(10):
        idx, _ = f.next_batch(10)
        f.observe(idx, torch.rand(10))
    assert len(f._pending) == 3  # 10 = 7 flushed + 3 pending
    assert int(f.history.count().sum()) == 100 and not f._pending
    with pytest.raises(FeedwiseError, match="flush_every"):
        EmphasisFeeder("spv", flush_every=0)


def test_normalised_weights_under_changing_batch_sizes_and_kept_batches():
    """WPV weights are normalised a whole epoch ahead; a batch-size change restarts that, and the
    weights already handed out keep their values when later epochs are normalised."""
    n = 200
    f = EmphasisFeeder("wpv", epsilon=0.05, burn_in=1, flush_every=3)
    f.bind(n, torch.Generator().manual_seed(0))
    kept, checked = [], 0
    for step, bs in enumerate([16, 16, 24, 7, 16] * 30):
        pos, fresh = f._pos, f._stale is None  # not the step that rescores the last epoch's tail
        raw = None if f._order_w is None else f._order_w.clone()
        idx, w = f.next_batch(bs)
        if w is not None and pos + bs <= n and fresh and raw is not None:
            ref = raw[pos:pos + bs]
            assert torch.allclose(w, ref / ref.mean(), rtol=1e-6)
            kept.append((w, w.clone()))
            checked += 1
        f.observe(idx, torch.rand(len(idx)))
    assert checked > 50
    assert all(torch.equal(a, b) for a, b in kept)


def test_draw_follows_the_probabilities():
    from feedwise.emphasis.methods import draw
    p = torch.tensor([0.5, 0.0, 0.3, 0.2, 0.0], dtype=torch.float64)
    idx = draw(p, 200_000, torch.Generator().manual_seed(0))
    freq = torch.bincount(idx, minlength=5).double() / len(idx)
    assert freq[1] == 0 and freq[4] == 0  # zero probability: never drawn, the last one included
    assert torch.allclose(freq, p, atol=0.005)
    assert torch.equal(idx, draw(p, 200_000, torch.Generator().manual_seed(0)))  # seeded
    # i.i.d., not sorted: consecutive draws are independent
    a, b = idx[:-1].double(), idx[1:].double()
    assert abs(float(torch.corrcoef(torch.stack([a, b]))[0, 1])) < 0.01
