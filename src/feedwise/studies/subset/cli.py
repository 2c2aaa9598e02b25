"""`feedwise subset`: training-subset search with ensemble active learning (Chitta et al. 2019)."""

from __future__ import annotations

import sys

from feedwise.options import add_data_args, add_run_args, comma_list as _list, data_options, workload_arg


def register(sub) -> None:

    p = sub.add_parser("subset", help="search a training subset with ensemble active learning, with its cost account",
                       description="Score the training pool with an implicit ensemble (E models x C checkpoints), "
                                   "keep the top fraction per acquisition, train a target model on it from scratch, "
                                   "and compare with random subsets and full data, with the cost of the search.")
    p.add_argument("--workload", default="mnist1d-mlp", type=workload_arg,
                   help="workload name (see `feedwise workloads`), or your own: file.py:NAME or package.module:NAME")
    p.add_argument("--acquisitions", default="entropy,bald,variation-ratio,margin,random",
                   help="comma list of entropy, bald, variation-ratio, margin, random (ensemble) and, one-shot "
                        "only, history-variance, history-closeness, history-hard (the acquisition models' own "
                        "Active Bias prediction history) and el2n, forgetting, aum (training dynamics of the first "
                        "--dynamics-models acquisition models)")
    p.add_argument("--fractions", default="0.125,0.25,0.5", help="comma list of subset fractions in (0, 1]")
    p.add_argument("--ensemble", default="4x10", help="ExC: E acquisition models x C checkpoints each")
    p.add_argument("--schedule", default="one-shot", choices=["one-shot", "build-up"])
    p.add_argument("--seeds", type=int, default=1, help="target-model seeds 0..K-1")
    p.add_argument("--balances", default="none", help="none | class | none,class (class: proportional per class)")
    p.add_argument("--budgets", default="steps,epochs",
                   help="target budget rule(s): steps (full-data steps) | epochs (full-data epochs over the subset)")
    p.add_argument("--batch-size", type=int, default=None, help="examples per step (default: the workload's)")
    p.add_argument("--lr", type=float, default=None, help="learning rate, momentum 0.9 (default: the workload's)")
    p.add_argument("--steps", dest="target_steps", type=int, default=None,
                   help="full-data step budget of the target model (default: the workload's)")
    p.add_argument("--acq-steps", type=int, default=None, help="step budget of each acquisition model "
                                                               "(default: half of --steps)")
    p.add_argument("--acq-widths", default=None, help="hidden widths of the acquisition MLP, e.g. 128,128")
    p.add_argument("--target-widths", default=None, help="hidden widths of the target MLP")
    p.add_argument("--initial-fraction", type=float, default=None,
                   help="build-up: random seed set (default: half the smallest fraction)")
    p.add_argument("--selection-seed", type=int, default=0, help="seed of random subsets and tie-breaks")
    p.add_argument("--keep", default="hardest", choices=["hardest", "easiest", "auto"],
                   help="difficulty-aware selection (Sorscher et al. 2022): keep the highest scores (hardest), the "
                        "lowest (easiest), or auto: easiest when the fraction is below 0.5, hardest otherwise "
                        "(on mnist1d the easiest quarter lost badly: benchmarks/README.md)")
    p.add_argument("--selections", default="top",
                   help="comma list: top (the top of the scores, oriented by --keep) and/or ccs (coverage-centric "
                        "selection, Zheng et al. 2023: drop the hardest --ccs-beta, sample across --ccs-strata "
                        "strata of the score range; one-shot only)")
    p.add_argument("--ccs-strata", type=int, default=50, help="CCS: strata of the score range (default 50)")
    p.add_argument("--ccs-beta", type=float, default=0.1, help="CCS: hardest share of the pool dropped (default 0.1)")
    p.add_argument("--dynamics-models", type=int, default=1,
                   help="el2n/forgetting/aum: how many one-shot acquisition models' training runs they read")
    p.add_argument("--el2n-checkpoints", type=int, default=1,
                   help="el2n: average over the first this many of a model's C evaluations (early training)")
    p.add_argument("--tolerance", type=float, default=0.01,
                   help="within tolerance / break-even: allowed validation-error excess of a subset over full data "
                        "(decided by a paired non-inferiority test across seeds, Holm-corrected)")
    add_data_args(p)
    add_run_args(p)
    p.set_defaults(func=cmd_subset)


def request_from_args(a):
    from feedwise.studies.subset.run import SubsetRequest

    return SubsetRequest(
        workload=a.workload, acquisitions=_list(a.acquisitions, what="acquisition"),
        fractions=_list(a.fractions, float, "fraction"), ensemble=a.ensemble, schedule=a.schedule, seeds=a.seeds,
        balances=_list(a.balances, what="balance"), budgets=_list(a.budgets, what="budget rule"),
        batch_size=a.batch_size, lr=a.lr, target_steps=a.target_steps, acq_steps=a.acq_steps,
        acq_widths=_list(a.acq_widths, int, "width") if a.acq_widths else None,
        target_widths=_list(a.target_widths, int, "width") if a.target_widths else None,
        initial_fraction=a.initial_fraction, selection_seed=a.selection_seed, tolerance=a.tolerance, keep=a.keep,
        selections=_list(a.selections, what="selection"), ccs_strata=a.ccs_strata, ccs_beta=a.ccs_beta,
        dynamics_models=a.dynamics_models, el2n_checkpoints=a.el2n_checkpoints, data=data_options(a))


def cmd_subset(a) -> int:
    from feedwise.studies.subset.run import run_subset_study

    summary, ran = run_subset_study(request_from_args(a), a.out, threads=a.threads, device=a.device,
                                    command=sys.argv)
    if ran == 0:
        print(f"all trials in {a.out} had already finished; nothing was run again")
    print_summary(summary)
    print(f"results: {a.out}/summary.json, {a.out}/subsets/")
    return 0


def print_summary(s: dict) -> None:
    full = s["full"]
    fmt = lambda v: "-" if v is None else f"{v:.4f}"  # noqa: E731
    yn = lambda v: "-" if v is None else ("yes" if v else "no")  # noqa: E731
    print(f"{s['workload']}  schedule={s['schedule']}  ensemble={s['ensemble']}  seeds={len(s['seeds'])}  "
          f"full-data val error {fmt(full['val_error']['mean'])}, full-data test error "
          f"{fmt(full['test_error']['mean'])} ± {fmt(full['test_error']['std'])}")
    names = [r["acquisition"] + ("" if r["selection"] == "top" else f"/{r['selection']}") for r in s["results"]]
    aw = max([len("acquisition")] + [len(n) for n in names])
    print(f"{'acquisition':{aw}} {'frac':>6} {'bal':5} {'budget':6} {'val err':>8} {'vs rand':>8} {'p Holm':>7} "
          f"{'beats':>5} {'within':>6} {'break-even (work)':>17}")
    for name, r in zip(names, s["results"]):
        vr = r["vs_random"] or {}
        be = r["break_even"]["work"]
        print(f"{name:{aw}} {r['fraction']:6g} {r['balance']:5} {r['budget']:6} {fmt(r['val_error']['mean']):>8} "
              f"{('-' if vr.get('mean_diff') is None else format(vr['mean_diff'], '+.4f')):>8} "
              f"{('-' if vr.get('p_holm') is None else format(vr['p_holm'], '.3f')):>7} {yn(r['beats_random']):>5} "
              f"{yn(r['within_tolerance']):>6} {('never' if be is None else f'{be:.1f}'):>17}")
    print(f"chosen on validation (test error reported; verdicts paired over seeds, Holm-corrected, alpha "
          f"{s['alpha']}):")
    for c in s["chosen"]:
        rt = (c["random_test_error"] or {}).get("mean")
        print(f"  fraction {c['fraction']:g}, {c['budget']} budget: {c['subset']} test {fmt(c['test_error']['mean'])}"
              f" vs random {fmt(rt)} vs full {fmt(c['full_test_error']['mean'])}; beats random: "
              f"{yn(c['beats_random'])}, within tolerance: {yn(c['within_tolerance'])}")
    for w in s.get("warnings", []):
        print(f"warning: {w}")
