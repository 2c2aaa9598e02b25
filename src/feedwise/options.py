"""The options that several commands share, in one place: the vocabulary of the command line.

- a training run: ``--workload --batch-size --optimizer --lr --momentum --weight-decay --schedule
  --decay-steps --end-factor --steps --examples --eval-every --target --no-stop [--seed] [--feed]``;
- the data: ``--data-dir --label-noise --noise-seed --split-seed --max-train --num-samples
  --val-fraction --test-fraction``;
- the run: ``--out --threads --device``.

Lists are comma-separated (``--batch-sizes 16,64``); a count of seeds is ``--seeds K`` (seeds
0..K-1) everywhere. Each study's ``cli.py`` adds its own options and turns the parsed arguments
into its request (:func:`data_options`, :func:`train_config`).
"""

from __future__ import annotations

import argparse


def positive_int(s: str) -> int:
    try:
        v = int(s)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not an integer: {s!r}") from None
    return v


def workload_arg(text: str) -> str:
    """``--workload``: a registered name, or your own code with a file path made absolute."""
    from feedwise.workloads import canonical_workload

    return canonical_workload(text)


def add_train_args(p: argparse.ArgumentParser, seed: bool = True, feed: bool = True, stop: bool = True) -> None:
    """The options of one training run; a study that sets the seeds or the feed itself leaves those out
    (an option that is accepted must be used)."""
    p.add_argument("--workload", default="mnist1d-mlp", type=workload_arg,
                   help="workload name (see `feedwise workloads`), or your own: file.py:NAME or package.module:NAME")
    p.add_argument("--batch-size", type=positive_int, default=None, help="examples per step (default: the workload's)")
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
    if stop:   # studies that train every run for the whole budget leave it out (an accepted option is used)
        p.add_argument("--no-stop", action="store_true", help="keep training after reaching the target")
    if seed:
        p.add_argument("--seed", type=int, default=0, help="seed of init and data order")
    if feed:
        p.add_argument("--feed", default="uniform", help="uniform | scan | an emphasis method (see docs)")
    add_data_args(p)


def add_data_args(p: argparse.ArgumentParser) -> None:
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


def add_run_args(p: argparse.ArgumentParser, out_required: bool = True,
                 threads_help: str = "torch threads (default: 1, for the small models here; see the README)") -> None:
    p.add_argument("--out", required=out_required, help="results folder")
    p.add_argument("--threads", type=int, default=None, help=threads_help)
    p.add_argument("--device", default="auto", help="auto | cpu | cuda")


def data_options(a):
    from feedwise.data.options import DataOptions

    return DataOptions(data_dir=a.data_dir, label_noise=a.label_noise, noise_seed=a.noise_seed,
                       split_seed=a.split_seed, max_train=a.max_train, num_samples=a.num_samples,
                       val_fraction=a.val_fraction, test_fraction=a.test_fraction)


def train_config(a):
    from feedwise.workloads import get_workload

    # the workload's defaults (Workload.train_config, as for library users) under what was given
    given = {"batch_size": a.batch_size, "lr": a.lr, "max_steps": a.steps, "eval_every": a.eval_every,
             "target": a.target}
    return get_workload(a.workload).train_config(
        **{k: v for k, v in given.items() if v is not None}, optimizer=a.optimizer, momentum=a.momentum,
        weight_decay=a.weight_decay, schedule=a.schedule, decay_steps=a.decay_steps, end_factor=a.end_factor,
        max_examples=a.examples, stop_at_target=not getattr(a, "no_stop", False), seed=getattr(a, "seed", 0),
    )


def comma_list(text, kind=str, what: str = "value") -> list:
    """``"a,b,c"`` -> ``[kind(a), kind(b), kind(c)]``; an empty or malformed list is a FeedwiseError."""
    from feedwise.errors import FeedwiseError

    items = [t.strip() for t in str(text).split(",") if t.strip()]
    if not items:
        raise FeedwiseError(f"empty list of {what}s")
    try:
        return [kind(t) for t in items]
    except ValueError:
        raise FeedwiseError(f"bad {what} list {text!r}") from None


def comma_list_arg(kind=str, what: str = "value"):
    """:func:`comma_list` as an argparse ``type=`` (errors become argparse's usage errors)."""
    import argparse

    from feedwise.errors import FeedwiseError

    def parse(text):
        try:
            return comma_list(text, kind, what)
        except FeedwiseError as e:
            raise argparse.ArgumentTypeError(str(e)) from None

    return parse
