"""Command-line interface: parses, calls the library, prints. Nothing else lives here."""

from __future__ import annotations

import argparse
import sys

from feedwise.errors import FeedwiseError


def _positive_int(s: str) -> int:
    try:
        v = int(s)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not an integer: {s!r}") from None
    return v


def _add_train_args(p: argparse.ArgumentParser, seed: bool = True, feed: bool = True) -> None:
    """The options of one training run; a study that sets the seeds or the feed itself leaves those out
    (an option that is accepted must be used)."""
    p.add_argument("--workload", default="mnist1d-mlp", help="workload name (see `feedwise workloads`)")
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


def _add_run_args(p: argparse.ArgumentParser, out_required: bool = True) -> None:
    p.add_argument("--out", required=out_required, help="results folder")
    p.add_argument("--threads", type=int, default=None, help="torch threads (default: 1; see docs)")
    p.add_argument("--device", default="auto", help="auto | cpu | cuda")


def _data_options(a):
    from feedwise.studies.train import DataOptions
    return DataOptions(data_dir=a.data_dir, label_noise=a.label_noise, noise_seed=a.noise_seed,
                       split_seed=a.split_seed, max_train=a.max_train, num_samples=a.num_samples)


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
    as ``--seeds 3`` (several commands have options that are prefixes of others)."""

    def __init__(self, *args, **kwargs):
        kwargs.setdefault("allow_abbrev", False)
        super().__init__(*args, **kwargs)


def build_parser() -> argparse.ArgumentParser:
    p = _Parser(prog="feedwise", description="Measure how to feed data to a neural network.")
    sub = p.add_subparsers(dest="command", required=True, metavar="COMMAND", parser_class=_Parser)

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


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        return int(args.func(args) or 0)
    except FeedwiseError as e:
        print(f"feedwise: error: {e}", file=sys.stderr)
        return 2
    except BrokenPipeError:
        # the reader went away (e.g. `feedwise workloads | head`): stop quietly, as the Python docs advise
        import os

        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return 1
    except KeyboardInterrupt:
        print("feedwise: interrupted; re-run the same command to resume", file=sys.stderr)
        return 130


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
