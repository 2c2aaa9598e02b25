"""The batch-size study's metaparameter search space and its quasi-random sampler.

A space is ``{name: [low, high] | fixed number}`` over :data:`PARAMS`; defaults come from
``Workload.search_space`` and a YAML/JSON file may override them (an unknown name is an
error; numbers may be written as YAML reads them or as strings such as ``1e-3``; NaN and
infinities are refused). The batch-size study enqueues every trial's point
(:func:`sobol_point`, point k of the scrambled Sobol sequence); :func:`sampler` is a scrambled,
seeded Sobol ``QMCSampler`` that knows the space up front and gives a trial the point named by
its ``point`` user attribute (its trial number without one).
"""

from __future__ import annotations

import json
import math
import warnings
from pathlib import Path

from feedwise.errors import FeedwiseError

PARAMS = ("lr", "one_minus_momentum", "end_factor", "decay_fraction")
LOG_PARAMS = ("lr", "one_minus_momentum", "end_factor")


def load_space_file(path: str | Path) -> dict:
    """Read a YAML or JSON file ``{name: [low, high] | value}``."""
    p = Path(path)
    if not p.is_file():
        raise FeedwiseError(f"search-space file {p} does not exist")
    try:
        text = p.read_text(encoding="utf-8")
    except (UnicodeDecodeError, OSError) as e:
        raise FeedwiseError(f"cannot read search-space file {p} as UTF-8 text: {_one_line(e)}") from None
    try:
        if p.suffix.lower() == ".json":
            obj = json.loads(text)
        else:
            import yaml
            obj = yaml.safe_load(text)
    except Exception as e:  # yaml.YAMLError, json.JSONDecodeError, ...
        raise FeedwiseError(f"cannot parse search-space file {p}: {_one_line(e)}") from None
    if not isinstance(obj, dict):
        raise FeedwiseError(f"search-space file {p} must hold a mapping name -> [low, high]")
    return {str(k): v for k, v in obj.items()}


def _one_line(e: BaseException) -> str:
    return " ".join(str(e).split()) or type(e).__name__


def number(name: str, v) -> float:
    """A finite number from a space entry: ints, floats, and numeric strings (PyYAML reads an
    exponent without a dot, ``1e-3``, as a string) are accepted; booleans, NaN and infinities are not."""
    if isinstance(v, str):
        try:
            v = float(v.strip())
        except ValueError:
            raise FeedwiseError(f"search-space '{name}': {v!r} is not a number") from None
    if isinstance(v, bool) or not isinstance(v, (int, float)):
        raise FeedwiseError(f"search-space '{name}' must be [low, high] or a number, got {v!r}")
    v = float(v)
    if not math.isfinite(v):
        raise FeedwiseError(f"search-space '{name}' must be finite, got {v}")
    return v


def resolve_space(defaults: dict, overrides: dict | None, optimizer: str) -> dict:
    """The search space of one optimizer: ``{name: [low, high]}`` (or a fixed number).

    ``one_minus_momentum`` is dropped for plain SGD. Unknown names are an error."""
    space = {k: (list(v) if isinstance(v, (list, tuple)) else v) for k, v in defaults.items()}
    for k, v in (overrides or {}).items():
        if k not in PARAMS:
            raise FeedwiseError(f"unknown search-space parameter '{k}' (known: {', '.join(PARAMS)})")
        space[k] = list(v) if isinstance(v, (list, tuple)) else v
    for k in PARAMS:
        if k not in space:
            raise FeedwiseError(f"search space misses '{k}'")
    if optimizer == "sgd":
        space.pop("one_minus_momentum")
    for k, v in space.items():
        if isinstance(v, list):
            if len(v) != 2:
                raise FeedwiseError(f"search-space '{k}' must be [low, high] or a number, got {v!r}")
            lo, hi = number(k, v[0]), number(k, v[1])
            if not lo < hi:
                raise FeedwiseError(f"search-space '{k}': low {lo} must be below high {hi}")
            if k in LOG_PARAMS and lo <= 0:
                raise FeedwiseError(f"search-space '{k}' is log-scaled: low must be positive, got {lo}")
            space[k] = [lo, hi]
        else:
            space[k] = number(k, v)
    _check_ranges(space)
    return space


def _check_ranges(space: dict) -> None:
    bounds = {"lr": (0, math.inf), "one_minus_momentum": (0, 1), "end_factor": (0, 1), "decay_fraction": (0, 1)}
    for k, v in space.items():
        lo, hi = (v, v) if isinstance(v, float) else v
        blo, bhi = bounds[k]
        if lo <= blo and k != "end_factor" or lo < blo or hi > bhi:
            raise FeedwiseError(f"search-space '{k}' = {v} is outside ({blo}, {bhi}]")


def suggest(trial, space: dict) -> dict:
    params = {}
    for k in sorted(space):
        v = space[k]
        if isinstance(v, float):
            params[k] = v
        else:
            params[k] = trial.suggest_float(k, v[0], v[1], log=k in LOG_PARAMS)
    return params


def distributions(space: dict) -> dict:
    """Optuna distributions of the tuned (non-fixed) parameters."""
    from optuna.distributions import FloatDistribution

    return {k: FloatDistribution(v[0], v[1], log=k in LOG_PARAMS) for k, v in sorted(space.items())
            if isinstance(v, list)}


def sampler(seed: int, space: dict):
    """Scrambled, seeded Sobol QMC over a search space known up front, so that every trial, the
    first ones and concurrent ones included, is a point of the sequence (Optuna's QMCSampler
    otherwise learns the space from a first, randomly sampled trial)."""
    import optuna

    warnings.filterwarnings("ignore", category=optuna.exceptions.ExperimentalWarning)
    warnings.filterwarnings("ignore", message=".*balance properties of Sobol.*")
    dists = distributions(space)

    class FixedSpaceQMCSampler(optuna.samplers.QMCSampler):
        def infer_relative_search_space(self, study, trial):
            return dict(dists)

        def sample_relative(self, study, trial, search_space):
            # Point number ``trial.number`` of the sequence. Optuna's own sample counter is a
            # read-then-write of a study attribute: concurrent trials drew the same point twice.
            # Trial numbers are unique in the storage, across threads, processes and machines.
            if not search_space:
                return {}
            point = trial.user_attrs.get("point", trial.number)
            return sobol_point(search_space, int(point), seed)

    return FixedSpaceQMCSampler(qmc_type="sobol", scramble=True, seed=seed, warn_independent_sampling=False)


def sobol_point(search_space: dict, index: int, seed: int) -> dict:
    """Point ``index`` of the scrambled Sobol sequence (``seed``) mapped onto the distributions
    (names in sorted order; log-uniform where the distribution is log)."""
    from scipy.stats import qmc

    names = sorted(search_space)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        eng = qmc.Sobol(len(names), scramble=True, seed=seed)
        if index > 0:
            eng.fast_forward(index)
        u = eng.random(1)[0]
    out = {}
    for k, x in zip(names, u):
        d = search_space[k]
        if d.log:
            v = math.exp(math.log(d.low) + float(x) * (math.log(d.high) - math.log(d.low)))
        else:
            v = d.low + float(x) * (d.high - d.low)
        out[k] = min(max(v, d.low), d.high)
    return out
