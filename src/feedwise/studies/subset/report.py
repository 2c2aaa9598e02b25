"""Report sections of the subset study, from summary.json only (never imports the engine)."""

from __future__ import annotations

import json
from pathlib import Path

from feedwise.report.plots import plt, save
from feedwise.report.sections import Section, table_html, table_md

QUESTION = 'Can an ensemble of checkpoints find a smaller training subset that trains as well, and is the search worth it? (Chitta et al. 2019)'

COLORS = {"entropy": "tab:blue", "bald": "tab:orange", "variation-ratio": "tab:green", "margin": "tab:purple",
          "random": "black", "history-variance": "tab:brown", "history-closeness": "tab:pink",
          "history-hard": "tab:olive", "el2n": "tab:red", "forgetting": "tab:cyan", "aum": "tab:gray"}


def _label(r: dict) -> str:
    return r["acquisition"] + ("" if r.get("selection", "top") == "top" else f"/{r['selection']}")


def plot_error_vs_fraction(summary: dict, path: Path, balance: str = "none", budget: str = "steps",
                           dpi: int = 90) -> Path:
    """Validation error vs subset fraction per acquisition and selection (mean ± std over seeds), with the
    full-data line (choices are made on validation; test error is reported for the chosen cells only)."""
    fig, ax = plt.subplots(figsize=(5.5, 3.8), dpi=dpi)
    _error_axes(ax, summary, balance, budget)
    return save(fig, path)


def plot_error_grid(summary: dict, path: Path, dpi: int = 70) -> Path:
    """One panel per (balance, budget rule): validation error vs fraction per acquisition, full-data line."""
    bals, rules = summary["balances"], summary["budgets"]
    fig, axes = plt.subplots(len(bals), len(rules), figsize=(5.0 * len(rules), 3.5 * len(bals)), dpi=dpi,
                             squeeze=False)
    for i, b in enumerate(bals):
        for j, rule in enumerate(rules):
            _error_axes(axes[i][j], summary, b, rule)
    return save(fig, path)


def _error_axes(ax, summary: dict, balance: str, budget: str) -> None:
    rows = [r for r in summary["results"] if r["balance"] == balance and r["budget"] == budget]
    for lab in dict.fromkeys(_label(r) for r in rows):
        rs = sorted((r for r in rows if _label(r) == lab and r["val_error"]["mean"] is not None),
                    key=lambda r: r["fraction"])
        if not rs:
            continue
        a = rs[0]["acquisition"]
        ax.errorbar([r["fraction"] for r in rs], [r["val_error"]["mean"] for r in rs],
                    yerr=[r["val_error"]["std"] or 0 for r in rs], marker="o" if "/" not in lab else "s", capsize=3,
                    label=lab, color=COLORS.get(a), linestyle="--" if a == "random" or "/" in lab else "-")
    full = summary["full"]["val_error"]
    if full["mean"] is not None:
        ax.axhline(full["mean"], color="gray", linewidth=1, label=f"full data ({full['mean']:.4f})")
        if full["std"]:
            ax.axhspan(full["mean"] - full["std"], full["mean"] + full["std"], color="gray", alpha=0.15)
    ax.set_xscale("log", base=2)
    fr = summary["fractions"]
    ax.set_xticks(fr)
    ax.set_xticklabels([f"{f:g}" for f in fr])
    ax.set_xlabel("subset fraction of the training pool")
    ax.set_ylabel("validation error")
    ax.set_title(f"{summary['workload']}: {summary['schedule']}, ensemble {summary['ensemble']}, "
                 f"balance={balance}, budget={budget}", fontsize=8)
    ax.legend(fontsize=7)


def plot_cost(summary: dict, path: Path, dpi: int = 90) -> Path:
    """Cost bars (FLOP-weighted work: a training example 3, a scored example 1): the search, one full-data
    training, one subset training per fraction/rule."""
    fig, ax = plt.subplots(figsize=(5.5, 3.5), dpi=dpi)
    labels, vals, colors = [], [], []
    search = summary["cost"]["search_total"]
    labels.append("search (all ensembles)")
    vals.append(search.get("work", search["examples"]))
    colors.append("tab:red")
    full = summary["full"]["cost"].get("work", summary["full"]["cost"]["examples"])
    if full:
        labels.append("full-data training")
        vals.append(full)
        colors.append("gray")
    seen = set()
    for r in summary["results"]:
        key = (r["fraction"], r["budget"])
        if key in seen or r["acquisition"] != "random":
            continue
        seen.add(key)
        labels.append(f"subset {r['fraction']:g} ({r['budget']})")
        vals.append(r["target_cost"].get("work", r["target_cost"]["examples"]))
        colors.append("tab:blue" if r["budget"] == "epochs" else "tab:cyan")
    ax.barh(labels, [v / 1e6 for v in vals], color=colors)
    ax.set_xlabel("millions of forward-pass units (training example 3, scored example 1)", fontsize=8)
    ax.set_title(f"{summary['workload']}: cost per run", fontsize=9)
    ax.tick_params(axis="y", labelsize=7)
    return save(fig, path)


def _fmt(v, nd=4):
    return "-" if v is None else (f"{v:.{nd}f}" if isinstance(v, float) else str(v))


def _yn(v) -> str:
    return "-" if v is None else ("yes" if v else "no")


def verdict_lines(summary: dict) -> list[str]:
    """Plain statements per (fraction, budget): the cell chosen on validation, its test error against random and
    full data, and which cells beat random / stay within tolerance (paired over seeds, Holm-corrected)."""
    lines = []
    res = summary["results"]
    for c in summary.get("chosen", []):
        f, rule = c["fraction"], c["budget"]
        cells = [r for r in res if (r["fraction"], r["budget"]) == (f, rule)]
        beat = [f"{_label(r)} ({r['balance']})" for r in cells if r["beats_random"]]
        close = [f"{_label(r)} ({r['balance']})" for r in cells if r["within_tolerance"]]
        decided = any(r["beats_random"] is not None or r["within_tolerance"] is not None for r in cells)
        rt = (c["random_test_error"] or {}).get("mean")
        line = (f"fraction {f:g}, budget {rule}: chosen on validation {c['subset']}, test error "
                f"{_fmt(c['test_error']['mean'])} vs random {_fmt(rt)} vs full data {_fmt(c['full_test_error']['mean'])}; ")
        if not decided:
            line += f"no verdict (fewer than {summary.get('min_seeds', 3)} paired seeds)."
        else:
            line += ((", ".join(beat) + " beat" + ("s" if len(beat) == 1 else "") + " random" if beat
                      else "no subset beats random") + " after Holm; within "
                     f"{summary['tolerance']} of full data: " + (", ".join(close) if close else "none") + ".")
        lines.append(line)
    return lines


def build_sections(study_dir: Path, assets: Path) -> list[Section]:
    study_dir, assets = Path(study_dir), Path(assets)
    summary = json.loads((study_dir / "summary.json").read_text())
    images = []
    for b in summary["balances"]:
        for rule in summary["budgets"]:
            images.append(plot_error_vs_fraction(summary, assets / f"subset_error_{b}_{rule}.png", b, rule))
    images.append(plot_cost(summary, assets / "subset_cost.png"))

    full = summary["full"]
    header = ["acquisition", "selection", "fraction", "size", "balance", "budget", "val error (mean)", "std",
              "seeds", "vs random (val)", "p (paired t)", "p Holm", "beats random", "p Holm within tol.",
              "within tolerance", "test error (chosen)", "search work", "break-even (examples)",
              "break-even (work)", "break-even (seconds)", "tie-filled", "classes < ½ share"]
    rows = []
    for r in summary["results"]:
        vr, vf = r["vs_random"] or {}, r["vs_full"] or {}
        be = r["break_even"]
        rows.append([r["acquisition"], r["selection"], r["fraction"], r["size"], r["balance"], r["budget"],
                     r["val_error"]["mean"], r["val_error"]["std"], r["val_error"]["n"],
                     None if vr.get("mean_diff") is None else f"{vr['mean_diff']:+.4f}", vr.get("p"), vr.get("p_holm"),
                     _yn(r["beats_random"]), vf.get("p_holm"), _yn(r["within_tolerance"]),
                     None if r["test_error"] is None else r["test_error"]["mean"],
                     int(r["search_cost"]["work"]),
                     *["never" if be[u] is None else round(be[u], 2) for u in ("examples", "work", "seconds")],
                     r["tie_filled"], len(r["class_warnings"])])
    fe, fv = full["test_error"], full["val_error"]
    cost = summary["cost"]
    intro = (f"Workload {summary['workload']}, schedule {summary['schedule']}, ensemble {summary['ensemble']} "
             f"(models x checkpoints), seeds {summary['seeds']}. Full data: validation error {_fmt(fv['mean'])}, "
             f"test error {_fmt(fe['mean'])} ± {_fmt(fe['std'])} (n={fe['n']}). Search cost: "
             f"{cost['search_total']['examples']} examples, {cost['search_total']['work']:.0f} forward-pass units "
             f"(FLOP-weighted), {cost['search_total']['seconds']:.1f} s; one full-data training: "
             f"{_fmt(full['cost']['examples'], 0)} examples, {_fmt(full['cost']['seconds'], 1)} s.")
    lines = verdict_lines(summary)
    notes = f"{summary['verdict_rule']} {summary['break_even_rule']} Units: {cost['units']}."
    html = (f"<p>{intro}</p><ul>" + "".join(f"<li>{line}</li>" for line in lines) + "</ul>"
            + table_html(header, rows) + f"<p><small>{notes}</small></p>")
    md = intro + "\n\n" + "\n".join(f"- {line}" for line in lines) + "\n\n" + table_md(header, rows) + \
        f"\n\n{notes}\n"
    sections = [Section("Subset search: validation verdicts, chosen test error and cost", html, md, images,
                        kind="subset",
                        caveats=[(f"{len(summary['seeds'])} seed(s) per configuration; verdicts need "
                                  f"{summary.get('min_seeds', 3)} paired seeds"),
                                 "seconds are wall-clock on a shared machine; examples and work are exact"])]

    # class composition and overlap
    comp_rows = [[name, s["size"], s.get("tie_filled"), " ".join(str(c) for c in s["composition"]["counts"]),
                  ", ".join(str(c) for c in s["composition"]["under_half"]) or "-"]
                 for name, s in sorted(summary["subsets"].items())]
    comp_header = ["subset", "size", "tie-filled", "class counts", "classes under half their share"]
    jac_rows = [[key, pair, v] for key, pairs in summary["jaccard"].items() for pair, v in pairs.items()]
    html2 = table_html(comp_header, comp_rows) + "<h4>Jaccard overlap between acquisitions</h4>" + \
        table_html(["fraction-balance", "pair", "Jaccard"], jac_rows)
    md2 = table_md(comp_header, comp_rows) + "\n\nJaccard overlap between acquisitions\n\n" + \
        table_md(["fraction-balance", "pair", "Jaccard"], jac_rows)
    imbalance = class_imbalance_caveat(summary)
    sections.append(Section("Subset composition and overlap", html2, md2, [], kind="subset",
                            caveats=[imbalance] if imbalance else []))
    return sections


def class_imbalance_caveat(summary: dict) -> str | None:
    """The subsets that hold a class under half its proportional share, said once (the per-class
    counts are in the composition table)."""
    bad = {name: s["composition"]["under_half"] for name, s in sorted(summary.get("subsets", {}).items())
           if s.get("composition", {}).get("under_half")}
    if not bad:
        return None
    return (f"Class imbalance: {len(bad)} of {len(summary.get('subsets', {}))} subsets hold a class under half its "
            f"proportional share (" + "; ".join(f"{n}: class {', '.join(str(c) for c in cs)}" for n, cs in bad.items())
            + "); their counts are in the composition table.")


def conclusion(study_dir: Path) -> str | None:
    """One short paragraph for the top of the page, from summary.json: per budget rule, the subset chosen on
    validation at each fraction with its test error against random, the verdicts, and where the search pays."""
    summary = json.loads((Path(study_dir) / "summary.json").read_text())
    full = summary["full"]["test_error"]["mean"]
    chosen = summary.get("chosen", [])
    if not chosen:
        return None
    parts = []
    full_work = summary["full"]["cost"].get("work")
    for rule in summary["budgets"]:
        cells = []
        for c in (c for c in chosen if c["budget"] == rule):
            rt = (c["random_test_error"] or {}).get("mean")
            verdict = "" if c["beats_random"] is None else (" (beats random)" if c["beats_random"]
                                                           else " (does not beat random)")
            search = c.get("search_cost", {}).get("work")
            cost = f", search {search / full_work:.2f} full trainings of work" if search and full_work else ""
            cells.append(f"{c['fraction']:g}: {c['subset']} {c['test_error']['mean']:.3f}"
                         + (f" vs random {rt:.3f}" if rt is not None else "") + verdict + cost)
        if cells:
            parts.append(f"{rule} budget — " + ", ".join(cells))
    pays = [r["break_even"]["work"] for r in summary["results"] if r["acquisition"] != "random"
            and r["break_even"].get("work") is not None]
    text = (f"{summary['workload']}, {summary['schedule']} search, {len(summary['seeds'])} seed(s); full data "
            f"{_fmt(full, 3)}. Best acquisition per subset fraction (chosen on validation; test error): "
            + "; ".join(parts) + ". ")
    text += (f"The search pays for itself after {min(pays):.1f} future trainings at best (FLOP-weighted work)."
             if pays else "The search never pays for itself here (no cheaper subset within tolerance of full data "
                          "by the validation verdict).")
    return text
