"""The batch-size study's trials in the Optuna storage: identity, points, rebuilding, pruning.

**Identity.** Each batch size B is one Optuna study named ``feedwise-bs<B>-<fp12>``, where
``fp`` is the SHA-256 :func:`fingerprint` of the study config (what defines the results:
workload, optimizer, target, budget, space, seed, data, data parallelism); the full fingerprint
and the config are the Optuna study's user attributes. Two different studies sharing one
``--storage`` therefore never see each other's trials; a storage study whose recorded
fingerprint differs from its name's is refused.

**Points.** Trial ``k`` of a batch size is not "Optuna trial number k" but *point* ``k`` of the
scrambled Sobol sequence (seed ``seed + B``), with training seed ``stream(seed, "batch-size trial", k)``; the
point is enqueued (:func:`enqueue_point`, fixed parameters + user attribute ``point``) and the
trial that pops it trains it. A run asks for the points ``0..N-1`` that no finished
(COMPLETE/PRUNED) or running trial holds, so after ``--trials N`` the evaluated points are
exactly ``0..N-1``, whatever the interruptions (an interrupted point is trained again from its
start) and whatever the number of workers. When two workers race to enqueue the same point,
the trial with the smallest storage id among those holding it trains it and the other is
skipped (:func:`is_duplicate`; it ends FAIL with user attribute ``feedwise_skipped`` and no
folder, having trained nothing).

**Folders are the truth.** A trial trains into ``trials/b<B>-<number>/`` (its Optuna number);
an existing folder is never overwritten (:class:`FolderClash`). When the storage has no study
of this identity (deleted ``study.db``, an emptied database, another ``--storage``), the first
worker to create it re-registers every trial folder of ``--out`` (:func:`rebuild`): finished
ones with their state and value, unfinished ones as FAIL, missing numbers as FAIL placeholders,
so numbers, points and the exact-pruning best are those of the folders and the study goes on.
When the storage does hold the study, every trial folder must be the storage's trial of the same
number and point (:func:`check_folders`), or the run is refused in one line.

**Stale trials.** :func:`mark_stale` fails trials whose heartbeat stopped (Optuna), trials
popped by a worker that died before its first heartbeat (RUNNING, never started, for
``ORPHAN_S``), trials whose folder names a worker process on this host that no longer exists
(a SIGKILLed worker: failed at once instead of after its heartbeat's grace period, so a resumed
single-worker sweep re-runs the point where the uninterrupted one ran it, whatever the timing),
and turns their ``running`` folders into ``unfinished`` with the examples their measurements show
(counted in the summary's compute account).
"""

from __future__ import annotations

import fcntl
import hashlib
import json
import math
import os
import socket
import threading
import time
import warnings
from datetime import datetime

from feedwise.errors import FeedwiseError
from feedwise.results import StudyDir, TrialDir
from feedwise.studies.batch_size import scaling
from feedwise.studies.batch_size.storage import open_storage, redact
from feedwise.studies.batch_size.search_space import distributions, sobol_point

FINGERPRINT = "feedwise_fingerprint"
READY = "feedwise_ready"
ORPHAN_S = 300.0          # a trial RUNNING this long without starting to train was popped by a dead worker
READY_WAIT_S = 120.0      # how long a worker waits for another one to finish rebuilding a study
FINISHED_STATUS = ("reached", "budget", "pruned", "diverged")


class SkipTrial(Exception):
    """A popped trial that must not train (its point is another trial's, or it has none)."""


class FolderClash(FeedwiseError):
    """The trial folder a new trial would write already exists: the storage does not match --out."""


# ------------------------------------------------------------------------------- identity
def fingerprint(config: dict) -> str:
    """SHA-256 of the study config (canonical JSON: sorted keys, no NaN)."""
    text = json.dumps(config, sort_keys=True, separators=(",", ":"), allow_nan=False, default=str)
    return hashlib.sha256(text.encode()).hexdigest()


def study_name(batch_size: int, fp: str) -> str:
    return f"feedwise-bs{int(batch_size)}-{fp[:12]}"


def trial_id(batch_size: int, number: int) -> str:
    return f"b{batch_size}-{number}"


def point_of(t) -> int | None:
    p = t.user_attrs.get("point")
    return int(p) if isinstance(p, (int, float)) and not isinstance(p, bool) else None


def folder_number(td: TrialDir, rec: dict) -> int | None:
    n = (rec.get("optuna") or {}).get("number")
    if isinstance(n, int):
        return n
    try:
        return int(td.id.rsplit("-", 1)[1])
    except (IndexError, ValueError):
        return None


def folders_of(sd: StudyDir, batch_size: int) -> dict[int, tuple[TrialDir, dict]]:
    """``{Optuna number: (folder, trial.json)}`` of this batch size's trial folders in --out."""
    out = {}
    for td in sd.trials():
        rec = td.read()
        if int(rec.get("batch_size") or rec.get("hparams", {}).get("batch_size") or -1) != int(batch_size):
            continue
        n = folder_number(td, rec)
        if n is not None:
            out[n] = (td, rec)
    return out


def folder_point(rec: dict, number: int) -> int:
    """A folder's point; folders written before points existed used point = Optuna number."""
    p = rec.get("point")
    return int(p) if isinstance(p, int) else int(number)


_POP_LOCK = threading.Lock()


def guard_pops(study, url: str):
    """Make popping an enqueued point atomic. Optuna pops a WAITING trial by reading it and setting it
    RUNNING, which PostgreSQL makes atomic (SELECT ... FOR UPDATE) and SQLite does not: two threads
    (``--jobs``) or processes on one SQLite file could both pop the same trial and train it twice
    (seen: 5 of 8 fresh ``--jobs 2`` runs). The pop is serialised by a lock of this process and, for
    SQLite, an exclusive lock on a file beside the database."""
    pop = getattr(study, "_pop_waiting_trial_id", None)
    if pop is None:   # another Optuna: nothing to guard here
        return study
    path = url[len("sqlite:///"):] + ".pop.lock" if url.startswith("sqlite:///") else None

    def locked_pop():
        with _POP_LOCK:
            if path is None:
                return pop()
            with open(path, "a") as f:
                fcntl.flock(f, fcntl.LOCK_EX)
                try:
                    return pop()
                finally:
                    fcntl.flock(f, fcntl.LOCK_UN)

    study._pop_waiting_trial_id = locked_pop
    return study


def open_study(store, url: str, batch_size: int, fp: str, config: dict, sd: StudyDir, space: dict, sampler):
    """This batch size's Optuna study: created (and rebuilt from --out's folders) or checked."""
    import optuna
    from optuna.exceptions import DuplicatedStudyError

    name = study_name(batch_size, fp)
    try:
        study = optuna.create_study(study_name=name, storage=store, sampler=sampler, direction="minimize",
                                    load_if_exists=False)
        created = True
    except DuplicatedStudyError:
        study = optuna.load_study(study_name=name, storage=store, sampler=sampler)
        created = False
    if created:
        study.set_user_attr(FINGERPRINT, fp)
        study.set_user_attr("feedwise_config", config)
        study.set_user_attr("batch_size", int(batch_size))
        n = rebuild(study, batch_size, sd, space)
        study.set_user_attr("feedwise_rebuilt_trials", n)
        study.set_user_attr(READY, True)
        return guard_pops(study, url)
    deadline = time.monotonic() + READY_WAIT_S
    while not (attrs := study.user_attrs).get(READY):
        if attrs.get(FINGERPRINT) not in (None, fp):
            break
        if time.monotonic() > deadline:
            raise FeedwiseError(f"storage study {name} in {redact(url)} was left half-built by a worker that "
                                f"stopped while creating it; delete it (optuna delete-study --study-name {name} "
                                f"--storage URL) and re-run: it is rebuilt from the trial folders")
        time.sleep(0.5)
    if attrs.get(FINGERPRINT) != fp:
        raise FeedwiseError(f"storage study {name} in {redact(url)} belongs to another study (fingerprint "
                            f"{str(attrs.get(FINGERPRINT))[:12]}, this study {fp[:12]}); use another --storage")
    check_folders(study, batch_size, sd, url)
    return guard_pops(study, url)


def rebuild(study, batch_size: int, sd: StudyDir, space: dict) -> int:
    """Register --out's trial folders of this batch size in a new storage study, number for number."""
    from optuna.trial import TrialState, create_trial

    folders = folders_of(sd, batch_size)
    if not folders:
        return 0
    dists = distributions(space)
    trials = []
    for n in range(max(folders) + 1):
        if n not in folders:
            trials.append(create_trial(state=TrialState.FAIL, user_attrs={"feedwise_placeholder": True}))
            continue
        td, rec = folders[n]
        status = rec.get("status")
        attrs = {"point": folder_point(rec, n), "trial_dir": td.id, "status": status, "feedwise_rebuilt": True}
        for k in ("examples", "steps_run"):
            if rec.get(k) is not None:
                attrs[k] = rec[k]
        sp = rec.get("search_params") or {}
        params = {k: sp[k] for k in dists if isinstance(sp.get(k), (int, float)) and dists[k]._contains(
            dists[k].to_internal_repr(sp[k]))}
        kw = {"params": params, "distributions": {k: dists[k] for k in params}, "user_attrs": attrs}
        if status == "reached" and rec.get("steps_to_result") is not None:
            trials.append(create_trial(state=TrialState.COMPLETE, value=float(rec["steps_to_result"]), **kw))
        elif status == "budget":
            trials.append(create_trial(state=TrialState.COMPLETE, value=math.inf, **kw))
        elif status in ("pruned", "diverged"):
            trials.append(create_trial(state=TrialState.PRUNED, **kw))
        else:   # running (killed) or unfinished: an interrupted attempt
            trials.append(create_trial(state=TrialState.FAIL, **kw))
    study.add_trials(trials)
    return len(folders)


def check_folders(study, batch_size: int, sd: StudyDir, url: str) -> None:
    """Every trial folder of --out must be the storage's trial of the same number and point (a
    folder is written only after its trial is in the storage: true of the storage it ran with)."""
    trials = {t.number: t for t in study.get_trials(deepcopy=False)}
    for n, (td, rec) in sorted(folders_of(sd, batch_size).items()):
        t = trials.get(n)
        if t is None or t.user_attrs.get("trial_dir") != td.id or point_of(t) != folder_point(rec, n):
            raise FeedwiseError(
                f"--out {sd.root} holds trial {td.id} that storage {redact(url)} does not hold (study "
                f"{study.study_name}): it is not the storage these trials were run with; use that storage, or "
                f"a new empty one (it is rebuilt from the trial folders)")


# ------------------------------------------------------------------------------- points
def point_params(space: dict, point: int, seed: int) -> dict:
    """The tuned parameters of Sobol point ``point`` (fixed parameters are not Optuna's)."""
    dists = distributions(space)
    return sobol_point(dists, point, seed) if dists else {}


def points_state(study, n_points: int) -> tuple[list[int], set[int], set[int]]:
    """(missing points of ``0..n_points-1``, finished points, running points) in the storage.

    A point is missing when no COMPLETE/PRUNED and no RUNNING trial holds it (a WAITING trial
    does not count: any worker pops it)."""
    from optuna.trial import TrialState

    done, running = set(), set()
    for t in study.get_trials(deepcopy=False):
        p = point_of(t)
        if p is None:
            continue
        if t.state in (TrialState.COMPLETE, TrialState.PRUNED):
            done.add(p)
        elif t.state == TrialState.RUNNING:
            running.add(p)
    missing = [p for p in range(n_points) if p not in done and p not in running]
    return missing, done, running


def enqueue_points(study, points: list[int], space: dict, seed: int) -> None:
    """Enqueue the points that no WAITING trial holds yet."""
    from optuna.trial import TrialState

    waiting = {point_of(t) for t in study.get_trials(deepcopy=False, states=(TrialState.WAITING,))}
    for p in points:
        if p not in waiting:
            study.enqueue_trial(point_params(space, p, seed), user_attrs={"point": int(p)})


def is_duplicate(study, trial_id_: int, point: int) -> bool:
    """Another trial owns this point: a finished one, or a waiting/running one with a smaller id."""
    from optuna.trial import TrialState

    for t in study.get_trials(deepcopy=False):
        if t._trial_id == trial_id_ or point_of(t) != point:
            continue
        if t.state in (TrialState.COMPLETE, TrialState.PRUNED):
            return True
        if t.state in (TrialState.WAITING, TrialState.RUNNING) and t._trial_id < trial_id_:
            return True
    return False


def skip(trial, reason: str):
    trial.set_user_attr("feedwise_skipped", reason)
    raise SkipTrial(reason)


# ------------------------------------------------------------------------------- stale trials
def mark_stale(study, out: StudyDir) -> list[str]:
    """Fail stale and orphaned trials; mark their ``running`` folders ``unfinished`` (with the
    examples and steps their measurements show)."""
    import optuna
    from optuna.exceptions import UpdateFinishedTrialError
    from optuna.trial import TrialState

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        optuna.storages.fail_stale_trials(study)
    now = datetime.now()
    for t in study.get_trials(deepcopy=False, states=(TrialState.RUNNING,)):
        if "trial_dir" not in t.user_attrs and t.datetime_start is not None \
                and (now - t.datetime_start).total_seconds() > ORPHAN_S:
            try:
                study._storage.set_trial_state_values(t._trial_id, state=TrialState.FAIL)
            except UpdateFinishedTrialError:
                pass
    for t in study.get_trials(deepcopy=False, states=(TrialState.RUNNING,)):
        tid = t.user_attrs.get("trial_dir")
        if tid and out.trial(tid).exists():
            worker = (out.trial(tid).read().get("worker") or {})
            if worker.get("host") == socket.gethostname() and _gone(worker.get("pid")):
                try:
                    study._storage.set_trial_state_values(t._trial_id, state=TrialState.FAIL)
                except UpdateFinishedTrialError:
                    pass
    marked = []
    for t in study.get_trials(deepcopy=False, states=(TrialState.FAIL,)):
        tid = t.user_attrs.get("trial_dir")
        if not tid:
            continue
        td = out.trial(tid)
        if td.exists():
            rec = td.read()
            if rec.get("status") == "running":
                rows = td.measurements()
                last = rows[-1] if rows else {}
                td.write({**rec, "status": "unfinished", "optuna_state": "FAIL",
                          "examples": int(last.get("examples") or 0), "steps_run": int(last.get("step") or 0),
                          "examples_note": "interrupted: examples and steps up to its last evaluation (a lower "
                                           "bound of its compute)"})
                marked.append(tid)
    return marked


def _gone(pid) -> bool:
    """Whether process ``pid`` of this host has ended (a zombie counts as ended); False when unknown
    or when it is this process (a live process, or a reused pid, leaves the heartbeat to decide)."""
    if not isinstance(pid, int) or pid <= 0 or pid == os.getpid():
        return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return True
    except OSError:          # exists but not ours to signal: alive
        return False
    try:
        with open(f"/proc/{pid}/stat") as f:
            return f.read().rsplit(")", 1)[1].split()[0] == "Z"
    except (OSError, IndexError):
        return False


# ------------------------------------------------------------------------------- exact pruning
def best_steps(study) -> int | None:
    """Best steps-to-result among this batch size's COMPLETE trials in the storage."""
    from optuna.trial import TrialState

    vals = [t.value for t in study.get_trials(deepcopy=False, states=(TrialState.COMPLETE,))
            if t.value is not None and math.isfinite(t.value)]
    return int(min(vals)) if vals else None


def best_params(study) -> dict | None:
    """Tuned parameters of this batch size's best COMPLETE trial (ties: the smaller point), or None."""
    from optuna.trial import TrialState

    done = [t for t in study.get_trials(deepcopy=False, states=(TrialState.COMPLETE,))
            if t.value is not None and math.isfinite(t.value)]
    if not done:
        return None
    t = min(done, key=lambda t: (t.value, point_of(t) if point_of(t) is not None else math.inf))
    return dict(t.params)


class ExactPruner:
    """Exact pruning, one engine callback for every trial: ``pruned`` once the trial cannot beat the
    best steps-to-result of its batch size in the storage (all workers' finished trials; read at
    most every ``refresh_s`` seconds). Give it the study itself (this process), or the storage URL
    and study name: then it is picklable and opens the storage in the process that calls it
    (rank 0 of a data-parallel trial)."""

    def __init__(self, study=None, eval_every: int = 1, refresh_s: float = 0.5, *, url: str | None = None,
                 study_name: str | None = None, retry_s: float = 60.0, local=None):
        if study is None and (url is None or study_name is None):
            raise ValueError("ExactPruner needs a study, or a storage url and a study name")
        self.study, self.eval_every, self.refresh_s = study, eval_every, refresh_s
        self.local = local   # anything with ``.best``: trials of this batch size known here before the storage
        self.url, self.study_name, self.retry_s = url, study_name, retry_s
        self.best, self._t = None, -math.inf

    def __getstate__(self):
        if self.url is None:
            raise TypeError("an ExactPruner made from a study object cannot travel to another process; "
                            "make it from the storage url and study name")
        return {**self.__dict__, "study": None, "best": None, "_t": -math.inf, "local": None}

    def __call__(self, trainer, row) -> str | None:
        now = time.monotonic()
        if now - self._t >= self.refresh_s:
            if self.study is None:
                import optuna

                optuna.logging.set_verbosity(optuna.logging.ERROR)
                self.study = optuna.load_study(study_name=self.study_name,
                                               storage=open_storage(self.url, retry_s=self.retry_s))
            self.best, self._t = best_steps(self.study), now
        best = self.best
        lb = getattr(self.local, "best", None)
        if lb is not None:
            best = lb if best is None else min(best, lb)
        return "pruned" if scaling.should_prune(trainer.step, self.eval_every, best) else None
