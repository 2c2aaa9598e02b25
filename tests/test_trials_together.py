"""Trials trained together: each trial inside the batch measures what it measures alone.

Tolerance, robust to the CPU: the batched model computes the same maths with other kernels
(batched matrix products, a loss mean reduced over the stacked batch). On the CPU this was written
on the gradients and so the parameters come out bit-identical, and only the recorded training loss
differs in its last bits, but another CPU or torch may round differently and training amplifies
that. Asserted: the first evaluations' losses to rtol 1e-4 and their error rates to 2 validation
examples, every status and step count that does not depend on the last bits (a divergence within
the first chunk of steps, a pruning bound that a trial far from the target meets, the step budget),
and steps-to-result within one evaluation period."""

import json

import pytest
import torch
from torch import nn

from feedwise.engine import TrainConfig, Trainer
from feedwise.errors import FeedwiseError
from feedwise.feeds import make_feeder
from feedwise.parallel.together import Member, TrialsTogether
from feedwise.studies.batch_size.run import (
    BatchSizeRequest,
    Budget,
    run_batch_size_study,
)
from feedwise.studies.batch_size.scaling import should_prune
from feedwise.studies.train.run import DataOptions
from feedwise.workloads import get_workload

EVAL = 20


def cfg(seed, lr, momentum=0.9, optimizer="momentum", steps=160, end=0.5):
    return TrainConfig(batch_size=32, optimizer=optimizer, lr=lr, momentum=momentum, schedule="linear",
                       end_factor=end, decay_steps=120, max_steps=steps, eval_every=EVAL, target=0.62,
                       stop_at_target=True, seed=seed, evaluate_test=False)


def prune_at(best):
    return lambda trainer, row: "pruned" if should_prune(trainer.step, EVAL, best) else None


@pytest.mark.parametrize("optimizer", ["momentum", "adam"])
def test_a_trial_in_a_batch_measures_what_it_measures_alone(tiny, optimizer):
    mf = get_workload("mnist1d-mlp").model_fn(tiny)
    scale = 0.05 if optimizer == "adam" else 1.0
    # reaches the target | diverges in its first chunk | pruned mid-batch by a bound | runs its budget
    cfgs = [cfg(0, 0.1 * scale, optimizer=optimizer), cfg(1, 1e30, optimizer=optimizer),
            cfg(2, 0.002 * scale, 0.5, optimizer=optimizer), cfg(3, 0.003 * scale, 0.5, optimizer=optimizer)]
    callbacks = [[], [], [prune_at(100)], []]
    alone = [Trainer(tiny, mf, c).run(callbacks=cb) for c, cb in zip(cfgs, callbacks)]
    left = []
    members = [Member(Trainer(tiny, mf, c), cb, on_done=lambda r, k=k: left.append((k, r.steps_run)))
               for k, (c, cb) in enumerate(zip(cfgs, callbacks))]
    together = TrialsTogether(members).run()
    assert [r.status for r in alone] == ["reached", "diverged", "pruned", "budget"]
    assert [r.status for r in together] == [r.status for r in alone]
    # each left the batch when it stopped, the others went on undisturbed
    assert [k for k, _ in left] == [1, 2, 0, 3] or [k for k, _ in left] == [1, 0, 2, 3]
    for a, t in zip(alone, together):
        assert (t.steps_run, t.examples) == (a.steps_run, a.examples) or a.status == "reached"
        n = min(len(a.rows), len(t.rows), 3)
        assert n >= 1
        for ra, rt in zip(a.rows[:n], t.rows[:n]):
            assert rt["step"] == ra["step"] and rt["examples"] == ra["examples"]
            if a.status == "diverged":
                assert not torch.isfinite(torch.tensor(rt["train_loss"]))
                continue
            assert rt["train_loss"] == pytest.approx(ra["train_loss"], rel=1e-4)
            assert rt["val_loss"] == pytest.approx(ra["val_loss"], rel=1e-4)
            assert abs(rt["val_error"] - ra["val_error"]) <= 2 / len(tiny.y_val) + 1e-12
            assert rt["lr"] == pytest.approx(ra["lr"])
    assert abs(together[0].steps_to_result - alone[0].steps_to_result) <= EVAL
    assert together[1].steps_run == alone[1].steps_run == EVAL      # diverged at its first check
    assert together[2].steps_run == alone[2].steps_run == 80        # pruned: 80 + 20 >= 100
    # the models hold their own final parameters after leaving the batch
    mods = [m.trainer.model for m in members]
    assert not torch.equal(next(mods[0].parameters()), next(mods[3].parameters()))


def test_what_cannot_be_batched_is_refused_in_one_line(tiny):
    def with_(layer):
        return lambda: nn.Sequential(nn.Flatten(), nn.Linear(40, 16), layer, nn.Linear(16, 10))

    class Branchy(nn.Module):   # data-dependent control flow: vmap cannot run it
        def __init__(self):
            super().__init__()
            self.fc = nn.Linear(40, 10)

        def forward(self, x):
            return self.fc(x.flatten(1)) if float(x.sum()) > 0 else -self.fc(x.flatten(1))

    for model_fn, match in ((with_(nn.BatchNorm1d(16)), "batch norm"), (with_(nn.Dropout(0.5)), "dropout"),
                            (Branchy, "vmap cannot run")):
        members = [Member(Trainer(tiny, model_fn, cfg(s, 0.1))) for s in range(2)]
        with pytest.raises(FeedwiseError, match=match) as e:
            TrialsTogether(members)
        assert "\n" not in str(e.value)
    mf = get_workload("mnist1d-mlp").model_fn(tiny)
    observing = [Member(Trainer(tiny, mf, cfg(s, 0.1), feeder=make_feeder("spv"))) for s in range(2)]
    with pytest.raises(FeedwiseError, match="feeder EmphasisFeeder observes examples"):
        TrialsTogether(observing)
    c2 = cfg(1, 0.1)
    c2.batch_size = 64
    with pytest.raises(FeedwiseError, match="differ in batch size"):
        TrialsTogether([Member(Trainer(tiny, mf, cfg(0, 0.1))), Member(Trainer(tiny, mf, c2))])


def test_study_with_trials_together_gives_the_same_steps_to_result(tmp_path, data_cache):
    space = {"lr": [1e-3, 3.0], "one_minus_momentum": 0.1, "end_factor": 1.0, "decay_fraction": 1.0}
    got = {}
    for k in (1, 4):
        req = BatchSizeRequest(workload="mnist1d-mlp", batch_sizes=[128], trials=6, optimizer="momentum",
                               target=0.6, budget=Budget(max_steps=150, ref_batch=0, eval_every=10), seed=1,
                               space=space, data=DataOptions(num_samples=2000))
        s = run_batch_size_study(req, tmp_path / f"k{k}", threads=1, device="cpu", trials_together=k)
        got[k] = {e["batch_size"]: e for e in s["batch_sizes"]}
    for b in (128,):
        assert got[1][b]["points"] == got[4][b]["points"] == list(range(6))
        assert abs(got[1][b]["steps_to_result"] - got[4][b]["steps_to_result"]) <= 10   # one evaluation period
        # in lockstep, the first trial to reach the target prunes the others at once
        assert got[4][b]["examples_processed"] < got[1][b]["examples_processed"]
    with pytest.raises(FeedwiseError, match="--trials-together cannot be combined"):
        run_batch_size_study(req, tmp_path / "x", trials_together=2, jobs=2)


def test_a_trial_reaching_the_target_prunes_the_others_at_that_very_evaluation(tiny):
    class Best:
        best = None

        def add(self, steps):
            self.best = steps if self.best is None else min(self.best, steps)

    best = Best()

    def exact(trainer, row):
        return "pruned" if should_prune(trainer.step, EVAL, best.best) else None

    mf = get_workload("mnist1d-mlp").model_fn(tiny)
    # the slow trial comes first: its evaluation runs before the other one reaches the target at that step
    slow, fast = cfg(3, 0.003, 0.5), cfg(0, 0.1)
    res = TrialsTogether([Member(Trainer(tiny, mf, slow), [exact]), Member(Trainer(tiny, mf, fast), [exact])],
                         best=best).run()
    assert res[1].status == "reached" and res[0].status == "pruned"
    assert res[0].steps_run == res[1].steps_to_result == best.best


USER_WORKLOAD = '''
import numpy as np
from torch import nn
from feedwise.workloads import Workload


def blobs(split_seed=0):
    rng = np.random.default_rng(0)
    centers = rng.normal(0, 2.5, (4, 12))
    y = rng.integers(0, 4, 1400)
    x = (centers[y] + rng.normal(0, 1, (1400, 12))).astype(np.float32)
    return x[:1200], y[:1200], x[1200:], y[1200:]


def normed(input_shape, num_classes):
    return nn.Sequential(nn.Linear(12, 16), nn.BatchNorm1d(16), nn.ReLU(), nn.Linear(16, num_classes))


def plain(input_shape, num_classes):
    return nn.Sequential(nn.Linear(12, 16), nn.ReLU(), nn.Linear(16, num_classes))


def smoothed(logits, labels):
    return nn.functional.cross_entropy(logits, labels, reduction="none", label_smoothing=0.05)


NORMED = Workload("normed", dataset=blobs, model=normed, target=0.3, max_steps=60, eval_every=20, batch_size=32,
                  lr=0.05, val_size=0.2)
SMOOTH = Workload("smooth", dataset=blobs, model=plain, target=0.3, max_steps=60, eval_every=20, batch_size=32,
                  lr=0.05, val_size=0.2, loss=smoothed)
'''


def test_user_workloads_through_the_cli(tmp_path, capsys):
    from feedwise.cli import main

    path = tmp_path / "mine.py"
    path.write_text(USER_WORKLOAD)
    args = ["batch-size", "--batch-sizes", "32", "--trials", "2", "--trials-together", "2", "--ref-batch", "0"]
    assert main([*args, "--workload", f"{path}:NORMED", "--out", str(tmp_path / "bn")]) == 2
    err = capsys.readouterr().err.strip()
    assert "batch norm" in err and "\n" not in err and not (tmp_path / "bn" / "study.json").exists()
    # a model of one's own with a loss of one's own trains together
    assert main([*args, "--workload", f"{path}:SMOOTH", "--out", str(tmp_path / "ok")]) == 0
    recs = [json.loads(p.read_text()) for p in (tmp_path / "ok" / "trials").glob("*/trial.json")]
    assert len(recs) == 2 and all(r["trials_together"] == 2 for r in recs)
