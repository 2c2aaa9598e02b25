"""Report sections of an `emphasis` study: test error per method (final model and best-validation
checkpoint) with paired tests and Holm's correction, curves, and whether flipped labels get
emphasised. Reads ``summary.json`` and ``study.json`` only."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from feedwise.report.plots import figure, save
from feedwise.report.sections import Section, table_html, table_md
from feedwise.results import StudyDir, read_json
from feedwise.studies.emphasis.summary import primary_test_text

QUESTION = 'Does emphasising uncertain examples beat uniform sampling? (Active Bias, Chang et al. 2017)'


def _f(v, d=4):
    return None if v is None else round(float(v), d)


def _pct(v):
    return None if v is None else f"{v * 100:+.1f}%"


def _p(v):
    return None if v is None else float(f"{v:.3g}")


def _section(title: str, html: str, md: str, images=(), caveats=()) -> Section:
    return Section(title=title, html=html, markdown=md, images=list(images), kind="emphasis",
                   caveats=list(caveats))


def build_sections(study_dir: Path, assets: Path) -> list[Section]:
    study = StudyDir(study_dir)
    s = study.read_summary()
    meta = read_json(study.study_path) if study.study_path.exists() else {}
    assets = Path(assets)
    tag = f"emphasis-{Path(study_dir).name}"
    methods = list(s.get("methods", {}))
    where = (f"{s.get('workload')}, label noise {s.get('label_noise')}, {s.get('seeds')} paired seeds, "
             f"{s.get('steps')} steps at batch {s.get('batch_size')}, lr {s.get('lr')}")
    # the test's wording is rebuilt from the seed count (older summaries said "5 seeds" whatever it was)
    caveats = [f"{s.get('seeds')} seeds per method; {primary_test_text(int(s.get('seeds') or 0))}.",
               "Relative reduction = (uniform mean − method mean) / uniform mean of test error; positive is better."]
    if s.get("tuned"):
        caveats.append("Tuned per method on the validation split (seeds 1000+), then evaluated on seeds 0..K-1.")
    if meta.get("threads"):
        caveats.append(f"Torch threads: {meta['threads']}; device: {meta.get('device')}.")
    sections: list[Section] = []

    # ---- 1. test error table and bar chart
    header = ["method", "paper name", "final test err", "± std", "rel. vs uniform", "p (t)", "p Holm",
              "p Wilcoxon", "survives Holm", "best-ckpt test err", "± std", "rel. vs uniform", "p Holm",
              "survives Holm"]
    rows = []
    for m in methods:
        e = s["methods"][m]
        cf = s["comparisons"]["final"].get(m, {})
        cb = s["comparisons"]["best"].get(m, {})
        rows.append([m, e.get("label"), _f(e["final"]["test_error_mean"]), _f(e["final"]["test_error_std"]),
                     _pct(cf.get("relative_reduction")), _p(cf.get("p")), _p(cf.get("p_holm")),
                     _p(cf.get("wilcoxon_p")), "" if not cf else ("yes" if cf.get("significant_holm") else "no"),
                     _f(e["best"]["test_error_mean"]), _f(e["best"]["test_error_std"]),
                     _pct(cb.get("relative_reduction")), _p(cb.get("p_holm")),
                     "" if not cb else ("yes" if cb.get("significant_holm") else "no")])
    fig, ax = figure(7.5, 4.0)
    x = np.arange(len(methods))
    for k, (which, label) in enumerate((("final", "final model"), ("best", "best-validation checkpoint"))):
        mean = [s["methods"][m][which]["test_error_mean"] or 0 for m in methods]
        std = [s["methods"][m][which]["test_error_std"] or 0 for m in methods]
        ax.bar(x + (k - 0.5) * 0.38, mean, 0.38, yerr=std, capsize=3, label=label, alpha=0.85)
    # bars start at 0: a cut axis (it started at 0.12) makes small differences look large
    hi = max(((s["methods"][m][w]["test_error_mean"] or 0) + (s["methods"][m][w]["test_error_std"] or 0))
             for m in methods for w in ("final", "best")) if methods else 0
    ax.set_ylim(0, max(hi * 1.15, 1e-3))
    ax.set_xticks(x, methods)
    ax.set_ylabel("test error (mean ± std over seeds)")
    ax.set_title(f"{s.get('workload')}, label noise {s.get('label_noise')}")
    ax.legend(fontsize=8)
    bars = save(fig, assets / f"{tag}-test-error.png")
    lines = s.get("statement", [])
    html = (f"<p>{where}.</p>" + table_html(header, rows) +
            "<ul>" + "".join(f"<li>{line}</li>" for line in lines) + "</ul>")
    md = f"{where}.\n\n" + table_md(header, rows) + "\n\n" + "\n".join(f"- {line}" for line in lines)
    sections.append(_section(f"Emphasis vs uniform: {s.get('workload')}, noise {s.get('label_noise')}",
                             html, md, [bars], caveats))

    # ---- 2. curves
    curves = s.get("curves") or {}
    if curves:
        fig, ax = figure(7.0, 4.0)
        for m, c in curves.items():
            pts = [(st, v) for st, v in zip(c["step"], c["val_error_mean"]) if v is not None]
            if pts:
                ax.plot(*zip(*pts), label=m, lw=2.2 if m in ("uniform", "spv") else 1.1)
        ax.set_xlabel("step")
        ax.set_ylabel("validation error (mean over seeds)")
        ax.set_title("training curves")
        ax.legend(fontsize=7, ncol=3)
        png = save(fig, assets / f"{tag}-curves.png")
        sections.append(_section("Emphasis: validation error over steps",
                                 "<p>Mean over seeds of each evaluation's validation error.</p>",
                                 "Mean over seeds of each evaluation's validation error.", [png]))

    # ---- 3. flipped labels: emphasised? flagged?
    diag_rows, hist_methods = [], []
    for m in methods:
        d = s["methods"][m].get("diagnostics") or {}
        if d.get("std_hist"):
            hist_methods.append(m)
        if d.get("auroc_std") is not None or d.get("std_clean_mean") is not None:
            diag_rows.append([m, _f(d.get("std_clean_mean")), _f(d.get("std_noisy_mean")), _f(d.get("auroc_std"), 3),
                              _f(d.get("auroc_mean"), 3), _f(d.get("auroc_loss"), 3), _f(d.get("top_share_std"), 3),
                              _f(d.get("top_share_mean"), 3), _f(d.get("top_share_loss"), 3),
                              _f(d.get("emphasis_mass_noisy"), 3), _f(d.get("noisy_fraction"), 3)])
    images = []
    show = [m for m in ("uniform", "spv", "wpv") if m in hist_methods] or hist_methods[:2]
    if show:
        fig, axes = figure(7.0, 3.2)
        fig.clf()
        axs = fig.subplots(1, len(show), squeeze=False)[0]
        for ax, m in zip(axs, show):
            h = s["methods"][m]["diagnostics"]["std_hist"]
            b = np.asarray(h["bins"])
            for key, name, color in (("clean", "clean", "C0"), ("noisy", "flipped", "C3")):
                c = np.asarray(h[key], float)
                if c.sum() > 0:
                    ax.stairs(c / c.sum(), b, label=f"{name} ({int(c.sum())}, seeds pooled)", color=color,
                              fill=True, alpha=0.45)
            ax.set_title(f"{m}: std̂ at the end", fontsize=9)
            ax.set_xlabel("std̂")
            ax.legend(fontsize=7)
        axs[0].set_ylabel("share of examples")
        images.append(save(fig, assets / f"{tag}-std-clean-vs-noisy.png"))
    if diag_rows:
        header = ["method (its history)", "mean std̂ clean", "mean std̂ flipped", "AUROC std̂", "AUROC 1−p̄",
                  "AUROC final loss", "top-k share std̂", "top-k share 1−p̄", "top-k share loss",
                  "emphasis mass on flipped", "flipped fraction"]
        text = ("Each run's prediction history (uniform and scan record one too, without acting on it). AUROC: "
                "separating flipped-label examples from clean ones by the score (0.5 = chance; below 0.5 means "
                "the score is lower on flipped examples). Top-k share: flipped share among the k highest scores, "
                "k = number of flipped. Emphasis mass: share of the method's sampling probability / loss weight "
                "that goes to flipped examples at the end of training.")
        sections.append(_section("Emphasis: do flipped labels get emphasised, and can the history flag them?",
                                 f"<p>{text}</p>" + table_html(header, diag_rows),
                                 text + "\n\n" + table_md(header, diag_rows), images))
    sections += rho_sections(s, assets, tag)
    return sections


def _compute_curves(s: dict, assets: Path, tag: str) -> str:
    """Mean validation error against compute spent (forward-pass units; rho starts at its IL models' cost)."""
    fig, ax = figure(7.0, 4.0)
    for m, c in s["curves"].items():
        comp = (s["methods"].get(m) or {}).get("compute") or {}
        steps = s.get("matched_steps") if m == "uniform-matched" else s.get("steps")
        if not comp or not steps:
            continue
        offset = comp.get("il_units") or 0.0
        per_step = (comp["units"] - offset) / steps
        pts = [(offset + st * per_step, v) for st, v in zip(c["step"], c["val_error_mean"]) if v is not None]
        if pts:
            ax.plot(*zip(*pts), label=m, lw=2.2 if m in ("uniform", "rho") else 1.1)
    ax.set_xlabel("compute (forward-pass units: forward 1, forward + backward 3 per example)")
    ax.set_ylabel("validation error (mean over seeds)")
    ax.set_title("validation error against compute")
    ax.legend(fontsize=7)
    return save(fig, assets / f"{tag}-compute-curves.png")


def rho_sections(s: dict, assets: Path | None = None, tag: str = "emphasis") -> list[Section]:
    """RHO-LOSS against every other method (paired, Holm over rho's comparisons), and every method's compute."""
    rho = s.get("rho")
    if not rho:
        return []
    methods = s.get("methods", {})
    header = ["rho vs", "rho test err", "other test err", "rho's reduction", "p (t)", "p Holm", "survives Holm",
              "best-ckpt: rho's reduction", "p Holm", "survives Holm"]
    rows = []
    for m, c in (rho.get("final") or {}).items():
        b = (rho.get("best") or {}).get(m, {})
        rows.append([m, _f(methods["rho"]["final"]["test_error_mean"]), _f(methods[m]["final"]["test_error_mean"]),
                     _pct(c.get("relative_reduction")), _p(c.get("p")), _p(c.get("p_holm")),
                     "yes" if c.get("significant_holm") else "no", _pct(b.get("relative_reduction")),
                     _p(b.get("p_holm")), "yes" if b.get("significant_holm") else "no"])
    cost_header = ["method", "trained examples", "candidate forwards", "IL trained examples", "IL forwards",
                   "examples processed", "units (fwd=1, train=3)", "x uniform"]
    cost_rows = []
    for m, e in methods.items():
        c = e.get("compute") or {}
        if c:
            cost_rows.append([m, c.get("train_examples"), c.get("forward_examples"), c.get("il_train_examples"),
                              c.get("il_forward_examples"), c.get("examples_processed"), c.get("units"),
                              _f(c.get("units_vs_uniform"), 2)])
    d = methods["rho"].get("diagnostics") or {}
    opts = s.get("rho_options") or {}
    text = (f"RHO-LOSS (Mindermann et al. 2022): each step {opts.get('ratio')} of a uniform candidate batch, the "
            "highest training loss − irreducible loss. IL models: "
            + ("two, cross-fitted on a holdout split and its rest (every row scored by the model that did not "
               "train on it; the target trains on every row)" if opts.get("crossfit", True) else
               "one, trained on the holdout; the target trains on the rest only")
            + f", holdout {opts.get('holdout')}, {opts.get('il_steps') or 'half the budget'} steps each. "
            "Compute in forward-pass units: a forward pass of one example is 1, a trained example 3 "
            "(forward + backward); evaluation passes are not counted for any method."
            + (f" uniform-matched: uniform for {s.get('matched_steps')} steps, the compute rho spent." if
               s.get("matched_steps") else ""))
    if d.get("selected_noisy_share") is not None:
        text += (f" Flipped labels: {d.get('noisy_fraction', 0) * 100:.1f}% of the rows, "
                 f"{d['selected_noisy_share'] * 100:.1f}% of rho's trained examples; the IL loss flags them with "
                 f"AUROC {d.get('auroc_il', float('nan')):.3f}.")
    images = [_compute_curves(s, assets, tag)] if assets is not None and s.get("curves") else []
    html = f"<p>{text}</p>" + table_html(header, rows) + table_html(cost_header, cost_rows)
    md = text + "\n\n" + table_md(header, rows) + "\n\n" + table_md(cost_header, cost_rows)
    return [_section("RHO-LOSS: against uniform, Active Bias and uniform at its compute", html, md, images,
                     caveats=["Holm here runs over rho's own comparisons (one family), apart from the "
                              "methods-vs-uniform family above."])]


def conclusion(study_dir: Path) -> str | None:
    """One short paragraph for the top of the page, from summary.json: which methods changed the
    final model's test error vs uniform, significantly after Holm or not."""
    s = StudyDir(study_dir).read_summary()
    comps = (s.get("comparisons") or {}).get("final") or {}
    if not comps:
        return None
    sig, rest = [], []
    for m, c in comps.items():
        rr = c.get("relative_reduction")
        if rr is None:
            continue
        word = "lowered" if rr > 0 else "raised"
        if c.get("significant_holm"):
            sig.append(f"{m} {word} it by {abs(rr) * 100:.1f}% (Holm p {c['p_holm']:.2g})")
        else:
            rest.append(f"{m} {-rr * 100:+.1f}%")
    text = (f"{s.get('workload')}, label noise {s.get('label_noise')}, {s.get('seeds')} paired seeds, test error "
            f"of the final model against uniform sampling: ")
    text += ("; ".join(sig) + "." if sig else "no method differed significantly after Holm.")
    if rest:
        text += f" Not significant after Holm: {', '.join(rest)} (change in test error; negative is lower)."
    return text
