"""The emphasis study's summary, from trial records only: per-method test error, relative
reduction vs uniform, paired tests over seeds (paired t-test — the primary test — and Wilcoxon
signed-rank), Holm's correction across the methods, aggregated history diagnostics and plain
sentences. Pure functions: no training, no files (the study in :mod:`feedwise.studies.emphasis.run`
collects the records and writes ``summary.json``)."""

from __future__ import annotations

import math

import numpy as np

from feedwise.emphasis.methods import METHODS
from feedwise.emphasis.rho import work_units
from feedwise.stats import holm as stats_holm

# methods of the study beside the Active Bias family: RHO-LOSS, and uniform trained for as many steps as
# RHO-LOSS's compute buys (a baseline of the matched-compute comparison, kept out of the vs-uniform family)
EXTRA_LABELS = {"rho": "RHO-LOSS", "uniform-matched": "SGD-Uni at RHO-LOSS's compute"}
MATCHED = "uniform-matched"


def label(method: str) -> str:
    return METHODS[method].label if method in METHODS else EXTRA_LABELS.get(method, method)


def wilcoxon_min_p(n: int) -> float | None:
    """The smallest two-sided p the exact Wilcoxon signed-rank test can give with ``n`` paired seeds:
    all n differences of one sign, probability 2 / 2^n (n = 5: 0.0625, so it can never be below 0.05)."""
    return 2.0 / 2 ** int(n) if n and int(n) > 0 else None


def primary_test_text(seeds: int) -> str:
    """What summary.json's ``primary_test`` says, with the real Wilcoxon floor for ``seeds`` seeds."""
    floor = wilcoxon_min_p(seeds)
    return ("paired t-test on per-seed test errors (two-sided); Wilcoxon signed-rank also reported"
            + (f" (with {seeds} seeds its smallest possible two-sided p is {floor:.3g})" if floor else "")
            + "; Holm correction across the methods compared with uniform")


def paired_tests(base: list[float], other: list[float]) -> dict:
    """Paired tests of ``other − base`` over seeds: t-test (primary) and Wilcoxon signed-rank."""
    from scipy import stats

    a, b = np.asarray(base, float), np.asarray(other, float)
    d = b - a
    out = {"n": int(len(d)), "mean_diff": float(d.mean()) if len(d) else None, "t_p": None, "wilcoxon_p": None,
           "test": "paired t-test", "p": None}
    if len(d) >= 2:
        if np.allclose(d, d[0]):
            out["t_p"] = 1.0 if d[0] == 0 else 0.0
        else:
            out["t_p"] = float(stats.ttest_rel(b, a).pvalue)
        if np.any(d != 0):
            try:
                out["wilcoxon_p"] = float(stats.wilcoxon(b, a).pvalue)
            except ValueError:
                out["wilcoxon_p"] = None
        else:
            out["wilcoxon_p"] = 1.0
    out["p"] = out["t_p"]
    return out


def holm(pvalues: dict[str, float | None]) -> dict[str, float | None]:
    """Holm–Bonferroni adjusted p-values by name (:func:`feedwise.stats.holm`); None stays None."""
    names = list(pvalues)
    return dict(zip(names, stats_holm([pvalues[k] for k in names])))


def _significance(t: dict) -> str:
    return ("significant after Holm" if t["significant_holm"] else
            "significant before but not after Holm" if t["significant"] else "not significant")


def _ms(values: list[float]) -> tuple[float | None, float | None]:
    v = [x for x in values if x is not None and math.isfinite(x)]
    if not v:
        return None, None
    return float(np.mean(v)), float(np.std(v, ddof=1)) if len(v) > 1 else 0.0


def compare(base: dict[int, dict], runs: dict[int, dict], key: str) -> dict:
    """Paired tests of ``runs`` against ``base`` (records by seed) on ``key``, over their common seeds;
    relative reduction = (base mean − runs mean) / base mean."""
    common = [s for s in sorted(runs) if s in base and runs[s].get(key) is not None and base[s].get(key) is not None]
    u = [base[s][key] for s in common]
    o = [runs[s][key] for s in common]
    t = paired_tests(u, o)
    mu = float(np.mean(u)) if u else None
    t["relative_reduction"] = (mu - float(np.mean(o))) / mu if u and mu else None
    t["seeds"] = common
    return t


def compute_of(record: dict) -> dict:
    """A trial's compute (forward-pass units: 3 per trained example, 1 per forward-only one); trials
    recorded before the account existed count their training examples only."""
    c = dict(record.get("compute") or {})
    c.setdefault("train_examples", int(record.get("examples") or 0))
    for k in ("forward_examples", "il_train_examples", "il_forward_examples"):
        c.setdefault(k, 0)
    trained = c["train_examples"] + c["il_train_examples"]
    forward = c["forward_examples"] + c["il_forward_examples"]
    c["units"] = work_units(trained, forward)
    c["examples_processed"] = trained + forward   # plain count: every example through a model once counts 1
    return c


def rho_comparisons(by: dict[str, dict[int, dict]]) -> dict:
    """RHO-LOSS against every other method of the study (uniform, the Active Bias methods, uniform at
    RHO-LOSS's compute): paired tests per ``final``/``best``, Holm over that family. ``mean_diff`` is
    rho − other; ``relative_reduction`` is rho's reduction of the other's test error."""
    out = {}
    for which, key in (("final", "test_error"), ("best", "best_ckpt_test_error")):
        comps = {m: compare(runs, by["rho"], key) for m, runs in by.items() if m != "rho" and runs}
        adj = holm({m: t["p"] for m, t in comps.items()})
        for m, t in comps.items():
            t["p_holm"] = adj[m]
            t["significant"] = t["p"] is not None and t["p"] < 0.05
            t["significant_holm"] = adj[m] is not None and adj[m] < 0.05
        out[which] = comps
    return out


def summarise(records: list[dict], methods: list[str]) -> dict:
    """The study summary from trial records (each with method, seed, test errors, diagnostics)."""
    by: dict[str, dict[int, dict]] = {m: {} for m in methods}
    for r in records:
        if r.get("method") in by and r.get("status") != "running":
            by[r["method"]][int(r["seed"])] = r
    out: dict = {"methods": {}, "comparisons": {}}
    base = by.get("uniform", {})
    for which, key in (("final", "test_error"), ("best", "best_ckpt_test_error")):
        pvals, comps = {}, {}
        for m in methods:
            runs = by[m]
            errs = [runs[s].get(key) for s in sorted(runs)]
            mean, std = _ms(errs)
            entry = out["methods"].setdefault(m, {"label": label(m), "seeds": sorted(runs)})
            entry[which] = {"test_error_mean": mean, "test_error_std": std,
                            "test_errors": {str(s): runs[s].get(key) for s in sorted(runs)}}
            if m in ("uniform", MATCHED):
                continue
            comps[m] = t = compare(base, runs, key)
            pvals[m] = t["p"]
        adj = holm(pvals)
        for m, t in comps.items():
            t["p_holm"] = adj[m]
            t["significant"] = t["p"] is not None and t["p"] < 0.05
            t["significant_holm"] = adj[m] is not None and adj[m] < 0.05
        out["comparisons"][which] = comps
    # wall time, curves and diagnostics
    for m in methods:
        runs = by[m]
        out["methods"][m]["wall_s_mean"] = _ms([r.get("wall_s") for r in runs.values()])[0]
        il_wall = [(r.get("il") or {}).get("wall_s") for r in runs.values()]
        if any(v is not None for v in il_wall):   # rho: its IL models' training time, beside its own
            out["methods"][m]["il_wall_s_mean"] = _ms(il_wall)[0]
        out["methods"][m]["best_step_mean"] = _ms([r.get("best_step") for r in runs.values()])[0]
        diags = [r.get("diagnostics") or {} for r in runs.values()]
        agg: dict = {}
        for name in ("auroc_std", "auroc_mean", "auroc_loss", "top_share_std", "top_share_mean", "top_share_loss",
                     "std_clean_mean", "std_noisy_mean", "emphasis_mass_noisy", "noisy_fraction",
                     "selected_noisy_share", "selected_once_share", "auroc_il"):
            vals = [d.get(name) for d in diags if d.get(name) is not None]
            if vals:
                agg[name] = float(np.mean(vals))
        traces = [d["selection_trace"] for d in diags if d.get("selection_trace")]
        if traces:   # rho: mean over seeds, per evaluation step, of what it trained on since the last one
            steps = sorted({r["step"] for t in traces for r in t})
            agg["selection_trace"] = [
                {"step": st, **{k: float(np.mean(v)) for k in ("noisy_share", "seen_share")
                                if (v := [r[k] for t in traces for r in t if r["step"] == st and k in r])}}
                for st in steps]
        hists = [d.get("std_hist") for d in diags if d.get("std_hist")]
        if hists:
            agg["std_hist"] = {"bins": hists[0]["bins"],
                               "clean": np.sum([h["clean"] for h in hists], 0).tolist(),
                               "noisy": np.sum([h["noisy"] for h in hists], 0).tolist()}
        out["methods"][m]["diagnostics"] = agg
    # compute, in the units of training (forward-pass units; uniform = 3 x its training examples)
    base_units = _ms([compute_of(r)["units"] for r in base.values()])[0]
    for m in methods:
        cs = [compute_of(r) for r in by[m].values()]
        if not cs:
            continue
        c = {k: _ms([x[k] for x in cs])[0] for k in cs[0]}
        c["units_vs_uniform"] = c["units"] / base_units if base_units else None
        if m == "rho":
            c["extra_units"] = c["units"] - (base_units or 0.0)
        out["methods"][m]["compute"] = c
    if by.get("rho"):
        out["rho"] = rho_comparisons(by)
    out["statement"] = statement(out, methods)
    return out


def statement(summary: dict, methods: list[str]) -> list[str]:
    """Plain sentences: does each Active Bias method reduce test error vs uniform, with p-values."""
    lines = []
    for which, name in (("final", "final model"), ("best", "best-validation checkpoint")):
        for m, t in summary["comparisons"].get(which, {}).items():
            rr = t.get("relative_reduction")
            if rr is None or t.get("p") is None:
                lines.append(f"{m} ({name}): not enough paired seeds to compare with uniform.")
                continue
            verdict = "reduces" if rr > 0 else "increases" if rr < 0 else "does not change"
            sig = _significance(t)
            lines.append(f"{m} ({name}): {verdict} test error vs uniform by {abs(rr) * 100:.1f}% relative "
                         f"(paired t-test p={t['p']:.3g}, Holm p={t['p_holm']:.3g}, Wilcoxon p="
                         f"{'n/a' if t['wilcoxon_p'] is None else format(t['wilcoxon_p'], '.3g')}, "
                         f"n={t['n']}): {sig}.")
    rho = summary.get("rho") or {}
    cost = (summary["methods"].get("rho") or {}).get("compute") or {}
    for which, name in (("final", "final model"), ("best", "best-validation checkpoint")):
        for m, t in (rho.get(which) or {}).items():
            rr = t.get("relative_reduction")
            if rr is None or t.get("p") is None:
                continue
            verdict = "lower" if rr > 0 else "higher" if rr < 0 else "equal"
            sig = _significance(t)
            lines.append(f"rho vs {m} ({name}): test error {abs(rr) * 100:.1f}% {verdict} relative "
                         f"(paired t-test p={t['p']:.3g}, Holm p={t['p_holm']:.3g} over rho's comparisons, "
                         f"n={t['n']}): {sig}.")
    if cost.get("units_vs_uniform"):
        lines.append(f"rho's compute: {cost['units_vs_uniform']:.2f}x uniform's (forward-pass units: 3 per trained "
                     f"example, 1 per forward-only one; IL models and candidate forwards included).")
    return lines
