"""`feedwise parallel`: synchronous DDP, local SGD and Hogwild on N workers (scale-out study).

    feedwise parallel --modes sync,local-sgd,hogwild --workers 1,2 --workload mnist1d-mlp --out runs/par
    torchrun --nproc-per-node 2 -m feedwise.cli parallel --modes sync --out runs/par-torchrun

Also provides :func:`add_data_parallel` for ``feedwise train --data-parallel N``.
"""

from __future__ import annotations

import sys

from feedwise.options import add_run_args, add_train_args, comma_list, data_options, train_config


def register(sub) -> None:

    s = sub.add_parser("parallel", help="data-parallel training: sync DDP, local SGD, Hogwild on N workers",
                       description="Train one workload on N processes (synchronous DDP with torch.distributed, "
                                   "local SGD, or Hogwild) and record steps-to-result and time-to-result. "
                                   "Comma-separated --modes/--workers/--seeds/--local-steps run a grid.")
    add_train_args(s, seed=False)
    add_run_args(s, threads_help="cores for the whole run (default: all cores; each of N workers gets threads // N)")
    s.add_argument("--modes", default="sync", help="sync | local-sgd | hogwild (comma-separated for several)")
    s.add_argument("--workers", default="2", help="world sizes, comma-separated (ignored under torchrun)")
    s.add_argument("--seeds", type=int, default=1, help="seeds 0..K-1 of every (mode, world size) (default 1)")
    s.add_argument("--local-steps", default="8", help="local SGD: average parameters every H steps (comma list)")
    s.add_argument("--shard", default="strided", choices=["strided", "chunk"],
                   help="rows of each global batch a rank takes: rank::N (strided) or a contiguous chunk")
    s.add_argument("--threads-per-worker", type=int, default=None,
                   help="torch threads of each worker (default: max(1, --threads // N))")
    s.set_defaults(func=cmd_parallel)


def _request(a):
    from feedwise.studies.scale_out.run import ScaleOutRequest

    modes = [m.strip() for m in a.modes.split(",") if m.strip()]
    return ScaleOutRequest(
        workload=a.workload, config=train_config(a), modes=modes,
        workers=comma_list(a.workers, int, "worker count"),
        seeds=list(range(a.seeds)) if getattr(a, "seed", None) is None else [a.seed],
        local_steps=comma_list(a.local_steps, int, "local step count"), feed=a.feed,
        data=data_options(a), shard=a.shard, threads_per_worker=a.threads_per_worker)


def cmd_parallel(a) -> int:
    from feedwise.studies.scale_out.run import scale_out_study

    summary = scale_out_study(_request(a), a.out, threads=a.threads, device=a.device, command=sys.argv)
    if summary is None:   # a torchrun rank other than 0
        return 0
    print(f"{'mode':10} {'H':>3} {'N':>3} {'thr':>3} {'steps_to_result':>15} {'time_to_result_s':>16} "
          f"{'s/step':>8} {'comm s/step':>11}")
    for g in summary["groups"]:
        ttr = g["time_to_result_s_median"]
        print(f"{g['mode']:10} {g['local_steps'] or '':>3} {g['world_size']:>3} {g['threads_per_worker'] or '':>3} "
              f"{str(g['steps_to_result']):>15} {('%.2f' % ttr) if ttr is not None else 'null':>16} "
              f"{g['s_per_step_median']:8.4f} {g['comm_s_per_step_median']:11.5f}")
    print(f"results: {a.out}/summary.json, {a.out}/trials/")
    return 0


def add_data_parallel(parser) -> None:
    """Give ``feedwise train`` a ``--data-parallel N`` option: with N > 1 the run is synchronous
    DDP on N local workers, written as a scale-out study (trial ``sync-w<N>-s<seed>``) in --out.
    Call after ``parser.set_defaults(func=cmd_train)``."""
    plain = parser.get_default("func")
    parser.add_argument("--data-parallel", type=int, default=1, metavar="N",
                        help="train with synchronous DDP on N local processes (torch.distributed)")

    def func(a) -> int:
        if getattr(a, "data_parallel", 1) <= 1:
            return plain(a)
        a.modes, a.workers, a.local_steps, a.shard = "sync", str(a.data_parallel), "8", "strided"
        a.threads_per_worker = None
        return cmd_parallel(a)

    parser.set_defaults(func=func)
