"""`feedwise flag`: rank the training examples by how likely their label is wrong."""

from __future__ import annotations

import sys


def register(sub) -> None:
    from feedwise.cli import _add_run_args, _add_train_args
    from feedwise.studies.flag import DEFAULT_SCORE, SCORES

    p = sub.add_parser("flag", help="rank training examples by how likely they are mislabelled",
                       description="Train one model (uniform feeding) while recording the Active Bias prediction "
                                   "history and a checkpoint ensemble; write OUT/flagged.csv (every training "
                                   "example, most suspicious first) and OUT/summary.json. With --label-noise the "
                                   "flipped labels are known and every score's AUROC and top-k share are reported. "
                                   "Your own data: --workload npz-mlp --data-dir file.npz (arrays x, y).")
    _add_train_args(p, feed=False)
    p.add_argument("--score", default=DEFAULT_SCORE, choices=list(SCORES),
                   help=f"score that ranks flagged.csv (default: {DEFAULT_SCORE}); all are computed")
    _add_run_args(p)
    p.set_defaults(func=cmd_flag)


def cmd_flag(a) -> int:
    from feedwise.cli import _data_options, _train_config
    from feedwise.studies.flag import FlagRequest, flag_study

    cfg = _train_config(a)
    cfg.stop_at_target = False  # the history needs the whole run
    req = FlagRequest(workload=a.workload, config=cfg, data=_data_options(a), score=a.score)
    s = flag_study(req, a.out, threads=a.threads, device=a.device, command=sys.argv)
    te = s.get("test_error")
    print(f"trained {s['steps_run']} steps, test error {te if te is None else round(te, 4)}, "
          f"{s['checkpoints_scored']} checkpoints in the ensemble")
    print(f"top examples by {s['score']} ({s['score_description']}):")
    print(f"{'rank':>5} {'index':>7} {'given':>6} {'predicted':>9} {'score':>9}")
    for r in s["top"][:10]:
        print(f"{r['rank']:5d} {r['index']:7d} {r['given_label']:6d} {r['predicted_label']:9d} {r['score']:9.4f}")
    ev = s.get("evaluation")
    if ev:
        k = str(s["num_flipped"])
        print(f"{s['num_flipped']} labels were flipped; flagging them:")
        print(f"{'score':16} {'AUROC':>7} {'flipped in top-' + k:>18}")
        for name, e in ev.items():
            a_, t = e["auroc"], e["top_share"].get(k)
            print(f"{name:16} {'-' if a_ is None else f'{a_:.3f}':>7} {'-' if t is None else f'{t:.3f}':>18}")
    print(f"ranked: {a.out}/flagged.csv  summary: {a.out}/summary.json")
    return 0
