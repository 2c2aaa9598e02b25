"""The batch-size study's Optuna storage and exact pruning.

``open_storage`` opens any RDB URL (SQLite by default, PostgreSQL for several machines) with
heartbeats, retrying while workers that start together race to create the tables;
``mark_stale`` fails trials whose heartbeat stopped and turns their folders (and any other FAIL
trial's running folder) into ``unfinished``; ``ExactPruner`` (engine callback) and
``StoragePruner`` (the data-parallel worker's stop rule) stop a trial as ``pruned`` once it
cannot beat the best steps-to-result already in the storage (:func:`feedwise.studies.scaling.should_prune`).
"""

from __future__ import annotations

import logging
import math
import time
import warnings

from feedwise.errors import FeedwiseError
from feedwise.results import StudyDir
from feedwise.studies import scaling


def open_storage(url: str, heartbeat: int = 10):
    import optuna

    optuna.logging.set_verbosity(optuna.logging.ERROR)
    kwargs = {}
    if url.startswith("sqlite"):
        kwargs["engine_kwargs"] = {"connect_args": {"timeout": 60}}
    error = None
    for attempt in range(6):  # workers starting together race to create the tables: retry
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            try:
                return optuna.storages.RDBStorage(url, heartbeat_interval=max(1, int(heartbeat)),
                                                  grace_period=max(2, 3 * int(heartbeat)), **kwargs)
            except Exception as e:
                error = e
        time.sleep(0.5 * (attempt + 1))
    raise FeedwiseError(f"cannot open Optuna storage {redact(url)}: {error}")


def finished_count(study) -> int:
    from optuna.trial import TrialState

    return len(study.get_trials(deepcopy=False, states=(TrialState.COMPLETE, TrialState.PRUNED)))


def best_steps(study) -> int | None:
    """Best steps-to-result among this batch size's COMPLETE trials in the storage."""
    from optuna.trial import TrialState

    vals = [t.value for t in study.get_trials(deepcopy=False, states=(TrialState.COMPLETE,))
            if t.value is not None and math.isfinite(t.value)]
    return int(min(vals)) if vals else None


def mark_stale(study, out: StudyDir) -> list[str]:
    """Fail trials whose heartbeat stopped and mark their folders ``unfinished``."""
    import optuna
    from optuna.trial import TrialState

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        optuna.storages.fail_stale_trials(study)
    marked = []
    for t in study.get_trials(deepcopy=False, states=(TrialState.FAIL,)):
        tid = t.user_attrs.get("trial_dir")
        if not tid:
            continue
        td = out.trial(tid)
        if td.exists():
            rec = td.read()
            if rec.get("status") == "running":
                td.write({**rec, "status": "unfinished", "optuna_state": "FAIL"})
                marked.append(tid)
    return marked


class ExactPruner:
    """Engine callback: ``pruned`` once the trial cannot beat the batch size's best result.

    Reads the best from the storage at most every ``refresh_s`` seconds (other workers)."""

    def __init__(self, study, eval_every: int, refresh_s: float = 0.5):
        self.study, self.eval_every, self.refresh_s = study, eval_every, refresh_s
        self.best, self._t = None, -math.inf

    def __call__(self, trainer, row) -> str | None:
        now = time.monotonic()
        if now - self._t >= self.refresh_s:
            self.best, self._t = best_steps(self.study), now
        if scaling.should_prune(trainer.step, self.eval_every, self.best):
            return "pruned"
        return None


class StoragePruner:
    """Exact pruning for data-parallel trials: an engine callback that travels to the ranks (rank 0
    calls it after each evaluation). Picklable: it opens the storage by URL in the process that calls it."""

    def __init__(self, url: str, study: str, eval_every: int, refresh_s: float = 0.5):
        self.url, self.study_name, self.eval_every, self.refresh_s = url, study, eval_every, refresh_s
        self._study, self.best, self._t = None, None, -math.inf

    def __getstate__(self):
        return {**self.__dict__, "_study": None, "best": None, "_t": -math.inf}

    def __call__(self, trainer, row: dict) -> str | None:
        step = trainer.step
        now = time.monotonic()
        if now - self._t >= self.refresh_s:
            if self._study is None:
                import optuna

                optuna.logging.set_verbosity(optuna.logging.ERROR)
                self._study = optuna.load_study(study_name=self.study_name, storage=open_storage(self.url))
            self.best, self._t = best_steps(self._study), now
        return "pruned" if scaling.should_prune(step, self.eval_every, self.best) else None


def redact(url: str) -> str:
    """The URL without its password, for messages and study.json."""
    if "://" in url and "@" in url:
        scheme, rest = url.split("://", 1)
        return f"{scheme}://***@{rest.split('@', 1)[1]}"
    return url


# quiet optuna's own logger when imported as a library
logging.getLogger("optuna").setLevel(logging.ERROR)
