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


def plot_noise(summary: dict, path: Path) -> Path:
    series = summary.get("series") or []
    fig, ax = plt.subplots(figsize=(6.4, 4.0))
    steps = [r["step"] for r in series]
    pt = [r["b_simple_point"] if r["b_simple_point"] is not None and r["b_simple_point"] > 0 else float("nan")
          for r in series]
    run = [r["b_simple_running"] if r["b_simple_running"] is not None and r["b_simple_running"] > 0 else float("nan")
           for r in series]
    ax.plot(steps, pt, ".", color="0.6", label="one measurement tr(Σ)/|G|²")
    ax.plot(steps, run, "-", color="tab:blue", label="running ratio of means")
    ax.set_yscale("log")
    ax.set_xlabel("training step")
    ax.set_ylabel("B_simple")
    ax.set_title(f"gradient noise scale, {summary.get('workload')} (B_small={summary.get('b_small')}, "
                 f"B_big={summary.get('b_big')})", fontsize=10)
    ax.grid(True, which="both", alpha=0.25)
    legend_if_any(ax, fontsize=7)
    return save(fig, path, dpi=90)


def _noise_section(study_dir: Path, assets: Path) -> Section:
    s = _read(study_dir / "summary.json")
    tr, comp = s["train"], s["compute"]
    lines = [f"One run of {s['workload']} at batch size {tr['batch_size']} ({tr['optimizer']}, lr {tr['lr']}) "
             f"for {tr['steps_run']} steps ({tr['status']}); every few steps the gradient was measured on "
             f"{s['b_big']} examples cut in chunks of {s['b_small']}.",
             f"B_simple = tr(Σ)/|G|² = {_fmt(s['b_simple'])} (ratio of means over {s['measurements']} "
             f"measurements; last quarter: {_fmt(s['b_simple_last'])}). Predicted critical batch size: "
             f"{_fmt(s['predicted_critical_batch'])}.",
             f"Compute: {comp['examples_total']:,} examples ({comp['examples_gradient']:,} of them for the "
             f"gradient measurements)."]
    compare = []
    mine = _what(study_dir)
    pred = _positive(s.get("predicted_critical_batch"))
    for p in sorted(q for q in study_dir.parent.iterdir() if q.is_dir()):
        try:
            if _kind(p) != "batch-size" or _what(p) != mine or not (p / "summary.json").exists():
                continue  # only batch-size studies of the same workload and data options
            b = _read(p / "summary.json")
            k = _positive((b.get("knee") or {}).get("b_crit"))
            spent = (b.get("pruning") or {}).get("examples_processed")
            compare.append([p.name, b.get("optimizer"), k, (pred / k) if pred and k else None,
                            comp["examples_total"] / spent if _positive(spent) else None])
        except (OSError, json.JSONDecodeError, AttributeError, TypeError):
            lines.append(f"Batch-size study {p.name} could not be read: left out of the comparison.")
    header = ["batch-size study", "optimizer", "measured knee B_crit", "prediction / knee", "compute / sweep"]
    md = "\n\n".join(lines)
    html = "".join(f"<p>{x}</p>" for x in lines)
    if compare:
        md += "\n\n" + table_md(header, compare)
        html += table_html(header, compare)
    img = plot_noise(s, assets / f"{study_dir.name}_noise.png")
    return Section(title=f"Gradient noise scale: {s['workload']}", html=html, markdown=md, images=[img],
                   kind="noise-scale",
                   caveats=["B_simple assumes an optimally tuned SGD-like optimizer and grows as the loss falls; "
                            "one short run with default hyperparameters."])


def conclusion(study_dir: Path) -> str | None:
    """One short paragraph for the top of the page, from summary.json."""
    s = _read(Path(study_dir) / "summary.json")
    pred = _positive(s.get("predicted_critical_batch"))
    if pred is None:
        return None
    return (f"{s.get('workload')}: the gradient noise scale B_simple = {_fmt(s.get('b_simple'), 3)} of one "
            f"{(s.get('train') or {}).get('steps_run')}-step run predicts a critical batch size of about "
            f"{pred:.3g}.")
