"""Report section of a gradient-noise-scale study (files only), compared with the batch-size
studies of the same workload and data options beside it."""

from __future__ import annotations

import json
from pathlib import Path

from feedwise.report.plots import legend_if_any, plt, save
from feedwise.report.sections import Section, table_html, table_md
from feedwise.studies.batch_size.report import _fmt, _kind, _positive, _read, _what

QUESTION = "What critical batch size does the gradient noise scale predict? (McCandlish et al. 2018)"


def build_sections(study_dir: Path, assets: Path) -> list[Section]:
    study_dir, assets = Path(study_dir), Path(assets)
    assets.mkdir(parents=True, exist_ok=True)
    return [_noise_section(study_dir, assets)]


LABELS = {"at_start": "step 0", "time_average": "time-average", "g2_weighted": "‖G‖²-weighted ratio of sums",
          "late_window": "late window", "near_target": "near the target", "at_target": "at the target step"}


def summaries(s: dict, key: str = "b_simple") -> dict | None:
    """The summaries of ``b_simple`` / ``b_noise``; a summary written before they existed held one
    number, the |G|²-weighted ratio of sums, and the last quarter."""
    d = s.get(key)
    if isinstance(d, dict) or d is None:
        return d
    return {"g2_weighted": d, "late_window": s.get("b_simple_last")}


def _pos(v):
    return v if isinstance(v, (int, float)) and v == v and v > 0 else float("nan")


def plot_noise(summary: dict, path: Path) -> Path:
    series = summary.get("series") or []
    fig, ax = plt.subplots(figsize=(6.4, 4.0))
    steps = [r["step"] for r in series]
    ax.plot(steps, [_pos(r.get("b_simple_point")) for r in series], ".", color="0.6",
            label="B_simple, one measurement")
    if any("b_simple_window" in r for r in series):
        ax.plot(steps, [_pos(r.get("b_simple_window")) for r in series], "-", color="tab:blue",
                label="B_simple, ratio of means over a window")
    if any("b_noise_point" in r for r in series):
        ax.plot(steps, [_pos(r.get("b_noise_point")) for r in series], "x-", color="tab:red", lw=0.8,
                label="B_noise = tr(HΣ)/GᵀHG")
    sm = summaries(summary) or {}
    for k, style in (("time_average", "--"), ("g2_weighted", ":")):
        if _pos(sm.get(k)) == _pos(sm.get(k)):
            ax.axhline(sm[k], ls=style, color="tab:green" if k == "time_average" else "tab:purple", lw=1,
                       label=f"{LABELS[k]} {sm[k]:.3g}")
    ts = (summary.get("train") or {}).get("steps_to_result")
    if ts is not None:
        ax.axvline(ts, color="0.3", lw=0.8, ls="-.", label="target reached")
    ax.set_yscale("log")
    ax.set_xlabel("training step")
    ax.set_ylabel("noise scale (examples)")
    ax.set_title(f"gradient noise scale, {summary.get('workload')} (B_small={summary.get('b_small')}, "
                 f"B_big={summary.get('b_big')})", fontsize=10)
    ax.grid(True, which="both", alpha=0.25)
    legend_if_any(ax, fontsize=7)
    return save(fig, path, dpi=90)


def _noise_section(study_dir: Path, assets: Path) -> Section:
    s = _read(study_dir / "summary.json")
    tr, comp = s["train"], s["compute"]
    simple, noise = summaries(s), summaries(s, "b_noise")
    lines = [(f"One run of {s['workload']} at batch size {tr['batch_size']} ({tr['optimizer']}, lr {tr['lr']}) "
              f"for {tr['steps_run']} steps ({tr['status']}); at step 0 and after every evaluation the gradient "
              f"was measured on {s['b_big']} examples cut in chunks of {s['b_small']}."),
             ("B_simple grows as training proceeds, so it is given as a series (plot) and several summaries; the "
              "|G|²-weighted ratio of sums leans on early, high-gradient training and is not a mean over the run."),
             (f"Compute: {comp['examples_total']:,} examples ({comp['examples_gradient']:,} of them for the "
              f"gradient measurements, {comp.get('examples_hessian') or 0:,} for Hessian-vector products).")]
    header = ["summary", "B_simple = tr(Σ)/‖G‖²"] + (["B_noise = tr(HΣ)/GᵀHG"] if noise else [])
    rows = [[LABELS[k], (simple or {}).get(k)] + ([noise.get(k)] if noise else [])
            for k in LABELS if (simple or {}).get(k) is not None or (noise or {}).get(k) is not None]
    compare = []
    mine = _what(study_dir)
    for p in sorted(q for q in study_dir.parent.iterdir() if q.is_dir()):
        try:
            if _kind(p) != "batch-size" or _what(p) != mine or not (p / "summary.json").exists():
                continue  # only batch-size studies of the same workload and data options
            b = _read(p / "summary.json")
            k = _positive((b.get("knee") or {}).get("b_crit"))
            spent = (b.get("pruning") or {}).get("examples_processed")
            ratios = [(_positive((simple or {}).get(q)) / k) if k and _positive((simple or {}).get(q)) else None
                      for q in ("time_average", "g2_weighted", "near_target")]
            bn = _positive((noise or {}).get("time_average"))
            compare.append([p.name, b.get("optimizer"), k, *ratios, (bn / k) if bn and k else None,
                            comp["examples_total"] / spent if _positive(spent) else None])
        except (OSError, json.JSONDecodeError, AttributeError, TypeError):
            lines.append(f"Batch-size study {p.name} could not be read: left out of the comparison.")
    cheader = ["batch-size study", "optimizer", "measured knee B_crit", "time-average / knee",
               "‖G‖²-weighted / knee", "near target / knee", "B_noise time-average / knee", "compute / sweep"]
    md = "\n\n".join(lines) + "\n\n" + table_md(header, rows)
    html = "".join(f"<p>{x}</p>" for x in lines) + table_html(header, rows)
    if compare:
        md += "\n\n" + table_md(cheader, compare)
        html += table_html(cheader, compare)
    img = plot_noise(s, assets / f"{study_dir.name}_noise.png")
    return Section(title=f"Gradient noise scale: {s['workload']}", html=html, markdown=md, images=[img],
                   kind="noise-scale",
                   caveats=[("B_simple assumes an optimally tuned SGD-like optimizer and grows as the loss falls; "
                             "one short run with default hyperparameters. Which summary, if any, tracks a measured "
                             "knee is measured in benchmarks/noise_scale_knees.py.")])


def conclusion(study_dir: Path) -> str | None:
    """One short paragraph for the top of the page, from summary.json."""
    s = _read(Path(study_dir) / "summary.json")
    sm = summaries(s) or {}
    if _positive(sm.get("time_average")) is None and _positive(sm.get("g2_weighted")) is None:
        return None
    parts = [f"{LABELS[k]} {_fmt(sm.get(k), 3)}" for k in ("at_start", "time_average", "g2_weighted", "at_target")
             if sm.get(k) is not None]
    return (f"{s.get('workload')}: the gradient noise scale B_simple of one "
            f"{(s.get('train') or {}).get('steps_run')}-step run: " + ", ".join(parts) + ".")
