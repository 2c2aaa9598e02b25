"""`feedwise batch-size`: the command line of the batch-size study."""

from __future__ import annotations

import sys

from feedwise.options import add_data_args, add_run_args, comma_list_arg, data_options, workload_arg


def register(sub) -> None:

    p = sub.add_parser("batch-size", help="steps to a target vs batch size, tuned per batch size (Shallue et al.)",
                       description="For each batch size, an Optuna study (scrambled Sobol QMC) over the optimizer's "
                                   "metaparameters; each trial stops at the target or when exact pruning shows it "
                                   "cannot improve the batch size's best steps-to-result. Re-run the same command "
                                   "to resume: finished trials are kept, an interrupted one is trained again.")
    p.add_argument("--workload", default="mnist1d-mlp", type=workload_arg,
                   help="workload name (see `feedwise workloads`), or your own: file.py:NAME or package.module:NAME")
    p.add_argument("--batch-sizes", type=comma_list_arg(int, "batch size"), default=[16, 64, 256, 1024, 4096],
                   help="comma-separated batch sizes (default 16,64,256,1024,4096)")
    p.add_argument("--trials", type=int, default=8,
                   help="trials per batch size: the Sobol points 0..N-1, shared by all workers on the storage; "
                        "an interrupted point is trained again, so a resumed study equals an uninterrupted one")
    p.add_argument("--optimizer", default="momentum", choices=["sgd", "momentum", "nesterov", "adam"])
    p.add_argument("--target", type=float, default=None, help="target validation error (default: the workload's)")
    p.add_argument("--steps", dest="max_steps", type=int, default=None,
                   help="step budget per trial at and above --ref-batch (default: the workload's)")
    p.add_argument("--ref-batch", type=int, default=None,
                   help="below this batch size the step budget grows as max_steps*ref/B (default: the workload's "
                        "batch size; 0 = same step budget for every batch size)")
    p.add_argument("--eval-every", type=int, default=None,
                   help="steps between evaluations at --ref-batch (default: the workload's); shrinks as ref/B above it")
    p.add_argument("--min-eval-every", type=int, default=10, help="smallest evaluation period (large batches)")
    p.add_argument("--space", default=None, help="YAML/JSON file overriding the search space {name: [low, high]}")
    p.add_argument("--storage", default=None,
                   help="Optuna RDB URL, e.g. postgresql://USER@HOST/DB (psycopg 3; the password, if any, is never "
                        "written or printed) (default: sqlite:///OUT/study.db)")
    p.add_argument("--storage-retry", type=float, default=60.0, metavar="SECONDS",
                   help="keep retrying an unreachable storage (server restart, network blip) this long before "
                        "stopping with one error line; re-run to resume (default 60)")
    p.add_argument("--seed", type=int, default=0, help="seed of the QMC sequence and of the trials")
    p.add_argument("--heartbeat", type=int, default=10,
                   help="seconds between trial heartbeats; a trial silent for 3x this is stale (killed)")
    p.add_argument("--jobs", type=int, default=1,
                   help="points of a batch size trained at once in this process (threads); the first to reach the "
                        "target prunes the others at once")
    p.add_argument("--data-parallel", type=int, default=1, metavar="N",
                   help="train every trial with synchronous DDP on N local processes (torch.distributed, gloo on "
                        "CPU) and report time-to-result per batch size; N is part of the study (default 1)")
    p.add_argument("--order", default="best-first", choices=["best-first", "given"],
                   help="order of the trials (the same points either way, so the same steps-to-result): best-first "
                        "starts at the reference batch size and moves outward, each batch size's points nearest to "
                        "the best hyperparameters known for it first (a neighbour's, lr moved by a rule fitted on "
                        "the finished batch sizes), so exact pruning gets a good bound early; given = ascending "
                        "batch sizes, points 0..N-1 (default best-first)")
    p.add_argument("--trials-together", type=int, default=1, metavar="K",
                   help="train K points of a batch size at once as one batched model (torch.func.vmap over stacked "
                        "parameters), each with its own hyperparameters, data order and stop; the first to reach "
                        "the target prunes the others at once. Models with batch norm or dropout, lazily read data, "
                        "--jobs and --data-parallel are refused (default 1: one at a time)")
    p.add_argument("--seeds", type=int, default=0, metavar="N",
                   help="after the search, train each batch size's best hyperparameters again with N fresh seeds "
                        "(N >= 3 for a spread; default 0: none) and report their steps-to-result")
    add_data_args(p)
    add_run_args(p)
    p.set_defaults(func=cmd_batch_size)


def _n(v) -> str:
    return "inf" if v is None else f"{v:.4g}"


def cmd_batch_size(a) -> int:
    from feedwise.studies.batch_size.run import BatchSizeRequest, Budget, load_space_file, run_batch_size_study
    from feedwise.workloads import get_workload

    w = get_workload(a.workload)
    budget = Budget(max_steps=a.max_steps if a.max_steps is not None else w.max_steps,
                    ref_batch=a.ref_batch if a.ref_batch is not None else w.batch_size,
                    eval_every=a.eval_every if a.eval_every is not None else w.eval_every,
                    min_eval_every=a.min_eval_every)
    space = load_space_file(a.space) if a.space else None
    req = BatchSizeRequest(workload=a.workload, batch_sizes=a.batch_sizes, trials=a.trials, optimizer=a.optimizer,
                           target=a.target, budget=budget, seed=a.seed, space=space, data=data_options(a),
                           data_parallel=a.data_parallel)
    if a.seeds:
        from feedwise.studies.batch_size.seeds import check_seeds
        check_seeds(a.seeds, req)
    s = run_batch_size_study(req, a.out, storage=a.storage, threads=a.threads, device=a.device,
                             command=sys.argv, heartbeat=a.heartbeat, jobs=a.jobs, storage_retry=a.storage_retry,
                             order=a.order, trials_together=a.trials_together)
    if a.seeds:
        from feedwise.studies.batch_size.seeds import rerun_best
        s = rerun_best(req, a.out, a.seeds, threads=a.threads, device=a.device)
    boot = s.get("bootstrap") or {}
    level = f"{100 * boot.get('level', 0.9):.0f}%"
    print(f"{'batch':>6} {'steps':>7} {level + ' interval':>15} {'regime (interval rule)':38} {'lr':>9} {'eff_lr':>9} "
          f"{'s/step':>8} {'ttr_s':>7}  trials by status   (world size {s.get('world_size', 1)})")
    for e in s["batch_sizes"]:
        st = e["steps_to_result"]
        ci = e.get("steps_to_result_interval")
        ci = f"[{_n(ci[0])}, {_n(ci[1])}]" if ci else "-"
        reg = e.get("regime_bootstrap") or e["regime"]
        lr = f"{e['best_lr']:.3g}" if e["best_lr"] is not None else "-"
        el = f"{e['best_effective_lr']:.3g}" if e["best_effective_lr"] is not None else "-"
        sps = f"{e['s_per_step']:.4f}" if e.get("s_per_step") is not None else "-"
        ttr = f"{e['time_to_result_s']:.2f}" if e.get("time_to_result_s") is not None else "-"
        print(f"{e['batch_size']:>6} {st if st is not None else 'null':>7} {ci:>15} {reg:38} {lr:>9} {el:>9} "
              f"{sps:>8} {ttr:>7}  {e['trials_by_status']}")
    pr = s["pruning"]
    if pr["fraction_saved"] is not None:
        print(f"examples processed {pr['examples_processed']:,} of {pr['examples_unpruned']:,} unpruned "
              f"({100 * pr['fraction_saved']:.1f}% saved by early stopping + exact pruning)")
        if pr.get("floor_fraction") is not None:
            print(f"  processed {100 * (1 - pr['fraction_saved']):.1f}% of the unpruned protocol; no order of these "
                  f"trials can go below {100 * pr['floor_fraction']:.1f}% with exact pruning")
    if pr.get("unfinished_trials"):
        print(f"  including {pr['examples_unfinished']:,} examples of {pr['unfinished_trials']} interrupted "
              f"trial(s) (up to their last evaluation; their points were trained again)")
    k = s["knee"]
    if k.get("b_crit") is not None:
        ki = k.get("b_crit_interval")
        print(f"knee (fit S = S_min (1 + B_crit/B)): B_crit = {k['b_crit']:.4g}"
              + (f", {level} bootstrap interval [{_n(ki[0])}, {_n(ki[1])}]" if ki else ""))
    if boot:
        print(f"intervals: bootstrap over each batch size's trials ({boot['resamples']} resamples; a pruned trial is "
              f"known only to reach at >= its bound, so censored resamples widen them; 'unreached'/'inf' = open end)")
    for b, d in ((s.get("seeds") or {}).get("by_batch_size") or {}).items():
        print(f"seeds: B={b}: best hyperparameters with {d['of']} fresh seeds: steps-to-result median {_n(d['median'])}, "
              f"range [{_n(d['min'])}, {_n(d['max'])}] ({d['reached']} of {d['of']} reached)")
    print(f"results: {a.out}/summary.json")
    return 0
