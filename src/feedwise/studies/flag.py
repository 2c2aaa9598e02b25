"""Flag training examples that are likely mislabelled (``feedwise flag``).

One model is trained with uniform shuffling while two things are recorded on the side, neither
changing the training:

- the Active Bias prediction history (:class:`feedwise.emphasis.EmphasisFeeder` with method
  ``uniform``): per example, the running mean p̄ and the spread std̂ of the probability the
  model gives to the example's *given* label each time it is in a batch;
- a checkpoint ensemble (:class:`feedwise.subset.EnsembleScorer`): at every evaluation the
  current model scores the whole training set; the scorer keeps O(N·K) running sums.

Scores, each oriented so that a HIGHER value means MORE likely mislabelled:

=================  ==============================================================
``1-pbar``         1 − p̄: the given label rarely got probability during training
``std``            Active Bias std̂ of the given label's probability
``loss``           −log p(given label) under the final model
``entropy``        entropy of the checkpoint ensemble's mean prediction
``bald``           BALD (mutual information) of the checkpoint ensemble
``variation-ratio`` 1 − modal vote share of the checkpoints
=================  ==============================================================

The ensemble scores ignore the given label (they measure uncertainty, not disagreement with
the label), so they are expected to flag mislabelled examples less well; they are reported so
that this can be measured. When label noise is injected (``--label-noise``) the flipped
indices are known and ``summary.json`` holds, per score, the AUROC of separating flipped from
clean examples and the share of flipped examples among the top-k.

Outputs: ``flagged.csv`` (every training example, ranked by the chosen score), ``scores.npz``
(all scores, for resume), ``summary.json``; trial 0 holds the training run (trial.json,
measurements.csv). Re-running on the same ``--out`` reuses the finished run.
"""

from __future__ import annotations

import csv
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np

from feedwise.data.sources import Dataset, check_seed
from feedwise.emphasis.feeders import EmphasisFeeder
from feedwise.engine import TrainConfig
from feedwise.errors import FeedwiseError
from feedwise.progress import say
from feedwise.files import atomic_writer, read_npz, write_npz
from feedwise.results import StudyDir
from feedwise.studies.common import pick_device, run_trial, set_threads
from feedwise.studies.diagnostics import auroc, rank, top_k_share  # noqa: F401  (re-exported)
from feedwise.studies.train import DataOptions
from feedwise.subset.ensemble import CheckpointStreamer
from feedwise.subset.scorer import EnsembleScorer
from feedwise.workloads import get_workload

SCORES = ("1-pbar", "std", "loss", "entropy", "bald", "variation-ratio")
SCORE_DESCRIPTIONS = {
    "1-pbar": "1 − p̄ (Active Bias mean probability of the given label, over training)",
    "std": "Active Bias std̂ of the given label's probability over training",
    "loss": "final model's loss −log p(given label)",
    "entropy": "entropy of the checkpoint ensemble's mean prediction",
    "bald": "BALD of the checkpoint ensemble",
    "variation-ratio": "variation ratio of the checkpoint ensemble",
}
DEFAULT_SCORE = "1-pbar"
TOP_K = (10, 50, 100, 500, 1000)


@dataclass
class FlagRequest:
    workload: str
    config: TrainConfig
    data: DataOptions = field(default_factory=DataOptions)
    score: str = DEFAULT_SCORE

    def validate(self) -> None:
        get_workload(self.workload)
        if self.score not in SCORES:
            raise FeedwiseError(f"unknown score '{self.score}' (known: {', '.join(SCORES)})")
        self.config.validate()
        check_seed(self.config.seed, "--seed")   # it also seeds the checkpoint scorer (numpy)
        self.data.validate()


# --------------------------------------------------------------------------- pure functions
def evaluate_scores(scores: dict[str, np.ndarray], flipped: np.ndarray) -> dict:
    """Per score: AUROC of flagging ``flipped`` (bool) and the flipped share among the top-k."""
    n, n_flip = len(flipped), int(np.sum(flipped))
    ks = sorted({k for k in TOP_K if k < n} | ({n_flip} if n_flip else set()))
    out = {}
    for name, s in scores.items():
        out[name] = {"auroc": auroc(s, flipped),
                     "top_share": {str(k): top_k_share(s, flipped, k) for k in ks}}
    return out


def npz_rows(path: str, data: Dataset, opts: DataOptions, val_size) -> np.ndarray | None:
    """Row numbers in the user's ``.npz`` file of ``data.x_train`` (None when they cannot be recovered).

    Recomputes the loader's splits (test split of a file without ``x_test``, then the validation
    split, then ``max_train``) and checks the result against the inputs themselves."""
    try:
        with np.load(path, allow_pickle=False) as z:
            x = z["x"].astype(np.float32)
            has_test = "x_test" in z.files and "y_test" in z.files
        rows = np.arange(len(x))
        if not has_test:
            perm = np.random.default_rng(opts.split_seed + 7919).permutation(len(x))
            rows = perm[max(1, int(round(0.2 * len(x)))):]
        n = len(rows)
        n_val = int(round(val_size * n)) if 0 < val_size < 1 else int(val_size)
        perm = np.random.default_rng(opts.split_seed).permutation(n)
        train_idx = np.sort(perm[n_val:])
        if opts.max_train is not None:
            train_idx = train_idx[:opts.max_train]
        rows = rows[train_idx]
        if len(rows) != data.num_train or not np.array_equal(x[rows].reshape(len(rows), -1),
                                                              data.x_train.cpu().numpy().reshape(len(rows), -1)):
            return None
        return rows
    except Exception:
        return None


# --------------------------------------------------------------------------- the study
def _compute_scores(trainer, feeder: EmphasisFeeder, scorer: EnsembleScorer, data: Dataset) -> dict:
    h = feeder.history
    probs = trainer.predict_proba(data.x_train).cpu()
    y = data.y_train.cpu()
    p_label = probs.gather(1, y[:, None]).squeeze(1).double().numpy()
    out = {"1-pbar": 1.0 - h.mean().cpu().numpy(), "std": h.std().cpu().numpy(),
           "loss": -np.log(np.clip(p_label, 1e-12, None)),
           "predicted": probs.argmax(1).numpy().astype(np.int64)}
    for name in ("entropy", "bald", "variation-ratio"):
        out[name] = scorer.scores(name)
    return out


def flag_study(req: FlagRequest, out: str, threads: int | None = None, device: str = "auto",
               command: list[str] | None = None, progress=None) -> dict:
    req.validate()
    workload = get_workload(req.workload)
    nthreads = set_threads(threads)
    dev = pick_device(device)
    data = workload.load(**asdict(req.data))
    req.config.validate(data.num_train)
    study = StudyDir(out)
    study.open("flag", {"workload": req.workload, "train": asdict(req.config), "data": req.data.identity(data)},
               command=command)
    trial = study.trial(0)
    scores_path = study.root / "scores.npz"
    # another process running this very study holds trial 0: wait for it instead of training twice
    with trial.hold(waiting=lambda who: say(f"waiting for trial 0 in {out}, which {who} is running")):
        if trial.finished() and scores_path.exists():
            arrays = read_npz(scores_path)
            record = trial.read()
        else:
            feeder = EmphasisFeeder("uniform")
            scorer = EnsembleScorer(data.num_train, data.num_classes, seed=req.config.seed)
            streamer = CheckpointStreamer(scorer, data.x_train.to(dev))
            result, trainer = run_trial(trial, workload, data, req.config, feeder, device=dev, callbacks=[streamer],
                                        progress=progress, record={"checkpoints_scored": None})
            if result.status == "diverged":
                raise FeedwiseError(f"training diverged (see {trial.path}); try a smaller --lr")
            if scorer.num_members == 0:
                raise FeedwiseError("no evaluation happened during training; lower --eval-every")
            arrays = _compute_scores(trainer, feeder, scorer, data)
            write_npz(scores_path, **arrays)
            record = trial.read()
            record["checkpoints_scored"] = scorer.num_members
            trial.write(record)

    given = data.y_train.cpu().numpy()
    flipped = np.zeros(data.num_train, bool)
    flipped[np.asarray(data.noisy_indices, dtype=np.int64)] = True
    noise_known = req.data.label_noise > 0
    file_rows = npz_rows(req.data.data_dir, data, req.data, workload.val_size) \
        if workload.dataset == "npz" and req.data.data_dir else None

    s = arrays[req.score]
    order = rank(s)
    _write_csv(study.root / "flagged.csv", order, s, req.score, given, arrays["predicted"], file_rows,
               flipped if noise_known else None, data.clean_y_train.cpu().numpy() if noise_known else None)
    summary = {
        "kind": "flag", "workload": req.workload, "score": req.score, "score_description": SCORE_DESCRIPTIONS[req.score],
        "higher_means": "more likely mislabelled", "scores": {k: SCORE_DESCRIPTIONS[k] for k in SCORES},
        "num_train": data.num_train, "num_classes": data.num_classes, "label_noise": req.data.label_noise,
        "num_flipped": int(flipped.sum()), "checkpoints_scored": record.get("checkpoints_scored"),
        "test_error": record.get("test_error"), "final_val_error": record.get("final_val_error"),
        "steps_run": record.get("steps_run"), "threads": nthreads, "device": str(dev),
        "predicted_differs_from_given": float(np.mean(arrays["predicted"] != given)),
        "top": [{"rank": r + 1, "index": int(i), "given_label": int(given[i]), "predicted_label": int(arrays["predicted"][i]),
                 "score": float(s[i])} for r, i in enumerate(order[:20])],
        "file_rows": file_rows is not None,
    }
    if noise_known:
        summary["evaluation"] = evaluate_scores({k: arrays[k] for k in SCORES}, flipped)
        best = max(SCORES, key=lambda k: -1 if summary["evaluation"][k]["auroc"] is None else summary["evaluation"][k]["auroc"])
        summary["best_score_by_auroc"] = best
    study.write_summary(summary)
    return summary


def _write_csv(path: Path, order, s, score_name, given, predicted, file_rows, flipped, clean) -> None:
    with atomic_writer(path, newline="") as f:
        w = csv.writer(f)
        head = ["rank", "index"] + (["file_row"] if file_rows is not None else []) + \
            ["given_label", "predicted_label", "score", "score_name"] + (["flipped", "clean_label"] if flipped is not None else [])
        w.writerow(head)
        for r, i in enumerate(order):
            row = [r + 1, int(i)] + ([int(file_rows[i])] if file_rows is not None else []) + \
                [int(given[i]), int(predicted[i]), f"{float(s[i]):.6g}", score_name]
            if flipped is not None:
                row += [int(flipped[i]), int(clean[i])]
            w.writerow(row)
