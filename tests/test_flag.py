"""`feedwise flag`: ranked mislabelled-example candidates, on mnist1d and on a user's .npz."""

import csv
import json

import numpy as np
import pytest

from feedwise.cli import main
from feedwise.studies.flag import SCORES, evaluate_scores, rank, top_k_share


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
            "--steps", "300", "--eval-every", "50", "--out", str(out)]
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
    assert main(args + ["--score", "std"]) == 0
    assert (out / "trials" / "0" / "trial.json").stat().st_mtime_ns == mtime
    assert {r["score_name"] for r in _csv(out / "flagged.csv")} == {"std"}
    assert json.loads((out / "summary.json").read_text())["score"] == "std"

    from feedwise.report.flag import build_sections
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
    # file_row points at the user's own rows: the given label is the file's label
    assert all(int(r["given_label"]) == y_bad[int(r["file_row"])] for r in rows)
    top = {int(r["file_row"]) for r in rows[:40]}
    in_train = set(bad) & {int(r["file_row"]) for r in rows}
    assert len(top & in_train) >= 0.6 * len(in_train)   # most wrong labels are among the top 40


def test_flag_bad_input(tmp_path, capsys):
    assert main(["flag", "--workload", "npz-mlp", "--out", str(tmp_path / "x")]) == 2
    assert "npz" in capsys.readouterr().err
