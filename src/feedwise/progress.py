"""Progress display (rich) for long loops; silent when FEEDWISE_QUIET is set."""

from __future__ import annotations

import contextlib
import os
import sys

from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn, TimeRemainingColumn

console = Console(stderr=True)


def quiet() -> bool:
    return bool(os.environ.get("FEEDWISE_QUIET"))


@contextlib.contextmanager
def progress_bar():
    """Yields a rich Progress (or a no-op stand-in when quiet)."""
    if quiet():
        yield _Null()
        return
    with Progress(TextColumn("[bold]{task.description}"), BarColumn(), MofNCompleteColumn(),
                  TimeElapsedColumn(), TimeRemainingColumn(), console=console,
                  disable=not sys.stderr.isatty() and bool(os.environ.get("CI"))) as p:
        yield p


class _Null:
    def add_task(self, *a, **k):
        return 0

    def update(self, *a, **k):
        pass

    def advance(self, *a, **k):
        pass

    def remove_task(self, *a, **k):
        pass


def say(msg: str) -> None:
    if not quiet():
        console.print(msg)
