"""`feedwise train`: the command line of one training run."""

from __future__ import annotations

import sys

from feedwise.options import add_run_args, add_train_args, data_options, train_config


def register(sub) -> None:
    s = sub.add_parser("train", help="train one run of a workload and record it")
    add_train_args(s)
    add_run_args(s)
    s.set_defaults(func=cmd_train)
    from feedwise.studies.scale_out.cli import add_data_parallel

    add_data_parallel(s)  # feedwise train --data-parallel N


def cmd_train(a) -> int:
    from feedwise.studies.train.run import TrainRequest, train_study

    req = TrainRequest(workload=a.workload, config=train_config(a), feed=a.feed, data=data_options(a))
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
