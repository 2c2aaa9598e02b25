"""The report: one page from the files on disk only (never the engine).

Each study's part is its ``studies/<kind>/report.py`` (``build_sections(folder, assets)``, the
study's ``QUESTION``, optionally ``build_overlay`` and ``conclusion``); :mod:`feedwise.report.page`
assembles them into a self-contained ``index.html`` (images embedded) and ``report.md``. The
building blocks the parts share are :mod:`feedwise.report.sections` (sections, tables) and
:mod:`feedwise.report.plots` (matplotlib, atomic PNGs).
"""
