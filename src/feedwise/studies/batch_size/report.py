"""Report sections of the batch-size study (files only).

``build_sections(study_dir, assets)`` for one ``batch-size`` or ``noise-scale`` folder;
``build_overlay(study_dirs, assets)`` to put several batch-size folders (one per optimizer,
say) on the same axes. Reads ``study.json``, ``summary.json`` and ``trials/`` only; never
imports the engine.
"""

from __future__ import annotations

import csv
import json
import math
from pathlib import Path

from feedwise.report.plots import legend_if_any, plt, save
from feedwise.report.sections import Section, table_html, table_md
from feedwise.studies.batch_size import scaling

QUESTION = 'How many steps does each batch size need to reach the target validation error, and where does scaling stop paying? (Shallue et al. 2018)'

REGIME_COLORS = {"perfect scaling": "tab:green", "diminishing returns": "tab:orange",
                 "maximal data parallelism": "tab:red", "single point": "tab:gray", "unreached": "tab:gray"}


def _read(path: Path):
    with open(path) as f:
        return json.load(f)


def _kind(study_dir: Path) -> str:
    return _read(study_dir / "study.json").get("kind", "")


def _label(summary: dict, study_dir: Path) -> str:
    return f"{summary.get('optimizer', '?')} ({study_dir.name})"


def _trial_points(study_dir: Path, target: float) -> list[tuple[int, int]]:
    """(batch size, first step below target) of every trial that reached it."""
    pts = []
    base = study_dir / "trials"
    if not base.is_dir():
        return pts
    for t in sorted(base.iterdir()):
        try:
            rec = _read(t / "trial.json")
            with open(t / "measurements.csv", newline="") as f:
                for row in csv.DictReader(f):
                    v = row.get("val_error")
                    if v not in (None, "", "nan") and float(v) < target:
                        pts.append((int(rec["batch_size"]), int(row["step"])))
                        break
        except (OSError, KeyError, ValueError, json.JSONDecodeError):
            continue
    return pts


def _what(study_dir: Path) -> tuple[str | None, dict]:
    """(workload, data options) a study was run on, from its study.json: two studies can only be
    compared when both match (a --label-noise 0.5 study says nothing about a clean one)."""
    cfg = _read(study_dir / "study.json").get("config") or {}
    return cfg.get("workload"), dict(cfg.get("data") or {})


def _positive(v) -> float | None:
    """``v`` as a finite positive number, or None."""
    if isinstance(v, bool) or not isinstance(v, (int, float)):
        return None
    return float(v) if math.isfinite(v) and v > 0 else None


def find_noise_scale(study_dir: Path, workload: str | None = None) -> tuple[tuple[Path, dict] | None, list[str]]:
    """The noise-scale study that belongs to this batch-size study: ``<dir>/noise_scale`` or a sibling
    folder run on the same workload with the same data options (label noise, sizes, seeds, files).

    Returns ``(match or None, notes)``: a matching study whose prediction cannot be plotted (no
    summary yet, no finite positive B_simple) is skipped with a note, never a crash."""
    study_dir = Path(study_dir)
    try:
        mine = _what(study_dir)
    except (OSError, json.JSONDecodeError):
        return None, []
    if workload is not None and mine[0] is None:
        mine = (workload, mine[1])
    notes: list[str] = []
    cands = [study_dir / "noise_scale"] + sorted(p for p in study_dir.parent.iterdir() if p.is_dir())
    for c in cands:
        try:
            if c == study_dir or _kind(c) != "noise-scale" or _what(c) != mine:
                continue
        except (OSError, json.JSONDecodeError, AttributeError):
            continue
        try:
            s = _read(c / "summary.json")
        except (OSError, json.JSONDecodeError):
            notes.append(f"Noise-scale study {c.name} (same workload and data) has no readable summary.json yet: "
                         f"not used.")
            continue
        if not isinstance(s, dict) or _positive(s.get("predicted_critical_batch")) is None:
            got = s.get("predicted_critical_batch") if isinstance(s, dict) else None
            notes.append(f"Noise-scale study {c.name} (same workload and data) has no usable prediction "
                         f"(predicted_critical_batch = {got!r}): not plotted.")
            continue
        return (c, s), notes
    return None, notes


def _or_none(v):
    """A "largest B" cell: the batch size, or "none" when no batch size qualifies."""
    return "none" if v is None else v


def _fmt(v, nd=4):
    if v is None:
        return "null"
    if isinstance(v, float):
        if math.isinf(v):
            return "inf"
        return f"{v:.{nd}g}"
    return str(v)


# ---------------------------------------------------------------------------------- plots
def plot_steps(curves: list[tuple[str, dict, list]], path: Path, noise: float | None = None,
               title: str = "") -> Path:
    """Steps-to-result vs batch size (log-log) with perfect-scaling lines, knee fits, trials."""
    fig, ax = plt.subplots(figsize=(6.4, 4.6))
    colors = plt.rcParams["axes.prop_cycle"].by_key()["color"]
    for i, (label, summary, trial_pts) in enumerate(curves):
        c = colors[i % len(colors)]
        rows = [e for e in summary["batch_sizes"] if e["steps_to_result"] is not None]
        if trial_pts and len(curves) == 1:
            ax.scatter([b for b, _ in trial_pts], [s for _, s in trial_pts], s=10, color="0.75", zorder=1,
                       label="each trial that reached the target")
        if not rows:
            continue
        bs = [e["batch_size"] for e in rows]
        st = [e["steps_to_result"] for e in rows]
        ax.plot(bs, st, "-", color=c, zorder=2, label=f"{label}: best over trials")
        ci = [(e["batch_size"], e["steps_to_result"], e.get("steps_to_result_interval")) for e in rows]
        ci = [(b, v, iv) for b, v, iv in ci if iv and iv[0] is not None]
        if ci:   # the bootstrap interval; an open upper end (unreached in >5% of resamples) drawn as an arrow
            top = max(v for _, v, _ in ci) * 2
            ax.errorbar([b for b, _, _ in ci], [v for _, v, _ in ci],
                        yerr=[[max(0.0, v - iv[0]) for _, v, iv in ci],
                              [max(0.0, (iv[1] if iv[1] is not None else top) - v) for _, v, iv in ci]],
                        fmt="none", ecolor=c, elinewidth=1, capsize=3, alpha=0.7, zorder=2,
                        lolims=[iv[1] is None for _, _, iv in ci],
                        label=f"{label}: {100 * (summary.get('bootstrap') or {}).get('level', 0.9):.0f}% bootstrap "
                              f"interval")
        for e in rows:
            ax.scatter([e["batch_size"]], [e["steps_to_result"]], s=40, zorder=3, edgecolor=c,
                       color=REGIME_COLORS.get(e.get("regime"), c) if len(curves) == 1 else c)
        allb = [e["batch_size"] for e in summary["batch_sizes"]]
        ax.plot(allb, [st[0] * bs[0] / b for b in allb], ":", color=c, zorder=1,
                label=f"{label}: perfect scaling from B={bs[0]}")
        k = summary.get("knee") or {}
        if k.get("b_crit") not in (None, 0) and k.get("s_min") and math.isfinite(k["b_crit"]):
            grid = [allb[0] * (allb[-1] / allb[0]) ** (j / 60) for j in range(61)]
            ax.plot(grid, [k["s_min"] * (1 + k["b_crit"] / b) for b in grid], "--", color=c, alpha=0.6, zorder=1,
                    label=f"{label}: fit S_min(1+B_crit/B)")
            ax.axvline(k["b_crit"], color=c, alpha=0.3, lw=1,
                       label=f"{label}: knee B_crit={k['b_crit']:.3g} (steps = 2 S_min)")
    if _positive(noise) is not None:
        ax.axvline(noise, color="k", ls="-.", lw=1.2, label=f"noise-scale prediction B_simple={noise:.3g}")
    if len(curves) == 1:
        for name, col in REGIME_COLORS.items():
            if name in ("perfect scaling", "diminishing returns", "maximal data parallelism"):
                ax.scatter([], [], color=col, s=40, label=name)
    return _finish_log_plot(fig, ax, path, "steps to reach the target", title, "no batch size reached the target")


def _finish_log_plot(fig, ax, path: Path, ylabel: str, title: str, note: str) -> Path:
    """Log-log axes over batch size (or ``note`` when nothing was plotted), labels, grid, legend, save."""
    _log_axes_or_note(ax, note)
    ax.set_xlabel("batch size")
    ax.set_ylabel(ylabel)
    ax.set_title(title, fontsize=10)
    ax.grid(True, which="both", alpha=0.25)
    legend_if_any(ax, fontsize=7)
    return save(fig, path, dpi=90)


def _log_axes_or_note(ax, note: str) -> None:
    """Log-log axes when something positive was plotted; otherwise a note (a log axis of
    nothing cannot be drawn)."""
    has_data = any(len(line.get_xdata()) for line in ax.get_lines()) or any(
        len(c.get_offsets()) for c in ax.collections)
    if has_data:
        ax.set_xscale("log", base=2)
        ax.set_yscale("log")
    else:
        ax.text(0.5, 0.5, note, ha="center", va="center", transform=ax.transAxes)


def plot_lr(curves: list[tuple[str, dict]], path: Path, title: str = "") -> Path:
    """Best lr and effective lr vs batch size with linear and square-root references."""
    fig, ax = plt.subplots(figsize=(6.4, 4.6))
    colors = plt.rcParams["axes.prop_cycle"].by_key()["color"]
    anchor = None
    for i, (label, summary) in enumerate(curves):
        c = colors[i % len(colors)]
        rows = [e for e in summary["batch_sizes"] if e.get("best_lr") is not None]
        if not rows:
            continue
        bs = [e["batch_size"] for e in rows]
        ax.plot(bs, [e["best_effective_lr"] for e in rows], "o-", color=c, label=f"{label}: effective lr lr/(1-m)")
        if summary.get("optimizer") in ("momentum", "nesterov"):
            ax.plot(bs, [e["best_lr"] for e in rows], "s--", color=c, alpha=0.6, label=f"{label}: lr")
        if anchor is None:
            anchor = (bs[0], rows[0]["best_effective_lr"], summary["batch_sizes"][-1]["batch_size"])
    if anchor:
        b0, l0, bmax = anchor
        grid = [b0 * (bmax / b0) ** (j / 40) for j in range(41)]
        ax.plot(grid, [l0 * b / b0 for b in grid], color="0.5", lw=1, label="linear scaling (lr ∝ B)")
        ax.plot(grid, [l0 * (b / b0) ** 0.5 for b in grid], color="0.5", lw=1, ls="--", label="square-root (lr ∝ √B)")
    return _finish_log_plot(fig, ax, path, "best learning rate", title,
                            "no batch size reached the target: no best learning rate")


def has_time(summary: dict) -> bool:
    """Whether the summary carries measured seconds per step (studies since --data-parallel)."""
    return any(e.get("s_per_step") is not None for e in summary.get("batch_sizes", []))


def world_size(summary: dict) -> int:
    return int(summary.get("world_size") or 1)


def plot_time(curves: list[tuple[str, dict]], path: Path, title: str = "") -> Path:
    """Wall-clock panel: measured seconds per step (left) and time to result (right) vs batch
    size, one curve per study (world size). Lines: steps-to-result x median seconds per step;
    crosses: the best trial's own training seconds up to its steps-to-result."""
    fig, (a1, a2) = plt.subplots(1, 2, figsize=(10.5, 4.4))
    colors = plt.rcParams["axes.prop_cycle"].by_key()["color"]
    for i, (label, summary) in enumerate(curves):
        c = colors[i % len(colors)]
        sp = [e for e in summary["batch_sizes"] if e.get("s_per_step") is not None]
        if sp:
            a1.plot([e["batch_size"] for e in sp], [e["s_per_step"] for e in sp], "o-", color=c, label=label)
        tm = [e for e in summary["batch_sizes"] if e.get("time_to_result_model_s") is not None]
        if tm:
            a2.plot([e["batch_size"] for e in tm], [e["time_to_result_model_s"] for e in tm], "o-", color=c,
                    label=f"{label}: steps to result x s/step")
        me = [e for e in summary["batch_sizes"] if e.get("time_to_result_s") is not None]
        if me:
            a2.scatter([e["batch_size"] for e in me], [e["time_to_result_s"] for e in me], marker="x", s=45,
                       color=c, zorder=3, label=f"{label}: best trial, measured")
    _log_axes_or_note(a1, "no seconds per step recorded")
    _log_axes_or_note(a2, "no batch size reached the target")
    a1.set_xlabel("batch size")
    a1.set_ylabel("training seconds per step (median over trials)")
    a2.set_xlabel("batch size")
    a2.set_ylabel("time to reach the target (s, training only)")
    a1.set_title("seconds per step", fontsize=10)
    a2.set_title(title or "time to result", fontsize=10)
    for ax in (a1, a2):
        ax.grid(True, which="both", alpha=0.25)
        legend_if_any(ax, fontsize=7)
    return save(fig, path, dpi=90)


def _time_table(sums: list[tuple[str, dict]]) -> tuple[list, list]:
    header = ["study", "world size", "batch size", "steps to result", "s per step", "time to result (model) s",
              "time to result (best trial) s"]
    rows = [[label, world_size(s), e["batch_size"], e["steps_to_result"], e.get("s_per_step"),
             e.get("time_to_result_model_s"), e.get("time_to_result_s")]
            for label, s in sums for e in s["batch_sizes"]]
    return header, rows


TIME_CAVEAT = ("Wall-clock numbers are training time only (evaluations excluded), measured on a shared machine: "
               "seconds per step are medians over each batch size's trials, and the best trial's own time is "
               "one noisy sample.")


# ---------------------------------------------------------------------------------- sections
def build_sections(study_dir: Path, assets: Path) -> list[Section]:
    study_dir, assets = Path(study_dir), Path(assets)
    assets.mkdir(parents=True, exist_ok=True)
    return [_batch_section(study_dir, assets)]


def summary_regimes(summary: dict) -> dict:
    """The regimes of a batch-size summary, recomputed from its curve by :func:`scaling.regimes`:
    the table's labels, the sentence and the "largest perfect-scaling B" come from one
    calculation, also for a summary.json written by an older version."""
    curve = {int(b): (None if v is None else int(v)) for b, v in (summary.get("curve") or {}).items()}
    if not curve:
        curve = {int(e["batch_size"]): e.get("steps_to_result") for e in summary.get("batch_sizes", [])}
    return scaling.regimes(curve)


def _interval(ci) -> str | None:
    """``[low, high]`` as text; an open (None) end is unbounded: 'unreached' / 'inf'."""
    if not ci:
        return None
    return f"[{_fmt(ci[0]) if ci[0] is not None else '-'}, {_fmt(ci[1]) if ci[1] is not None else 'inf'}]"


def _batch_section(study_dir: Path, assets: Path) -> Section:
    s = _read(study_dir / "summary.json")
    reg = summary_regimes(s)
    s = {**s, "regimes": reg,
         "batch_sizes": [{**e, "regime": reg["by_batch_size"].get(int(e["batch_size"]))} for e in s["batch_sizes"]]}
    tag = study_dir.name
    boot = s.get("bootstrap") or {}
    level = f"{100 * boot.get('level', 0.9):.0f}%"
    header = ["batch size", "steps to result", f"{level} interval", "examples to result", "regime",
              "regime (interval rule)", "best lr", "momentum", "effective lr", "trials by status", "examples processed"]
    rows = [[e["batch_size"], e["steps_to_result"], _interval(e.get("steps_to_result_interval")),
             e["examples_to_result"], e["regime"], e.get("regime_bootstrap"), e["best_lr"],
             e["best_momentum"], e["best_effective_lr"],
             ", ".join(f"{k} {v}" for k, v in sorted(e["trials_by_status"].items())), e["examples_processed"]]
            for e in s["batch_sizes"]]
    knee, pr = s["knee"], s["pruning"]
    ns, ns_notes = find_noise_scale(study_dir, s["workload"])
    noise = ns[1]["predicted_critical_batch"] if ns else None
    lines = [
        f"Workload **{s['workload']}**, optimizer **{s['optimizer']}**, target validation error < {s['target']}; "
        f"steps to result = the minimum over a batch size's trials of the first evaluation step below the target.",
        f"Regimes ({reg['rule']}): {scaling.regime_sentence(reg)}",
        f"Knee (fit of S(B) = S_min (1 + B_crit/B)): B_crit = {_fmt(knee.get('b_crit'))}"
        + (f" ({level} bootstrap interval {_interval(knee['b_crit_interval'])})" if knee.get("b_crit_interval")
           else "") + f", S_min = {_fmt(knee.get('s_min'))} steps.",
    ]
    if boot:
        lines.append(f"Intervals ({level}, {boot.get('resamples')} resamples): {boot.get('rule')}")
    for b, d in ((s.get("seeds") or {}).get("by_batch_size") or {}).items():
        lines.append(f"Seeds, B = {b}: the best hyperparameters trained again with {d['of']} fresh seeds reached the "
                     f"target in {d['reached']} of them, steps to result median {_fmt(d['median'])}, range "
                     f"[{_fmt(d['min'])}, {_fmt(d['max'])}].")
    if pr.get("fraction_saved") is not None:
        lines.append(f"Compute: {pr['examples_processed']:,} examples processed, against {pr['examples_unpruned']:,} "
                     f"for the unpruned protocol (every trial its full budget): early stopping at the target plus "
                     f"exact pruning saved {100 * pr['fraction_saved']:.1f}%."
                     + (f" No order of these trials could process less than {100 * pr['floor_fraction']:.1f}% of "
                        f"the unpruned protocol with exact pruning (each batch size's best trial runs to its steps to "
                        f"result, every other trial to one evaluation before it): only a step budget larger relative "
                        f"to the steps to result, or pruning that is not exact, goes lower."
                        if pr.get("floor_fraction") is not None else ""))
    if ns:
        ratio = None
        if knee.get("b_crit") and noise and math.isfinite(knee["b_crit"]):
            ratio = noise / knee["b_crit"]
        rule = ns[1].get("prediction_rule") or "the summary's predicted_critical_batch"
        lines.append(f"Gradient noise scale ({ns[0].name}): B_simple = {_fmt(noise)} ({rule}); measured knee "
                     f"B_crit = {_fmt(knee.get('b_crit'))}" +
                     (f" (prediction / measured = {ratio:.2f})." if ratio else "."))
    lines += ns_notes
    images = []
    p1 = plot_steps([(s["optimizer"], s, _trial_points(study_dir, s["target"]))], assets / f"{tag}_steps.png",
                    noise=noise, title=f"{s['workload']} {s['optimizer']}: steps to val error < {s['target']}")
    p2 = plot_lr([(s["optimizer"], s)], assets / f"{tag}_lr.png", title=f"{s['workload']}: best learning rate")
    images += [p1, p2]
    time_md = time_html = ""
    if has_time(s):
        n = world_size(s)
        images.append(plot_time([(f"{n} worker{'s' if n > 1 else ''}", s)], assets / f"{tag}_time.png",
                                title=f"{s['workload']}: time to val error < {s['target']}"))
        th, tr = _time_table([(tag, s)])
        what = (f"Wall clock: {n} synchronous data-parallel workers (DDP)" if n > 1 else "Wall clock: one process")
        text = (f"{what}; time to result = steps to result x measured seconds per step (median over the batch "
                f"size's trials), next to the best trial's own measured training time.")
        time_md = "\n\n" + text + "\n\n" + table_md(th, tr)
        time_html = f"<p>{text}</p>" + table_html(th, tr)
    trials = {e["batch_size"]: e["trials"] for e in s["batch_sizes"]}
    caveats = [f"{min(trials.values(), default=0)}-{max(trials.values(), default=0)} quasi-random trials per batch "
               f"size, one seed each: the best-of-trials curve is itself noisy, and small trial counts bias "
               f"steps-to-result upwards where good metaparameters are rare.",
               "Steps to result are resolved only to the evaluation period of each batch size "
               "(see eval_every in the table of the summary).",
               "Metaparameters are points of one scrambled Sobol sequence per batch size (Optuna QMCSampler "
               "with the search space given up front)."]
    if any(e["steps_to_result"] is None for e in s["batch_sizes"]):
        caveats.append("Some batch sizes never reached the target within their budget (null).")
    if time_md:
        caveats.append(TIME_CAVEAT)
    md = "\n\n".join(lines) + "\n\n" + table_md(header, rows) + time_md
    html = "".join(f"<p>{_md_bold(x)}</p>" for x in lines) + table_html(header, rows) + time_html
    return Section(title=f"Batch-size scaling: {s['workload']}, {s['optimizer']}", html=html, markdown=md,
                   images=images, kind="batch-size", caveats=caveats)


def _md_bold(text: str) -> str:
    parts = text.split("**")
    return "".join(f"<b>{p}</b>" if i % 2 else p for i, p in enumerate(parts))


def build_overlay(study_dirs: list[Path], assets: Path) -> list[Section]:
    """Several batch-size folders (e.g. one per optimizer) on the same axes."""
    assets = Path(assets)
    assets.mkdir(parents=True, exist_ok=True)
    dirs = [Path(d) for d in study_dirs if _kind(Path(d)) == "batch-size" and (Path(d) / "summary.json").exists()]
    if not dirs:
        return []
    sums = [(d, _read(d / "summary.json")) for d in dirs]
    curves = [(_label(s, d), s, []) for d, s in sums]
    ns, _ = find_noise_scale(dirs[0], sums[0][1]["workload"])
    noise = ns[1]["predicted_critical_batch"] if ns else None
    workload = sums[0][1]["workload"]
    p1 = plot_steps(curves, assets / "overlay_steps.png", noise=noise, title=f"{workload}: steps to result by optimizer")
    p2 = plot_lr([(c[0], c[1]) for c in curves], assets / "overlay_lr.png", title=f"{workload}: best learning rates")
    header = ["study", "optimizer", "largest perfect-scaling B", "largest useful B", "knee B_crit", "S_min",
              "examples saved"]
    regs = [summary_regimes(s) for _, s in sums]
    rows = [[d.name, s["optimizer"], _or_none(r["largest_perfect"]), _or_none(r["largest_useful"]),
             s["knee"].get("b_crit"), s["knee"].get("s_min"), s["pruning"].get("fraction_saved")]
            for (d, s), r in zip(sums, regs)]
    bs_all = sorted({e["batch_size"] for _, s in sums for e in s["batch_sizes"]})
    header2 = ["batch size"] + [f"{s['optimizer']} steps" for _, s in sums]
    rows2 = [[b] + [next((e["steps_to_result"] for e in s["batch_sizes"] if e["batch_size"] == b), None)
                    for _, s in sums] for b in bs_all]
    text = ("Each optimizer was tuned separately per batch size; the larger the useful batch size and the knee, "
            "the further that optimizer scales.")
    md = text + "\n\n" + table_md(header, rows) + "\n\n" + table_md(header2, rows2)
    html = f"<p>{text}</p>" + table_html(header, rows) + table_html(header2, rows2)
    images = [p1, p2]
    caveats = ["Optimizers with more metaparameters get the same number of trials per batch size, "
               "so they are tuned less densely."]
    timed = [(f"{d.name} (N={world_size(s)})", s) for d, s in sums if has_time(s)]
    if timed:
        images.append(plot_time(timed, assets / "overlay_time.png", title=f"{workload}: time to result by world size"))
        th, tr = _time_table(timed)
        t2 = ("Wall clock per study (world size N = synchronous data-parallel workers): time to result = steps to "
              "result x measured seconds per step.")
        md += "\n\n" + t2 + "\n\n" + table_md(th, tr)
        html += f"<p>{t2}</p>" + table_html(th, tr)
        caveats.append(TIME_CAVEAT)
    return [Section(title=f"Batch-size scaling by optimizer: {workload}", html=html, markdown=md, images=images,
                    kind="batch-size", caveats=caveats)]


def conclusion(study_dir: Path) -> str | None:
    """One short paragraph for the top of the page, from summary.json (the regimes through the one
    definition of :func:`summary_regimes`)."""
    study_dir = Path(study_dir)
    s = _read(study_dir / "summary.json")
    reg = summary_regimes(s)
    reached = [(e["batch_size"], e["steps_to_result"]) for e in s["batch_sizes"] if e["steps_to_result"] is not None]
    if not reached:
        return f"{s['workload']}, {s['optimizer']}: no batch size reached the target validation error {s['target']}."
    text = (f"{s['workload']}, {s['optimizer']}: steps to reach validation error < {s['target']} went from "
            f"{reached[0][1]} at B = {reached[0][0]} to {reached[-1][1]} at B = {reached[-1][0]}; ")
    lp, lu = reg["largest_perfect"], reg["largest_useful"]
    if len(reached) < 2:
        text += "one batch size is not enough to see a regime"
    else:
        text += f"perfect scaling up to B = {lp}" if lp is not None else "no perfect scaling from the smallest batch size"
        if lu is not None and lu != lp:
            text += f", steps still falling faster than maximal data parallelism allows up to B = {lu}"
    k = _positive((s.get("knee") or {}).get("b_crit"))
    if k is not None:
        text += f"; fitted knee B_crit ≈ {k:.3g}"
    never = [e["batch_size"] for e in s["batch_sizes"] if e["steps_to_result"] is None]
    if never:
        text += f"; never reached at B = {', '.join(map(str, never))}"
    return text + "."
