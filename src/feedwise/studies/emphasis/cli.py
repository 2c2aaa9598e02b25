"""`feedwise emphasis`: Active Bias methods against uniform, paired seeds, one budget."""

from __future__ import annotations

import sys

from feedwise.options import add_run_args, add_train_args, data_options, train_config


def register(sub) -> None:
    from feedwise.studies.emphasis.run import DEFAULT_METHODS

    p = sub.add_parser("emphasis", help="compare Active Bias sampling/weighting with uniform (paired seeds)",
                       description="Train every method for the same step budget and seeds; test error, paired "
                                   "tests vs uniform (t-test, Wilcoxon, Holm), curves and history diagnostics.")
    add_train_args(p, seed=False, feed=False, stop=False)
    p.add_argument("--methods", default=",".join(DEFAULT_METHODS),
                   help="comma-separated: uniform,scan,se,we,sd,wd,spv,wpv,stc,wtc,loss and rho (RHO-LOSS); "
                        "uniform required")
    p.add_argument("--seeds", type=int, default=5, help="paired seeds 0..K-1 (init, data order, label noise)")
    p.add_argument("--epsilon", type=float, default=None,
                   help="smoothing ε of every emphasis method (default: 0.05; loss: 1.0 x mean loss)")
    p.add_argument("--burn-in", type=float, default=None, help="uniform epochs before emphasis (default: 2)")
    p.add_argument("--tune", type=int, nargs="?", const=8, default=0,
                   help="tune lr, ε and burn-in per method with N Optuna trials on validation error (default N: 8)")
    r = p.add_argument_group("RHO-LOSS (with --methods ...,rho)")
    r.add_argument("--rho-ratio", type=float, default=0.1,
                   help="batch / candidate batch: each step trains on the best B of B/ratio candidates (default 0.1)")
    r.add_argument("--rho-holdout", type=float, default=0.5,
                   help="share of the training rows the irreducible-loss model trains on (default 0.5)")
    r.add_argument("--rho-il-steps", type=int, default=None,
                   help="steps of each irreducible-loss model (default: half the step budget)")
    r.add_argument("--rho-holdout-only", action="store_true",
                   help="one IL model on the holdout, the target trains on the rest only (the paper's set-up); "
                        "default: two cross-fitted IL models, the target trains on every row")
    r.add_argument("--matched-compute", action="store_true",
                   help="also train uniform for the steps rho's whole compute buys (trials uniform-matched-s*)")
    add_run_args(p)
    p.set_defaults(func=cmd_emphasis)


def cmd_emphasis(a) -> int:
    from feedwise.emphasis.methods import DEFAULT_BURN_IN
    from feedwise.studies.emphasis.irreducible import RhoOptions
    from feedwise.studies.emphasis.run import EmphasisRequest, emphasis_study

    methods = [m.strip() for m in a.methods.split(",") if m.strip()]
    cfg = train_config(a)
    req = EmphasisRequest(workload=a.workload, config=cfg, methods=methods, seeds=a.seeds, epsilon=a.epsilon,
                          burn_in=DEFAULT_BURN_IN if a.burn_in is None else a.burn_in, data=data_options(a),
                          tune=a.tune, matched_compute=a.matched_compute,
                          rho=RhoOptions(ratio=a.rho_ratio, holdout=a.rho_holdout, crossfit=not a.rho_holdout_only,
                                         il_steps=a.rho_il_steps))
    summary = emphasis_study(req, a.out, threads=a.threads, device=a.device, command=sys.argv)
    print(f"{'method':15} {'final test err':>16} {'best-ckpt test err':>19} {'rel. vs uniform':>16} "
          f"{'p (t)':>7} {'p Holm':>7}")
    comps = summary["comparisons"]["final"]
    for m, s in summary["methods"].items():
        f, b = s["final"], s["best"]
        c = comps.get(m, {})
        rr = c.get("relative_reduction")
        fmt = lambda v, d=4: "-" if v is None else f"{v:.{d}f}"  # noqa: E731
        print(f"{m:15} {fmt(f['test_error_mean'])} ± {fmt(f['test_error_std'])}  {fmt(b['test_error_mean'])} ± "
              f"{fmt(b['test_error_std'])}  {'-' if rr is None else f'{rr * 100:+.1f}%':>15} "
              f"{fmt(c.get('p'), 3):>7} {fmt(c.get('p_holm'), 3):>7}")
    print(f"summary: {a.out}/summary.json")
    return 0
