"""Report section of `feedwise flag`, from summary.json and flagged.csv only (never imports the engine)."""

from __future__ import annotations

import csv
import json
from pathlib import Path

from feedwise.report.plots import plt, save
from feedwise.report.sections import Section, table_html, table_md

QUESTION = 'Which training examples are most likely mislabelled, and how well does each score find injected wrong labels?'


def _scores_from_csv(path: Path) -> list[float]:
    if not path.exists():
        return []
    with open(path) as f:
        return [float(r["score"]) for r in csv.DictReader(f) if r.get("score") not in (None, "", "nan")]


def _file_rows(path: Path, n: int) -> dict[int, int] | None:
    """rank -> row in the user's file, from flagged.csv's ``file_row`` column (None when absent)."""
    try:
        with open(path, newline="") as f:
            out = {}
            for r in csv.DictReader(f):
                if r.get("file_row") in (None, ""):
                    return None
                out[int(r["rank"])] = int(r["file_row"])
                if len(out) >= n:
                    break
            return out
    except (OSError, ValueError, KeyError):
        return None


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
    te = s.get("test_error")
    intro = (f"Workload {s['workload']}: one model trained {s.get('steps_run')} steps with uniform feeding "
             f"(test error {'n/a' if te is None else f'{te:.4f}'}); {s['num_train']} training examples ranked by "
             f"**{s['score']}** — {s['score_description']} — in flagged.csv.")
    html, md, images, caveats = [f"<p>{intro.replace('**', '')}</p>"], [intro], [], []
    top = s.get("top", [])[:20]
    file_rows = _file_rows(study_dir / "flagged.csv", len(top)) if s.get("file_rows") else None
    if file_rows is not None:
        where = "row in your file"
        note = "Rows are numbered from 0 in the order of your file's x and y."
        ids = [file_rows.get(r["rank"]) for r in top]
    else:
        where = "training-set index"
        note = ("Indices count the training split after the validation examples were set aside (the loader's "
                "order), not rows of a file; flagged.csv holds every example.")
        ids = [r["index"] for r in top]
    header = ["rank", where, "given label", "predicted label", s["score"]]
    rows = [[r["rank"], i, r["given_label"], r["predicted_label"], r["score"]] for r, i in zip(top, ids)]
    html += ["<h4>Most likely mislabelled</h4>", f"<p>{note}</p>", table_html(header, rows)]
    md += ["#### Most likely mislabelled", note, table_md(header, rows)]
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


def conclusion(study_dir: Path) -> str | None:
    """One short paragraph for the top of the page, from summary.json."""
    sp = Path(study_dir) / "summary.json"
    if not sp.exists():
        return None
    s = json.loads(sp.read_text())
    text = f"{s['num_train']} training examples of {s['workload']} ranked by {s['score']} (flagged.csv)"
    ev = s.get("evaluation")
    best = s.get("best_score_by_auroc")
    if ev and best in ev and ev[best].get("auroc") is not None:
        return text + (f"; with {s['label_noise']:.0%} injected label noise, {best} found the flipped labels best "
                       f"(AUROC {ev[best]['auroc']:.3f}; 0.5 is chance).")
    return text + "; no label noise was injected, so the ranking's accuracy is not measured."
