"""Report section of `feedwise flag`, from summary.json and flagged.csv only (never imports the engine)."""

from __future__ import annotations

import csv
import json
from pathlib import Path

from feedwise.report.plots import plt, save
from feedwise.report.sections import Section, table_html, table_md


def _scores_from_csv(path: Path) -> list[float]:
    if not path.exists():
        return []
    with open(path) as f:
        return [float(r["score"]) for r in csv.DictReader(f) if r.get("score") not in (None, "", "nan")]


def plot_auroc(evaluation: dict, path: Path, dpi: int = 80) -> Path:
    names = list(evaluation)
    vals = [evaluation[n]["auroc"] or 0.0 for n in names]
    fig, ax = plt.subplots(figsize=(5.5, 3.2), dpi=dpi)
    ax.bar(names, vals, color="tab:blue")
    ax.axhline(0.5, color="gray", ls="--", lw=1, label="chance")
    ax.set_ylim(0, 1)
    ax.set_ylabel("AUROC (flipped vs clean)")
    ax.legend(loc="lower right")
    for i, v in enumerate(vals):
        ax.text(i, v + 0.02, f"{v:.2f}", ha="center", fontsize=8)
    return save(fig, path)


def plot_score_hist(scores: list[float], name: str, path: Path, dpi: int = 80) -> Path:
    fig, ax = plt.subplots(figsize=(5.5, 3.2), dpi=dpi)
    ax.hist(scores, bins=40, color="tab:orange")
    ax.set_xlabel(f"{name} (higher: more likely mislabelled)")
    ax.set_ylabel("training examples")
    return save(fig, path)


def build_sections(study_dir: Path, assets: Path) -> list[Section]:
    study_dir, assets = Path(study_dir), Path(assets)
    sp = study_dir / "summary.json"
    if not sp.exists():
        return [Section("Mislabelled-example flags", "<p>No summary.json yet.</p>", "No summary.json yet.", kind="flag")]
    s = json.loads(sp.read_text())
    assets.mkdir(parents=True, exist_ok=True)
    intro = (f"Workload {s['workload']}: one model trained {s.get('steps_run')} steps with uniform feeding "
             f"(test error {s.get('test_error')}); {s['num_train']} training examples ranked by "
             f"**{s['score']}** — {s['score_description']} — in flagged.csv.")
    html, md, images, caveats = [f"<p>{intro.replace('**', '')}</p>"], [intro], [], []
    top = s.get("top", [])[:20]
    header = ["rank", "index", "given label", "predicted label", s["score"]]
    rows = [[r["rank"], r["index"], r["given_label"], r["predicted_label"], r["score"]] for r in top]
    html += ["<h4>Most likely mislabelled</h4>", table_html(header, rows)]
    md += ["#### Most likely mislabelled", table_md(header, rows)]
    ev = s.get("evaluation")
    if ev:
        k = str(s["num_flipped"])
        ks = [x for x in next(iter(ev.values()))["top_share"] if x != k][:3]
        header = ["score", "AUROC", f"flipped in top-{k}"] + [f"flipped in top-{x}" for x in ks]
        rows = [[n, e["auroc"], e["top_share"].get(k)] + [e["top_share"].get(x) for x in ks] for n, e in ev.items()]
        p = f"{s['num_flipped']} of {s['num_train']} labels were flipped ({s['label_noise']:.0%} label noise); " \
            f"chance AUROC is 0.5 and chance top-k share {s['num_flipped'] / s['num_train']:.3f}. " \
            f"Best score by AUROC: {s.get('best_score_by_auroc')}."
        html += ["<h4>Flagging the injected flipped labels</h4>", f"<p>{p}</p>", table_html(header, rows)]
        md += ["#### Flagging the injected flipped labels", p, table_md(header, rows)]
        images.append(plot_auroc(ev, assets / "flag_auroc.png"))
        caveats.append("AUROCs come from one training run (one seed); ensemble scores (entropy, BALD, variation "
                       "ratio) ignore the given label.")
    else:
        caveats.append("No label noise was injected, so how well the ranking finds wrong labels is not measured here; "
                       "inspect the top of flagged.csv by hand.")
        sc = _scores_from_csv(study_dir / "flagged.csv")
        if sc:
            images.append(plot_score_hist(sc, s["score"], assets / "flag_scores.png"))
    return [Section("Mislabelled-example flags", "\n".join(html), "\n\n".join(md), images, kind="flag",
                    caveats=caveats)]
