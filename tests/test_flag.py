"""`feedwise flag`: ranked mislabelled-example candidates, on mnist1d and on a user's .npz."""

import csv
import json

import numpy as np

from feedwise.cli import main
from feedwise.studies.flag.run import SCORES, evaluate_scores, rank, top_k_share


def _csv(path):
    with open(path) as f:
        return list(csv.DictReader(f))


def test_rank_and_top_share():
    s = np.array([0.1, np.nan, 0.9, 0.5, 0.9])
    assert rank(s).tolist() == [2, 4, 3, 0, 1]
    pos = np.array([False, False, True, False, False])
    assert top_k_share(s, pos, 1) == 1.0 and top_k_share(s, pos, 2) == 0.5
    ev = evaluate_scores({"a": np.array([0.0, 0.1, 0.9, 0.2, 0.3])}, pos)
    assert ev["a"]["auroc"] == 1.0 and ev["a"]["top_share"]["1"] == 1.0


def test_flag_mnist1d_with_noise(tmp_path, capsys):
    out = tmp_path / "fl"
    args = ["flag", "--workload", "mnist1d-mlp", "--num-samples", "2000", "--label-noise", "0.2",
            "--steps", "300", "--eval-every", "50", "--ensemble", "--out", str(out)]
    assert main(args) == 0
    rows = _csv(out / "flagged.csv")
    summary = json.loads((out / "summary.json").read_text())
    n = summary["num_train"]
    assert len(rows) == n and sorted(int(r["index"]) for r in rows) == list(range(n))
    assert [int(r["rank"]) for r in rows] == list(range(1, n + 1))
    scores = [float(r["score"]) for r in rows]
    assert scores == sorted(scores, reverse=True)
    assert {r["score_name"] for r in rows} == {"1-pbar"}
    flipped = np.array([int(r["flipped"]) for r in rows], bool)
    assert summary["num_flipped"] == flipped.sum() > 0
    # given label differs from the clean label exactly on the flipped examples
    assert all((r["given_label"] != r["clean_label"]) == (r["flipped"] == "1") for r in rows)
    ev = summary["evaluation"]
    assert set(ev) == set(SCORES)
    for name in SCORES:
        assert 0.0 <= ev[name]["auroc"] <= 1.0
    # the history score flags flipped labels far better than chance, and its top-k is enriched
    assert ev["1-pbar"]["auroc"] > 0.7
    k = str(summary["num_flipped"])
    assert ev["1-pbar"]["top_share"][k] > 2 * summary["num_flipped"] / n
    # the csv's top-k share agrees with summary.json
    assert abs(flipped[:int(k)].mean() - ev["1-pbar"]["top_share"][k]) < 1e-9
    # resume: same --out, another ranking score, no retraining
    mtime = (out / "trials" / "0" / "trial.json").stat().st_mtime_ns
    capsys.readouterr()
    assert main(args + ["--score", "std"]) == 0
    assert (out / "trials" / "0" / "trial.json").stat().st_mtime_ns == mtime
    assert {r["score_name"] for r in _csv(out / "flagged.csv")} == {"std"}
    s2 = json.loads((out / "summary.json").read_text())
    assert s2["score"] == "std" and "inverted" in s2["warnings"][0] and "warning: --score std" in capsys.readouterr().out
    # the flagged set and its estimated size, with precision and recall against the flipped labels
    li = summary["label_issues"]
    assert li["flagged"] == sum(int(r["flagged"]) for r in rows) > 0 and li["estimated_errors"] > 0
    q = li["against_truth"]
    assert q["true_errors"] == summary["num_flipped"] and q["precision"] > 2 * summary["num_flipped"] / n

    from feedwise.studies.flag.report import build_sections
    assets = tmp_path / "assets"
    assets.mkdir()
    secs = build_sections(out, assets)
    assert secs and "AUROC" in secs[0].markdown and all(p.exists() for s in secs for p in s.images)


def test_flag_user_npz(tmp_path):
    rng = np.random.default_rng(0)
    n, d = 600, 8
    centers = rng.normal(0, 3, (3, d))
    y = rng.integers(0, 3, n)
    x = (centers[y] + rng.normal(0, 1, (n, d))).astype(np.float32)
    y_bad = y.copy()
    bad = rng.choice(n, 30, replace=False)
    y_bad[bad] = (y[bad] + 1) % 3            # the user's file holds 30 wrong labels
    path = tmp_path / "mine.npz"
    np.savez(path, x=x, y=y_bad)
    out = tmp_path / "fl"
    assert main(["flag", "--workload", "npz-mlp", "--data-dir", str(path), "--steps", "200", "--eval-every", "40",
                 "--batch-size", "32", "--out", str(out)]) == 0
    rows = _csv(out / "flagged.csv")
    summary = json.loads((out / "summary.json").read_text())
    assert "evaluation" not in summary and summary["file_rows"]
    # no ensemble unless asked: no forward passes spent on scores that do not find label errors
    assert summary["checkpoints_scored"] is None and set(summary["scores"]) == {"1-pbar", "std", "loss"}
    # file_row points at the user's own rows: the given label is the file's label
    assert all(int(r["given_label"]) == y_bad[int(r["file_row"])] for r in rows)
    # every row of the user's file is scored (no validation/test split is carved for flag)
    assert sorted(int(r["file_row"]) for r in rows) == list(range(n)) and summary["rows_unscored"] == 0
    top = {int(r["file_row"]) for r in rows[:40]}
    assert len(top & set(bad)) >= 0.6 * len(bad)   # most wrong labels are among the top 40
    # asked for a validation split: its rows are not scored, and the summary says so
    out2 = tmp_path / "fl2"
    assert main(["flag", "--workload", "npz-mlp", "--data-dir", str(path), "--steps", "100", "--eval-every", "50",
                 "--batch-size", "32", "--val-fraction", "0.1", "--out", str(out2)]) == 0
    s2 = json.loads((out2 / "summary.json").read_text())
    assert s2["rows_unscored"] == n - s2["num_train"] > 0 and "not scored" in s2["warnings"][0]


def test_flag_bad_input(tmp_path, capsys):
    assert main(["flag", "--workload", "npz-mlp", "--out", str(tmp_path / "x")]) == 2
    assert "npz" in capsys.readouterr().err


def test_flag_from_the_users_predicted_probabilities_and_history(tmp_path, capsys):
    """No training: out-of-sample probabilities or a saved PredictionHistory from the user's own
    model; every row of the user's file is ranked and the flagged set comes with an estimated count."""
    import torch

    from feedwise.emphasis import PredictionHistory

    rng = np.random.default_rng(1)
    n, k = 1200, 4
    true = rng.integers(0, k, n)
    logits = rng.normal(0, 1, (n, k))
    logits[np.arange(n), true] += 3
    probs = np.exp(logits) / np.exp(logits).sum(1, keepdims=True)
    y = true.copy()
    flip = rng.random(n) < 0.15
    y[flip] = (true[flip] + rng.integers(1, k, flip.sum())) % k
    np.save(tmp_path / "y.npy", y)
    np.save(tmp_path / "p.npy", probs.astype(np.float32))
    assert main(["flag", "--labels", str(tmp_path / "y.npy"), "--pred-probs", str(tmp_path / "p.npy"),
                 "--out", str(tmp_path / "pp")]) == 0
    rows = _csv(tmp_path / "pp" / "flagged.csv")
    s = json.loads((tmp_path / "pp" / "summary.json").read_text())
    assert sorted(int(r["row"]) for r in rows) == list(range(n)) and s["rows_scored"] == n
    flagged = np.zeros(n, bool)
    flagged[[int(r["row"]) for r in rows if r["flagged"] == "1"]] = True
    assert abs(s["label_issues"]["estimated_errors"] - flip.sum()) < 0.2 * flip.sum()
    assert (flagged & flip).sum() > 0.8 * flagged.sum() and (flagged & flip).sum() > 0.8 * flip.sum()
    # a history from the user's loop: the label's probability observed at every visit
    h = PredictionHistory(n)
    p_given = probs[np.arange(n), y]
    for epoch in range(4):
        h.update(torch.arange(n), torch.tensor(np.clip(p_given + rng.normal(0, 0.05, n), 0.001, 0.999)))
    torch.save(h.state_dict(), tmp_path / "h.pt")
    assert main(["flag", "--labels", str(tmp_path / "y.npy"), "--history", str(tmp_path / "h.pt"),
                 "--out", str(tmp_path / "hist")]) == 0
    s = json.loads((tmp_path / "hist" / "summary.json").read_text())
    assert s["source"] == "history" and s["label_issues"]["flagged"] > 0
    # mistakes are one line each
    capsys.readouterr()
    for argv, msg in [(["--pred-probs", str(tmp_path / "p.npy")], "need --labels"),
                      (["--labels", str(tmp_path / "y.npy")], "exactly one of --pred-probs and --history"),
                      (["--labels", str(tmp_path / "y.npy"), "--history", str(tmp_path / "h.pt"), "--lr", "0.1"],
                       "--lr trains a model"),
                      (["--labels", str(tmp_path / "p.npy"), "--pred-probs", str(tmp_path / "p.npy")], "1-D"),
                      (["--labels", str(tmp_path / "y.npy"), "--history", str(tmp_path / "y.npy")], "not a saved")]:
        assert main(["flag", *argv, "--out", str(tmp_path / "bad")]) == 2, argv
        err = capsys.readouterr().err.strip()
        assert msg in err and len(err.splitlines()) == 1, (argv, err)
