"""The saved subset searches' cost account and break-even redone in FLOP-weighted work (issue 16).

    .venv/bin/python benchmarks/subset_break_even.py

The earlier account counted a forward-only scoring pass over the pool as one training example (on
Fashion-MNIST one-shot, 74% of the search). Work weighs forward = 1 and backward = 2 (the usual FLOP
ratio for dense layers): a training example is 3, a scored example 1. This script reads the saved
benchmarks/results/subset_study_<workload>.json (one-shot, 2 seeds, made before the validation-decided
summary), splits each search into training and scoring from its protocol (E models x C checkpoints, each
model C * ceil(acq_steps / C) steps of the batch, the rest of the counted examples being scored pool
examples) and recomputes the break-even of every cell the saved run called within tolerance, in both
units. No training is run. Writes benchmarks/results/subset_break_even_flops.json.
"""

from __future__ import annotations

import json
import math
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "src"))

from feedwise.files import write_json  # noqa: E402
from feedwise.studies.subset.summary import SCORE_WORK, TRAIN_WORK, UNITS  # noqa: E402

RESULTS = ROOT / "benchmarks" / "results"


def split(search_examples: int, proto: dict) -> dict:
    e, c = (int(v) for v in proto["ensemble"].split("x"))
    steps = c * math.ceil(proto["acq_steps"] / c)
    train = e * steps * proto["batch_size"]
    scored = search_examples - train
    return {"examples": search_examples, "train_examples": train, "scored_examples": scored,
            "scored_share_of_examples": round(scored / search_examples, 3),
            "work": TRAIN_WORK * train + SCORE_WORK * scored,
            "scored_share_of_work": round(SCORE_WORK * scored / (TRAIN_WORK * train + SCORE_WORK * scored), 3)}


def main() -> None:
    out = {"benchmark": "subset_break_even", "units": UNITS,
           "note": ("recomputed from saved JSONs (2 seeds, test-decided 'within tolerance' of the earlier summary); "
                    "the new summary decides on validation with >= 3 paired seeds and would give no verdict here"),
           "workloads": {}}
    for wl in ("mnist1d-mlp", "fashion-mnist-mlp"):
        d = json.loads((RESULTS / f"subset_study_{wl}.json").read_text())
        s = split(d["search_cost"]["examples"], d["protocol"])
        full_ex = d["full_data"]["cost"]["examples"]
        cells = []
        for r in d["results"]:
            be = r["break_even"]["examples"]
            if be is None or r["acquisition"] == "random":
                continue
            sub_ex = r["target_cost"]["examples"]
            cells.append({"acquisition": r["acquisition"], "fraction": r["fraction"], "balance": r["balance"],
                          "budget": r["budget"], "break_even_examples": round(s["examples"] / (full_ex - sub_ex), 2),
                          "break_even_work": round(s["work"] / (TRAIN_WORK * (full_ex - sub_ex)), 2)})
        out["workloads"][wl] = {"search": s, "full_training": {"examples": full_ex, "work": TRAIN_WORK * full_ex},
                                "search_in_full_trainings": {"examples": round(s["examples"] / full_ex, 2),
                                                             "work": round(s["work"] / (TRAIN_WORK * full_ex), 2)},
                                "cells_within_tolerance_then": cells}
        print(wl, s, cells)
    write_json(RESULTS / "subset_break_even_flops.json", out)
    print(f"wrote {RESULTS / 'subset_break_even_flops.json'}")


if __name__ == "__main__":
    main()
