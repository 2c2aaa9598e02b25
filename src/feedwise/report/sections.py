"""The unit of a report: a titled section with HTML, Markdown and pictures; tables (escaped)."""

from __future__ import annotations

import html
from dataclasses import dataclass, field
from pathlib import Path

@dataclass
class Section:
    title: str
    html: str = ""                       # an HTML fragment (no <html>/<body>); tables, paragraphs
    markdown: str = ""                   # the same content for report.md
    images: list[Path] = field(default_factory=list)   # PNGs to embed after the fragment, in order
    kind: str = ""                       # the study kind it belongs to
    caveats: list[str] = field(default_factory=list)   # plain statements: seeds, noise, what did not reproduce


def table_html(header: list[str], rows: list[list]) -> str:
    """An HTML table; every header and cell is text, escaped (a study name or label may hold < or &)."""
    def cell(v):
        if isinstance(v, float):
            return f"{v:.4g}"
        return "" if v is None else html.escape(str(v))

    head = "".join(f"<th>{html.escape(str(h))}</th>" for h in header)
    body = "".join("<tr>" + "".join(f"<td>{cell(v)}</td>" for v in r) + "</tr>" for r in rows)
    return f"<table><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>"


def table_md(header: list[str], rows: list[list]) -> str:
    def cell(v):
        if isinstance(v, float):
            return f"{v:.4g}"
        return "" if v is None else str(v)

    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    lines += ["| " + " | ".join(cell(v) for v in r) + " |" for r in rows]
    return "\n".join(lines)
