"""`feedwise flag`: rank the training examples by how likely their label is wrong."""

from __future__ import annotations

import sys

from feedwise.options import add_run_args, add_train_args, data_options, train_config


def register(sub) -> None:
    from feedwise.studies.flag.run import DEFAULT_SCORE, SCORES

    p = sub.add_parser("flag", help="rank training examples by how likely they are mislabelled",
                       description="Train one model (uniform feeding) while recording the Active Bias prediction "
                                   "history; write OUT/flagged.csv (every training example, most suspicious first, "
                                   "with the flagged set) and OUT/summary.json (the estimated number of label "
                                   "errors). With --label-noise the flipped labels are known and every score's AUROC, "
                                   "top-k share and the flagged set's precision and recall are reported. Your own "
                                   "data: --workload npz-mlp --data-dir file.npz (arrays x, y); or, without "
                                   "training, what your own model gives: --labels y.npy with --pred-probs P.npy "
                                   "(out-of-sample probabilities) or --history H.pt (a PredictionHistory state).")
    add_train_args(p, feed=False, stop=False)
    p.add_argument("--score", default=DEFAULT_SCORE, choices=list(SCORES),
                   help=f"score that ranks flagged.csv (default: {DEFAULT_SCORE}); std and the ensemble scores "
                        "measured badly for flipped labels and print a warning")
    p.add_argument("--ensemble", action="store_true",
                   help="also score by a checkpoint ensemble (entropy, bald, variation-ratio: a forward pass over "
                        "the training set at every evaluation)")
    p.add_argument("--labels", default=None, help="your labels (.npy/.npz/.csv), with --pred-probs or --history")
    p.add_argument("--pred-probs", default=None,
                   help="N x K out-of-sample predicted probabilities from your own model (.npy/.npz/.csv): no training")
    p.add_argument("--history", default=None,
                   help="torch.save(PredictionHistory.state_dict()) from your own loop: no training")
    add_run_args(p)
    p.set_defaults(func=cmd_flag)
    p.set_defaults(parser_defaults={a.dest: a.default for a in p._actions if a.dest != 'help'})


FILE_MODE = ("labels", "pred_probs", "history")


def _file_mode(a, parser_defaults: dict) -> bool:
    """--labels/--pred-probs/--history: no training, so no training option may be given."""
    if not any(getattr(a, k) is not None for k in FILE_MODE):
        return False
    from feedwise.errors import FeedwiseError

    if a.labels is None:
        raise FeedwiseError("--pred-probs and --history need --labels (your given labels, one per row)")
    given = [k for k, v in parser_defaults.items() if k not in (*FILE_MODE, "out", "func", "command", "score")
             and getattr(a, k, v) != v]
    if given:
        raise FeedwiseError(f"--{given[0].replace('_', '-')} trains a model; with --labels nothing is trained "
                            "(give --pred-probs or --history from your own model)")
    if a.score != "1-pbar":
        raise FeedwiseError("with --labels the score is fixed: 1 - p(given label) from --pred-probs, or 1 - p-bar "
                            "from --history")
    return True


def cmd_flag(a) -> int:
    from feedwise.studies.flag.run import FileFlagRequest, FlagRequest, flag_from_files, flag_study

    if _file_mode(a, a.parser_defaults):
        s = flag_from_files(FileFlagRequest(a.labels, a.pred_probs, a.history), a.out, command=sys.argv)
        print(f"scored every one of the {s['rows_scored']} rows of {a.labels} from your {s['source']}")
        _print_top_and_issues(s, a.out)
        return 0
    cfg = train_config(a)
    req = FlagRequest(workload=a.workload, config=cfg, data=data_options(a), score=a.score, ensemble=a.ensemble)
    s = flag_study(req, a.out, threads=a.threads, device=a.device, command=sys.argv)
    te = s.get("test_error")
    cp = s["checkpoints_scored"]
    print(f"trained {s['steps_run']} steps, test error {te if te is None else round(te, 4)}"
          + (f", {cp} checkpoints in the ensemble" if cp else ""))
    _print_top_and_issues(s, None)
    ev = s.get("evaluation")
    if ev:
        k = str(s["num_flipped"])
        print(f"{s['num_flipped']} labels were flipped; flagging them:")
        print(f"{'score':16} {'AUROC':>7} {'flipped in top-' + k:>18}")
        for name, e in ev.items():
            a_, t = e["auroc"], e["top_share"].get(k)
            print(f"{name:16} {'-' if a_ is None else f'{a_:.3f}':>7} {'-' if t is None else f'{t:.3f}':>18}")
    q = s["label_issues"].get("against_truth")
    if q:
        fmt = lambda v: "-" if v is None else f"{v:.3f}"  # noqa: E731
        print(f"flagged set vs the flipped labels: precision {fmt(q['precision'])}, recall {fmt(q['recall'])}")
    print(f"ranked: {a.out}/flagged.csv  summary: {a.out}/summary.json")
    return 0


def _print_top_and_issues(s: dict, out: str | None) -> None:
    print(f"top examples by {s['score']} ({s['score_description']}):")
    print(f"{'rank':>5} {'index':>7} {'given':>6} {'predicted':>9} {'score':>9}")
    for r in s["top"][:10]:
        pl = r["predicted_label"]
        print(f"{r['rank']:5d} {r['index']:7d} {r['given_label']:6d} {'-' if pl is None else pl:>9} {r['score']:9.4f}")
    li = s["label_issues"]
    print(f"estimated label errors: {li['estimated_errors']:.0f} of {li['num_examples']} "
          f"({100 * li['estimated_error_rate']:.1f}%); flagged: {li['flagged']} (flagged=1 in flagged.csv)")
    for w in s.get("warnings", []):
        print(f"warning: {w}")
    if out is not None:
        print(f"ranked: {out}/flagged.csv  summary: {out}/summary.json")
