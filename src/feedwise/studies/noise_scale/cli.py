"""`feedwise noise-scale`: the command line of the gradient-noise-scale study."""

from __future__ import annotations

import sys

from feedwise.options import add_data_args, add_run_args, data_options, workload_arg


def register(sub) -> None:
    p = sub.add_parser("noise-scale", help="gradient noise scale B_simple from one short run (McCandlish et al.)",
                       description="Trains once at --batch-size with the workload's default learning rate and "
                                   "measures |G|^2 and tr(Sigma) from gradients at --b-small and --b-big every "
                                   "--measure-every steps; B_simple = tr(Sigma)/|G|^2 predicts the critical batch.")
    p.add_argument("--workload", default="mnist1d-mlp", type=workload_arg,
                   help="workload name (see `feedwise workloads`), or your own: file.py:NAME or package.module:NAME")
    p.add_argument("--batch-size", type=int, default=None, help="training batch size (default: the workload's)")
    p.add_argument("--optimizer", default="momentum", choices=["sgd", "momentum", "nesterov", "adam"])
    p.add_argument("--lr", type=float, default=None, help="learning rate (default: the workload's)")
    p.add_argument("--momentum", type=float, default=0.9)
    p.add_argument("--b-small", type=int, default=32, help="small batch of the estimator")
    p.add_argument("--b-big", type=int, default=1024, help="big batch of the estimator (a multiple of --b-small)")
    p.add_argument("--measure-every", type=int, default=50, help="training steps between gradient measurements")
    p.add_argument("--steps", dest="max_steps", type=int, default=None, help="step budget (default: the workload's)")
    p.add_argument("--target", type=float, default=None, help="stop at this validation error (default: the workload's)")
    p.add_argument("--seed", type=int, default=0)
    add_data_args(p)
    add_run_args(p)
    p.set_defaults(func=cmd_noise_scale)


def cmd_noise_scale(a) -> int:
    from feedwise.studies.noise_scale.run import NoiseScaleRequest, run_noise_scale

    req = NoiseScaleRequest(workload=a.workload, batch_size=a.batch_size, optimizer=a.optimizer, lr=a.lr,
                            momentum=a.momentum, b_small=a.b_small, b_big=a.b_big, measure_every=a.measure_every,
                            max_steps=a.max_steps, target=a.target, seed=a.seed, data=data_options(a))
    s = run_noise_scale(req, a.out, threads=a.threads, device=a.device, command=sys.argv)
    print(f"B_simple = {s['b_simple']:.4g} (mean over the run), {s['b_simple_last']:.4g} (last quarter)"
          f"  from {s['measurements']} measurements; predicted critical batch ~ {s['predicted_critical_batch']:.4g}")
    print(f"compute: {s['compute']['examples_total']:,} examples ({s['compute']['examples_gradient']:,} for the "
          f"estimator)  results: {a.out}/summary.json")
    return 0
