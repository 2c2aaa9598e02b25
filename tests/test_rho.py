"""RHO-LOSS: the selection against a plain numpy reference, the sampler's candidates, the IL split
(never scoring a row its model trained on), the feeder in the engine and in a user's loop, the study
end to end with its compute account."""

import json
import math

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from feedwise.emphasis.rho import (IrreducibleLosses, RhoSampler, candidate_size, cross_fitted, holdout_split,
                                   select_reducible, work_units)
from feedwise.errors import FeedwiseError


def reference_select(candidates, losses, il_losses, k):
    """The rule written plainly: reducible = loss − IL loss; the k largest, largest first."""
    cand = np.asarray(candidates)
    r = np.asarray(losses, np.float64) - np.asarray(il_losses, np.float64)[cand]
    return cand[np.argsort(-r, kind="stable")[:k]]


def test_selection_matches_the_numpy_reference():
    rng = np.random.default_rng(0)
    for n, m, k in [(50, 20, 5), (200, 200, 1), (1000, 100, 100), (30, 10, 3)]:
        il = rng.gamma(2.0, 0.5, n).astype(np.float32)
        cand = rng.choice(n, m, replace=False)
        losses = rng.gamma(2.0, 0.7, m).astype(np.float32)
        got = select_reducible(torch.from_numpy(cand), torch.from_numpy(losses), torch.from_numpy(il), k)
        assert got.tolist() == reference_select(cand, losses, il, k).tolist()
    # hand-made: high loss with high IL loss (noisy) loses to moderate loss with low IL loss (learnable)
    il = torch.tensor([3.0, 0.1, 0.2, 0.0])
    got = select_reducible(torch.tensor([0, 1, 2, 3]), torch.tensor([3.2, 1.0, 0.3, 0.05]), il, 2)
    assert got.tolist() == [1, 0]          # reducible 0.9, 0.2, 0.1, 0.05
    # a NaN loss ranks last; asking for too many is an error
    got = select_reducible(torch.tensor([0, 1, 2]), torch.tensor([float("nan"), 1.0, 2.0]), torch.zeros(3), 2)
    assert got.tolist() == [2, 1]
    with pytest.raises(FeedwiseError, match="cannot select 4 of 3"):
        select_reducible(torch.tensor([0, 1, 2]), torch.ones(3), torch.zeros(3), 4)


def test_candidates_are_uniform_passes_without_repeats():
    g = torch.Generator().manual_seed(0)
    s = RhoSampler(torch.zeros(103), batch_size=4, ratio=0.1, generator=g)
    assert s.num_candidates == candidate_size(4, 0.1) == 40
    seen = []
    for _ in range(13):                    # 520 candidates: 5 passes over 103 rows and a bit
        c = s.candidates()
        assert len(c) == 40 and len(set(c.tolist())) == 40      # no row twice in one candidate batch
        seen += c.tolist()
    counts = np.bincount(seen[:515], minlength=103)
    assert counts.min() >= 4 and counts.max() <= 6 and s.passes == 5
    assert s.forward_examples == 13 * 40
    # a pool: candidates only from it
    pool = torch.arange(0, 100, 3)
    s = RhoSampler(IrreducibleLosses(torch.where(torch.arange(100) % 3 == 0, 0.5, float("nan")), pool=pool), 2,
                   ratio=0.2, generator=g)
    drawn = torch.cat([s.candidates() for _ in range(20)])
    assert set(drawn.tolist()) <= set(pool.tolist())
    with pytest.raises(FeedwiseError, match="exceeds the 34 rows"):
        RhoSampler(IrreducibleLosses(torch.zeros(100), pool=pool), 8, ratio=0.1)
    with pytest.raises(FeedwiseError, match="finite irreducible loss"):
        IrreducibleLosses(torch.tensor([0.1, float("nan")]))
    for bad in (0, 1.5, "x"):
        with pytest.raises(FeedwiseError, match="ratio"):
            RhoSampler(torch.zeros(10), 2, ratio=bad)


def test_holdout_split_and_cross_fitting():
    t, h = holdout_split(101, 0.5, torch.Generator().manual_seed(1))
    assert len(h) == 50 and len(t) == 51 and not set(t.tolist()) & set(h.tolist())
    assert sorted(t.tolist() + h.tolist()) == list(range(101))
    t2, h2 = holdout_split(101, 0.2, torch.Generator().manual_seed(1))
    assert len(h2) == 20
    a = torch.full((6,), float("nan"))
    b = torch.full((6,), float("nan"))
    a[[0, 2, 4]] = torch.tensor([1.0, 2.0, 3.0])
    b[[1, 3, 5]] = torch.tensor([4.0, 5.0, 6.0])
    il = cross_fitted(a, b, il_train_examples=10, il_forward_examples=6)
    assert il.losses.tolist() == [1, 4, 2, 5, 3, 6] and il.pool is None
    assert il.cost()["il_units"] == work_units(10, 6) == 36
    b[0] = 1.0
    with pytest.raises(FeedwiseError, match="exactly one fold"):
        cross_fitted(a, b)
    with pytest.raises(FeedwiseError, match="holdout fraction"):
        holdout_split(10, 1.0)


def _blobs(n=600, d=10, k=3, seed=0):
    rng = np.random.default_rng(seed)
    y = rng.integers(0, k, n)
    x = rng.normal(0, 1.5, (k, d))[y] + rng.normal(0, 1, (n, d))
    return torch.tensor(x, dtype=torch.float32), torch.tensor(y)


def test_in_a_users_own_loop():
    """The sampler in a plain loop: select(candidates, losses) and the batches(loss_of) generator."""
    x, y = _blobs()
    torch.manual_seed(0)
    il_model = torch.nn.Linear(10, 3)     # the user's IL model, trained on a holdout
    t, h = holdout_split(len(y), 0.5, torch.Generator().manual_seed(0))
    opt = torch.optim.SGD(il_model.parameters(), lr=0.5)
    for _ in range(50):
        loss = F.cross_entropy(il_model(x[h]), y[h])
        opt.zero_grad()
        loss.backward()
        opt.step()
    with torch.no_grad():
        il = torch.full((len(y),), float("nan"))
        il[t] = F.cross_entropy(il_model(x[t]), y[t], reduction="none")
    rho = RhoSampler(IrreducibleLosses(il, pool=t), batch_size=8, ratio=0.25, generator=torch.Generator().manual_seed(0))
    model = torch.nn.Sequential(torch.nn.Linear(10, 16), torch.nn.ReLU(), torch.nn.Linear(16, 3))
    opt = torch.optim.SGD(model.parameters(), lr=0.2)
    start = F.cross_entropy(model(x[t]), y[t]).item()
    for step in range(60):
        cand = rho.candidates()
        with torch.no_grad():
            losses = F.cross_entropy(model(x[cand]), y[cand], reduction="none")
        idx = rho.select(cand, losses)
        assert idx.tolist() == reference_select(cand.numpy(), losses.numpy(), il.numpy(), 8).tolist()
        assert set(idx.tolist()) <= set(t.tolist())          # never a holdout row
        loss = F.cross_entropy(model(x[idx]), y[idx])
        opt.zero_grad()
        loss.backward()
        opt.step()
    assert F.cross_entropy(model(x[t]), y[t]).item() < start
    assert rho.forward_examples == 60 * 32 and rho.steps == 60
    # the generator form
    batches = rho.batches(lambda i: F.cross_entropy(model(x[i]), y[i], reduction="none"))
    assert [len(next(batches)) for _ in range(3)] == [8, 8, 8] and rho.forward_examples == 63 * 32


def test_the_rho_feeder_in_the_engine(tiny):
    from feedwise.data.lazy import LazyInputs  # noqa: F401  (the lazy path is refused, below)
    from feedwise.engine import TrainConfig, Trainer
    from feedwise.feeds import make_feeder
    from feedwise.feeds.rho import RhoFeeder
    from feedwise.workloads import get_workload

    w = get_workload("mnist1d-mlp")
    il = torch.rand(tiny.num_train)
    feeder = RhoFeeder(il, ratio=0.25)
    cfg = TrainConfig(batch_size=16, lr=0.05, max_steps=30, eval_every=15, target=None)
    tr = Trainer(tiny, w.model_fn(tiny), cfg, feeder=feeder)
    seen = []
    own = tr.losses_of

    def spy(idx):                            # what the trainer hands the feeder: its model's losses, no grad
        out = own(idx)
        assert not out.requires_grad
        seen.append((idx.clone(), out.clone()))
        return out
    feeder.attach(spy)
    idx, w8 = feeder.next_batch(16)
    cand, losses = seen[-1]
    assert w8 is None and idx.tolist() == reference_select(cand.numpy(), losses.numpy(), il.numpy(), 16).tolist()
    with torch.no_grad():   # the losses are the model's cross-entropy on those rows
        ref = F.cross_entropy(tr.model(tiny.x_train[cand]), tiny.y_train[cand], reduction="none")
    assert torch.allclose(losses, ref, atol=1e-6)
    res = tr.run()
    assert res.status == "budget" and res.steps_run == 30
    assert feeder.forward_examples == 31 * 64
    c = feeder.cost(res.examples)
    assert c["units"] == work_units(30 * 16, 31 * 64) and int(feeder.selected.sum()) == 31 * 16
    with pytest.raises(FeedwiseError, match="needs irreducible losses"):
        make_feeder("rho")
    with pytest.raises(FeedwiseError, match="1999 irreducible losses"):
        Trainer(tiny, w.model_fn(tiny), cfg, feeder=RhoFeeder(torch.zeros(1999)))


def test_study_end_to_end_never_scores_a_trained_row_and_costs_add_up(tmp_path, data_cache, monkeypatch):
    from feedwise.engine import TrainConfig
    from feedwise.data.options import DataOptions
    from feedwise.results import read_json
    from feedwise.studies.emphasis import irreducible
    from feedwise.studies.emphasis.irreducible import RhoOptions
    from feedwise.studies.emphasis.report import build_sections
    from feedwise.studies.emphasis.run import EmphasisRequest, emphasis_study

    trained_inputs = {}
    real = irreducible.run_trial

    def spy(trial, workload, part, *a, **k):   # the inputs each IL model actually trains on
        trained_inputs[trial.id] = part.x_train.clone()
        return real(trial, workload, part, *a, **k)
    monkeypatch.setattr(irreducible, "run_trial", spy)

    B, steps, il_steps = 32, 40, 20
    cfg = TrainConfig(batch_size=B, lr=0.1, max_steps=steps, eval_every=20, target=None)
    req = EmphasisRequest("mnist1d-mlp", cfg, methods=["uniform", "spv", "rho"], seeds=2, burn_in=1,
                          data=DataOptions(num_samples=2000, label_noise=0.2), matched_compute=True,
                          rho=RhoOptions(ratio=0.25, holdout=0.5, il_steps=il_steps))
    out = tmp_path / "e"
    s = emphasis_study(req, str(out), threads=1, device="cpu")
    data = __import__("feedwise.workloads", fromlist=["x"]).get_workload("mnist1d-mlp").load(
        num_samples=2000, label_noise=0.2, noise_seed=0)
    n = data.num_train
    for seed in (0, 1):
        finite = []
        for fold in "ab":
            d = out / "trials" / f"il-s{seed}-{fold}"
            losses = np.load(d / "losses.npy")
            trained = np.load(d / "trained_rows.npy")
            scored = np.flatnonzero(np.isfinite(losses))
            assert not set(trained.tolist()) & set(scored.tolist())
            finite.append(set(scored.tolist()))
            if seed == 0:   # the inputs it trained on are exactly its rows, none of them a scored row
                x = trained_inputs[f"il-s{seed}-{fold}"]
                assert torch.equal(x, data.x_train[torch.from_numpy(trained)])
                scored_x = {tuple(r) for r in data.x_train[torch.from_numpy(scored)].numpy().round(5).tolist()}
                assert not any(tuple(r) in scored_x for r in x.numpy().round(5).tolist())
        assert finite[0] | finite[1] == set(range(n)) and not finite[0] & finite[1]
    # the compute adds up
    nb = candidate_size(B, 0.25)
    rec = read_json(out / "trials" / "rho-s0" / "trial.json")
    c = rec["compute"]
    assert c["train_examples"] == steps * B and c["forward_examples"] == steps * nb  # n_B per step
    assert c["il_train_examples"] == 2 * il_steps * B and c["il_forward_examples"] == n
    units = 3 * (steps * B + 2 * il_steps * B) + steps * nb + n
    assert c["units"] == units
    m = s["methods"]
    assert m["uniform"]["compute"]["units"] == 3 * steps * B and m["spv"]["compute"]["units_vs_uniform"] == 1
    assert m["rho"]["compute"]["units_vs_uniform"] == pytest.approx(units / (3 * steps * B))
    assert s["matched_steps"] == math.ceil(units / (3 * B))
    matched = read_json(out / "trials" / "uniform-matched-s1" / "trial.json")
    assert matched["steps_run"] == s["matched_steps"] and m["uniform-matched"]["compute"]["units"] >= units
    assert "uniform-matched" not in s["comparisons"]["final"] and "rho" in s["comparisons"]["final"]
    assert set(s["rho"]["final"]) == {"uniform", "spv", "uniform-matched"}
    assert 0 <= rec["diagnostics"]["selected_noisy_share"] <= 1 and rec["il"]["folds"]["a"]["trained_rows"] > 0
    tr = rec["diagnostics"]["selection_trace"]
    assert [r["step"] for r in tr] == [20, 40] and all(0 <= r["noisy_share"] <= 1 for r in tr)
    assert [r["step"] for r in m["rho"]["diagnostics"]["selection_trace"]] == [20, 40]
    assert m["rho"]["il_wall_s_mean"] > 0 and "il_wall_s_mean" not in m["uniform"]
    json.dumps(s)
    # resume: the IL models and the trials are read back, not trained again
    mtimes = {p: p.stat().st_mtime_ns for p in out.glob("trials/*/*.npy")}
    trained_inputs.clear()
    emphasis_study(req, str(out), threads=1, device="cpu")
    assert not trained_inputs and mtimes == {p: p.stat().st_mtime_ns for p in out.glob("trials/*/*.npy")}
    secs = build_sections(out, tmp_path / "assets")
    rho_sec = [sec for sec in secs if "RHO-LOSS" in sec.title]
    assert len(rho_sec) == 1 and len(rho_sec[0].images) == 1 and "uniform-matched" in rho_sec[0].markdown


def test_cli_rho_errors(tmp_path, data_cache, capsys):
    from feedwise.cli import main

    base = ["emphasis", "--num-samples", "2000", "--steps", "20", "--threads", "1"]
    assert main(base + ["--matched-compute", "--out", str(tmp_path / "a")]) == 2
    assert "add rho to --methods" in capsys.readouterr().err
    assert main(base + ["--methods", "uniform,rho", "--rho-ratio", "0", "--out", str(tmp_path / "b")]) == 2
    assert "ratio" in capsys.readouterr().err
    assert main(base + ["--methods", "uniform,rho", "--tune", "2", "--out", str(tmp_path / "c")]) == 2
    assert "does not tune rho" in capsys.readouterr().err
    assert main(base + ["--methods", "uniform,rho", "--rho-holdout", "1", "--out", str(tmp_path / "d")]) == 2
    assert "holdout fraction" in capsys.readouterr().err
    assert main(["train", "--feed", "rho", "--num-samples", "2000", "--steps", "5", "--out", str(tmp_path / "e")]) == 2
    assert "needs irreducible losses" in capsys.readouterr().err
