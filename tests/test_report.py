import re
import shutil
import subprocess

import pytest

from feedwise.engine import TrainConfig
from feedwise.errors import FeedwiseError
from feedwise.report.html import build_report
from feedwise.studies.train import DataOptions, TrainRequest, train_study

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
    # every section of the page is in the rendered DOM: two runs, definitions, caveats
    assert len(re.findall(r"<section ", dom)) == 4
    assert dom.count("Training run: mnist1d-mlp") >= 2


@pytest.fixture(scope="module")
def quick_demo(tmp_path_factory, data_cache):
    from feedwise.studies.demo import run_demo

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


def test_demo_rerun_resumes_without_training_again(quick_demo):
    from feedwise.results import StudyDir
    from feedwise.studies.demo import run_demo

    out, _ = quick_demo
    before = {t.path: t.read() for kind in ("train", "batch-size", "emphasis") for t in StudyDir(out / kind).trials()}
    run_demo(str(out), threads=1, quick=True)
    after = {t.path: t.read() for kind in ("train", "batch-size", "emphasis") for t in StudyDir(out / kind).trials()}
    assert before == after


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
