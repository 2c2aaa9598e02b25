"""Report sections of the subset study, from summary.json only (never imports the engine)."""

from __future__ import annotations

import json
from pathlib import Path

from feedwise.report.plots import plt, save
from feedwise.report.sections import Section, table_html, table_md

QUESTION = 'Can an ensemble of checkpoints find a smaller training subset that trains as well, and is the search worth it? (Chitta et al. 2019)'

COLORS = {"entropy": "tab:blue", "bald": "tab:orange", "variation-ratio": "tab:green", "margin": "tab:purple",
          "random": "black", "history-variance": "tab:brown", "history-closeness": "tab:pink",
          "history-hard": "tab:olive"}


def plot_error_vs_fraction(summary: dict, path: Path, balance: str = "none", budget: str = "steps",
                           dpi: int = 90) -> Path:
    """Test error vs subset fraction per acquisition (mean ± std over seeds), with the full-data line."""
    fig, ax = plt.subplots(figsize=(5.5, 3.8), dpi=dpi)
    _error_axes(ax, summary, balance, budget)
    return save(fig, path)


def plot_error_grid(summary: dict, path: Path, dpi: int = 70) -> Path:
    """One panel per (balance, budget rule): test error vs fraction per acquisition, full-data line."""
    bals, rules = summary["balances"], summary["budgets"]
    fig, axes = plt.subplots(len(bals), len(rules), figsize=(5.0 * len(rules), 3.5 * len(bals)), dpi=dpi,
                             squeeze=False)
    for i, b in enumerate(bals):
        for j, rule in enumerate(rules):
            _error_axes(axes[i][j], summary, b, rule)
    return save(fig, path)


def _error_axes(ax, summary: dict, balance: str, budget: str) -> None:
    rows = [r for r in summary["results"] if r["balance"] == balance and r["budget"] == budget]
    for a in summary["acquisitions"]:
        rs = sorted((r for r in rows if r["acquisition"] == a and r["test_error"]["mean"] is not None),
                    key=lambda r: r["fraction"])
        if not rs:
            continue
        ax.errorbar([r["fraction"] for r in rs], [r["test_error"]["mean"] for r in rs],
                    yerr=[r["test_error"]["std"] or 0 for r in rs], marker="o", capsize=3, label=a,
                    color=COLORS.get(a), linestyle="--" if a == "random" else "-")
    full = summary["full"]["test_error"]
    if full["mean"] is not None:
        ax.axhline(full["mean"], color="gray", linewidth=1, label=f"full data ({full['mean']:.4f})")
        if full["std"]:
            ax.axhspan(full["mean"] - full["std"], full["mean"] + full["std"], color="gray", alpha=0.15)
    ax.set_xscale("log", base=2)
    fr = summary["fractions"]
    ax.set_xticks(fr)
    ax.set_xticklabels([f"{f:g}" for f in fr])
    ax.set_xlabel("subset fraction of the training pool")
    ax.set_ylabel("test error")
    ax.set_title(f"{summary['workload']}: {summary['schedule']}, ensemble {summary['ensemble']}, "
                 f"balance={balance}, budget={budget}", fontsize=8)
    ax.legend(fontsize=7)


def plot_cost(summary: dict, path: Path, dpi: int = 90) -> Path:
    """Cost bars (training examples): the search, one full-data training, one subset training per fraction/rule."""
    fig, ax = plt.subplots(figsize=(5.5, 3.5), dpi=dpi)
    labels, vals, colors = [], [], []
    search = summary["cost"]["search_total"]
    labels.append("search (all ensembles)")
    vals.append(search["examples"])
    colors.append("tab:red")
    full = summary["full"]["cost"]["examples"]
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
        vals.append(r["target_cost"]["examples"])
        colors.append("tab:blue" if r["budget"] == "epochs" else "tab:cyan")
    ax.barh(labels, [v / 1e6 for v in vals], color=colors)
    ax.set_xlabel("millions of examples (search: training + pool scored)", fontsize=8)
    ax.set_title(f"{summary['workload']}: cost per run", fontsize=9)
    ax.tick_params(axis="y", labelsize=7)
    return save(fig, path)


def _fmt(v, nd=4):
    return "-" if v is None else (f"{v:.{nd}f}" if isinstance(v, float) else str(v))


def verdict_lines(summary: dict) -> list[str]:
    """Plain statements per (fraction, balance, budget): which acquisitions beat random, how close to full data."""
    full = summary["full"]["test_error"]["mean"]
    tol = summary["tolerance"]
    lines = []
    keys = sorted({(r["fraction"], r["balance"], r["budget"]) for r in summary["results"]})
    for f, b, rule in keys:
        rows = [r for r in summary["results"] if (r["fraction"], r["balance"], r["budget"]) == (f, b, rule)]
        rnd = next((r for r in rows if r["acquisition"] == "random"), None)
        beat = [r["acquisition"] for r in rows if (r["vs_random"] or {}).get("beats_random")]
        close = [r["acquisition"] for r in rows if r["within_tolerance_of_full"]]
        rerr = None if rnd is None else rnd["test_error"]["mean"]
        lines.append(f"fraction {f:g}, balance {b}, budget {rule}: "
                     + (f"{', '.join(beat)} beat{'s' if len(beat) == 1 else ''} random ({_fmt(rerr)})" if beat
                        else f"no acquisition beats random ({_fmt(rerr)})")
                     + f"; within {tol} of full data ({_fmt(full)}): " + (", ".join(close) if close else "none") + ".")
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
    header = ["acquisition", "fraction", "size", "balance", "budget", "test error (mean)", "std", "seeds",
              "vs random", "p (Welch)", "gap to full", "target examples", "break-even (examples)",
              "break-even (seconds)", "tie-filled", "classes < ½ share"]
    rows = []
    for r in summary["results"]:
        vr = r["vs_random"] or {}
        rows.append([r["acquisition"], r["fraction"], r["size"], r["balance"], r["budget"],
                     r["test_error"]["mean"], r["test_error"]["std"], r["test_error"]["n"],
                     None if not vr else f"{vr['diff']:+.4f}", vr.get("p_value"), r["gap_to_full"],
                     int(r["target_cost"]["examples"]),
                     "never" if r["break_even"]["examples"] is None else round(r["break_even"]["examples"], 2),
                     "never" if r["break_even"]["seconds"] is None else round(r["break_even"]["seconds"], 2),
                     r["tie_filled"], len(r["class_warnings"])])
    fe = full["test_error"]
    cost = summary["cost"]
    intro = (f"Workload {summary['workload']}, schedule {summary['schedule']}, ensemble {summary['ensemble']} "
             f"(models x checkpoints), seeds {summary['seeds']}. Full-data test error "
             f"{_fmt(fe['mean'])} ± {_fmt(fe['std'])} (n={fe['n']}). Search cost: "
             f"{cost['search_total']['examples']} examples, {cost['search_total']['seconds']:.1f} s; "
             f"one full-data training: {_fmt(full['cost']['examples'], 0)} examples, "
             f"{_fmt(full['cost']['seconds'], 1)} s.")
    lines = verdict_lines(summary)
    html = (f"<p>{intro}</p><ul>" + "".join(f"<li>{line}</li>" for line in lines) + "</ul>"
            + table_html(header, rows) + f"<p><small>{summary['break_even_rule']}</small></p>")
    md = intro + "\n\n" + "\n".join(f"- {line}" for line in lines) + "\n\n" + table_md(header, rows) + \
        f"\n\n{summary['break_even_rule']}\n"
    sections = [Section("Subset search: test error and cost", html, md, images, kind="subset",
                        caveats=[f"{len(summary['seeds'])} seed(s) per configuration; differences within one std "
                                 f"are noise", "seconds are wall-clock on a shared machine; examples are exact"])]

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
    """One short paragraph for the top of the page, from summary.json: per budget rule, the best
    acquisition at each fraction against random, and where the search pays for itself."""
    summary = json.loads((Path(study_dir) / "summary.json").read_text())
    full = summary["full"]["test_error"]["mean"]
    res = [r for r in summary["results"] if r["test_error"]["mean"] is not None]
    if not res:
        return None
    bal = "none" if "none" in summary["balances"] else summary["balances"][0]
    parts = []
    for rule in summary["budgets"]:
        cells = []
        for f in sorted({r["fraction"] for r in res}):
            rows = [r for r in res if r["fraction"] == f and r["balance"] == bal and r["budget"] == rule]
            acq = [r for r in rows if r["acquisition"] != "random"]
            rnd = next((r for r in rows if r["acquisition"] == "random"), None)
            if not acq:
                continue
            best = min(acq, key=lambda r: r["test_error"]["mean"])
            cells.append(f"{f:g}: {best['acquisition']} {best['test_error']['mean']:.3f}"
                         + (f" vs random {rnd['test_error']['mean']:.3f}" if rnd else ""))
        if cells:
            parts.append(f"{rule} budget — " + ", ".join(cells))
    pays = [r["break_even"]["examples"] for r in res if r["acquisition"] != "random"
            and r["break_even"].get("examples") is not None]
    text = (f"{summary['workload']}, {summary['schedule']} search, {len(summary['seeds'])} seed(s); full data "
            f"{_fmt(full, 3)}. Best acquisition per subset fraction (balance {bal}, test error): " + "; ".join(parts) + ". ")
    text += (f"The search pays for itself after {min(pays):.1f} future trainings at best (in examples)."
             if pays else "The search never pays for itself here (no cheaper subset within tolerance of full data).")
    return text
