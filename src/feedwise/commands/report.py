"""`feedwise report DIR [DIR ...]`: one page from study folders on disk."""

from __future__ import annotations


def cmd_report(a) -> int:
    from feedwise.report.html import build_report

    page = build_report(a.dirs, out=a.out)
    print(f"report: {page}")
    print(f"markdown: {page.parent / 'report.md'}")
    return 0


def register(sub) -> None:
    p = sub.add_parser("report", help="build report/index.html (self-contained) and report.md from study folders")
    p.add_argument("dirs", nargs="+", help="study folders, or folders holding study folders")
    p.add_argument("--out", default=None, help="report folder (default: <first DIR>/report)")
    p.set_defaults(func=cmd_report)
