"""Which score x selection rule gives the best training subset, at what search cost? Training-dynamics scores
(EL2N, forgetting events, area under the margin: one training run) beside ensemble entropy and random, each
with top-fraction and coverage-centric selection (CCS), with and without label noise (issue 18).

    .venv/bin/python benchmarks/subset_scores.py --noise 0        # one study (<= 10 min on the shared machine)
    .venv/bin/python benchmarks/subset_scores.py --noise 0.2
    .venv/bin/python benchmarks/subset_scores.py --summarize      # only (re)write the JSON from the folders
    .venv/bin/python benchmarks/subset_scores.py --workload fashion-mnist-mlp --noise 0
    .venv/bin/python benchmarks/subset_scores.py --noise 0.2 --ccs-beta-from-flag   # CCS only, beta = flag's rate

One `feedwise subset` study per label noise into runs/bench-subset-scores[-fashion]/noise<tau>/ (resumable).
Protocol (PROTOCOLS): one-shot search by 2 acquisition models x 10 checkpoints (entropy reads all 20 members;
el2n, forgetting and aum read model 0's 10 evaluations of the pool: one training run); subsets of 1/8, 1/4
and 1/2 by top (hardest: the papers' rule for these scores) and by CCS (50 strata, the hardest 10% dropped);
the target MLP trained from scratch under the epochs budget rule (as many epochs as full-data training: the
rule under which a subset is cheaper), 3 paired seeds, one torch thread. Verdicts and choices on validation
error (paired one-sided t-tests, Holm over each family), test error reported for the chosen cell and the
random and full-data baselines. Writes benchmarks/results/subset_scores_<mnist1d|fashion>.json: per noise, the
chosen cell per fraction with its verdicts, search cost (examples and FLOP-weighted work) and break-even;
every cell's validation error and p-values; class coverage (and, with noise, the share of flipped labels) of
every subset at 1/4.

``--ccs-beta-from-flag`` runs a CCS-only variant whose beta (the hardest share dropped) is the label-noise
rate estimated by `feedwise flag` in benchmarks/results/subset_keep_<short>.json (run subset_keep.py first):
CCS's beta must cover the mislabelled tail, and the default 0.1 is below a 0.2 noise rate. Its study is
stored beside the others as noise<tau>-ccs-beta<beta>.

``--confirm`` tests one hypothesis picked from those exploratory runs on fresh target seeds: at 1/4 under
20% label noise, the best score with CCS and beta from flag has a lower validation error than random
(CONFIRMS: forgetting on mnist1d, aum on Fashion).
It runs a study of just those two cells with 6 target seeds and tests seeds 3, 4, 5 only (0-2 repeat the
exploratory run): one paired one-sided t-test, a family of one. Stored as noise<tau>-confirm.
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
from feedwise.studies.subset.run import SubsetRequest, run_subset_study  # noqa: E402
from feedwise.studies.train.run import DataOptions  # noqa: E402
from feedwise.workloads import get_workload  # noqa: E402

NOISES = (0.0, 0.2)
FRACTIONS = [0.125, 0.25, 0.5]
ACQUISITIONS = ["entropy", "el2n", "forgetting", "aum", "random"]
SELECTIONS = ["top", "ccs"]
PROTOCOLS = {
    "mnist1d-mlp": dict(ensemble="2x10", acq_steps=1500, target_steps=3000, seeds=3),
    "fashion-mnist-mlp": dict(ensemble="2x10", acq_steps=750, target_steps=1500, seeds=3),
}
SHORT = {"mnist1d-mlp": "mnist1d", "fashion-mnist-mlp": "fashion"}
CONFIRMS = {  # per workload: the one hypothesis taken from its exploratory beta-from-flag run, fixed before --confirm
    "mnist1d-mlp": {"noise": 0.2, "fraction": 0.25, "acquisition": "forgetting", "selection": "ccs", "seeds": 6,
                    "fresh_seeds": [3, 4, 5],
                    "chosen_from": "mnist1d exploratory run noise0.2-ccs-beta0.184 (seeds 0-2): forgetting/ccs at "
                                   "1/4, val 0.257 vs random 0.344, raw p 0.0046, Holm p 0.055 over its 12 cells"},
    "fashion-mnist-mlp": {"noise": 0.2, "fraction": 0.25, "acquisition": "aum", "selection": "ccs", "seeds": 6,
                          "fresh_seeds": [3, 4, 5],
                          "chosen_from": "Fashion exploratory run noise0.2-ccs-beta0.284 (seeds 0-2): aum/ccs at 1/4 "
                                         "(the cell chosen on validation), val 0.148 vs random 0.163, raw p 0.038, "
                                         "Holm p 0.39 over its 12 cells"},
}


def request(workload: str, noise: float, beta: float | None = None) -> SubsetRequest:
    p = PROTOCOLS[workload]
    return SubsetRequest(workload=workload, acquisitions=ACQUISITIONS, fractions=FRACTIONS, ensemble=p["ensemble"],
                         schedule="one-shot", seeds=p["seeds"], balances=["none"], budgets=["epochs"],
                         target_steps=p["target_steps"], acq_steps=p["acq_steps"],
                         selections=SELECTIONS if beta is None else ["ccs"], ccs_strata=50,
                         ccs_beta=0.1 if beta is None else beta, dynamics_models=1, el2n_checkpoints=1,
                         data=DataOptions(label_noise=noise))


def key(noise: float, beta: float | None = None) -> str:
    return f"noise{noise:g}" + ("" if beta is None else f"-ccs-beta{beta:g}")


def folder(workload: str, noise: float, beta: float | None = None) -> Path:
    suffix = "" if workload == "mnist1d-mlp" else "-" + SHORT[workload]
    return ROOT / "runs" / f"bench-subset-scores{suffix}" / key(noise, beta)


def flag_beta(workload: str, noise: float) -> float:
    path = ROOT / "benchmarks" / "results" / f"subset_keep_{SHORT[workload]}.json"
    est = read_json(path)["estimates"][f"{noise:g}"]
    return round(float(est["estimated_rate"]), 3)


def coverage(labels: np.ndarray, idx: np.ndarray, k: int, flipped: np.ndarray | None) -> dict:
    counts = np.bincount(labels[idx], minlength=k)
    share = np.bincount(labels, minlength=k) / labels.size * idx.size
    ratio = counts / share
    return {"class_counts": counts.tolist(), "min_class_ratio": round(float(ratio.min()), 3),
            "max_class_ratio": round(float(ratio.max()), 3),
            "classes_under_half": [int(c) for c in np.flatnonzero(ratio < 0.5)],
            "flipped_share": None if flipped is None else round(float(flipped[idx].mean()), 4)}


def confirm(workload: str) -> dict:
    """Run (or resume) the confirmatory study and test the fresh seeds only."""
    from feedwise.stats import paired_t, wilcoxon_exact

    CONFIRM = CONFIRMS[workload]
    noise = CONFIRM["noise"]
    beta = flag_beta(workload, noise)
    req = request(workload, noise, beta)
    req.acquisitions, req.fractions, req.seeds = [CONFIRM["acquisition"], "random"], [CONFIRM["fraction"]], \
        CONFIRM["seeds"]
    d = folder(workload, noise).parent / f"noise{noise:g}-confirm"
    t0 = time.time()
    _, ran = run_subset_study(req, str(d), threads=1, device="cpu", command=sys.argv)
    tag = f"{CONFIRM['fraction']:g}-none-epochs"

    def vals(prefix: str, key: str) -> list[float]:
        return [read_json(d / "trials" / f"{prefix}-{tag}-s{k}" / "trial.json")[key] for k in CONFIRM["fresh_seeds"]]

    a_val, r_val = vals(f"target-{CONFIRM['acquisition']}-{CONFIRM['selection']}", "final_val_error"), \
        vals("target-random", "final_val_error")
    t = paired_t(a_val, r_val, "less")
    return {**CONFIRM, "ccs_beta": beta, "folder": str(d.relative_to(ROOT)), "trials_run": ran,
            "elapsed_s": round(time.time() - t0, 1), "val_error": a_val, "random_val_error": r_val,
            "mean_diff": t["mean_diff"], "p": t["p"], "wilcoxon_p": wilcoxon_exact(a_val, r_val, "less")["p"],
            "confirmed": bool(t["p"] is not None and t["p"] < 0.05),
            "test_error": vals(f"target-{CONFIRM['acquisition']}-{CONFIRM['selection']}", "test_error"),
            "random_test_error": vals("target-random", "test_error")}


def summarize_noise(workload: str, noise: float, beta: float | None = None) -> dict | None:
    d = folder(workload, noise, beta)
    if not (d / "summary.json").exists():
        return None
    s = read_json(d / "summary.json")
    data = get_workload(workload).load(label_noise=noise)
    labels = data.y_train.numpy()
    flipped = None
    if noise:
        flipped = np.zeros(data.num_train, bool)
        flipped[data.noisy_indices] = True
    cells = []
    for r in s["results"]:
        idx = np.load(d / "subsets" / f"{r['subset']}.npy")
        cells.append({"acquisition": r["acquisition"], "selection": r["selection"], "fraction": r["fraction"],
                      "val_error": r["val_error"], "val_gap_to_full": r["val_gap_to_full"],
                      "vs_random": r["vs_random"], "vs_full": r["vs_full"], "beats_random": r["beats_random"],
                      "within_tolerance": r["within_tolerance"], "test_error": r["test_error"],
                      "search_cost": {k: r["search_cost"][k] for k in ("examples", "work", "seconds")},
                      "target_cost": r["target_cost"], "break_even": r["break_even"],
                      "coverage": coverage(labels, idx, data.num_classes, flipped)})
    return {"folder": str(d.relative_to(ROOT)), "ccs_beta": 0.1 if beta is None else beta,
            **({} if beta is None else {"ccs_beta_source": "label-noise rate estimated by feedwise flag "
                                                           f"(subset_keep_{SHORT[workload]}.json)"}),
            "full": s["full"], "chosen": s["chosen"],
            "search_total": s["cost"]["search_total"], "cells": cells,
            "beats_random_at_quarter": [f"{c['acquisition']}/{c['selection']}" for c in cells
                                        if c["fraction"] == 0.25 and c["beats_random"]],
            "verdict_rule": s["verdict_rule"], "break_even_rule": s["break_even_rule"], "units": s["cost"]["units"]}


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--workload", default="mnist1d-mlp", choices=sorted(PROTOCOLS))
    ap.add_argument("--noise", type=float, choices=NOISES, default=None)
    ap.add_argument("--summarize", action="store_true", help="only write the JSON from the study folders")
    ap.add_argument("--confirm", action="store_true", help="the confirmatory run on fresh seeds (CONFIRM)")
    ap.add_argument("--ccs-beta-from-flag", action="store_true",
                    help="CCS only, beta = the noise rate flag estimated (subset_keep.py's JSON)")
    a = ap.parse_args()
    out = ROOT / "benchmarks" / "results" / f"subset_scores_{SHORT[a.workload]}.json"
    old = read_json(out) if out.exists() else {}
    history = old.get("run_history", [])
    confirmed = old.get("confirmatory")
    if a.confirm:
        confirmed = confirm(a.workload)
        print(f"confirmatory: {confirmed}")
    elif not a.summarize:
        for noise in NOISES if a.noise is None else [a.noise]:
            t0 = time.time()
            beta = flag_beta(a.workload, noise) if a.ccs_beta_from_flag else None
            _, ran = run_subset_study(request(a.workload, noise, beta), str(folder(a.workload, noise, beta)),
                                      threads=1, device="cpu", command=sys.argv)
            history.append({"study": key(noise, beta), "trials_run": ran, "elapsed_s": round(time.time() - t0, 1)})
            print(f"noise {noise:g}: {ran} trials, {time.time() - t0:.0f} s", flush=True)
    p = PROTOCOLS[a.workload]
    res = {"benchmark": "subset_scores", "workload": a.workload, "command": " ".join(sys.argv),
           "protocol": {**p, "schedule": "one-shot", "fractions": FRACTIONS, "acquisitions": ACQUISITIONS,
                        "selections": SELECTIONS, "ccs_strata": 50, "ccs_beta": 0.1, "dynamics_models": 1,
                        "el2n_checkpoints": 1, "keep (top)": "hardest", "balance": "none", "budget": "epochs",
                        "batch_size": 128, "lr": get_workload(a.workload).lr, "threads": 1, "noises": list(NOISES)},
           "scaled": ("2 acquisition models x 10 checkpoints, short acquisition runs, 3 seeds, the epochs budget rule "
                      "only, balance none only, one torch thread: sized to <= 10 minutes per study on a shared "
                      "2-core machine"),
           "papers": {"el2n": "Paul et al. 2021: EL2N early in training, keep the hardest; CIFAR-10 loses little at "
                               "50% pruning",
                      "forgetting": "Toneva et al. 2019: drop unforgettable examples",
                      "aum": "Pleiss et al. 2020: low AUM flags mislabelled examples",
                      "ccs": "Zheng et al. 2023: CCS beats random at high pruning rates where top-k collapses"},
           "studies": {f"noise{n:g}": summarize_noise(a.workload, n) for n in NOISES}, "run_history": history,
           **({"confirmatory": confirmed} if confirmed else {})}
    base = folder(a.workload, 0.0).parent
    for d in sorted(base.glob("noise*-ccs-beta*")) if base.exists() else []:
        noise, beta = (float(v) for v in d.name[len("noise"):].split("-ccs-beta"))
        res["studies"][d.name] = summarize_noise(a.workload, noise, beta)
    plots = []
    for name, st in res["studies"].items():   # validation error vs fraction per score x selection
        if st is not None:
            from feedwise.studies.subset.report import plot_error_vs_fraction
            path = out.parent / f"subset_scores_{SHORT[a.workload]}_{name}.png"
            plot_error_vs_fraction(read_json(ROOT / st["folder"] / "summary.json"), path, "none", "epochs", dpi=60)
            plots.append(path.name)
    res["plots"] = plots
    write_json(out, res)
    for name, st in res["studies"].items():
        if st is None:
            continue
        for c in st["chosen"]:
            rt = (c["random_test_error"] or {}).get("mean")
            print(f"{name} {c['fraction']:g}: {c['subset']} test {c['test_error']['mean']:.4f} vs random "
                  f"{rt:.4f} vs full {c['full_test_error']['mean']:.4f}; beats random {c['beats_random']} "
                  f"(Holm p {c['p_holm_vs_random']})")
        print(f"{name}: beats random at 1/4: {st['beats_random_at_quarter'] or 'none'}")
    print(f"wrote {out}")


if __name__ == "__main__":
    main()
