"""Command-line interface: parses, calls the library, prints. Nothing else lives here.

The parser is built from the study registry (:data:`feedwise.studies.STUDIES`): each study's
``cli.py`` adds its command; the options several commands share are in :mod:`feedwise.options`.
"""

from __future__ import annotations

import argparse
import sys

from feedwise.errors import FeedwiseError
from feedwise.options import add_run_args
from feedwise.studies import STUDIES, study_cli

EXIT_USER, EXIT_INTERNAL, EXIT_INTERRUPTED = 2, 3, 130


def cmd_workloads(a) -> int:
    from feedwise.workloads import WORKLOADS

    print(f"{'workload':26} {'dataset':14} {'model':11} {'target':>7} {'steps':>6} {'eval':>5}  description")
    for w in WORKLOADS.values():
        target = "-" if w.target is None else f"{w.target:.3f}"
        print(f"{w.name:26} {w.dataset:14} {w.model:11} {target:>7} {w.max_steps:6d} {w.eval_every:5d}  {w.description}")
    return 0


def cmd_report(a) -> int:
    from feedwise.report.page import build_report

    page = build_report(a.dirs, out=a.out)
    print(f"report: {page}")
    print(f"markdown: {page.parent / 'report.md'}")
    return 0


def cmd_demo(a) -> int:
    from feedwise.demo import run_demo

    report = run_demo(a.out, threads=a.threads, device=a.device, quick=a.quick)
    print(f"report: {report}")
    return 0


class _Parser(argparse.ArgumentParser):
    """No prefix matching of long options: ``feedwise emphasis --seed 3`` must be refused, not taken
    as ``--seeds 3`` (several commands have options that are prefixes of others). A mistake is one
    line and where the help is, not the whole usage."""

    def __init__(self, *args, **kwargs):
        kwargs.setdefault("allow_abbrev", False)
        super().__init__(*args, **kwargs)

    def error(self, message):
        self.exit(EXIT_USER, f"feedwise: error: {message} (see {self.prog} --help)\n")


def build_parser() -> argparse.ArgumentParser:
    p = _Parser(prog="feedwise", description="Measure how to feed data to a neural network.",
                epilog="Exit codes: 0 done; 2 a mistake in the input or the environment (one line on stderr); "
                       "3 an internal error (a bug: the traceback is saved to a log file); 130 interrupted.")
    sub = p.add_subparsers(dest="command", required=True, metavar="COMMAND", parser_class=_Parser)
    p.commands = sub.choices

    s = sub.add_parser("workloads", help="list the workloads and their targets")
    s.set_defaults(func=cmd_workloads)

    for kind in STUDIES:   # every study's own command line (studies/<kind>/cli.py)
        study_cli(kind).register(sub)

    s = sub.add_parser("report", help="build report/index.html (self-contained) and report.md from study folders")
    s.add_argument("dirs", nargs="+", help="study folders, or folders holding study folders")
    s.add_argument("--out", default=None, help="report folder (default: <first DIR>/report)")
    s.set_defaults(func=cmd_report)

    s = sub.add_parser("demo", help="a small but real run of the studies on mnist1d, then the report")
    add_run_args(s, out_required=False)
    s.add_argument("--quick", action="store_true", help="an even smaller demo (seconds; used by the tests)")
    s.set_defaults(func=cmd_demo, out="runs/demo")
    return p


# What an interruption leaves behind, per command (said when Ctrl-C stops it).
RESUMES = ("finished trials are kept; re-running the same command resumes from them, and a trial that was "
           "interrupted starts again from step 0")
RESTARTS = "if trial 0 had not finished, re-running the same command starts it again from step 0"
ON_INTERRUPT = {
    "train": RESTARTS, "noise-scale": RESTARTS,
    "flag": "if the training run had not finished, re-running the same command starts it again from step 0",
    "batch-size": RESUMES, "emphasis": RESUMES, "subset": RESUMES, "parallel": RESUMES, "demo": RESUMES,
    "report": "the report may be incomplete; re-run the same command to build it again",
}


def main(argv: list[str] | None = None) -> int:
    """The entry point. Every way out is one line on stderr and an exit code: 2 for a mistake in the
    input or the environment, 3 for an internal error (traceback saved to a log file), 130 for Ctrl-C,
    even when Ctrl-C arrives while the libraries are still being imported."""
    args, started, interrupted, previous = None, False, [], None
    unraisable_hook = sys.unraisablehook
    defer = [True]   # while torch & co. are imported, Ctrl-C is only noted (see _trap_sigint)
    try:
        previous = _trap_sigint(interrupted, defer)
        parser = build_parser()
        defer[0] = False
        if interrupted:
            raise KeyboardInterrupt
        try:
            args, extra = parser.parse_known_args(argv)
            if extra:
                parser.commands[args.command].error(f"unrecognized arguments: {' '.join(extra)}")
        except SystemExit as e:   # --help, or a mistake argparse reported in one line: its exit code
            return e.code if isinstance(e.code, int) else EXIT_USER
        started = True
        code = int(args.func(args) or 0)
        if interrupted:   # a Ctrl-C that some library caught and dropped still stops us
            raise KeyboardInterrupt
        return code
    except FeedwiseError as e:
        return _interrupted(args, started) if interrupted else _fail(str(e))
    except BrokenPipeError:
        # the reader went away (e.g. `feedwise workloads | head`): stop quietly, as the Python docs advise
        import os

        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return 1
    except KeyboardInterrupt:
        return _interrupted(args, started)
    except Exception as e:
        if interrupted:   # Ctrl-C inside a C extension's import surfaces as e.g. "ImportError: initialization failed"
            return _interrupted(args, started)
        from feedwise.errors import environment_error

        msg = environment_error(e, out=getattr(args, "out", None))
        if msg:
            return _fail(msg)
        from feedwise.files import first_line

        where = _log_internal_error(e, args)
        what = ": ".join(filter(None, (type(e).__name__, first_line(e, 200))))
        _say(f"feedwise: internal error (a bug, not a mistake in your input): {what}; "
             + (f"traceback in {where}" if where else "the traceback could not be saved"))
        return EXIT_INTERNAL
    finally:
        if previous is not None:
            import signal

            signal.signal(signal.SIGINT, previous)
        sys.unraisablehook = unraisable_hook   # a library caller gets its own hook back


def _trap_sigint(flag: list, defer: list):
    """Ctrl-C raises KeyboardInterrupt as usual and is also remembered (see ``main``); returns the
    handler it replaced (None when it could not: main() called from another thread).

    While ``defer[0]`` is true (building the parser imports torch, ~2 s) it is only remembered: an
    exception raised inside a C++ extension's module init can abort the interpreter (SIGABRT,
    'terminate called'), seen about once in 40 runs; ``main`` raises it once the imports are done."""
    import signal

    def on_sigint(signum, frame):
        flag.append(signum)
        if not defer[0]:
            raise KeyboardInterrupt

    default_hook = sys.unraisablehook

    def quiet_interrupt(unraisable):
        # a Ctrl-C landing in a garbage-collector callback (e.g. SQLAlchemy's) cannot propagate from
        # there and Python would print its traceback: deliver it again, to the code that runs next
        if isinstance(unraisable.exc_value, KeyboardInterrupt) and flag:
            import _thread

            _thread.interrupt_main(signal.SIGINT)
            return
        default_hook(unraisable)

    sys.unraisablehook = quiet_interrupt
    try:
        return signal.signal(signal.SIGINT, on_sigint)
    except ValueError:
        return None


def _interrupted(args, started: bool) -> int:
    note = ON_INTERRUPT.get(getattr(args, "command", None)) if started else "nothing was run"
    _say(f"feedwise: interrupted{'; ' + note if note else ''}")
    _forget_interrupt()
    return EXIT_INTERRUPTED


def _forget_interrupt() -> None:
    """We handled the Ctrl-C: make sure CPython does not also die by SIGINT at exit.

    When a KeyboardInterrupt passes through code that a C extension evaluates with ``PyRun_String``
    (pybind11's ``py::exec``, during torch's import or calls), CPython sets a flag that makes
    ``python -m`` kill itself with SIGINT after finalising, whatever exit code we return (seen as
    -2 instead of 130 in about 1 run in 10). Evaluating an empty string the same way clears it."""
    try:
        import ctypes

        ctypes.pythonapi.PyRun_SimpleString(b"")
    except Exception:   # not CPython, or no ctypes: the shell still reports 130 for death by SIGINT
        pass


def _say(line: str) -> None:
    try:
        print(line, file=sys.stderr, flush=True)
    except (OSError, ValueError):
        pass


def _fail(message: str) -> int:
    message = " ".join(part.strip() for part in str(message).splitlines() if part.strip())   # always one line
    _say(f"feedwise: error: {message}")
    return EXIT_USER


def _log_internal_error(e: BaseException, args) -> str | None:
    """Append the traceback to ``<out>/error.log`` when --out is a study folder, else to a new temp file."""
    import tempfile
    import time
    import traceback
    from pathlib import Path

    from feedwise import __version__

    text = (f"--- {time.strftime('%Y-%m-%d %H:%M:%S')} feedwise {__version__}, python {sys.version.split()[0]}\n"
            f"command: {' '.join(sys.argv)}\n" + "".join(traceback.format_exception(type(e), e, e.__traceback__)))
    out = getattr(args, "out", None)
    if out and (Path(out) / "study.json").is_file():
        try:
            with open(Path(out) / "error.log", "a", encoding="utf-8") as f:
                f.write(text)
            return str(Path(out) / "error.log")
        except OSError:
            pass
    try:
        fd, path = tempfile.mkstemp(prefix="feedwise-error-", suffix=".log")
        with open(fd, "w", encoding="utf-8") as f:
            f.write(text)
        return path
    except OSError:
        return None


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
