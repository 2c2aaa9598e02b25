"""Fixed-seed measurements of `train`, `batch-size`, `emphasis`, `subset` and `parallel` on small
settings, to compare the code before and after a refactor (issue 14: one training loop).

    .venv/bin/python benchmarks/fixed_seed_check.py --label before      # on the old code
    .venv/bin/python benchmarks/fixed_seed_check.py --label after       # on the new code
    .venv/bin/python benchmarks/fixed_seed_check.py --compare before after

Each run writes ``benchmarks/results/fixed_seed_<label>.json``: per study and trial, the status,
steps and every evaluated row without its timing columns (step, examples, train_loss, val_error,
val_loss, lr). ``--compare`` reports, per study, whether the measurements are identical, and the
largest difference where they are not. Data: mnist1d with 2,000 generated samples, one torch thread.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import sys
import tempfile
from pathlib import Path

RESULTS = Path(__file__).resolve().parent / "results"
KEYS = ("step", "examples", "train_loss", "val_error", "val_loss", "lr")


def _rows(trial_dir: Path) -> dict:
    import csv

    rec = json.loads((trial_dir / "trial.json").read_text())
    with open(trial_dir / "measurements.csv", newline="") as f:
        rows = [{k: (float(r[k]) if r.get(k) not in (None, "") else None) for k in KEYS if k in r}
                for r in csv.DictReader(f)]
    out = {"status": rec.get("status"), "steps_run": rec.get("steps_run"),
           "steps_to_result": rec.get("steps_to_result"), "rows": rows}
    for k in ("test_error", "best_ckpt_test_error"):
        if k in rec:
            out[k] = rec[k]
    return out


def _study(root: Path) -> dict:
    out = {p.name: _rows(p) for p in sorted((root / "trials").iterdir()) if (p / "trial.json").exists()}
    if (root / "scores.npz").exists():   # flag: every score of every example
        import numpy as np

        with np.load(root / "scores.npz") as z:
            out["scores"] = {k: z[k].tolist() for k in sorted(z.files)}
    return out


def run(label: str) -> Path:
    os.environ.setdefault("FEEDWISE_QUIET", "1")
    import torch

    torch.set_num_threads(1)
    from feedwise.cli import main

    common = ["--workload", "mnist1d-mlp", "--num-samples", "2000", "--threads", "1", "--device", "cpu"]
    studies = {
        "train": ["train", *common, "--steps", "300", "--eval-every", "25", "--target", "0.55", "--seed", "3"],
        "train-wpv": ["train", *common, "--steps", "300", "--eval-every", "25", "--feed", "wpv", "--no-stop",
                      "--label-noise", "0.2"],
        "train-loss": ["train", *common, "--steps", "300", "--eval-every", "25", "--feed", "loss", "--no-stop"],
        "train-stc": ["train", *common, "--steps", "300", "--eval-every", "25", "--feed", "stc", "--no-stop"],
        "flag": ["flag", *common, "--steps", "200", "--eval-every", "25", "--label-noise", "0.2"],
        "batch-size": ["batch-size", *common, "--batch-sizes", "32,128", "--trials", "3", "--steps", "200",
                       "--ref-batch", "0", "--eval-every", "20", "--target", "0.6", "--optimizer", "momentum"],
        "emphasis": ["emphasis", *common, "--methods", "uniform,spv,wpv", "--seeds", "2", "--steps", "150",
                     "--eval-every", "50", "--batch-size", "32", "--label-noise", "0.2"],
        "subset": ["subset", *common, "--acquisitions", "entropy,random", "--fractions", "0.25,0.5", "--ensemble",
                   "2x3", "--seeds", "1", "--budgets", "steps", "--steps", "150", "--acq-steps", "100"],
        "parallel": ["parallel", *common, "--modes", "sync,local-sgd", "--workers", "1,2", "--steps", "120",
                     "--eval-every", "20", "--target", "0.55", "--batch-size", "64", "--local-steps", "4"],
    }
    out = {}
    with tempfile.TemporaryDirectory() as tmp:
        os.environ.setdefault("FEEDWISE_DATA", str(Path(tmp) / "data"))
        for name, argv in studies.items():
            d = Path(tmp) / name
            code = main([*argv, "--out", str(d)])
            if code != 0:
                raise SystemExit(f"{name}: exit {code}")
            out[name] = _study(d)
    RESULTS.mkdir(exist_ok=True)
    path = RESULTS / f"fixed_seed_{label}.json"
    path.write_text(json.dumps({"label": label, "studies": studies, "measurements": out}, indent=1) + "\n")
    print(f"wrote {path}")
    return path


def _diff(a, b) -> float:
    """Largest absolute difference between two nested measurement structures (inf on a shape change)."""
    if isinstance(a, dict) and isinstance(b, dict):
        if set(a) != set(b):
            return math.inf
        return max([_diff(a[k], b[k]) for k in a] or [0.0])
    if isinstance(a, list) and isinstance(b, list):
        if len(a) != len(b):
            return math.inf
        return max([_diff(x, y) for x, y in zip(a, b)] or [0.0])
    if isinstance(a, (int, float)) and isinstance(b, (int, float)) and not isinstance(a, bool):
        return abs(float(a) - float(b))
    return 0.0 if a == b else math.inf


def compare(before: str, after: str) -> dict:
    a = json.loads((RESULTS / f"fixed_seed_{before}.json").read_text())["measurements"]
    b = json.loads((RESULTS / f"fixed_seed_{after}.json").read_text())["measurements"]
    report = {}
    for study in sorted(set(a) | set(b)):
        if study not in a or study not in b:
            report[study] = {"identical": False, "note": "missing on one side"}
            continue
        note = None
        sa, sb = a[study].get("scores"), b[study].get("scores")
        if isinstance(sa, dict) and isinstance(sb, dict) and set(sa) != set(sb):
            # flag computes the ensemble scores only when asked (--ensemble) since issue 15: compare the rest
            note = f"scores only on one side: {sorted(set(sa) ^ set(sb))}"
            keep = set(sa) & set(sb)
            a[study]["scores"] = {k: v for k, v in sa.items() if k in keep}
            b[study]["scores"] = {k: v for k, v in sb.items() if k in keep}
        per_trial = {t: _diff(a[study].get(t), b[study].get(t)) for t in sorted(set(a[study]) | set(b[study]))}
        worst = max(per_trial.values() or [0.0])
        report[study] = {"identical": worst == 0.0, "max_abs_diff": worst,
                         "trials_differing": sorted(t for t, v in per_trial.items() if v != 0.0)}
        if note:
            report[study]["note"] = note
    return report


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--label")
    p.add_argument("--compare", nargs=2, metavar=("BEFORE", "AFTER"))
    a = p.parse_args()
    if a.compare:
        rep = compare(*a.compare)
        path = RESULTS / f"fixed_seed_compare_{a.compare[0]}_{a.compare[1]}.json"
        path.write_text(json.dumps(rep, indent=1) + "\n")
        print(json.dumps(rep, indent=1))
        return
    if not a.label:
        sys.exit("give --label or --compare")
    run(a.label)


if __name__ == "__main__":
    main()
