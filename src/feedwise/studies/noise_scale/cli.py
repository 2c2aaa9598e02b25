"""`feedwise noise-scale`: the command line of the gradient-noise-scale study."""

from __future__ import annotations

import sys

from feedwise.options import add_data_args, add_run_args, data_options, workload_arg


def register(sub) -> None:
    p = sub.add_parser("noise-scale", help="gradient noise scale B_simple (and B_noise) along one short run (McCandlish et al.)",
                       description="Trains once at --batch-size with the workload's default learning rate and "
                                   "measures |G|^2 and tr(Sigma) from gradients at --b-small and --b-big every "
                                   "--measure-every steps, at step 0 and at the target step; reports the series of B_simple = "
                                   "tr(Sigma)/|G|^2 and its summaries (time-average, |G|^2-weighted ratio, near the "
                                   "target, late window); --hessian adds B_noise = tr(H Sigma)/G^T H G.")
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
    p.add_argument("--hessian", action="store_true",
                   help="also measure the curvature-weighted B_noise = tr(H Sigma)/G^T H G (Hessian-vector products)")
    p.add_argument("--hessian-batch", type=int, default=1024, help="examples of the Hessian's batch (with --hessian)")
    p.add_argument("--hessian-chunks", type=int, default=4,
                   help="Hessian-vector products per measurement (with --hessian; 2..b_big/b_small)")
    p.add_argument("--precise-draws", type=int, default=8,
                   help="big batches measured at step 0 and at the step the target is reached")
    p.add_argument("--block", type=int, default=4,
                   help="measurements per block of the time-average and of the near-target window")
    add_data_args(p)
    add_run_args(p)
    p.set_defaults(func=cmd_noise_scale)


LABELS = {"at_start": "step 0", "time_average": "time-average", "g2_weighted": "|G|^2-weighted ratio of sums",
          "late_window": "late window", "near_target": "near the target", "at_target": "at the target step"}


def _g(v) -> str:
    return f"{v:.4g}" if isinstance(v, (int, float)) and v == v else "-"


def cmd_noise_scale(a) -> int:
    from feedwise.studies.noise_scale.run import NoiseScaleRequest, run_noise_scale

    req = NoiseScaleRequest(workload=a.workload, batch_size=a.batch_size, optimizer=a.optimizer, lr=a.lr,
                            momentum=a.momentum, b_small=a.b_small, b_big=a.b_big, measure_every=a.measure_every,
                            max_steps=a.max_steps, target=a.target, seed=a.seed, data=data_options(a),
                            hessian=a.hessian, hessian_batch=a.hessian_batch, hessian_chunks=a.hessian_chunks,
                            precise_draws=a.precise_draws, block=a.block)
    s = run_noise_scale(req, a.out, threads=a.threads, device=a.device, command=sys.argv)
    for name, d in (("B_simple", s["b_simple"]), ("B_noise", s.get("b_noise"))):
        if isinstance(d, dict):
            print(f"{name} = tr(Sigma)/|G|^2: " if name == "B_simple" else f"{name} = tr(H Sigma)/G^T H G: ", end="")
            text = ", ".join(f"{LABELS[k]} {_g(d.get(k))}" for k in LABELS)
            print(text if name == "B_simple" else text.replace("|G|^2", "G^T H G"))
    if not isinstance(s["b_simple"], dict):   # a study written before the summaries existed
        print(f"B_simple = {_g(s['b_simple'])} (|G|^2-weighted ratio of sums over the run)")
    print(f"({s['measurements']} measurements; training {s['train']['status']} at step {s['train']['steps_run']}; "
          f"the |G|^2-weighted ratio leans on early training, it is not a mean over the run)")
    print(f"compute: {s['compute']['examples_total']:,} examples ({s['compute']['examples_gradient']:,} for the "
          f"estimator)  results: {a.out}/summary.json")
    return 0
