"""Report sections of the batch-size study and the noise-scale command (files only)."""

import json

import pytest

from feedwise.cli import main
from feedwise.studies.batch_size.report import build_overlay, build_sections
from feedwise.studies.noise_scale.report import build_sections as noise_sections
from feedwise.results import StudyDir
from feedwise.studies.batch_size.run import summarize
from feedwise.studies.noise_scale.run import NoiseScaleRequest, estimate, gradient_norms, run_noise_scale
from feedwise.studies.train.run import DataOptions


def fake_study(root, optimizer, curves, data=None):
    """A batch-size folder written by hand: per batch size, per trial, (lr, momentum, val errors)."""
    sd = StudyDir(root)
    sd.open("batch-size", {"workload": "mnist1d-mlp", "optimizer": optimizer, "target": 0.15,
                           **({"data": data} if data is not None else {})})
    for b, trials in curves.items():
        for i, (lr, m, errs, status) in enumerate(trials):
            t = sd.trial(f"b{b}-{i}")
            h = {"batch_size": b, "optimizer": optimizer, "lr": lr, "momentum": m}
            t.start({"batch_size": b, "hparams": h, "budget": {"steps": 1000, "eval_every": 100}})
            for k, e in enumerate(errs):
                t.add_row({"step": 100 * (k + 1), "examples": 100 * (k + 1) * b, "val_error": e})
            t.finish({"batch_size": b, "hparams": h, "budget": {"steps": 1000, "eval_every": 100}, "status": status,
                      "examples": 100 * len(errs) * b, "steps_run": 100 * len(errs)})
    s = summarize(sd)
    sd.write_summary(s)
    return s


def test_sections_overlay_and_summary_from_files(tmp_path):
    mom = fake_study(tmp_path / "mom", "momentum", {
        16: [(0.01, 0.9, [0.5, 0.3, 0.2, 0.14], "reached"), (0.02, 0.9, [0.5, 0.3, 0.2, 0.16], "pruned")],
        64: [(0.04, 0.9, [0.3, 0.1], "reached")],
        256: [(0.1, 0.9, [0.2, 0.14], "reached")],
        1024: [(0.3, 0.5, [0.5] * 10, "budget")],
    })
    sgd = fake_study(tmp_path / "sgd", "sgd", {16: [(0.1, None, [0.3, 0.2, 0.1], "reached")],
                                                64: [(0.3, None, [0.3, 0.1], "reached")]})
    e = {x["batch_size"]: x for x in mom["batch_sizes"]}
    assert [e[b]["steps_to_result"] for b in (16, 64, 256, 1024)] == [400, 200, 200, None]
    assert e[16]["best_trial"] == "b16-0" and e[16]["trials_by_status"] == {"reached": 1, "pruned": 1}
    # bootstrap: a resample holding only the pruned trial (bound 500) is censored and may never reach: open end
    assert e[16]["steps_to_result_interval"] == [400, None]
    assert 0.15 < e[16]["steps_to_result_censored_fraction"] < 0.35           # P = (1/2)^2
    assert e[64]["steps_to_result_interval"] == [200, 200] and mom["knee"]["b_crit_interval"][0] is not None
    assert e[64]["best_effective_lr"] == pytest.approx(0.4)
    assert mom["regimes"]["by_batch_size"][256] == "maximal data parallelism"
    assert e[1024]["regime"] == "unreached"
    # unpruned protocol: every non-diverged trial its full 1,000-step budget
    assert mom["pruning"]["examples_unpruned"] == 1000 * (16 * 2 + 64 + 256 + 1024)
    secs = build_sections(tmp_path / "mom", tmp_path / "assets")
    assert len(secs) == 1 and len(secs[0].images) == 2
    assert all(p.exists() and p.stat().st_size > 1000 for p in secs[0].images)
    assert "| 16 | 400 |" in secs[0].markdown and "momentum" in secs[0].title
    over = build_overlay([tmp_path / "mom", tmp_path / "sgd"], tmp_path / "assets")
    assert len(over) == 1 and all(p.exists() for p in over[0].images)
    assert "| 64 | 200 | 200 |" in over[0].markdown


def test_gradient_norms_match_a_hand_computation():
    import torch

    torch.manual_seed(0)
    model = torch.nn.Linear(5, 3)
    x, y = torch.randn(8, 5), torch.randint(0, 3, (8,))
    small, big = gradient_norms(model, x, y, 4)
    grads = []
    for sl in (slice(0, 4), slice(4, 8)):
        model.zero_grad()
        torch.nn.functional.cross_entropy(model(x[sl]), y[sl]).backward()
        grads.append(torch.cat([p.grad.reshape(-1) for p in model.parameters()]).double())
    assert small == pytest.approx(float(sum(g @ g for g in grads) / 2))
    mean = (grads[0] + grads[1]) / 2
    assert big == pytest.approx(float(mean @ mean))


def test_noise_scale_run_records_compute_and_reports(tmp_path, data_cache):
    req = NoiseScaleRequest(workload="mnist1d-mlp", batch_size=64, lr=0.1, b_small=16, b_big=128,
                            measure_every=20, max_steps=100, target=1e-9, data=DataOptions(num_samples=2000),
                            precise_draws=3, block=2, hessian=True, hessian_batch=64, hessian_chunks=2)
    s = run_noise_scale(req, tmp_path / "ns", threads=1, device="cpu")
    # step 0 (3 draws) + 5 evaluations; the target is never reached
    assert s["measurements"] == 6 and [r["step"] for r in s["series"]] == [0, 20, 40, 60, 80, 100]
    assert [r["draws"] for r in s["series"]] == [3, 1, 1, 1, 1, 1]
    assert s["compute"]["examples_gradient"] == 8 * 128
    assert s["compute"]["examples_hessian"] == 8 * 3 * 64 * 2
    assert s["compute"]["examples_total"] == 100 * 64 + 8 * 128 + 8 * 3 * 64 * 2
    n = s["num_examples"]
    for r in s["series"]:                                  # the finite-dataset estimator, N = the training set
        assert (r["g2"], r["trace"]) == pytest.approx(estimate(r["g2_small"], r["g2_big"], 16, 128, n))
    g2 = [r["g2"] for r in s["series"]]
    tr = [r["trace"] for r in s["series"]]
    b = s["b_simple"]
    assert b["g2_weighted"] == pytest.approx(sum(tr) / sum(g2))
    assert b["at_start"] == pytest.approx(tr[0] / g2[0])
    blocks = [sum(tr[i:i + 2]) / sum(g2[i:i + 2]) for i in (0, 2, 4)]
    assert b["time_average"] == pytest.approx(sum(blocks) / 3) and s["predicted_critical_batch"] == b["time_average"]
    assert b["near_target"] is None or b["near_target"] != b["near_target"]      # NaN: not reached
    assert set(s["b_noise"]) == set(b) and all("b_noise_point" in r for r in s["series"])
    assert json.loads((tmp_path / "ns" / "summary.json").read_text())["b_simple"]["g2_weighted"] == pytest.approx(
        b["g2_weighted"])
    sec = noise_sections(tmp_path / "ns", tmp_path / "assets")
    assert sec[0].kind == "noise-scale" and sec[0].images[0].exists()
    # resume: the finished run is not repeated
    assert run_noise_scale(req, tmp_path / "ns", threads=1, device="cpu") == json.loads(
        (tmp_path / "ns" / "summary.json").read_text())
    assert main(["noise-scale", "--b-small", "64", "--b-big", "100", "--out", str(tmp_path / "bad")]) == 2


def test_page_table_sentence_and_summary_share_one_definition_of_perfect_scaling(tmp_path):
    # issue 13: slopes -0.73, -0.50 from B = 64: no segment is perfect, so nothing may say
    # "perfect scaling up to B = 64" (summary.json recorded largest_perfect: 64 before)
    s = fake_study(tmp_path / "mom", "momentum", {
        64: [(0.04, 0.9, [0.5] * 10 + [0.1], "reached")],
        256: [(0.1, 0.9, [0.5] * 3 + [0.1], "reached")],
        1024: [(0.3, 0.9, [0.5, 0.1], "reached")],
    })
    assert s["curve"] == {"64": 1100, "256": 400, "1024": 200}
    assert s["regimes"]["largest_perfect"] is None
    assert {e["regime"] for e in s["batch_sizes"]} == {"diminishing returns"}
    sec = build_sections(tmp_path / "mom", tmp_path / "assets")[0]
    assert "perfect scaling up to" not in sec.markdown and "perfect scaling from" not in sec.markdown
    assert "no perfect scaling" in sec.markdown
    assert "| 64 | 1100 | [1100, 1100] | 70400 | diminishing returns | diminishing returns |" in sec.markdown
    # an old summary.json that still says largest_perfect: 64 is read through the same definition
    old = json.loads((tmp_path / "mom" / "summary.json").read_text())
    old["regimes"]["largest_perfect"] = 64
    old["batch_sizes"][0]["regime"] = "perfect scaling"
    (tmp_path / "mom" / "summary.json").write_text(json.dumps(old))
    again = build_sections(tmp_path / "mom", tmp_path / "assets")[0]
    assert again.markdown == sec.markdown
    fake_study(tmp_path / "sgd", "sgd", {64: [(0.1, None, [0.5, 0.5, 0.5, 0.1], "reached")],
                                          256: [(0.3, None, [0.1], "reached")]})
    over = build_overlay([tmp_path / "mom", tmp_path / "sgd"], tmp_path / "assets")[0]
    assert "| mom | momentum | none | 1024 |" in over.markdown and "| sgd | sgd | 256 | 256 |" in over.markdown


def _fake_noise_scale(root, data, summary):
    sd = StudyDir(root)
    sd.open("noise-scale", {"workload": "mnist1d-mlp", "data": data})
    if summary is not None:
        sd.write_summary(summary)


def test_batch_size_report_only_quotes_its_own_noise_scale_study_and_skips_what_it_cannot_plot(tmp_path):
    """issue 19: a --label-noise 0.5 sibling was quoted in a clean study's report, and a sibling
    without a usable prediction crashed it."""
    clean = {"data_dir": None, "label_noise": 0.0, "noise_seed": 0, "split_seed": 0, "max_train": None,
             "num_samples": 2000}
    curves = {16: [(0.01, 0.9, [0.5, 0.3, 0.2, 0.14], "reached")], 64: [(0.04, 0.9, [0.3, 0.1], "reached")]}
    fake_study(tmp_path / "bs", "momentum", curves, data=clean)
    ns = {"kind": "noise-scale", "workload": "mnist1d-mlp", "predicted_critical_batch": 777.0}
    _fake_noise_scale(tmp_path / "a_noisy", {**clean, "label_noise": 0.5}, {**ns, "predicted_critical_batch": 5.0})
    _fake_noise_scale(tmp_path / "b_other_size", {**clean, "num_samples": 60000}, ns)
    sec = build_sections(tmp_path / "bs", tmp_path / "assets")[0]
    assert "Gradient noise scale" not in sec.markdown and "B_simple" not in sec.markdown
    # same workload and data, but nothing to plot: skipped with a note (no summary; a null prediction)
    _fake_noise_scale(tmp_path / "c_unfinished", clean, None)
    _fake_noise_scale(tmp_path / "d_null", clean, {**ns, "predicted_critical_batch": None})
    sec = build_sections(tmp_path / "bs", tmp_path / "assets")[0]
    assert "c_unfinished" in sec.markdown and "d_null" in sec.markdown and "not plotted" in sec.markdown
    assert "B_simple =" not in sec.markdown
    # the study's own noise-scale run (same workload, same data options) is quoted
    _fake_noise_scale(tmp_path / "e_mine", clean, ns)
    sec = build_sections(tmp_path / "bs", tmp_path / "assets")[0]
    assert "Gradient noise scale (e_mine): B_simple = 777" in sec.markdown
    assert "a_noisy" not in sec.markdown and "b_other_size" not in sec.markdown


def test_knee_line_is_in_the_legend(tmp_path, monkeypatch):
    import feedwise.studies.batch_size.report as rb

    figs = []
    monkeypatch.setattr(rb, "save", lambda fig, path, dpi=None: figs.append(fig) or path)
    fake_study(tmp_path / "mom", "momentum", {
        16: [(0.01, 0.9, [0.5] * 15 + [0.1], "reached")], 64: [(0.04, 0.9, [0.5] * 3 + [0.1], "reached")],
        256: [(0.1, 0.9, [0.5, 0.1], "reached")], 1024: [(0.3, 0.9, [0.5, 0.1], "reached")]})
    build_sections(tmp_path / "mom", tmp_path / "assets")
    labels = [t.get_text() for t in figs[0].axes[0].get_legend().get_texts()]
    knee = [x for x in labels if "knee B_crit=" in x]
    assert len(knee) == 1, labels
    b_crit = json.loads((tmp_path / "mom" / "summary.json").read_text())["knee"]["b_crit"]
    vlines = [ln for ln in figs[0].axes[0].get_lines() if ln.get_label() == knee[0]]
    assert vlines and vlines[0].get_xdata()[0] == pytest.approx(b_crit)


def test_overlaying_folders_of_different_targets_or_workloads_warns_on_the_page_and_in_markdown(tmp_path):
    from feedwise.report.page import build_report

    curves = {16: [(0.01, 0.9, [0.5, 0.1], "reached")], 64: [(0.04, 0.9, [0.1], "reached")]}
    fake_study(tmp_path / "same" / "a", "momentum", curves)
    fake_study(tmp_path / "same" / "b", "sgd", curves)
    page = build_report([tmp_path / "same"], out=tmp_path / "r1")
    assert "Warning" not in page.read_text() and "Warning" not in (page.parent / "report.md").read_text()

    fake_study(tmp_path / "mixed" / "a", "momentum", curves)
    sd = StudyDir(tmp_path / "mixed" / "b")  # another target, another workload's data options
    sd.open("batch-size", {"workload": "fashion-mnist-mlp", "optimizer": "sgd", "target": 0.3})
    s = json.loads((tmp_path / "mixed" / "a" / "summary.json").read_text())
    sd.write_summary({**s, "workload": "fashion-mnist-mlp", "target": 0.3})
    page = build_report([tmp_path / "mixed"], out=tmp_path / "r2")
    html, md = page.read_text(), (page.parent / "report.md").read_text()
    for text in (html, md):
        assert "Warning" in text and "differ in workloads and targets" in text
        assert "a: workload mnist1d-mlp, target 0.15; b: workload fashion-mnist-mlp, target 0.3" in text
