"""Reports built from the files on disk only (never imports the engine).

Each study kind has a module ``feedwise.report.<kind>`` defining
``build_sections(study_dir: Path, assets: Path) -> list[Section]``: it reads ``summary.json``
and ``trials/``, writes its PNGs into ``assets`` and returns sections; ``feedwise.report.html``
assembles them into one self-contained page (images embedded) plus ``report.md``.
"""

from feedwise.report.sections import Section, SECTION_MODULES

__all__ = ["Section", "SECTION_MODULES"]
