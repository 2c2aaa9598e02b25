"""Assemble one self-contained page (images embedded, no network) and report.md from study folders.

Only files are read: each folder's study.json, summary.json and trials/. The section
builders live in ``feedwise.report.<kind>`` (see :mod:`feedwise.report.sections`).
"""

from __future__ import annotations

import base64
import html
from datetime import datetime, timezone
from pathlib import Path

from feedwise.errors import FeedwiseError
from feedwise.report.sections import Section
from feedwise.studies import STUDIES, study_report
from feedwise.files import mkdir, read_json, write_text


DEFINITIONS = [
    ("steps-to-result", "for one batch size, the smallest evaluation step, over all trials of that batch size, at which the validation error is strictly below the target; null when no trial reaches it."),
    ("perfect scaling", "steps(B) = steps(B0)·B0/B; the regimes are perfect scaling, diminishing returns and maximal data parallelism."),
    ("wall_s / eval_s", "training seconds only / evaluation seconds only (evaluation is untimed for training)."),
    ("Active Bias prediction variance", "std̂ = sqrt(var + var²/(n−1)) over an example's n ≥ 2 true-class probabilities; threshold closeness p̄(1−p̄)."),
    ("ensemble acquisition", "members = models × checkpoints; entropy H[p̄]; BALD H[p̄] − mean H[p_m]; variation ratio 1 − modal votes / M; margin 1 − (top-1 − top-2 of p̄)."),
]

CSS = """
body{font-family:system-ui,-apple-system,Segoe UI,Roboto,sans-serif;max-width:1100px;margin:2em auto;padding:0 1em;color:#222;line-height:1.45}
h1{margin-bottom:.2em} h2{border-bottom:1px solid #ddd;padding-bottom:.2em;margin-top:2em}
table{border-collapse:collapse;margin:.8em 0;font-size:.92em;display:block;overflow-x:auto;max-width:100%} th,td{border:1px solid #ccc;padding:.3em .6em;text-align:right}
th{background:#f4f4f4} td:first-child,th:first-child{text-align:left}
img{max-width:100%;display:block;margin:.8em 0;border:1px solid #eee}
.meta{color:#555;font-size:.9em} .caveat{background:#fff8e1;border-left:4px solid #f0b400;padding:.4em .8em;margin:.4em 0}
code{background:#f6f6f6;padding:0 .2em}
"""


# After load, the page checks itself: every image decoded and every section present. The result
# lands in <body data-rendered="ok|fail" data-images="decoded/total" data-sections="n">, which a
# headless browser test reads back (and a reader can see in the footer).
SELF_CHECK = """<footer class='meta' id='render-check'></footer><script>
window.addEventListener('load', function () {
  var imgs = Array.prototype.slice.call(document.images);
  var ok = imgs.filter(function (i) { return i.complete && i.naturalWidth > 0; }).length;
  var secs = document.querySelectorAll('section').length;
  var b = document.body;
  b.dataset.images = ok + '/' + imgs.length;
  b.dataset.sections = String(secs);
  b.dataset.rendered = (ok === imgs.length) ? 'ok' : 'fail';
  document.getElementById('render-check').textContent =
    'Rendered ' + ok + ' of ' + imgs.length + ' images in ' + secs + ' sections.';
});
</script>"""


def expand_study_dirs(dirs: list[str | Path]) -> list[Path]:
    """Each argument is a study folder (holds study.json) or a folder of study folders."""
    out: list[Path] = []
    for d in map(Path, dirs):
        if (d / "study.json").exists():
            out.append(d)
        elif d.is_dir():
            subs = sorted(p for p in d.iterdir() if (p / "study.json").exists())
            if not subs:
                raise FeedwiseError(f"{d} holds no study (no study.json in it or its sub-folders)")
            out.extend(subs)
        else:
            raise FeedwiseError(f"{d} is not a folder")
    return out


def _sections_for(dirs: list[Path], assets: Path) -> list[tuple[Path, dict, list[Section]]]:
    found = []
    by_kind: dict[str, list[Path]] = {}
    for d in dirs:
        study = read_json(d / "study.json")
        kind = study.get("kind")
        if kind not in STUDIES:
            raise FeedwiseError(f"{d}: unknown study kind '{kind}'")
        if kind not in NEEDS_NO_SUMMARY:
            if not (d / "summary.json").exists():
                found.append((d, study, [_not_yet(d, kind)]))
                continue
            read_json(d / "summary.json")   # a damaged summary is one error naming it, not a traceback later
        module = study_report(kind)
        found.append((d, study, module.build_sections(d, assets)))
        by_kind.setdefault(kind, []).append(d)
    # several folders of one kind (e.g. one batch-size study per optimizer): an overlay view
    for kind, ds in by_kind.items():
        module = study_report(kind)
        if len(ds) > 1 and hasattr(module, "build_overlay"):
            sections = module.build_overlay(ds, assets)
            warning = overlay_warning(ds)
            if warning:
                for sec in sections:
                    sec.html = f"<p class='caveat warning'><b>Warning:</b> {html.escape(warning)}</p>" + sec.html
                    sec.markdown = f"> **Warning:** {warning}\n\n" + sec.markdown
            found.append((ds[0].parent, {"kind": kind, "config": {}, "machine": {}, "overlay": True}, sections))
    return found


def _what(d: Path) -> dict:
    """What a study was run on: workload, target and data options (study.json, summary.json)."""
    study = read_json(d / "study.json")
    cfg = study.get("config") or {}
    target = cfg.get("target")
    if (d / "summary.json").exists():
        try:
            target = read_json(d / "summary.json").get("target", target)
        except (OSError, ValueError):
            pass
    return {"workload": cfg.get("workload"), "target": target, "data": cfg.get("data") or {}}


def overlay_warning(dirs: list[Path]) -> str | None:
    """A sentence when folders drawn on the same axes were not run on the same workload, target
    and data: their curves are not comparable."""
    whats = [(d, _what(d)) for d in dirs]
    diff = [k for k in ("workload", "target", "data") if len({repr(w[k]) for _, w in whats}) > 1]
    if not diff:
        return None
    names = {"workload": "workloads", "target": "targets", "data": "data options"}
    detail = "; ".join(f"{d.name}: " + ", ".join(f"{k} {w[k]}" for k in diff) for d, w in whats)
    return (f"these folders are overlaid but differ in {' and '.join(names[k] for k in diff)} ({detail}): "
            f"their curves are not comparable.")


def _conclusions(found: list[tuple[Path, dict, list[Section]]]) -> list[tuple[str, str]]:
    """(heading, paragraph) per study folder, from each report module's ``conclusion(folder)``
    (files only); a folder whose summary cannot give one is left out."""
    out = []
    for d, study, _ in found:
        kind = study.get("kind")
        if study.get("overlay") or kind not in STUDIES or not (Path(d) / "summary.json").exists():
            continue  # an overlay entry, not a study folder, or a study with no results yet
        module = study_report(kind)
        if not hasattr(module, "conclusion"):
            continue
        try:
            text = module.conclusion(Path(d))
        except (OSError, ValueError, KeyError, TypeError, IndexError, AttributeError, FeedwiseError):
            text = None
        if text:
            out.append((f"{kind} ({Path(d).name})", text))
    return out


NEEDS_NO_SUMMARY = {"train"}   # kinds whose section reads trials/ only


def _not_yet(d: Path, kind: str) -> Section:
    """The section of a study that has no summary.json yet (never run to the end, or interrupted)."""
    text = (f"No summary.json in {d} yet: the {kind} study has not finished a run. Re-run its command to resume "
            "it (finished trials are kept), then the report.")
    return Section(title=f"{kind}: no results yet ({d.name})", kind=kind, html=f"<p>{html.escape(text)}</p>",
                   markdown=text, caveats=[])


def _img(path: Path) -> str:
    data = base64.b64encode(Path(path).read_bytes()).decode()
    return f'<img alt="{html.escape(Path(path).stem)}" src="data:image/png;base64,{data}">'


def build_report(dirs: list[str | Path], out: str | Path | None = None) -> Path:
    """Write ``<out>/index.html`` and ``<out>/report.md``; returns the HTML path.

    ``out`` defaults to ``<first folder>/report``."""
    study_dirs = expand_study_dirs(dirs)
    out = Path(out) if out else Path(dirs[0]) / "report"
    assets = out
    for d in study_dirs:   # every folder is read and checked before anything is written
        kind = read_json(Path(d) / "study.json").get("kind")
        if kind not in STUDIES:
            raise FeedwiseError(f"{d}: unknown study kind '{kind}'")
        if kind not in NEEDS_NO_SUMMARY and (Path(d) / "summary.json").exists():
            read_json(Path(d) / "summary.json")
    mkdir(out, parents=True)
    found = _sections_for(study_dirs, assets)
    machine = next((s.get("machine") for _, s, _ in found if s.get("machine")), {})
    stamp = datetime.now(timezone.utc).strftime("%Y-%m-%d %H:%M UTC")

    h = [f"<!doctype html><html lang='en'><head><meta charset='utf-8'><title>feedwise report</title><style>{CSS}</style></head><body>",
         "<h1>feedwise report</h1>",
         f"<p class='meta'>Built {stamp} from {len(study_dirs)} study folder(s) on disk. Machine: "
         f"{html.escape(str(machine.get('platform', '?')))}, {machine.get('cpu_count', '?')} cores, torch {machine.get('torch', '?')}"
         f" ({machine.get('torch_threads', '?')} threads){', GPU ' + html.escape(str(machine['gpu'])) if machine.get('gpu') else ''}.</p>"]
    md = ["# feedwise report", "", f"Built {stamp} from {len(study_dirs)} study folder(s). Machine: "
          f"{machine.get('platform', '?')}, {machine.get('cpu_count', '?')} cores, torch {machine.get('torch', '?')}.", ""]
    conclusions = _conclusions(found)
    if conclusions:
        h.append("<section id='conclusions'><h2>Conclusions</h2>" + "".join(
            f"<p><b>{html.escape(k)}</b>: {html.escape(v)}</p>" for k, v in conclusions) + "</section>")
        md += ["## Conclusions", ""] + [f"**{k}**: {v}" + "\n" for k, v in conclusions]
    toc = []
    body, body_md = [], []
    shown: set[str] = set()  # a caveat is printed once: under the first section that states it
    n = 0
    for d, study, sections in found:
        kind = study.get("kind", "")
        workload = study.get("config", {}).get("workload", "")
        q = getattr(study_report(kind), "QUESTION", "") if kind in STUDIES else ""
        for s in sections:
            n += 1
            anchor = f"s{n}"
            toc.append(f"<li><a href='#{anchor}'>{html.escape(s.title)}</a></li>")
            body.append(f"<section id='{anchor}' class='study {html.escape(kind)}' data-kind='{html.escape(kind)}'>"
                        f"<h2>{html.escape(s.title)}</h2>"
                        f"<p class='meta'>Question: {html.escape(q)} Folder: <code>{html.escape(str(d))}</code>"
                        f"{' · workload ' + html.escape(str(workload)) if workload else ''}</p>"
                        f"{s.html}{''.join(_img(p) for p in s.images)}"
                        + "".join(f"<p class='caveat'>{html.escape(c)}</p>"
                                  for c in dict.fromkeys(s.caveats) if c not in shown)
                        + "</section>")
            new = [c for c in dict.fromkeys(s.caveats) if c not in shown]
            rel = [Path(p).name if Path(p).parent == out else str(p) for p in s.images]
            body_md += [f"## {s.title}", "", f"_Question: {q}_ Folder: `{d}`", "", s.markdown, ""]
            body_md += [f"![{Path(p).stem}]({r})" for p, r in zip(s.images, rel)] + [""]
            body_md += [f"> caveat: {c}" for c in new] + ([""] if new else [])
            shown.update(s.caveats)
    if not found or n == 0:
        body.append("<p>No results in these folders yet.</p>")
    h.append("<nav><h2>Contents</h2><ul>" + ("<li><a href='#conclusions'>Conclusions</a></li>" if conclusions else "")
             + "".join(toc) + "<li><a href='#definitions'>Definitions</a></li>"
             "<li><a href='#caveats'>Caveats</a></li></ul></nav>")
    h += body
    h.append("<section id='definitions'><h2>Definitions</h2><dl>" + "".join(
        f"<dt><b>{html.escape(k)}</b></dt><dd>{html.escape(v)}</dd>" for k, v in DEFINITIONS) + "</dl></section>")
    general = ["Timings come from a shared machine; identical runs differ by up to ±25% per step.",
               "Each number above is read from the study folders' files; rerun `feedwise report` to rebuild.",
               "Each study's own caveats are printed once, under the first section they concern."]
    h.append("<section id='caveats'><h2>Caveats</h2>" + "".join(
        f"<p class='caveat'>{html.escape(c)}</p>" for c in general) + "</section>")
    h.append(SELF_CHECK)
    h.append("</body></html>")
    md += body_md + ["## Definitions", ""] + [f"- **{k}**: {v}" for k, v in DEFINITIONS] + ["", "## Caveats", ""]
    md += [f"- {c}" for c in general]
    page = out / "index.html"
    write_text(page, "\n".join(h))
    write_text(out / "report.md", "\n".join(md) + "\n")
    return page
