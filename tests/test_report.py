import re
import shutil
import subprocess

import pytest

from feedwise.engine import TrainConfig
from feedwise.errors import FeedwiseError
from feedwise.report.page import build_report
from feedwise.studies.train.run import DataOptions, TrainRequest, train_study

CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")
FLAGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
         "--disable-background-networking", "--disable-component-update", "--disable-sync"]


@pytest.fixture(scope="module")
def two_runs(tmp_path_factory, data_cache):
    root = tmp_path_factory.mktemp("studies")
    for name, bs in (("a", 32), ("b", 64)):
        cfg = TrainConfig(batch_size=bs, lr=0.1, max_steps=60, eval_every=20, target=0.5)
        train_study(TrainRequest("mnist1d-mlp", cfg, data=DataOptions(num_samples=2000)), str(root / name), threads=1)
    return root


def test_report_is_self_contained(two_runs):
    page = build_report([two_runs])
    text = page.read_text()
    assert text.count("<img") == 2 and text.count("data:image/png;base64,") == 2
    assert not re.search(r"(src|href)=['\"]https?://", text)  # nothing fetched from the network
    md = (page.parent / "report.md").read_text()
    assert md.count("## Training run") == 2 and "## Definitions" in md


def test_report_of_nothing_is_an_error(tmp_path):
    with pytest.raises(FeedwiseError, match="holds no study"):
        build_report([tmp_path])


@pytest.mark.skipif(CHROMIUM is None, reason="Debian's chromium is not installed (apt-get install chromium)")
def test_report_renders_in_headless_chromium(two_runs, tmp_path):
    page = build_report([two_runs / "a", two_runs / "b"], out=tmp_path / "report")
    dom = subprocess.run([CHROMIUM, *FLAGS, f"--user-data-dir={tmp_path / 'profile'}", "--virtual-time-budget=10000",
                          "--dump-dom", page.as_uri()], capture_output=True, text=True, timeout=120).stdout
    body = re.search(r"<body[^>]*>", dom).group(0)
    assert 'data-rendered="ok"' in body, body
    assert 'data-images="2/2"' in body, body
    # every section of the page is in the rendered DOM: conclusions, two runs, definitions, caveats
    assert len(re.findall(r"<section ", dom)) == 5
    assert dom.count("Training run: mnist1d-mlp") >= 2


@pytest.fixture(scope="module")
def quick_demo(tmp_path_factory, data_cache):
    from feedwise.demo import run_demo

    out = tmp_path_factory.mktemp("demo")
    page = run_demo(str(out), threads=1, quick=True)
    return out, page


def test_demo_builds_one_report_of_all_three_studies(quick_demo):
    out, page = quick_demo
    text = open(page).read()
    for kind in ("batch-size", "emphasis", "subset"):
        assert f"data-kind='{kind}'" in text, kind
        assert (out / kind / "summary.json").exists()
    assert text.count("<img") >= 6


def test_demo_rerun_resumes_without_training_again(quick_demo, monkeypatch, capsys):
    from feedwise.results import StudyDir
    from feedwise.demo import run_demo

    out, _ = quick_demo
    before = {t.path: t.read() for kind in ("train", "batch-size", "emphasis") for t in StudyDir(out / kind).trials()}
    monkeypatch.delenv("FEEDWISE_QUIET", raising=False)
    monkeypatch.setenv("COLUMNS", "400")  # one printed statement per line, unwrapped
    run_demo(str(out), threads=1, quick=True)
    after = {t.path: t.read() for kind in ("train", "batch-size", "emphasis") for t in StudyDir(out / kind).trials()}
    assert before == after
    # every step prints its result: the emphasis study all four statements, one per line (it printed
    # "...not significant.; wpv..." and dropped the fourth), the subset step a line of its own
    err = capsys.readouterr().err
    lines = [line.strip() for line in err.splitlines()]
    assert any(line.startswith("train: status") for line in lines)
    assert any(line.startswith("batch-size: steps-to-result by batch size") for line in lines)
    statements = [line for line in lines if re.match(r"(spv|wpv) \((final model|best-validation checkpoint)\): ", line)]
    assert len(statements) == 4, err
    assert ".;" not in err
    assert any(line.startswith("subset: mnist1d-mlp, one-shot search") for line in lines), err


@pytest.mark.skipif(CHROMIUM is None, reason="Debian's chromium is not installed (apt-get install chromium)")
def test_demo_report_renders_every_study_and_image_in_chromium(quick_demo, tmp_path):
    out, page = quick_demo
    from pathlib import Path

    dom = subprocess.run([CHROMIUM, *FLAGS, f"--user-data-dir={tmp_path / 'profile'}", "--virtual-time-budget=10000",
                          "--dump-dom", Path(page).as_uri()], capture_output=True, text=True, timeout=120).stdout
    body = re.search(r"<body[^>]*>", dom).group(0)
    assert 'data-rendered="ok"' in body, body
    decoded, total = re.search(r'data-images="(\d+)/(\d+)"', body).groups()
    assert decoded == total and int(total) >= 6
    for kind in ("train", "batch-size", "emphasis", "subset"):
        assert f'data-kind="{kind}"' in dom, kind


def test_demo_page_opens_with_one_conclusion_per_study(quick_demo):
    out, page = quick_demo
    text = open(page).read()
    top = text[text.index("<section id='conclusions'>"):]
    top = top[:top.index("</section>")]
    assert text.index("id='conclusions'") < text.index("data-kind=")  # before every study section
    for kind in ("train", "batch-size", "emphasis", "subset"):
        assert f"<b>{kind} ({kind})</b>: " in top, kind
    assert "paired seeds, test error of the final model against uniform sampling" in top
    assert "Best acquisition per subset fraction" in top
    md = (out / "report" / "report.md").read_text()
    assert md.index("## Conclusions") < md.index("## Training run")


def test_emphasis_bars_start_at_zero_and_the_wilcoxon_floor_matches_the_seeds(quick_demo, tmp_path, monkeypatch):
    import feedwise.studies.emphasis.report as re_

    out, _ = quick_demo
    figs = []
    real_save = re_.save
    monkeypatch.setattr(re_, "save", lambda fig, path: figs.append(fig) or real_save(fig, path))
    secs = re_.build_sections(out / "emphasis", tmp_path)
    assert figs[0].axes[0].get_ylim()[0] == 0  # it started at 0.12: differences looked larger than they are
    caveats = " ".join(c for sec in secs for c in sec.caveats)
    assert "with 3 seeds its smallest possible two-sided p is 0.25" in caveats and "0.0625" not in caveats
    import json

    summary = json.loads((out / "emphasis" / "summary.json").read_text())
    assert "with 3 seeds its smallest possible two-sided p is 0.25" in summary["primary_test"]


def test_flag_section_shows_rows_of_the_users_file_and_a_rounded_test_error(tmp_path):
    import json

    from feedwise.studies.flag.report import build_sections

    d = tmp_path / "fl"
    d.mkdir()
    top = [{"rank": r + 1, "index": i, "given_label": 1, "predicted_label": 2, "score": 0.9 - r / 10}
           for r, i in enumerate([5, 2, 7])]
    summary = {"kind": "flag", "workload": "npz-mlp", "score": "1-pbar", "score_description": "1 - mean p",
               "num_train": 10, "label_noise": 0.0, "num_flipped": 0, "test_error": 0.123456789, "steps_run": 200,
               "top": top, "file_rows": True}
    (d / "summary.json").write_text(json.dumps(summary))
    (d / "flagged.csv").write_text("rank,index,file_row,given_label,predicted_label,score,score_name\n"
                                   "1,5,105,1,2,0.9,1-pbar\n2,2,102,1,2,0.8,1-pbar\n3,7,107,1,2,0.7,1-pbar\n")
    md = build_sections(d, tmp_path / "assets")[0].markdown
    assert "test error 0.1235" in md and "0.123456789" not in md
    assert "| rank | row in your file |" in md
    assert "| 1 | 105 | 1 | 2 | 0.9 |" in md and "| 2 | 102 |" in md
    # without the file's rows (a built-in dataset), the column says what the number is
    summary["file_rows"] = False
    (d / "summary.json").write_text(json.dumps(summary))
    md = build_sections(d, tmp_path / "assets")[0].markdown
    assert "| rank | training-set index |" in md and "| 1 | 5 |" in md
