"""Feeders: which examples form each batch, with what loss weights (the contract is in
:mod:`feedwise.feeds.base`), and the registry of their names.

``uniform``, ``scan``, ``weighted`` (:mod:`feedwise.feeds.base`) and the Active Bias family
``se we sd wd spv wpv stc wtc loss`` (:mod:`feedwise.feeds.emphasis`), and ``rho`` (RHO-LOSS,
:mod:`feedwise.feeds.rho`; it needs irreducible losses). :func:`register_feeder` adds one of your own.
"""

from __future__ import annotations

from functools import partial
from typing import Callable

from feedwise.emphasis.methods import METHODS
from feedwise.errors import FeedwiseError
from feedwise.feeds.base import Feeder, ScanFeeder, UniformFeeder, WeightedFeeder
from feedwise.feeds.emphasis import EmphasisFeeder, make_emphasis_feeder
from feedwise.feeds.rho import RhoFeeder

FEEDERS: dict[str, Callable[..., Feeder]] = {
    "uniform": UniformFeeder,
    "scan": ScanFeeder,
    "weighted": WeightedFeeder,
    **{name: partial(EmphasisFeeder, name) for name in METHODS if name not in ("uniform", "scan")},
    "rho": RhoFeeder,
}


def register_feeder(name: str, factory: Callable[..., Feeder]) -> None:
    FEEDERS[name] = factory


def make_feeder(name: str, **options) -> Feeder:
    if name not in FEEDERS:
        raise FeedwiseError(f"unknown feed '{name}' (known: {', '.join(FEEDERS)})")
    try:
        return FEEDERS[name](**options)
    except TypeError as e:
        raise FeedwiseError(f"feed '{name}': {e}") from None


def feeder_names() -> list[str]:
    return list(FEEDERS)


__all__ = ["FEEDERS", "EmphasisFeeder", "Feeder", "RhoFeeder", "ScanFeeder", "UniformFeeder", "WeightedFeeder",
           "feeder_names", "make_emphasis_feeder", "make_feeder", "register_feeder"]
