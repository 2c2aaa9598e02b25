"""`feedwise subset`: training-subset search with ensemble active learning (Chitta et al. 2019).

Orchestration only; the maths lives in :mod:`feedwise.subset` (scores, selection) and here in
small pure functions (:func:`summarize`, :func:`break_even`) that read the files on disk.

Layout under ``--out`` (besides study.json / summary.json / trials/):

    subsets/<acq>-<fraction>[-class].npy   sorted unique indices into the training split
    subsets/<acq>-<fraction>[-class].json  size, tie-break count and seed, class composition
    scores/<ensemble>.npz                  the scorer's running sums + which members are in them (resume),
                                           and the history scores' sums (history acquisitions)

Trials (every training run is one, so the cost account is recomputable from trial.json):

    acq-oneshot-m<j>                  one-shot acquisition member j (trained on the whole pool)
    acq-<acq>-<balance>-r<r>-m<j>     build-up round r, member j (trained on the current subset)
    target-full-s<seed>               the target model on all data
    target-<acq>-<fraction>-<balance>-<budget>-s<seed>   the target on a subset

Schedules. *one-shot*: one ensemble trained on all data scores the whole pool once; each
acquisition keeps its top fraction. *build-up*: each (acquisition, balance) starts from the
same random seed set (``initial_fraction`` of the pool) and grows through the fractions in
increasing order; every round trains a fresh ensemble on the current subset and adds the
top-scored examples of the rest of the pool. ``random`` needs no ensemble.

History acquisitions (one-shot only): ``history-variance`` (std̂), ``history-closeness``
(p̄(1 − p̄)) and ``history-hard`` (1 − p̄) score every example by the Active Bias prediction
history that each one-shot acquisition model records while it trains on the whole pool (its
own training passes, no extra forward pass), averaged over the E models. The models draw
exactly the batches they would draw without it, so the ensemble acquisitions are unchanged.

Training-dynamics acquisitions (one-shot only): ``el2n`` (Paul et al. 2021), ``forgetting``
(Toneva et al. 2019) and ``aum`` (Pleiss et al. 2020) read the first ``dynamics_models`` one-shot
models' evaluations of the whole pool at their C checkpoints (the forward pass the ensemble
scorer makes anyway; :class:`feedwise.subset.TrainingDynamics`). Their search cost counts those
models' training and scoring only. When no ensemble or history acquisition is asked, only those
models are trained.

Selections: ``top`` keeps the top of the difficulty scores (``keep`` orients them); ``ccs``
(coverage-centric selection, Zheng et al. 2023; one-shot only) drops the hardest ``ccs_beta`` of
the pool and samples the budget across ``ccs_strata`` strata of the score range
(:data:`feedwise.subset.select.CCS_RULE`). Both apply to every non-random acquisition.

Budget rules for the target model: ``steps`` trains every subset for the full-data step
budget; ``epochs`` trains for the same number of epochs as full-data training
(``ceil(steps · size / N)`` steps).

Cost account: examples are training examples (steps × batch) plus, for acquisition,
pool examples scored (one forward pass each, counted separately); work weighs them by FLOPs
(forward 1, backward 2: a training example is 3, a scored example 1); seconds are the engine's
training ``wall_s`` plus the pool-scoring time (validation evaluations are excluded, as
untimed evaluation). Verdicts and choices on validation error (:data:`VERDICT_RULE`),
break-even (:data:`BREAK_EVEN_RULE`).
"""

from __future__ import annotations

import math
import time
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path

import numpy as np
import torch

from feedwise.data.lazy import take_rows
from feedwise.data.sources import Dataset, check_seed
from feedwise.feeds.emphasis import EmphasisFeeder
from feedwise.engine import TrainConfig
from feedwise.errors import FeedwiseError
from feedwise.feeds.base import UniformFeeder
from feedwise.progress import progress_bar, say
from feedwise.seeds import stream
from feedwise.scores import fill_value, get_score
from feedwise.files import mkdir, read_json, read_npy, read_npz, write_json, write_npy, write_npz
from feedwise.results import StudyDir, TrialDir
from feedwise.studies.common import Job, pick_device, run_claimed, run_trial, set_threads
from feedwise.studies.subset.summary import (BREAK_EVEN_RULE, VERDICT_RULE, break_even,  # noqa: F401  (re-exported)
                                             fraction_tag, subset_name, summarize)
from feedwise.studies.train.run import DataOptions
from feedwise.subset.dynamics import DYNAMICS_SCORES, TrainingDynamics
from feedwise.subset.ensemble import EnsembleSpec, train_ensemble
from feedwise.subset.scorer import ACQUISITIONS, EnsembleScorer
from feedwise.subset.select import (BALANCES, KEEPS, SELECTIONS, check_fraction, class_composition, difficulty_scores,
                                    resolve_keep, select_ccs, select_random, select_top, subset_size)
from feedwise.workloads import Workload, get_workload

SCHEDULES = ("one-shot", "build-up")
BUDGETS = ("steps", "epochs")
# acquisition name -> score of the Active Bias history (feedwise.scores)
HISTORY_ACQUISITIONS = {"history-variance": "variance", "history-closeness": "closeness", "history-hard": "hard"}
# scores of one training run's dynamics (feedwise.scores.dynamics), read from the first
# `dynamics_models` one-shot acquisition models' evaluations of the pool
DYNAMICS_ACQUISITIONS = DYNAMICS_SCORES
ONE_SHOT_ONLY = (*HISTORY_ACQUISITIONS, *DYNAMICS_ACQUISITIONS)


def check_acquisition(name: str) -> str:
    known = [*ACQUISITIONS, *HISTORY_ACQUISITIONS, *DYNAMICS_ACQUISITIONS]
    if name not in known:
        raise FeedwiseError(f"unknown acquisition '{name}' (known: {', '.join(known)})")
    return name


@dataclass
class SubsetRequest:
    workload: str
    acquisitions: list[str] = field(default_factory=lambda: ["entropy", "bald", "variation-ratio", "margin", "random"])
    fractions: list[float] = field(default_factory=lambda: [0.125, 0.25, 0.5])
    ensemble: str = "4x10"
    schedule: str = "one-shot"
    seeds: int = 1
    balances: list[str] = field(default_factory=lambda: ["none"])
    budgets: list[str] = field(default_factory=lambda: ["steps", "epochs"])
    batch_size: int | None = None
    lr: float | None = None
    target_steps: int | None = None      # full-data step budget of the target model (default: the workload's)
    acq_steps: int | None = None         # step budget of each acquisition member (default: target_steps // 2)
    acq_widths: list[int] | None = None  # acquisition model widths (default: the workload's model)
    target_widths: list[int] | None = None
    initial_fraction: float | None = None  # build-up seed set (default: half the smallest fraction)
    selection_seed: int = 0              # random subsets and tie-breaks
    tolerance: float = 0.01              # break-even: allowed test-error excess over full data (absolute)
    keep: str = "hardest"                # hardest | easiest | auto (Sorscher et al. 2022; see subset.select)
    selections: list[str] = field(default_factory=lambda: ["top"])   # top | ccs (Zheng et al. 2023)
    ccs_strata: int = 50                 # CCS: strata of the score range
    ccs_beta: float = 0.1                # CCS: hardest share of the pool dropped
    dynamics_models: int = 1             # el2n/forgetting/aum: one-shot models whose runs they read
    el2n_checkpoints: int = 1            # el2n: the first evaluations it averages ("early in training")
    data: DataOptions = field(default_factory=DataOptions)

    def one_shot_models(self) -> int:
        """Models the one-shot search trains: the ensemble's E when an ensemble or history acquisition asks
        for it, otherwise only those the training-dynamics scores read."""
        wants_ensemble = any(a != "random" and a not in DYNAMICS_ACQUISITIONS for a in self.acquisitions)
        return EnsembleSpec.parse(self.ensemble).models if wants_ensemble else self.dynamics_models

    def validate(self) -> None:
        get_workload(self.workload)
        if not self.acquisitions:
            raise FeedwiseError("give at least one acquisition")
        for a in self.acquisitions:
            check_acquisition(a)
        if len(set(self.acquisitions)) != len(self.acquisitions):
            raise FeedwiseError("acquisitions are listed twice")
        hist = [a for a in self.acquisitions if a in ONE_SHOT_ONLY]
        if hist and self.schedule != "one-shot":
            raise FeedwiseError(f"{', '.join(hist)} need the one-shot schedule: a build-up round scores examples "
                                "its models never trained on, so they have no prediction history or training "
                                "dynamics")
        if not self.selections or any(s not in SELECTIONS for s in self.selections):
            raise FeedwiseError(f"unknown selection in {','.join(self.selections) or 'nothing'} "
                                f"(known: {', '.join(SELECTIONS)})")
        if len(set(self.selections)) != len(self.selections):
            raise FeedwiseError("selections are listed twice")
        if "ccs" in self.selections and self.schedule != "one-shot":
            raise FeedwiseError("--selections ccs needs the one-shot schedule")
        if int(self.ccs_strata) != self.ccs_strata or self.ccs_strata < 1:
            raise FeedwiseError(f"--ccs-strata must be a positive integer, got {self.ccs_strata}")
        if not (0.0 <= self.ccs_beta < 1.0):
            raise FeedwiseError(f"--ccs-beta (the hardest share dropped) must be in [0, 1), got {self.ccs_beta}")
        spec = EnsembleSpec.parse(self.ensemble)
        if self.dynamics_models < 1 or self.el2n_checkpoints < 1:
            raise FeedwiseError("--dynamics-models and --el2n-checkpoints must be at least 1")
        if any(a in DYNAMICS_ACQUISITIONS for a in self.acquisitions):
            if self.one_shot_models() < self.dynamics_models:
                raise FeedwiseError(f"--dynamics-models {self.dynamics_models} exceeds the ensemble's {spec.models} "
                                    "models (the training-dynamics scores read the first ones)")
            if self.el2n_checkpoints > spec.checkpoints:
                raise FeedwiseError(f"--el2n-checkpoints {self.el2n_checkpoints} exceeds the {spec.checkpoints} "
                                    "evaluations per model (--ensemble ExC)")
        if not self.fractions:
            raise FeedwiseError("give at least one fraction")
        self.fractions = sorted({check_fraction(f) for f in self.fractions})
        EnsembleSpec.parse(self.ensemble)
        if self.schedule not in SCHEDULES:
            raise FeedwiseError(f"unknown schedule '{self.schedule}' (known: {', '.join(SCHEDULES)})")
        if self.seeds < 1:
            raise FeedwiseError(f"--seeds must be at least 1, got {self.seeds}")
        for b in self.balances:
            if b not in BALANCES:
                raise FeedwiseError(f"unknown balance '{b}' (known: {', '.join(BALANCES)})")
        for b in self.budgets:
            if b not in BUDGETS:
                raise FeedwiseError(f"unknown budget rule '{b}' (known: {', '.join(BUDGETS)})")
        if not self.balances or not self.budgets:
            raise FeedwiseError("give at least one balance and one budget rule")
        if self.initial_fraction is not None:
            check_fraction(self.initial_fraction)
            if self.initial_fraction >= self.fractions[0]:
                raise FeedwiseError("--initial-fraction must be smaller than the smallest fraction")
        if self.keep not in KEEPS:
            raise FeedwiseError(f"unknown --keep '{self.keep}' (known: {', '.join(KEEPS)})")
        if not (self.tolerance >= 0):
            raise FeedwiseError(f"--tolerance must be >= 0, got {self.tolerance}")
        for name, v in (("--steps", self.target_steps), ("--acq-steps", self.acq_steps),
                        ("--batch-size", self.batch_size)):
            if v is not None and v < 1:
                raise FeedwiseError(f"{name} must be positive, got {v}")
        if self.lr is not None and not (self.lr > 0 and math.isfinite(self.lr)):
            raise FeedwiseError(f"learning rate must be positive, got {self.lr}")
        for name, widths in (("--acq-widths", self.acq_widths), ("--target-widths", self.target_widths)):
            if widths is not None and (not widths or any(int(v) != v or v < 1 for v in widths)):
                raise FeedwiseError(f"{name} must list positive layer widths (for example 128,128), got "
                                    f"{','.join(str(v) for v in widths) or 'nothing'}")
        check_seed(self.selection_seed, "--selection-seed")
        self.data.validate()


def subset_data(data: Dataset, idx: np.ndarray) -> Dataset:
    """A copy of ``data`` whose training split is the rows ``idx`` (validation and test unchanged)."""
    t = torch.as_tensor(idx, dtype=torch.long)
    noisy = np.flatnonzero(np.isin(idx, data.noisy_indices)) if len(data.noisy_indices) else data.noisy_indices
    return replace(data, x_train=take_rows(data.x_train, idx), y_train=data.y_train[t],
                   clean_y_train=None if data.clean_y_train is None else data.clean_y_train[t],
                   noisy_indices=noisy.astype(np.int64), info={**data.info, "subset_size": int(len(idx))})


# --------------------------------------------------------------------------- the study
class SubsetStudy:
    def __init__(self, req: SubsetRequest, out: str, threads: int | None = None, device: str = "auto",
                 command: list[str] | None = None):
        req.validate()
        self.req = req
        self.w: Workload = get_workload(req.workload)
        self.spec = EnsembleSpec.parse(req.ensemble)
        self.study = StudyDir(out)
        self.root = Path(out)
        self.threads = set_threads(threads)
        self.device = pick_device(device)
        self.data = self.w.load(**asdict(req.data))
        self.n = self.data.num_train
        self.labels = self.data.y_train.cpu().numpy()
        self.bs = req.batch_size or self.w.batch_size
        self.lr = req.lr or self.w.lr
        self.target_steps = req.target_steps or self.w.max_steps
        self.acq_steps = req.acq_steps or max(1, self.target_steps // 2)
        for f in req.fractions:
            if subset_size(f, self.n) < self.bs:
                raise FeedwiseError(f"fraction {f} gives {subset_size(f, self.n)} examples, fewer than the batch "
                                    f"size {self.bs}; use larger fractions or --batch-size")
        for widths in {tuple(w) for w in (req.acq_widths, req.target_widths) if w}:
            self._model_fn(self.data, widths)   # a model that takes no widths refuses them now
        self.study.open("subset", self.config(), command=command,
                        extra={"threads": self.threads, "device": str(self.device), "dataset": self.data.describe()})
        mkdir(self.root / "subsets")
        mkdir(self.root / "scores")
        self.trials_run = 0

    def config(self) -> dict:
        r = self.req
        return {"workload": r.workload, "acquisitions": r.acquisitions, "fractions": r.fractions,
                "ensemble": r.ensemble, "schedule": r.schedule, "seeds": r.seeds, "balances": r.balances,
                "budgets": r.budgets, "batch_size": self.bs, "lr": self.lr, "target_steps": self.target_steps,
                "acq_steps": self.acq_steps, "acq_widths": r.acq_widths, "target_widths": r.target_widths,
                "initial_fraction": r.initial_fraction, "selection_seed": r.selection_seed,
                "tolerance": r.tolerance, "data": r.data.identity(self.data),
                **({} if r.keep == "hardest" else {"keep": r.keep}),   # absent = hardest: older studies resume
                **({} if r.selections == ["top"] else {"selections": r.selections}),
                **({"ccs_strata": r.ccs_strata, "ccs_beta": r.ccs_beta} if "ccs" in r.selections else {}),
                **({"dynamics_models": r.dynamics_models, "el2n_checkpoints": r.el2n_checkpoints}
                   if any(a in DYNAMICS_ACQUISITIONS for a in r.acquisitions) else {})}

    # ------------------------------------------------------------------ plumbing
    def _model_fn(self, data: Dataset, widths):
        return self.w.model_fn(data, **({"widths": tuple(widths)} if widths else {}))

    def _cfg(self, steps: int, eval_every: int, seed: int, test: bool) -> TrainConfig:
        return TrainConfig(batch_size=self.bs, optimizer="momentum", lr=self.lr, momentum=0.9, max_steps=steps,
                           eval_every=eval_every, target=None, stop_at_target=False, seed=seed, evaluate_test=test)

    def _run(self, trial: TrialDir, data: Dataset, cfg: TrainConfig, widths, record: dict, callbacks=(),
             bar=None, feeder=None) -> dict:
        task = bar.add_task(trial.id, total=cfg.budget_steps()) if bar is not None else None
        result, _ = run_trial(trial, self.w, data, cfg, feeder or UniformFeeder(), device=self.device, callbacks=callbacks,
                              record={**record, "train_size": data.num_train},
                              progress=(lambda s, t: bar.update(task, completed=s)) if bar is not None else None,
                              model_fn=self._model_fn(data, widths))
        if bar is not None:
            bar.remove_task(task)
        self.trials_run += 1
        if result.status == "diverged":
            raise FeedwiseError(f"trial {trial.id} diverged (NaN/inf loss); lower --lr")
        return trial.read()

    # ------------------------------------------------------------------ acquisition
    def _ensemble(self, ens_id: str, train_idx: np.ndarray, pool_idx: np.ndarray, member_prefix: str,
                  round_name: str | int, bar, history: tuple[str, ...] = (), dynamics: tuple[str, ...] = (),
                  models: int | None = None) -> tuple[EnsembleScorer, dict[str, np.ndarray]]:
        """Train (or resume) the ensemble ``ens_id`` (``models`` models, default E) on ``train_idx``, scoring
        ``pool_idx``; returns the scorer and, for each history acquisition in ``history``, its score of every
        pool example averaged over the models, and for each training-dynamics acquisition in ``dynamics``, its
        score averaged over the first ``dynamics_models`` models (the pool must then be the training set: each
        model's own prediction history or evaluations of its training examples score it)."""
        if (history or dynamics) and not (np.array_equal(train_idx, pool_idx) and len(pool_idx) == self.n):
            raise FeedwiseError("history and training-dynamics acquisitions score the examples the models train "
                                "on: one-shot only")
        spec = self.spec if models is None else EnsembleSpec(models, self.spec.checkpoints)
        state_path = self.root / "scores" / f"{ens_id}.npz"
        scorer = EnsembleScorer(len(pool_idx), self.data.num_classes)
        per_model = (*history, *dynamics)
        hsum = {a: np.zeros(len(pool_idx)) for a in per_model}
        done: set[int] = set()
        if state_path.exists():
            z = read_npz(state_path)
            if "pool" in z and np.array_equal(z["pool"], pool_idx) and all(f"history_{a}" in z for a in per_model):
                scorer.load_state_dict(z)
                done = set(int(j) for j in z["members"])
                hsum = {a: np.array(z[f"history_{a}"]) for a in per_model}
        ndyn = self.req.dynamics_models
        labels = self.labels[pool_idx]
        tracks: dict[int, TrainingDynamics] = {}

        def dynamics_of(j: int):
            if not dynamics or j >= ndyn:
                return None
            tracks[j] = TrainingDynamics(labels, self.req.el2n_checkpoints)
            return tracks[j]
        data = subset_data(self.data, train_idx) if len(train_idx) < self.n else self.data
        pool_x = take_rows(self.data.x_train, pool_idx)
        every, steps = self.spec.member_schedule(self.acq_steps)

        def run_member(j, streamer):
            trial = self.study.trial(f"{member_prefix}-m{j}")
            cfg = self._cfg(steps, every, stream(self.req.selection_seed, "acquisition", round_name, j), test=False)
            feeder = EmphasisFeeder("uniform") if history else UniformFeeder()  # the same draws
            self._run(trial, data, cfg, self.req.acq_widths, {"role": "acquisition", "ensemble": ens_id,
                                                              "member": j}, callbacks=[streamer], bar=bar,
                      feeder=feeder)
            for a in history:
                sc = get_score(HISTORY_ACQUISITIONS[a])(feeder.history).cpu()
                hsum[a] += torch.nan_to_num(sc, nan=fill_value(sc)).numpy()
            if j in tracks:
                track = tracks.pop(j)
                for a in dynamics:
                    hsum[a] += track.score(a)
            rec = trial.read()
            rec.update({"checkpoints": streamer.checkpoints, "scored_examples": streamer.scored_examples,
                        "score_s": round(streamer.score_s, 6), "pool_size": int(len(pool_idx))})
            trial.write(rec)

        def save(j, streamer):
            done.add(j)
            write_npz(state_path, pool=pool_idx, members=np.array(sorted(done), dtype=np.int64),
                      **scorer.state_dict(), **{f"history_{a}": v for a, v in hsum.items()})

        train_ensemble(spec, scorer, pool_x, run_member, done=done, after_member=save, dynamics=dynamics_of)
        return scorer, {a: v / (ndyn if a in dynamics else spec.models) for a, v in hsum.items()}

    def _save_subset(self, name: str, idx: np.ndarray, meta: dict) -> None:
        idx = np.asarray(idx, dtype=np.int64)
        assert idx.size == np.unique(idx).size and np.all(np.diff(idx) > 0)
        meta = {**meta, "size": int(idx.size),
                "composition": class_composition(self.labels, idx, self.data.num_classes)}
        write_npy(self.root / "subsets" / f"{name}.npy", idx)
        write_json(self.root / "subsets" / f"{name}.json", meta)

    def _subset(self, name: str) -> np.ndarray:
        """A saved subset: sorted unique indices into the training split (a damaged file is one error)."""
        path = self.root / "subsets" / f"{name}.npy"
        idx = read_npy(path)
        if idx.ndim != 1 or idx.dtype.kind not in "iu" or (idx.size and (idx[0] < 0 or idx[-1] >= self.n)) \
                or np.any(np.diff(idx) <= 0):
            raise FeedwiseError(f"damaged results file {path}: not sorted unique indices into the {self.n} "
                                "training examples")
        return idx

    def _have_subset(self, name: str) -> bool:
        return (self.root / "subsets" / f"{name}.npy").exists() and (self.root / "subsets" / f"{name}.json").exists()

    def make_subsets(self, bar) -> None:
        r, n = self.req, self.n
        seed = r.selection_seed
        for bal in r.balances:
            if "random" in r.acquisitions:
                # nested random subsets: the smaller ones are inside the larger (one random order)
                prev = None
                for f in r.fractions:
                    name = subset_name("random", f, bal)
                    if not self._have_subset(name):
                        sel = select_random(n, subset_size(f, n), seed=seed, labels=self.labels, balance=bal,
                                            exclude=prev, num_classes=self.data.num_classes)
                        self._save_subset(name, sel.indices, {"acquisition": "random", "fraction": f,
                                                              "balance": bal, "seed": seed, "tie_filled": 0,
                                                              "tied_at_cutoff": 0})
                    prev = self._subset(name)
        acqs = [a for a in r.acquisitions if a != "random"]
        if not acqs:
            return
        if r.schedule == "one-shot":
            todo = [(a, s, f, b) for a in acqs for s in r.selections for f in r.fractions for b in r.balances
                    if not self._have_subset(subset_name(a, f, b, s))]
            if not todo:
                return
            all_idx = np.arange(n)
            history = tuple(a for a in acqs if a in HISTORY_ACQUISITIONS)
            dynamics = tuple(a for a in acqs if a in DYNAMICS_ACQUISITIONS)
            scorer, hist = self._ensemble("oneshot", all_idx, all_idx, "acq-oneshot", "oneshot", bar, history=history,
                                          dynamics=dynamics, models=r.one_shot_models())
            for a, s, f, b in todo:
                raw = hist[a] if a in hist else scorer.scores(a)
                meta = {"acquisition": a, "selection": s, "fraction": f, "balance": b, "seed": seed,
                        "ensemble": ["oneshot"],
                        **({"members": list(range(r.dynamics_models))} if a in DYNAMICS_ACQUISITIONS else {})}
                if s == "ccs":
                    sel = select_ccs(raw, subset_size(f, n), seed=seed, strata=r.ccs_strata, beta=r.ccs_beta,
                                     labels=self.labels, balance=b, num_classes=self.data.num_classes)
                    meta.update(strata=r.ccs_strata, beta=r.ccs_beta, tie_filled=0, tied_at_cutoff=0)
                else:
                    sel = select_top(difficulty_scores(raw, r.keep, f), subset_size(f, n), seed=seed,
                                     labels=self.labels, balance=b, num_classes=self.data.num_classes)
                    meta.update(keep=resolve_keep(r.keep, f), tie_filled=sel.tie_filled,
                                tied_at_cutoff=sel.tied_at_cutoff)
                self._save_subset(subset_name(a, f, b, s), sel.indices, meta)
            return
        # build-up
        f0 = r.initial_fraction or r.fractions[0] / 2
        for a in acqs:
            for b in r.balances:
                if all(self._have_subset(subset_name(a, f, b)) for f in r.fractions):
                    continue
                cur = select_random(n, max(self.bs, subset_size(f0, n)), seed=seed, labels=self.labels,
                                    balance=b, num_classes=self.data.num_classes).indices
                ensembles = []
                for rnd, f in enumerate(r.fractions):
                    name = subset_name(a, f, b)
                    if self._have_subset(name):
                        cur = self._subset(name)
                        ensembles = read_json(self.root / "subsets" / f"{name}.json").get("ensemble", [])
                        continue
                    pool = np.setdiff1d(np.arange(n), cur)
                    ens_id = f"{a}-{b}-r{rnd}"
                    scorer, _ = self._ensemble(ens_id, cur, pool, f"acq-{ens_id}", rnd, bar)
                    full_scores = np.full(n, -np.inf)
                    full_scores[pool] = difficulty_scores(scorer.scores(a), r.keep, f)
                    sel = select_top(full_scores, subset_size(f, n), seed=seed + rnd, labels=self.labels,
                                     balance=b, exclude=cur, num_classes=self.data.num_classes)
                    ensembles = ensembles + [ens_id]
                    self._save_subset(name, sel.indices, {"acquisition": a, "fraction": f, "balance": b,
                                                          "keep": resolve_keep(r.keep, f), "seed": seed + rnd, "tie_filled": sel.tie_filled,
                                                          "tied_at_cutoff": sel.tied_at_cutoff,
                                                          "initial_size": int(max(self.bs, subset_size(f0, n))),
                                                          "ensemble": ensembles})
                    cur = sel.indices

    # ------------------------------------------------------------------ targets
    def target_steps_for(self, size: int, budget: str) -> int:
        if budget == "steps" or size >= self.n:
            return self.target_steps
        return max(1, math.ceil(self.target_steps * size / self.n))

    def train_targets(self, bar) -> None:
        r = self.req
        jobs = [("target-full", np.arange(self.n), self.target_steps, {"subset": None, "budget": "full"})]
        for a in r.acquisitions:
            for s in (["top"] if a == "random" else r.selections):
                for f in r.fractions:
                    for b in r.balances:
                        name = subset_name(a, f, b, s)
                        tag = a if s == "top" else f"{a}-{s}"
                        for rule in r.budgets:
                            jobs.append((f"target-{tag}-{fraction_tag(f)}-{b}-{rule}", name,
                                         None, {"subset": name, "acquisition": a, "fraction": f, "balance": b,
                                                "budget": rule, **({} if s == "top" else {"selection": s})}))
        todo = []
        for seed in range(r.seeds):
            for prefix, what, steps, rec in jobs:
                trial = self.study.trial(f"{prefix}-s{seed}")

                def run(trial=trial, what=what, steps=steps, rec=rec, seed=seed):
                    if isinstance(what, str):
                        idx = self._subset(what)
                        data = subset_data(self.data, idx)
                        steps = self.target_steps_for(len(idx), rec["budget"])
                    else:
                        data = self.data
                    every = max(1, min(self.w.eval_every, steps), math.ceil(steps / 10))
                    self._run(trial, data, self._cfg(steps, every, seed, test=True), r.target_widths,
                              {"role": "target", **rec}, bar=bar)
                todo.append(Job(trial, trial.finished, run, f"trial {trial.id}"))
        run_claimed(todo)   # processes sharing the folder split the targets; none is trained twice

    def run(self) -> tuple[dict, int]:
        t0 = time.perf_counter()
        with progress_bar() as bar:
            # the search (acquisition ensembles, subsets) runs in one process at a time; a second process
            # sharing the folder waits for it, then finds the subsets made
            with self.study.lock("subsets").hold(
                    waiting=lambda who: say(f"waiting for the subset search, which {who} is running")):
                self.make_subsets(bar)
            self.train_targets(bar)
        summary = summarize(self.root)
        self.study.write_summary(summary)
        say(f"subset study: {self.trials_run} trials run in {time.perf_counter() - t0:.0f} s")
        return summary, self.trials_run


def run_subset_study(req: SubsetRequest, out: str, threads: int | None = None, device: str = "auto",
                     command: list[str] | None = None) -> tuple[dict, int]:
    """Run (or resume) the study into ``out``; returns (summary, number of trials run now)."""
    return SubsetStudy(req, out, threads=threads, device=device, command=command).run()
