"""Streaming ensemble scorer vs stacking all members (the way baal's heuristics take their input).

    .venv/bin/python benchmarks/subset_scorer_memory.py

Pool N = 60,000, K = 10 classes, M = 20, 100, 200 members. Each (method, M) runs in its own
subprocess; members are generated one at a time from a seeded generator (softmax of random
logits, float32, the dtype a model returns), so generation costs the same for both methods.

- streaming: ``EnsembleScorer.add`` per member, then the four scores (entropy, bald, variation-ratio, margin).
- stacking: members written into one N x K x M float32 array (baal's layout), then the four scores
  computed from it with baal's formulas (entropy of the mean, mean member entropy with eps=1e-5, ...).

Measured: peak traced memory (tracemalloc: numpy allocations are traced) above the baseline after
imports, the ru_maxrss growth of the subprocess, and the wall time of accumulate + score (generation
excluded, timed separately). Runs are repeated (interleaved, streaming/stacking alternately) and the
median time is reported; memory is deterministic. Writes benchmarks/results/subset_scorer_memory.json
and subset_scorer_memory.png.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
N, K = 60_000, 10
MS = (20, 100, 200)
REPEATS = 3

CHILD = r"""
import os, sys, time, tracemalloc, resource, json
sys.path.insert(0, os.path.join(sys.argv[1], "src"))
import numpy as np
from feedwise.subset import EnsembleScorer
N, K, M, method = int(sys.argv[2]), int(sys.argv[3]), int(sys.argv[4]), sys.argv[5]

def member(m):
    rng = np.random.default_rng(1000 + m)
    z = rng.standard_normal((N, K), dtype=np.float32) * 3
    z -= z.max(axis=1, keepdims=True)
    np.exp(z, out=z)
    z /= z.sum(axis=1, keepdims=True)
    return z

def ent(p, axis):
    return -np.sum(p * np.log(p + 1e-5), axis=axis)

member(0)
rss0 = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
tracemalloc.start()
base = tracemalloc.get_traced_memory()[0]
gen_s = work_s = 0.0
if method == "streaming":
    s = EnsembleScorer(N, K)
    for m in range(M):
        t0 = time.perf_counter(); p = member(m); gen_s += time.perf_counter() - t0
        t0 = time.perf_counter(); s.add(p); work_s += time.perf_counter() - t0
        del p
    t0 = time.perf_counter()
    out = {n: s.scores(n) for n in ("entropy", "bald", "variation-ratio", "margin")}
    work_s += time.perf_counter() - t0
else:
    stack = np.empty((N, K, M), dtype=np.float32)         # baal: probabilities [n_sample, n_class, n_iter]
    for m in range(M):
        t0 = time.perf_counter(); p = member(m); gen_s += time.perf_counter() - t0
        t0 = time.perf_counter(); stack[:, :, m] = p; work_s += time.perf_counter() - t0
        del p
    t0 = time.perf_counter()
    mean = stack.mean(axis=-1)
    h = ent(mean, 1)
    bald = h - ent(stack, 1).mean(axis=-1)
    votes = np.stack([(stack.argmax(axis=1) == k).sum(axis=-1) for k in range(K)], axis=1)
    vr = 1 - votes.max(axis=1) / M
    srt = np.sort(mean, axis=1)
    margin = 1 - (srt[:, -1] - srt[:, -2])
    out = {"entropy": h, "bald": bald, "variation-ratio": vr, "margin": margin}
    work_s += time.perf_counter() - t0
peak = tracemalloc.get_traced_memory()[1] - base
tracemalloc.stop()
rss1 = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
np.save(sys.argv[6], np.stack([out[n] for n in ("entropy", "bald", "variation-ratio", "margin")]).astype(np.float64))
print(json.dumps({"peak_traced_bytes": int(peak), "maxrss_growth_kib": int(rss1 - rss0), "work_s": work_s,
                  "gen_s": gen_s}))
"""


def run(method: str, m: int, scratch: Path) -> dict:
    out = scratch / f"{method}-{m}.npy"
    env = {**os.environ, "OMP_NUM_THREADS": "1", "OPENBLAS_NUM_THREADS": "1", "MKL_NUM_THREADS": "1"}
    r = subprocess.run([sys.executable, "-c", CHILD, str(ROOT), str(N), str(K), str(m), method, str(out)],
                       capture_output=True, text=True, env=env, check=True)
    return json.loads(r.stdout.strip().splitlines()[-1])


def main() -> None:
    import numpy as np

    res = ROOT / "benchmarks" / "results"
    scratch = ROOT / "benchmarks" / "results" / "scratch"
    scratch.mkdir(parents=True, exist_ok=True)
    one_member = N * K * 4
    rows = []
    for m in MS:
        runs = {"streaming": [], "stacking": []}
        for _ in range(REPEATS):
            for method in ("streaming", "stacking"):
                runs[method].append(run(method, m, scratch))
        a, b = np.load(scratch / f"streaming-{m}.npy"), np.load(scratch / f"stacking-{m}.npy")
        diffs = {n: float(np.abs(a[i] - b[i]).max()) for i, n in enumerate(["entropy", "bald", "variation-ratio",
                                                                                 "margin"])}
        row = {"members": m}
        for method, rs in runs.items():
            t = sorted(r["work_s"] for r in rs)
            row[method] = {"peak_traced_MB": round(rs[0]["peak_traced_bytes"] / 2**20, 2),
                           "peak_over_one_member": round(rs[0]["peak_traced_bytes"] / one_member, 2),
                           "maxrss_growth_MB": round(float(np.median([r["maxrss_growth_kib"] for r in rs])) / 1024, 1),
                           "work_s_median": round(t[len(t) // 2], 3), "work_s_min": round(t[0], 3),
                           "work_s_max": round(t[-1], 3), "gen_s_median": round(float(np.median([r["gen_s"] for r in rs])), 3)}
        ratios = sorted(x["work_s"] / y["work_s"] for x, y in zip(runs["stacking"], runs["streaming"]))
        row["time_ratio_stacking_over_streaming"] = {"median": round(ratios[len(ratios) // 2], 3),
                                                     "min": round(ratios[0], 3), "max": round(ratios[-1], 3)}
        row["memory_ratio_stacking_over_streaming"] = round(row["stacking"]["peak_traced_MB"]
                                                            / row["streaming"]["peak_traced_MB"], 1)
        row["max_abs_score_difference"] = diffs
        rows.append(row)
        print(json.dumps(row))
    for p in scratch.glob("*.npy"):
        p.unlink()
    scratch.rmdir()
    result = {"benchmark": "subset_scorer_memory", "pool": {"N": N, "K": K}, "repeats": REPEATS,
              "one_member_float32_MB": round(one_member / 2**20, 2),
              "note": "peak traced memory above the post-import baseline (tracemalloc, numpy allocations); "
                      "score differences come from baal's eps=1e-5 inside the logs and float32 stacking",
              "rows": rows}
    from feedwise.results import write_json
    write_json(res / "subset_scorer_memory.json", result)
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    fig, ax = plt.subplots(1, 2, figsize=(8, 3.2), dpi=90)
    for method, c in (("streaming", "tab:blue"), ("stacking", "tab:red")):
        ax[0].plot(MS, [r[method]["peak_traced_MB"] for r in rows], "o-", color=c, label=method)
        ax[1].plot(MS, [r[method]["work_s_median"] for r in rows], "o-", color=c, label=method)
    ax[0].axhline(one_member / 2**20, color="gray", ls="--", label="one member (float32)")
    ax[0].set_xlabel("members M"); ax[0].set_ylabel("peak memory (MB)"); ax[0].set_yscale("log"); ax[0].legend(fontsize=7)
    ax[1].set_xlabel("members M"); ax[1].set_ylabel("accumulate + score (s)"); ax[1].legend(fontsize=7)
    fig.suptitle(f"ensemble scores over N={N:,}, K={K}", fontsize=9)
    fig.tight_layout()
    fig.savefig(res / "subset_scorer_memory.png")
    print(f"wrote {res / 'subset_scorer_memory.json'}")


if __name__ == "__main__":
    sys.path.insert(0, str(ROOT / "src"))
    main()
