"""The irreducible-loss (IL) model of RHO-LOSS in the emphasis study: its split, its training, its
cached losses and its cost.

Split (per seed ``s``, drawn from the stream ``stream(s, "rho holdout")``): the training rows are cut
into a holdout H of ``holdout`` × N rows (default 1/2, the paper's) and the rest T.

- ``crossfit`` (default): two IL models, one trained on H (scores T), one trained on T (scores H).
  Every row's IL loss comes from a model that never trained on it, and the target model draws its
  candidates from all N rows, the same data every other method of the study trains on.
- holdout only (``crossfit=False``, the paper's set-up): one IL model trained on H scores T, and the
  target model trains on T only (H is never a candidate).

Each IL model is the workload's model trained with the study's optimiser and batch size for
``il_steps`` steps (default: half the target's budget) by uniform shuffling over its rows; its
best-validation checkpoint (the study's validation split) scores the rows it did not train on once,
in eval mode. Each fold is the trial ``trials/il-s<seed>-<a|b>/`` with ``losses.npy`` (N values, NaN
on the rows it trained on) and ``trained_rows.npy``: computed once, read back on resume.
"""

from __future__ import annotations

import copy
import math
from dataclasses import asdict, dataclass, replace

import numpy as np
import torch
import torch.nn.functional as F

from feedwise.data.lazy import LazyInputs
from feedwise.data.sources import Dataset
from feedwise.emphasis.rho import (DEFAULT_HOLDOUT, DEFAULT_RATIO, IrreducibleLosses, candidate_size, check_holdout,
                                   check_ratio, cross_fitted, holdout_split, work_units)
from feedwise.engine import TrainConfig
from feedwise.errors import FeedwiseError
from feedwise.feeds.base import UniformFeeder
from feedwise.results import StudyDir, TrialDir
from feedwise.seeds import stream
from feedwise.studies.common import run_trial
from feedwise.studies.emphasis.checkpoint import BestCheckpoint


@dataclass
class RhoOptions:
    ratio: float = DEFAULT_RATIO          # B / n_B
    holdout: float = DEFAULT_HOLDOUT      # share of the training rows in the IL model's holdout H
    crossfit: bool = True                 # two IL models (H scores T, T scores H); False: target trains on T only
    il_steps: int | None = None           # steps of each IL model (None: half the target's budget)

    def validate(self) -> None:
        check_ratio(self.ratio)
        check_holdout(self.holdout)
        if self.il_steps is not None and int(self.il_steps) < 1:
            raise FeedwiseError(f"--rho-il-steps must be at least 1, got {self.il_steps}")

    def steps_of_il(self, cfg: TrainConfig) -> int:
        return int(self.il_steps) if self.il_steps is not None else max(1, cfg.budget_steps() // 2)

    def folds(self) -> int:
        return 2 if self.crossfit else 1


def split_rows(num_train: int, opts: RhoOptions, seed: int) -> tuple[torch.Tensor, torch.Tensor]:
    """(T, H): the target's rows and the IL holdout of seed ``seed``."""
    g = torch.Generator().manual_seed(stream(seed, "rho holdout"))
    return holdout_split(num_train, opts.holdout, generator=g)


def expected_cost(opts: RhoOptions, cfg: TrainConfig, num_train: int) -> dict:
    """The compute of one rho run, known before it runs (forward-pass units, :func:`work_units`):
    target training, candidate forwards, the IL models' training and their scoring passes."""
    steps, b = cfg.budget_steps(), cfg.batch_size
    _, h = split_rows(num_train, opts, 0)
    il_train = opts.folds() * opts.steps_of_il(cfg) * b
    il_fwd = num_train if opts.crossfit else num_train - len(h)
    c = {"train_examples": steps * b, "forward_examples": steps * candidate_size(b, opts.ratio),
         "il_train_examples": il_train, "il_forward_examples": il_fwd}
    c["units"] = work_units(c["train_examples"] + il_train, c["forward_examples"] + il_fwd)
    return c


def matched_steps(opts: RhoOptions, cfg: TrainConfig, num_train: int) -> int:
    """Steps of uniform training that cost what one rho run costs (all of it: IL models, candidates)."""
    return max(1, math.ceil(expected_cost(opts, cfg, num_train)["units"] / work_units(cfg.batch_size)))


def subset(data: Dataset, rows: torch.Tensor) -> Dataset:
    """``data`` with only training rows ``rows`` (validation and test unchanged)."""
    if isinstance(data.x_train, LazyInputs):
        raise FeedwiseError("RHO-LOSS needs the training data in memory (its inputs are read lazily here)")
    r = rows.to(data.x_train.device)
    pos = {int(i): k for k, i in enumerate(rows.tolist())}
    noisy = np.asarray([pos[int(i)] for i in data.noisy_indices if int(i) in pos], dtype=np.int64)
    return replace(data, x_train=data.x_train[r], y_train=data.y_train[r], noisy_indices=noisy,
                   clean_y_train=None if data.clean_y_train is None else data.clean_y_train[r],
                   train_rows=None if data.train_rows is None else np.asarray(data.train_rows)[rows.numpy()])


@torch.no_grad()
def score_rows(model, data: Dataset, rows: torch.Tensor, loss_fn=None, chunk: int = 8192) -> torch.Tensor:
    """Per-example loss of ``model`` (eval mode) on training rows ``rows`` against their training labels."""
    was = model.training
    model.eval()
    out = []
    dev = next(model.parameters()).device
    for i in range(0, len(rows), chunk):
        r = rows[i:i + chunk]
        logits = model(data.x_train[r.to(data.x_train.device)].to(dev))
        y = data.y_train[r.to(data.y_train.device)].to(dev)
        per = F.cross_entropy(logits, y, reduction="none") if loss_fn is None else loss_fn(logits, y)
        out.append(per.float().cpu())
    model.train(was)
    return torch.cat(out) if out else torch.zeros(0)


def _cached(trial: TrialDir) -> dict | None:
    if trial.finished() and (trial.path / "losses.npy").exists() and (trial.path / "trained_rows.npy").exists():
        return trial.read()
    return None


def _fold(study: StudyDir, workload, data: Dataset, cfg: TrainConfig, opts: RhoOptions, seed: int, fold: str,
          train_rows: torch.Tensor, scored_rows: torch.Tensor, device) -> tuple[np.ndarray, dict]:
    """(N losses with NaN on the rows not scored, record) of one IL model, trained here or read back."""
    trial = study.trial(f"il-s{seed}-{fold}")
    with trial.hold():
        rec = _cached(trial)
        if rec is None:
            if bool(np.intersect1d(train_rows.numpy(), scored_rows.numpy()).size):
                raise FeedwiseError("internal: an IL model would score rows it trained on")   # never, by the split
            il_cfg = replace(cfg, seed=stream(seed, "rho il", fold), max_steps=opts.steps_of_il(cfg), max_examples=None,
                             stop_at_target=False, evaluate_test=False, decay_steps=None)
            part = subset(data, train_rows)
            best = BestCheckpoint()
            result, trainer = run_trial(trial, workload, part, il_cfg, UniformFeeder(), device=device, callbacks=[best],
                                        record={"method": "il", "rho": asdict(opts), "fold": fold,
                                                "trained_rows": len(train_rows), "scored_rows": len(scored_rows)})
            if result.status == "diverged":
                raise FeedwiseError(f"the irreducible-loss model of seed {seed} (fold {fold}) diverged; lower the lr")
            model = trainer.model
            if best.state is not None:
                model = copy.deepcopy(model)
                model.load_state_dict(best.state)
            losses = np.full(data.num_train, np.nan, dtype=np.float32)
            losses[scored_rows.numpy()] = score_rows(model, data, scored_rows, workload.loss).numpy()
            np.save(trial.path / "trained_rows.npy", train_rows.numpy())
            np.save(trial.path / "losses.npy", losses)
            rec = trial.read()
            rec.update(il_best_step=best.best_step, il_best_val_error=None if best.state is None else best.best_error,
                       il_train_examples=int(result.examples), il_forward_examples=int(len(scored_rows)))
            trial.write(rec)
    return np.load(trial.path / "losses.npy"), rec


def irreducible_losses(study: StudyDir, workload, data: Dataset, cfg: TrainConfig, opts: RhoOptions, seed: int,
                       device) -> IrreducibleLosses:
    """The IL losses of seed ``seed`` (see the module's docstring for the split), trained or read back."""
    t, h = split_rows(data.num_train, opts, seed)
    folds = [("a", h, t)] + ([("b", t, h)] if opts.crossfit else [])
    parts = [_fold(study, workload, data, cfg, opts, seed, name, tr, sc, device) for name, tr, sc in folds]
    cost = {"il_train_examples": sum(r["il_train_examples"] for _, r in parts),
            "il_forward_examples": sum(r["il_forward_examples"] for _, r in parts)}
    info = {"folds": {name: {"trained_rows": int(len(tr)), "scored_rows": int(len(sc)),
                             "best_val_error": r.get("il_best_val_error"), "wall_s": r.get("wall_s")}
                      for (name, tr, sc), (_, r) in zip(folds, parts)},
            "wall_s": sum(float(r.get("wall_s") or 0.0) for _, r in parts)}
    if opts.crossfit:
        il = cross_fitted(torch.from_numpy(parts[0][0]), torch.from_numpy(parts[1][0]), **cost)
    else:
        il = IrreducibleLosses(torch.from_numpy(parts[0][0]), pool=t, **cost)
    il.info = info
    return il


__all__ = ["RhoOptions", "expected_cost", "irreducible_losses", "matched_steps", "score_rows", "split_rows", "subset"]
