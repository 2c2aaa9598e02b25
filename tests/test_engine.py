import math

import pytest
import torch

from feedwise.engine import TrainConfig, Trainer, derive_seed, lr_factor, train
from feedwise.errors import FeedwiseError
from feedwise.feeds.base import UniformFeeder
from feedwise.workloads import get_workload

W = get_workload("mnist1d-mlp")


def _cfg(**kw):
    base = dict(batch_size=32, lr=0.05, max_steps=120, eval_every=40, target=None)
    base.update(kw)
    return TrainConfig(**base)


def _strip_time(rows):
    return [{k: v for k, v in r.items() if k not in ("wall_s", "eval_s")} for r in rows]


def test_same_seed_same_measurements(tiny):
    a, _ = train(tiny, W.model_fn(tiny), _cfg(seed=3))
    b, _ = train(tiny, W.model_fn(tiny), _cfg(seed=3))
    c, _ = train(tiny, W.model_fn(tiny), _cfg(seed=4))
    assert _strip_time(a.rows) == _strip_time(b.rows)
    assert _strip_time(a.rows) != _strip_time(c.rows)
    assert a.test_error == b.test_error


def test_rows_and_budget(tiny):
    r, _ = train(tiny, W.model_fn(tiny), _cfg(max_steps=100, eval_every=40))
    assert [row["step"] for row in r.rows] == [40, 80, 100]
    assert r.status == "budget" and r.steps_run == 100 and r.examples == 3200
    assert r.rows[-1]["examples"] == 3200 and r.wall_s > 0 and r.eval_s > 0
    assert 0 <= r.test_error <= 1


def test_example_budget(tiny):
    r, _ = train(tiny, W.model_fn(tiny), _cfg(max_examples=1000, batch_size=64))
    assert r.steps_run == math.ceil(1000 / 64)


def test_stops_at_target(tiny):
    r, _ = train(tiny, W.model_fn(tiny), _cfg(target=0.99, eval_every=10))
    assert r.status == "reached" and r.steps_to_result == 10 and r.steps_run == 10
    r2, _ = train(tiny, W.model_fn(tiny), _cfg(target=0.99, eval_every=10, stop_at_target=False))
    assert r2.status == "reached" and r2.steps_to_result == 10 and r2.steps_run == 120


def test_divergence_is_a_status_not_a_crash(tiny):
    r, _ = train(tiny, W.model_fn(tiny), _cfg(lr=1e6, optimizer="sgd"))
    assert r.status == "diverged" and r.steps_run <= 120 and r.test_error is None


def test_callback_can_stop_a_run(tiny):
    r, _ = train(tiny, W.model_fn(tiny), _cfg(), callbacks=[lambda t, row: "pruned" if row["step"] >= 80 else None])
    assert r.status == "pruned" and r.steps_run == 80


@pytest.mark.parametrize("opt", ["sgd", "momentum", "nesterov", "adam"])
def test_every_optimizer_learns(tiny, opt):
    lr = 1e-3 if opt == "adam" else 0.05
    r, t = train(tiny, W.model_fn(tiny), _cfg(optimizer=opt, lr=lr, max_steps=200, eval_every=200))
    assert r.final_val_error < 0.85  # better than chance (0.9)
    assert type(t.optimizer).__name__ == ("Adam" if opt == "adam" else "SGD")


def test_schedules():
    c = _cfg(schedule="linear", end_factor=0.1, max_steps=100)
    assert lr_factor(c, 0, 100) == 1.0 and abs(lr_factor(c, 50, 100) - 0.55) < 1e-12 and lr_factor(c, 200, 100) == pytest.approx(0.1)
    c = _cfg(schedule="cosine", end_factor=0.0, decay_steps=10)
    assert lr_factor(c, 0, 100) == 1.0 and lr_factor(c, 5, 100) == pytest.approx(0.5) and lr_factor(c, 10, 100) == pytest.approx(0.0)
    assert lr_factor(_cfg(), 77, 100) == 1.0


def test_decay_is_applied_by_the_trainer(tiny):
    r, t = train(tiny, W.model_fn(tiny), _cfg(schedule="linear", end_factor=0.5, max_steps=100, eval_every=100))
    assert t.optimizer.param_groups[0]["lr"] == pytest.approx(0.05 * (1 - 0.5 * 99 / 100))


def test_bad_configs(tiny):
    for kw, msg in [({"batch_size": 0}, "positive"), ({"batch_size": 10**6}, "larger than the training set"),
                    ({"optimizer": "lamb"}, "unknown optimizer"), ({"lr": -1}, "learning rate"),
                    ({"momentum": 1.0}, "momentum"), ({"schedule": "step"}, "unknown schedule")]:
        with pytest.raises(FeedwiseError, match=msg):
            Trainer(tiny, W.model_fn(tiny), _cfg(**kw))


def test_observe_receives_true_class_probabilities(tiny):
    seen = []

    class Spy(UniformFeeder):
        wants_observations = True

        def observe(self, indices, probs):
            seen.append((indices.clone(), probs.clone()))

    class Reference(UniformFeeder):  # the same run, with the model's probabilities taken by hand
        def next_batch(self, bs):
            idx, w = super().next_batch(bs)
            with torch.no_grad():
                ref.append(torch.softmax(trainer_ref[0].model(tiny.x_train[idx]), 1)
                           .gather(1, tiny.y_train[idx][:, None]).squeeze(1))
            return idx, w

    ref, trainer_ref = [], []
    from feedwise.engine import Trainer
    trainer_ref.append(Trainer(tiny, W.model_fn(tiny), _cfg(max_steps=3, eval_every=3), feeder=Reference()))
    trainer_ref[0].run()
    _, t = train(tiny, W.model_fn(tiny), _cfg(max_steps=3, eval_every=3), feeder=Spy())
    assert len(seen) == 3
    idx, p = seen[-1]
    assert idx.shape == p.shape == (32,) and ((p > 0) & (p < 1)).all()
    for (_, p), r in zip(seen, ref):  # the label's softmax probability, before the step
        assert torch.allclose(p, r, rtol=1e-5, atol=1e-7)


def test_weights_from_the_feeder_scale_the_loss(tiny):
    class Zero(UniformFeeder):
        def next_batch(self, bs):
            idx, _ = super().next_batch(bs)
            return idx, torch.zeros(bs)

    _, t = train(tiny, W.model_fn(tiny), _cfg(max_steps=5, eval_every=5, optimizer="sgd"), feeder=Zero())
    _, t0 = train(tiny, W.model_fn(tiny), _cfg(max_steps=0 + 1, eval_every=1, optimizer="sgd", lr=1e-12))
    # zero weights give zero gradients: parameters stay at their (seeded) initialisation
    for p, q in zip(t.model.parameters(), t0.model.parameters()):
        assert torch.allclose(p, q, atol=1e-9)


def test_weighted_step_is_the_gradient_of_the_mean_weighted_loss(tiny):
    """The engine hands d(loss)/d(per) = w / B to backward; one SGD step must equal the step of the
    textbook loss mean(w * per), and the recorded train loss must be that mean."""
    torch.manual_seed(3)
    fixed = torch.rand(32) * 2

    class Fixed(UniformFeeder):
        wants_observations = True

        def next_batch(self, bs):
            idx, _ = super().next_batch(bs)
            batches.append(idx)
            return idx, fixed

        def observe_losses(self, indices, losses):
            seen.append(losses)

    batches, seen = [], []
    cfg = _cfg(max_steps=1, eval_every=1, optimizer="sgd", lr=0.1)
    t = Trainer(tiny, W.model_fn(tiny), cfg, feeder=Fixed())
    ref = Trainer(tiny, W.model_fn(tiny), cfg)  # the same initialisation
    t.train_steps(1)
    idx = batches[0]
    per = torch.nn.functional.cross_entropy(ref.model(tiny.x_train[idx]), tiny.y_train[idx], reduction="none")
    loss = (per * fixed).mean()
    loss.backward()
    with torch.no_grad():
        for p, q in zip(t.model.parameters(), ref.model.parameters()):
            assert torch.allclose(p, q - 0.1 * q.grad, rtol=1e-5, atol=1e-7)
    assert torch.allclose(seen[0], per.detach(), rtol=1e-5, atol=1e-7)  # observed losses are before the step
    assert float(t._loss_sum) == pytest.approx(float(loss.detach()), rel=1e-5)


def test_derived_seeds_are_distinct_and_stable():
    assert derive_seed(0, "init") == derive_seed(0, "init")
    assert len({derive_seed(0, "init"), derive_seed(0, "data"), derive_seed(1, "init")}) == 3


def test_every_row_reaches_every_callback_before_the_stop_rule(tiny):
    """The row where the target is reached reaches every callback (a best-checkpoint keeper, a
    probe), and all callbacks see a row even when an earlier one asked to stop."""
    seen_a, seen_b = [], []

    def a(trainer, row):
        seen_a.append(row["step"])
        return "pruned" if row["step"] >= 20 else None

    def b(trainer, row):
        seen_b.append(row["step"])

    r, _ = train(tiny, W.model_fn(tiny), _cfg(target=0.99, eval_every=10), callbacks=[b])
    assert r.status == "reached" and seen_b == [10] and r.time_to_result_s == pytest.approx(r.wall_s)
    seen_b.clear()
    r, _ = train(tiny, W.model_fn(tiny), _cfg(eval_every=10), callbacks=[a, b])
    assert r.status == "pruned" and seen_a == seen_b == [10, 20] and r.time_to_result_s is None


def test_named_streams_are_independent_and_never_collide_like_offsets():
    from feedwise.seeds import stream

    # the offsets they replace: 1000 + 100*round + member met round r+1's member 0 at member 100
    seeds = {stream(0, "acquisition", r, j) for r in range(3) for j in range(150)}
    assert len(seeds) == 3 * 150
    assert stream(0, "init") == derive_seed(0, "init") and stream(0, "init") != stream(1, "init")
    assert all(0 <= s < 2 ** 63 for s in seeds)
