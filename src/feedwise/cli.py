"""Command-line interface: parses, calls the library, prints. Nothing else lives here."""

from __future__ import annotations

import argparse
import sys

from feedwise.errors import FeedwiseError

EXIT_USER, EXIT_INTERNAL, EXIT_INTERRUPTED = 2, 3, 130


def _positive_int(s: str) -> int:
    try:
        v = int(s)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not an integer: {s!r}") from None
    return v


def _workload_arg(text: str) -> str:
    """``--workload``: a registered name, or your own code with a file path made absolute."""
    from feedwise.workloads import canonical_workload

    return canonical_workload(text)


def _add_train_args(p: argparse.ArgumentParser, seed: bool = True, feed: bool = True) -> None:
    """The options of one training run; a study that sets the seeds or the feed itself leaves those out
    (an option that is accepted must be used)."""
    p.add_argument("--workload", default="mnist1d-mlp", type=_workload_arg,
                   help="workload name (see `feedwise workloads`), or your own: file.py:NAME or package.module:NAME")
    p.add_argument("--batch-size", type=_positive_int, default=None, help="examples per step (default: the workload's)")
    p.add_argument("--optimizer", default="momentum", choices=["sgd", "momentum", "nesterov", "adam"])
    p.add_argument("--lr", type=float, default=None, help="learning rate (default: the workload's)")
    p.add_argument("--momentum", type=float, default=0.9)
    p.add_argument("--weight-decay", type=float, default=0.0)
    p.add_argument("--schedule", default="constant", choices=["constant", "linear", "cosine"])
    p.add_argument("--decay-steps", type=int, default=None, help="steps of lr decay (default: the budget)")
    p.add_argument("--end-factor", type=float, default=0.01, help="final lr as a fraction of --lr")
    p.add_argument("--steps", type=int, default=None, help="step budget (default: the workload's)")
    p.add_argument("--examples", type=int, default=None, help="example budget (overrides --steps)")
    p.add_argument("--eval-every", type=int, default=None, help="steps between evaluations (default: the workload's)")
    p.add_argument("--target", type=float, default=None, help="target validation error (default: the workload's)")
    p.add_argument("--no-stop", action="store_true", help="keep training after reaching the target")
    if seed:
        p.add_argument("--seed", type=int, default=0, help="seed of init and data order")
    if feed:
        p.add_argument("--feed", default="uniform", help="uniform | scan | an emphasis method (see docs)")
    _add_data_args(p)


def _add_data_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("--data-dir", "--data", dest="data_dir", default=None, help="folder (IDX, CIFAR) or .npz file")
    p.add_argument("--label-noise", type=float, default=0.0, help="fraction of training labels flipped")
    p.add_argument("--noise-seed", type=int, default=0)
    p.add_argument("--split-seed", type=int, default=0, help="seed of the validation split")
    p.add_argument("--max-train", type=int, default=None, help="keep only this many training examples")
    p.add_argument("--num-samples", type=int, default=None, help="size of a generated dataset (mnist1d)")
    p.add_argument("--val-fraction", type=float, default=None,
                   help="validation split carved from the training rows (default: the workload's; 0: none)")
    p.add_argument("--test-fraction", type=float, default=None,
                   help="test split carved from your .npz when it holds no x_test (default 0.2)")


def _add_run_args(p: argparse.ArgumentParser, out_required: bool = True) -> None:
    p.add_argument("--out", required=out_required, help="results folder")
    p.add_argument("--threads", type=int, default=None, help="torch threads (default: 1; see docs)")
    p.add_argument("--device", default="auto", help="auto | cpu | cuda")


def _data_options(a):
    from feedwise.studies.train import DataOptions
    return DataOptions(data_dir=a.data_dir, label_noise=a.label_noise, noise_seed=a.noise_seed,
                       split_seed=a.split_seed, max_train=a.max_train, num_samples=a.num_samples,
                       val_fraction=a.val_fraction, test_fraction=a.test_fraction)


def _train_config(a):
    from feedwise.workloads import get_workload

    # the workload's defaults (Workload.train_config, as for library users) under what was given
    given = {"batch_size": a.batch_size, "lr": a.lr, "max_steps": a.steps, "eval_every": a.eval_every,
             "target": a.target}
    return get_workload(a.workload).train_config(
        **{k: v for k, v in given.items() if v is not None}, optimizer=a.optimizer, momentum=a.momentum,
        weight_decay=a.weight_decay, schedule=a.schedule, decay_steps=a.decay_steps, end_factor=a.end_factor,
        max_examples=a.examples, stop_at_target=not a.no_stop, seed=getattr(a, "seed", 0),
    )


def cmd_workloads(a) -> int:
    from feedwise.workloads import WORKLOADS

    print(f"{'workload':26} {'dataset':14} {'model':11} {'target':>7} {'steps':>6} {'eval':>5}  description")
    for w in WORKLOADS.values():
        target = "-" if w.target is None else f"{w.target:.3f}"
        print(f"{w.name:26} {w.dataset:14} {w.model:11} {target:>7} {w.max_steps:6d} {w.eval_every:5d}  {w.description}")
    return 0


def cmd_train(a) -> int:
    from feedwise.studies.train import TrainRequest, train_study

    req = TrainRequest(workload=a.workload, config=_train_config(a), feed=a.feed, data=_data_options(a))
    rec, done = train_study(req, a.out, threads=a.threads, device=a.device, command=sys.argv)
    if done:
        print(f"trial 0 in {a.out} had already finished; nothing was run again")
    _print_trial(rec, a.out)
    return 0


def _print_trial(rec: dict, out: str) -> None:
    s = rec.get("steps_to_result")
    print(f"status: {rec['status']}  steps_run: {rec['steps_run']}  steps_to_result: {s if s is not None else 'null'}"
          f"  (target {rec.get('target')})")
    fv, te = rec.get("final_val_error"), rec.get("test_error")
    print(f"val_error: {fv if fv is None else round(fv, 4)}  test_error: {te if te is None else round(te, 4)}"
          f"  wall_s: {rec['wall_s']:.2f} (training)  eval_s: {rec['eval_s']:.2f}")
    print(f"results: {out}/trials/0/trial.json, {out}/trials/0/measurements.csv")


def cmd_demo(a) -> int:
    from feedwise.studies.demo import run_demo

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

    s = sub.add_parser("train", help="train one run of a workload and record it")
    _add_train_args(s)
    _add_run_args(s)
    s.set_defaults(func=cmd_train)
    from feedwise.commands.scale_out import add_data_parallel

    add_data_parallel(s)  # feedwise train --data-parallel N

    s = sub.add_parser("demo", help="a small but real run of the studies on mnist1d, then the report")
    _add_run_args(s, out_required=False)
    s.add_argument("--quick", action="store_true", help="an even smaller demo (seconds; used by the tests)")
    s.set_defaults(func=cmd_demo, out="runs/demo")

    _register_command_modules(sub)
    return p


def _register_command_modules(sub) -> None:
    import importlib

    from feedwise.commands import COMMAND_MODULES

    for name in COMMAND_MODULES:
        try:
            module = importlib.import_module(name)
        except ModuleNotFoundError as e:
            if e.name == name:  # not written yet
                continue
            raise
        module.register(sub)


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
    try:
        previous = _trap_sigint(interrupted)
        parser = build_parser()
        args, extra = parser.parse_known_args(argv)
        if extra:
            parser.commands[args.command].error(f"unrecognized arguments: {' '.join(extra)}")
        started = True
        code = int(args.func(args) or 0)
        if interrupted:   # a Ctrl-C that some library caught and dropped still stops us
            raise KeyboardInterrupt
        return code
    except FeedwiseError as e:
        return _fail(str(e))
    except BrokenPipeError:
        # the reader went away (e.g. `feedwise workloads | head`): stop quietly, as the Python docs advise
        import os

        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return 1
    except KeyboardInterrupt:
        note = ON_INTERRUPT.get(getattr(args, "command", None)) if started else "nothing was run"
        _say(f"feedwise: interrupted{'; ' + note if note else ''}")
        return EXIT_INTERRUPTED
    except Exception as e:
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


def _trap_sigint(flag: list):
    """Ctrl-C raises KeyboardInterrupt as usual and is also remembered (see ``main``); returns the
    handler it replaced (None when it could not: main() called from another thread)."""
    import signal

    def on_sigint(signum, frame):
        flag.append(signum)
        raise KeyboardInterrupt

    try:
        return signal.signal(signal.SIGINT, on_sigint)
    except ValueError:
        return None


def _say(line: str) -> None:
    try:
        print(line, file=sys.stderr, flush=True)
    except (OSError, ValueError):
        pass


def _fail(message: str) -> int:
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
