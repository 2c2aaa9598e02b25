"""Report section of a single `feedwise train` run: learning curve and the trial record."""

from __future__ import annotations

from pathlib import Path

from feedwise.report.plots import figure, save
from feedwise.report.sections import Section, table_html, table_md
from feedwise.results import StudyDir

QUESTION = 'How does one training run of this workload behave?'


def build_sections(study_dir: Path, assets: Path) -> list[Section]:
    study = StudyDir(study_dir)
    sections = []
    for trial in study.trials():
        rec = trial.read()
        rows = [r for r in trial.measurements() if r.get("val_error") is not None]
        fig, ax = figure()
        ax.plot([r["step"] for r in rows], [r["val_error"] for r in rows], label="validation error")
        if rec.get("target") is not None:
            ax.axhline(rec["target"], color="k", ls="--", lw=1, label=f"target {rec['target']}")
        if rec.get("steps_to_result"):
            ax.axvline(rec["steps_to_result"], color="C2", ls=":", label=f"steps-to-result {rec['steps_to_result']}")
        ax.set_xlabel("step")
        ax.set_ylabel("validation error")
        ax.set_title(f"{rec['workload']}: batch {rec['hparams']['batch_size']}, {rec['hparams']['optimizer']}")
        ax.legend()
        png = save(fig, Path(assets) / f"train-{study_dir.name}-{trial.id}-curve.png")
        header = ["status", "steps_run", "steps_to_result", "final val error", "test error", "train s", "eval s"]
        row = [rec["status"], rec["steps_run"], rec.get("steps_to_result"), rec.get("final_val_error"),
               rec.get("test_error"), rec.get("wall_s"), rec.get("eval_s")]
        hp = ", ".join(f"{k}={v}" for k, v in rec["hparams"].items())
        sections.append(Section(
            title=f"Training run: {rec['workload']} (trial {trial.id})", kind="train",
            html=f"<p>Hyperparameters: <code>{hp}</code>; seed {rec['seed']}.</p>" + table_html(header, [row]),
            markdown=f"Hyperparameters: `{hp}`; seed {rec['seed']}.\n\n" + table_md(header, [row]),
            images=[png],
        ))
    return sections


def conclusion(study_dir: Path) -> str | None:
    """One short paragraph for the top of the page, from the trial records."""
    out = []
    for trial in StudyDir(study_dir).trials():
        rec = trial.read()
        h = rec.get("hparams", {})
        te = rec.get("test_error")
        what = (f"reached the target {rec.get('target')} at step {rec['steps_to_result']}"
                if rec.get("steps_to_result") is not None else
                f"did not reach the target {rec.get('target')} in {rec.get('steps_run')} steps")
        out.append(f"{rec.get('workload')}, batch {h.get('batch_size')}, {h.get('optimizer')}: {what}"
                   + (f" (test error {te:.4f})" if te is not None else "") + ".")
    return " ".join(out) or None
