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
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path

import numpy as np

from feedwise.data.sources import Dataset, check_seed
from feedwise.feeds.emphasis import EmphasisFeeder
from feedwise.engine import TrainConfig
from feedwise.errors import FeedwiseError
from feedwise.files import atomic_writer, read_npz, write_npz
from feedwise.flagging import check_labels, from_history, from_pred_probs
from feedwise.progress import say
from feedwise.results import StudyDir
from feedwise.scores import get_score
from feedwise.studies.common import pick_device, run_trial, set_threads
from feedwise.stats import auroc, rank, top_k_share  # noqa: F401  (re-exported)
from feedwise.studies.train.run import DataOptions
from feedwise.subset.ensemble import CheckpointStreamer
from feedwise.subset.scorer import EnsembleScorer
from feedwise.workloads import get_workload

# flag's names -> the scores of feedwise.scores (higher = more likely mislabelled)
SCORE_OF = {"1-pbar": "hard", "std": "variance", "loss": "loss", "entropy": "entropy", "bald": "bald",
            "variation-ratio": "variation-ratio"}
SCORES = tuple(SCORE_OF)
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
ENSEMBLE_SCORES = ("entropy", "bald", "variation-ratio")
# measured (benchmarks/results/flag_*_noise0.2.json, 20% flipped labels, 5 seeds): scores that do not find them
MISLEADING = {
    "std": "high std̂ points away from flipped labels (AUROC 0.034-0.041: inverted); use 1-pbar",
    "entropy": "ensemble entropy ignores the given label: near chance for flipped labels (AUROC 0.59-0.60)",
    "bald": "BALD ignores the given label: near chance for flipped labels (AUROC 0.50-0.54)",
    "variation-ratio": "the variation ratio ignores the given label: near chance for flipped labels (AUROC 0.53-0.57)",
}


@dataclass
class FlagRequest:
    workload: str
    config: TrainConfig
    data: DataOptions = field(default_factory=DataOptions)
    score: str = DEFAULT_SCORE
    ensemble: bool = False     # also score by a checkpoint ensemble (entropy, bald, variation-ratio)

    @property
    def wants_ensemble(self) -> bool:
        return self.ensemble or self.score in ENSEMBLE_SCORES

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


# --------------------------------------------------------------------------- the study
def _compute_scores(trainer, feeder: EmphasisFeeder, scorer: EnsembleScorer | None, data: Dataset) -> dict:
    """Every score that the run recorded what for (the ensemble scores only with an ensemble)."""
    h = feeder.history
    probs = trainer.predict_proba(data.x_train).cpu()
    y = data.y_train.cpu()
    p_label = probs.gather(1, y[:, None]).squeeze(1).double().numpy()
    given = {"history": h, "ensemble": None if scorer is None else scorer.state,
             "losses": -np.log(np.clip(p_label, 1e-12, None))}
    out = {"predicted": probs.argmax(1).numpy().astype(np.int64)}
    for name, score in SCORE_OF.items():
        sc = get_score(score)
        if given[sc.source] is None:
            continue
        v = sc(given[sc.source])
        out[name] = v.cpu().numpy() if hasattr(v, "cpu") else np.asarray(v)
    return out


def flag_study(req: FlagRequest, out: str, threads: int | None = None, device: str = "auto",
               command: list[str] | None = None, progress=None) -> dict:
    req = replace(req, config=replace(req.config, stop_at_target=False))   # the history needs the whole run
    req.validate()
    workload = get_workload(req.workload)
    if workload.dataset == "npz" and req.data.val_fraction is None and req.data.test_fraction is None:
        # your own file: every row is a training row, so every row is scored (no validation or test
        # error is measured; give --val-fraction/--test-fraction to measure them, leaving those rows unscored)
        req = replace(req, data=replace(req.data, val_fraction=0.0, test_fraction=0.0))
    nthreads = set_threads(threads)
    dev = pick_device(device)
    data = workload.load(**asdict(req.data))
    req.config.validate(data.num_train)
    study = StudyDir(out)
    config = {"workload": req.workload, "train": asdict(req.config), "data": req.data.identity(data)}
    if req.wants_ensemble:   # absent without: studies made before the option resume
        config["ensemble"] = True
    study.open("flag", config, command=command)
    trial = study.trial(0)
    scores_path = study.root / "scores.npz"
    # another process running this very study holds trial 0: wait for it instead of training twice
    with trial.hold(waiting=lambda who: say(f"waiting for trial 0 in {out}, which {who} is running")):
        if trial.finished() and scores_path.exists():
            arrays = read_npz(scores_path)
            record = trial.read()
        else:
            feeder = EmphasisFeeder("uniform")
            scorer = streamer = None
            if req.wants_ensemble:   # forward passes over the whole training set at every evaluation: only when asked
                scorer = EnsembleScorer(data.num_train, data.num_classes, seed=req.config.seed)
                streamer = CheckpointStreamer(scorer, data.x_train.to(dev))
            result, trainer = run_trial(trial, workload, data, req.config, feeder, device=dev,
                                        callbacks=[streamer] if streamer else [], progress=progress,
                                        record={"checkpoints_scored": None})
            if result.status == "diverged":
                raise FeedwiseError(f"training diverged (see {trial.path}); try a smaller --lr")
            if scorer is not None and scorer.num_members == 0:
                raise FeedwiseError("no evaluation happened during training; lower --eval-every")
            arrays = _compute_scores(trainer, feeder, scorer, data)
            write_npz(scores_path, **arrays)
            record = trial.read()
            record["checkpoints_scored"] = None if scorer is None else scorer.num_members
            trial.write(record)

    given = data.y_train.cpu().numpy()
    flipped = np.zeros(data.num_train, bool)
    flipped[np.asarray(data.noisy_indices, dtype=np.int64)] = True
    noise_known = req.data.label_noise > 0
    file_rows = data.train_rows
    unscored = None
    if file_rows is not None and req.data.data_dir:
        with np.load(req.data.data_dir, allow_pickle=False) as z:
            unscored = int(len(z["y"]) - len(file_rows))

    if req.score not in arrays:
        raise FeedwiseError(f"{scores_path} holds no '{req.score}' scores (the run had no checkpoint ensemble): "
                            "use another --out")
    s = arrays[req.score]
    issues = from_history(given, 1.0 - arrays["1-pbar"])   # the flagged set: per-class mixtures on p-bar
    order = rank(s)
    _write_csv(study.root / "flagged.csv", order, s, req.score, given, arrays["predicted"], file_rows,
               flipped if noise_known else None, data.clean_y_train.cpu().numpy() if noise_known else None,
               flagged=issues.flagged)
    computed = [k for k in SCORES if k in arrays]
    warnings = [f"--score {req.score}: {MISLEADING[req.score]}"] if req.score in MISLEADING else []
    if unscored:
        warnings.append(f"{unscored} rows of {req.data.data_dir} are held out (validation/test splits) and are "
                        "not scored: only training rows get a prediction history (drop --val-fraction and "
                        "--test-fraction to score every row)")
    summary = {
        "kind": "flag", "workload": req.workload, "score": req.score, "score_description": SCORE_DESCRIPTIONS[req.score],
        "higher_means": "more likely mislabelled", "scores": {k: SCORE_DESCRIPTIONS[k] for k in computed},
        "num_train": data.num_train, "num_classes": data.num_classes, "label_noise": req.data.label_noise,
        "num_flipped": int(flipped.sum()), "checkpoints_scored": record.get("checkpoints_scored"),
        "test_error": record.get("test_error"), "final_val_error": record.get("final_val_error"),
        "steps_run": record.get("steps_run"), "threads": nthreads, "device": str(dev),
        "predicted_differs_from_given": float(np.mean(arrays["predicted"] != given)),
        "top": [{"rank": r + 1, "index": int(i), "given_label": int(given[i]), "predicted_label": int(arrays["predicted"][i]),
                 "score": float(s[i])} for r, i in enumerate(order[:20])],
        "file_rows": file_rows is not None, "rows_unscored": unscored,
        "label_issues": issues.summary(), "warnings": warnings,
    }
    if noise_known:
        summary["evaluation"] = evaluate_scores({k: arrays[k] for k in computed}, flipped)
        best = max(computed, key=lambda k: -1 if summary["evaluation"][k]["auroc"] is None else summary["evaluation"][k]["auroc"])
        summary["best_score_by_auroc"] = best
        summary["label_issues"]["against_truth"] = set_quality(issues.flagged, flipped)
    study.write_summary(summary)
    return summary


def set_quality(flagged: np.ndarray, truth: np.ndarray) -> dict:
    """Precision and recall of a flagged set against the known flipped labels."""
    tp = int((flagged & truth).sum())
    return {"flagged": int(flagged.sum()), "true_errors": int(truth.sum()), "true_positives": tp,
            "precision": tp / int(flagged.sum()) if flagged.any() else None,
            "recall": tp / int(truth.sum()) if truth.any() else None}


def _write_csv(path: Path, order, s, score_name, given, predicted, file_rows, flipped, clean, flagged=None,
               index_name: str = "index") -> None:
    with atomic_writer(path, newline="") as f:
        w = csv.writer(f)
        head = ["rank", index_name] + (["file_row"] if file_rows is not None else []) + \
            ["given_label"] + (["predicted_label"] if predicted is not None else []) + ["score", "score_name"] + \
            (["flagged"] if flagged is not None else []) + (["flipped", "clean_label"] if flipped is not None else [])
        w.writerow(head)
        for r, i in enumerate(order):
            row = [r + 1, int(i)] + ([int(file_rows[i])] if file_rows is not None else []) + [int(given[i])] + \
                ([int(predicted[i])] if predicted is not None else []) + [f"{float(s[i]):.6g}", score_name] + \
                ([int(flagged[i])] if flagged is not None else [])
            if flipped is not None:
                row += [int(flipped[i]), int(clean[i])]
            w.writerow(row)


# --------------------------------------------------------------------------- from the user's own files
@dataclass
class FileFlagRequest:
    """``feedwise flag --labels y.npy`` with ``--pred-probs P.npy`` (out-of-sample probabilities from the
    user's own model) or ``--history H.pt`` (a PredictionHistory state from the user's own loop)."""

    labels: str
    pred_probs: str | None = None
    history: str | None = None

    def validate(self) -> None:
        if (self.pred_probs is None) == (self.history is None):
            raise FeedwiseError("give exactly one of --pred-probs and --history (with --labels)")
        for what, path in (("--labels", self.labels), ("--pred-probs", self.pred_probs), ("--history", self.history)):
            if path is not None and not Path(path).is_file():
                raise FeedwiseError(f"{what}: no such file {path}")
        self.labels = str(Path(self.labels).resolve())
        self.pred_probs = None if self.pred_probs is None else str(Path(self.pred_probs).resolve())
        self.history = None if self.history is None else str(Path(self.history).resolve())


def load_array(path: str, what: str) -> np.ndarray:
    """A .npy, a one-array .npz or a text/CSV file of numbers, as a numpy array (one clear error otherwise)."""
    p = Path(path)
    try:
        if p.suffix == ".npz":
            with np.load(p, allow_pickle=False) as z:
                if len(z.files) != 1:
                    raise FeedwiseError(f"{what} {p}: a .npz must hold exactly one array (it holds {', '.join(z.files)})")
                return z[z.files[0]]
        if p.suffix in (".csv", ".txt"):
            return np.loadtxt(p, delimiter="," if p.suffix == ".csv" else None, ndmin=1)
        return np.load(p, allow_pickle=False)
    except FeedwiseError:
        raise
    except Exception as e:
        raise FeedwiseError(f"{what} {p} cannot be read as an array: {e}") from None


def load_history(path: str) -> dict:
    """A ``PredictionHistory.state_dict()`` saved with ``torch.save`` (tensors only)."""
    import torch

    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as e:
        first = (str(e).strip().splitlines() or [type(e).__name__])[0]
        raise FeedwiseError(f"--history {path} is not a saved PredictionHistory state "
                            f"(torch.save(history.state_dict(), path)): {first}") from None
    if not isinstance(state, dict):
        raise FeedwiseError(f"--history {path} holds a {type(state).__name__}, not a PredictionHistory state dict")
    return state


def _file_fingerprint(path: str) -> str:
    import hashlib

    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def flag_from_files(req: FileFlagRequest, out: str, command: list[str] | None = None) -> dict:
    """Rank every row of the user's files, flag a set, estimate the number of label errors; no training."""
    req.validate()
    labels = load_array(req.labels, "--labels")
    if req.pred_probs is not None:
        issues = from_pred_probs(labels, load_array(req.pred_probs, "--pred-probs"))
        score_name, source = "1-p", "pred-probs"
        desc = "1 − p(given label) from the given out-of-sample probabilities"
    else:
        state = load_history(req.history)
        issues = from_history(labels, state)
        score_name, source = "1-pbar", "history"
        desc = SCORE_DESCRIPTIONS["1-pbar"]
    files = {"labels": req.labels, "pred_probs": req.pred_probs, "history": req.history}
    config = {"source": source, "files": {k: v for k, v in files.items() if v},
              "fingerprints": {k: _file_fingerprint(v) for k, v in files.items() if v}}
    study = StudyDir(out)
    study.open("flag", config, command=command)
    given = check_labels(labels)
    _write_csv(study.root / "flagged.csv", issues.ranking, issues.scores, score_name, given, issues.predicted, None,
               None, None, flagged=issues.flagged, index_name="row")
    order = issues.ranking
    summary = {
        "kind": "flag", "source": source, "score": score_name, "score_description": desc,
        "higher_means": "more likely mislabelled", "num_train": int(len(given)),
        "num_classes": int(given.max()) + 1 if len(given) else 0, "rows_scored": int(len(given)),
        "top": [{"rank": r + 1, "index": int(i), "given_label": int(given[i]),
                 "predicted_label": None if issues.predicted is None else int(issues.predicted[i]),
                 "score": float(issues.scores[i])} for r, i in enumerate(order[:20])],
        "label_issues": issues.summary(), "warnings": [],
    }
    study.write_summary(summary)
    return summary
