"""Which examples to keep, and scored by what? Hardest vs easiest subsets, ensemble vs Active Bias
history scores, with and without label noise (mnist1d-mlp, one-shot).

    .venv/bin/python benchmarks/subset_keep.py                 # all four studies, one after another
    .venv/bin/python benchmarks/subset_keep.py --noise 0.2 --keep easiest   # one study (run two at once)
    .venv/bin/python benchmarks/subset_keep.py --summarize     # only (re)write the JSON from the folders
    .venv/bin/python benchmarks/subset_keep.py --workload fashion-mnist-mlp   # the same on Fashion-MNIST

Four `feedwise subset` studies into runs/bench-subset-keep[-fashion]/noise<τ>-<keep>/ (resumable):
label noise 0 and 0.2 × --keep hardest and easiest. Each: one-shot ensemble 4 models x 5 checkpoints
(mnist1d 1,500 steps each, Fashion 750, which also record the Active Bias history), acquisitions bald,
variation-ratio, history-variance, history-closeness, history-hard and random, fractions 1/4, 1/2 and
4/5, balance none, the full-data step budget for every subset (mnist1d 3,000 steps, lr 0.1; Fashion
1,500 steps, lr 0.05; batch 128, momentum 0.9), 2 target seeds, one torch thread. ``--keep auto`` is not run: it keeps the easiest below fraction 0.5 and the hardest from
0.5 on, and with the same ensemble seeds its subsets are exactly those of the two runs (the JSON
derives its cells). Writes benchmarks/results/subset_keep_<mnist1d|fashion>.json: per noise, keep, fraction and
acquisition the mean test error over the seeds, the share of flipped labels in the subset and the
difference to random and to full data.
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from pathlib import Path

import numpy as np

os.environ.setdefault("FEEDWISE_QUIET", "1")
ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "src"))

from feedwise.results import read_json, write_json  # noqa: E402
from feedwise.studies.subset.run import SubsetRequest, run_subset_study, subset_name  # noqa: E402
from feedwise.studies.train.run import DataOptions  # noqa: E402
from feedwise.workloads import get_workload  # noqa: E402

NOISES = (0.0, 0.2)
KEEPS = ("hardest", "easiest")
FRACTIONS = [0.25, 0.5, 0.8]
ACQUISITIONS = ["bald", "variation-ratio", "history-variance", "history-closeness", "history-hard", "random"]
PROTOCOLS = {  # the scale of benchmarks/subset_study.py
    "mnist1d-mlp": dict(ensemble="4x5", acq_steps=1500, target_steps=3000, seeds=2),
    "fashion-mnist-mlp": dict(ensemble="4x5", acq_steps=750, target_steps=1500, seeds=2),
}
SHORT = {"mnist1d-mlp": "mnist1d", "fashion-mnist-mlp": "fashion"}
WORKLOAD = "mnist1d-mlp"  # set by --workload


def request(noise: float, keep: str) -> SubsetRequest:
    proto = PROTOCOLS[WORKLOAD]
    return SubsetRequest(workload=WORKLOAD, acquisitions=ACQUISITIONS, fractions=FRACTIONS,
                         ensemble=proto["ensemble"], schedule="one-shot", seeds=proto["seeds"],
                         balances=["none"], budgets=["steps"], target_steps=proto["target_steps"],
                         acq_steps=proto["acq_steps"], keep=keep, data=DataOptions(label_noise=noise))


def folder(noise: float, keep: str) -> Path:
    suffix = "" if WORKLOAD == "mnist1d-mlp" else "-" + SHORT[WORKLOAD]
    return ROOT / "runs" / f"bench-subset-keep{suffix}" / f"noise{noise:g}-{keep}"


def out_path() -> Path:
    return ROOT / "benchmarks" / "results" / f"subset_keep_{SHORT[WORKLOAD]}.json"


def summarize() -> dict:
    cells, studies = [], {}
    for noise in NOISES:
        flipped = None
        if noise:
            data = get_workload(WORKLOAD).load(label_noise=noise)
            flipped = np.zeros(data.num_train, bool)
            flipped[data.noisy_indices] = True
        for keep in KEEPS:
            d = folder(noise, keep)
            if not (d / "summary.json").exists():
                continue
            s = read_json(d / "summary.json")
            studies[f"noise{noise:g}-{keep}"] = {"folder": str(d.relative_to(ROOT)), "full": s["full"]["test_error"],
                                                 "search": s["cost"]["search_total"]}
            for r in s["results"]:
                idx = np.load(d / "subsets" / f"{subset_name(r['acquisition'], r['fraction'], r['balance'])}.npy")
                cells.append({"noise": noise, "keep": keep if r["acquisition"] != "random" else "-",
                              "fraction": r["fraction"], "acquisition": r["acquisition"],
                              "test_error": r["test_error"]["mean"], "test_error_values": r["test_error"]["values"],
                              "full_error": s["full"]["test_error"]["mean"], "gap_to_full": r["gap_to_full"],
                              "diff_vs_random": (r["vs_random"] or {}).get("diff"),
                              "p_vs_random": (r["vs_random"] or {}).get("p_value"),
                              "flipped_share": None if flipped is None else float(flipped[idx].mean()),
                              "tie_filled": r["tie_filled"]})
    # random subsets are the same in both keep runs (same selection seed): keep one copy
    seen, unique = set(), []
    for c in cells:
        key = (c["noise"], c["keep"], c["fraction"], c["acquisition"])
        if key not in seen:
            seen.add(key)
            unique.append(c)
    auto = [{**c, "keep": "auto"} for c in unique if c["keep"] == ("easiest" if c["fraction"] < 0.5 else "hardest")
            and c["acquisition"] != "random"]
    best = {}
    for noise in NOISES:
        for f in FRACTIONS:
            rows = [c for c in unique if c["noise"] == noise and c["fraction"] == f and c["acquisition"] != "random"]
            if rows:
                b = min(rows, key=lambda c: c["test_error"])
                rnd = next((c for c in unique if c["noise"] == noise and c["fraction"] == f
                            and c["acquisition"] == "random"), None)
                best[f"noise{noise:g}-{f:g}"] = {"keep": b["keep"], "acquisition": b["acquisition"],
                                                 "test_error": b["test_error"], "full_error": b["full_error"],
                                                 "random_error": rnd["test_error"] if rnd else None}
    return {"benchmark": "subset_keep", "workload": WORKLOAD,
            "protocol": {**PROTOCOLS[WORKLOAD], "schedule": "one-shot", "fractions": FRACTIONS,
                         "acquisitions": ACQUISITIONS, "balance": "none", "budget": "steps", "batch_size": 128,
                         "lr": get_workload(WORKLOAD).lr, "threads": 1,
                         "noises": list(NOISES), "keeps": list(KEEPS)},
            "auto_rule": "auto = easiest below fraction 0.5, hardest from 0.5 on: its cells are copied from those runs",
            "studies": studies, "cells": unique, "auto_cells": auto, "best_per_fraction": best}


def main() -> None:
    global WORKLOAD
    ap = argparse.ArgumentParser()
    ap.add_argument("--workload", default="mnist1d-mlp", choices=sorted(PROTOCOLS))
    ap.add_argument("--noise", type=float, choices=NOISES, default=None)
    ap.add_argument("--keep", choices=KEEPS, default=None)
    ap.add_argument("--summarize", action="store_true", help="only write the JSON from the study folders")
    a = ap.parse_args()
    WORKLOAD = a.workload
    if not a.summarize:
        for noise in NOISES if a.noise is None else [a.noise]:
            for keep in KEEPS if a.keep is None else [a.keep]:
                t0 = time.time()
                _, ran = run_subset_study(request(noise, keep), str(folder(noise, keep)), threads=1, device="cpu",
                                          command=sys.argv)
                print(f"noise {noise:g} keep {keep}: {ran} trials, {time.time() - t0:.0f} s", flush=True)
    res = summarize()
    res["command"] = " ".join(sys.argv)
    write_json(out_path(), res)
    for k, b in res["best_per_fraction"].items():
        print(f"{k}: best {b['acquisition']} ({b['keep']}) {b['test_error']:.4f}; random {b['random_error']}; "
              f"full {b['full_error']:.4f}")
    print(f"wrote {out_path()}")


if __name__ == "__main__":
    main()
