"""One home per study: ``studies/<kind>/`` holds its request and run (``run.py``), its summary
maths (``summary.py``), its part of the report (``report.py``: files only, never the engine) and
its command line (``cli.py``). A new study is one folder plus one line in :data:`STUDIES`.

Nothing is imported here (a study package's ``__init__`` stays empty too), so the report can read
a study's ``report.py`` without pulling in the engine.
"""

from __future__ import annotations

import importlib

# study kind (study.json "kind") -> its package
STUDIES = {
    "train": "feedwise.studies.train",
    "batch-size": "feedwise.studies.batch_size",
    "noise-scale": "feedwise.studies.noise_scale",
    "emphasis": "feedwise.studies.emphasis",
    "subset": "feedwise.studies.subset",
    "flag": "feedwise.studies.flag",
    "scale-out": "feedwise.studies.scale_out",
}


def study_cli(kind: str):
    """The ``cli`` module of a study (``register(subparsers)`` adds its command)."""
    return importlib.import_module(f"{STUDIES[kind]}.cli")


def study_report(kind: str):
    """The ``report`` module of a study: ``QUESTION``, ``build_sections(folder, assets)`` and
    optionally ``build_overlay(folders, assets)`` and ``conclusion(folder)``."""
    return importlib.import_module(f"{STUDIES[kind]}.report")
