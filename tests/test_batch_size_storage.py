"""The batch-size study and its Optuna storage: identity, rebuilding from the folders, secrets,
and inputs refused before anything is written."""

import json
import math
from pathlib import Path

import pytest

from feedwise.cli import main
from feedwise.errors import FeedwiseError
from feedwise.studies.batch_size.run import BatchSizeRequest, Budget, run_batch_size_study
from feedwise.studies.batch_size.storage import normalize_url, redact, redact_command, redact_text
from feedwise.studies.batch_size.trials import fingerprint, study_name
from feedwise.studies.batch_size.search_space import load_space_file, resolve_space
from feedwise.studies.train.run import DataOptions
from feedwise.workloads import get_workload

SPACE = {"lr": [0.05, 0.3], "one_minus_momentum": [0.05, 0.3], "end_factor": 1.0, "decay_fraction": 1.0}


def req(seed=1, trials=3, target=0.6):
    """About a second of training: B=64, target reached by some points, the others pruned."""
    return BatchSizeRequest(workload="mnist1d-mlp", batch_sizes=[64], trials=trials, optimizer="momentum",
                            target=target, budget=Budget(max_steps=200, ref_batch=0, eval_every=10), seed=seed,
                            space=SPACE, data=DataOptions(num_samples=2000))


def storage_studies(url: str) -> dict:
    """``{study name: (user attrs, {state: [numbers]}, finished points)}`` of a storage."""
    import optuna

    res = {}
    for s in optuna.study.get_all_study_summaries(url):
        st = optuna.load_study(study_name=s.study_name, storage=url)
        trials = st.get_trials()
        states = {}
        for t in trials:
            states.setdefault(t.state.name, []).append(t.number)
        points = sorted(t.user_attrs["point"] for t in trials if t.state.name in ("COMPLETE", "PRUNED"))
        res[s.study_name] = (st.user_attrs, states, points)
    return res


def trial_files(out: Path) -> dict:
    return {p.parent.name: p.read_bytes() for p in sorted(out.glob("trials/*/trial.json"))}


def outcomes(out: Path) -> dict:
    res = {}
    for p in out.glob("trials/*/trial.json"):
        r = json.loads(p.read_text())
        res[r["point"]] = (r["status"], r["steps_run"], r["steps_to_result"], r["search_params"])
    return res


def test_two_studies_share_one_storage_without_mixing(tmp_path, data_cache):
    """Two different studies on one --storage: each trains and prunes only against itself."""
    url = f"sqlite:///{tmp_path / 'shared.db'}"
    a = run_batch_size_study(req(seed=1), tmp_path / "a", storage=url, threads=1, device="cpu")
    b = run_batch_size_study(req(seed=2), tmp_path / "b", storage=url, threads=1, device="cpu")
    alone = run_batch_size_study(req(seed=2), tmp_path / "b_alone", threads=1, device="cpu")
    # the second study ran all its own points and found what it finds alone (same process: equal)
    assert outcomes(tmp_path / "b") == outcomes(tmp_path / "b_alone") and sorted(outcomes(tmp_path / "b")) == [0, 1, 2]
    assert b["curve"] == alone["curve"] and b["curve"]["64"] is not None
    assert outcomes(tmp_path / "a") != outcomes(tmp_path / "b")   # other seeds, other points
    assert a["batch_sizes"][0]["points"] == b["batch_sizes"][0]["points"] == [0, 1, 2]
    studies = storage_studies(url)
    fps = {json.loads((tmp_path / d / "study.json").read_text())["fingerprint"] for d in ("a", "b")}
    assert len(fps) == 2 and set(studies) == {study_name(64, fp) for fp in fps}
    for name, (attrs, states, points) in studies.items():
        assert name == study_name(64, attrs["feedwise_fingerprint"]) and attrs["batch_size"] == 64
        assert fingerprint(attrs["feedwise_config"]) == attrs["feedwise_fingerprint"]
        assert points == [0, 1, 2]
    # the same command again resumes its own study: nothing re-run
    before = trial_files(tmp_path / "b")
    assert run_batch_size_study(req(seed=2), tmp_path / "b", storage=url, threads=1, device="cpu")["curve"] == b["curve"]
    assert trial_files(tmp_path / "b") == before
    # a storage study whose recorded identity is not its name's is refused
    import optuna

    fp_b = json.loads((tmp_path / "b" / "study.json").read_text())["fingerprint"]
    optuna.load_study(study_name=study_name(64, fp_b), storage=url).set_user_attr("feedwise_fingerprint", "f" * 64)
    with pytest.raises(FeedwiseError, match="belongs to another study"):
        run_batch_size_study(req(seed=2), tmp_path / "b", storage=url, threads=1, device="cpu")


def test_lost_or_other_storage_is_rebuilt_from_the_trial_folders(tmp_path, data_cache):
    out = tmp_path / "o"
    first = run_batch_size_study(req(), out, threads=1, device="cpu")
    files = trial_files(out)
    assert len(files) == 3
    # 1. study.db deleted: the same command re-registers the finished trials and re-runs nothing
    (out / "study.db").unlink()
    again = run_batch_size_study(req(), out, threads=1, device="cpu")
    assert trial_files(out) == files and again["curve"] == first["curve"]
    assert again["batch_sizes"][0] == first["batch_sizes"][0]
    ((attrs, states, points),) = storage_studies(f"sqlite:///{out / 'study.db'}").values()
    assert points == [0, 1, 2] and attrs["feedwise_rebuilt_trials"] == 3 and "FAIL" not in states
    # 2. another --storage (not part of the study's identity): the same, and the study goes on there
    other = f"sqlite:///{tmp_path / 'other.db'}"
    assert run_batch_size_study(req(), out, storage=other, threads=1, device="cpu")["curve"] == first["curve"]
    assert trial_files(out) == files
    more = run_batch_size_study(req(trials=4), out, storage=other, threads=1, device="cpu")
    new = set(trial_files(out)) - set(files)
    assert all(trial_files(out)[k] == v for k, v in files.items()) and new == {"b64-3"}
    assert json.loads((out / "trials/b64-3/trial.json").read_text())["point"] == 3
    assert more["batch_sizes"][0]["points"] == [0, 1, 2, 3]
    # 3. a storage holding this study but not this folder's trials is refused, nothing touched
    run_batch_size_study(req(trials=2), tmp_path / "small", threads=1, device="cpu")
    with pytest.raises(FeedwiseError, match="does not hold"):
        run_batch_size_study(req(trials=4), out, storage=f"sqlite:///{tmp_path / 'small' / 'study.db'}",
                             threads=1, device="cpu")
    assert all(trial_files(out)[k] == v for k, v in files.items())
    # 4. a folder written before points existed (no "point": point = trial number) resumes the same way
    for p in out.glob("trials/*/trial.json"):
        rec = json.loads(p.read_text())
        rec.pop("point"), rec.pop("study_fingerprint")
        p.write_text(json.dumps(rec))
    old = trial_files(out)
    (out / "study.db").unlink()
    assert run_batch_size_study(req(trials=4), out, threads=1, device="cpu")["batch_sizes"][0]["points"] == [0, 1, 2, 3]
    assert trial_files(out) == old


def test_storage_url_forms_and_secrets():
    assert normalize_url("postgresql://fw@/db?host=/run/pg&port=5433") == "postgresql+psycopg://fw@/db?host=/run/pg&port=5433"
    assert normalize_url("postgres://fw@h/db") == "postgresql+psycopg://fw@h/db"
    assert normalize_url("postgresql+psycopg2://fw@h/db") == "postgresql+psycopg2://fw@h/db"
    assert normalize_url("sqlite:///x.db") == "sqlite:///x.db"
    with pytest.raises(FeedwiseError, match="database URL"):
        normalize_url("study.db")
    url = "postgresql://fw:p%40ss@h:5432/db?sslmode=require&password=q2"
    assert redact(url) == "postgresql://fw:***@h:5432/db?sslmode=require&password=***"
    assert redact_command(["feedwise", "--storage", url, f"--storage={url}"]) == \
        ["feedwise", "--storage", redact(url), f"--storage={redact(url)}"]
    assert redact_text("login p@ss / p%40ss / q2 failed", url) == "login *** / *** / *** failed"


def test_storage_password_is_never_written_or_printed(tmp_path, data_cache, capsys):
    secret = "s3cret-pw"
    # an unreachable server: one line, no password, and nothing written
    for form in (["--storage", f"postgresql://fw:{secret}@127.0.0.1:9/db"],
                 [f"--storage=postgresql://fw:{secret}@127.0.0.1:9/db?password={secret}"]):
        code = main(["batch-size", "--num-samples", "2000", "--batch-sizes", "64", "--trials", "1",
                     "--storage-retry", "0", *form, "--out", str(tmp_path / "o")])
        err = capsys.readouterr().err
        assert code == 2 and len(err.strip().splitlines()) == 1 and err.startswith("feedwise: error: cannot open")
        assert secret not in err and "fw:***@127.0.0.1:9" in err
        assert not (tmp_path / "o").exists()
    # the command line recorded in study.json is redacted too (the storage itself is SQLite here)
    cmd = ["feedwise", "batch-size", "--storage", f"postgresql://fw:{secret}@db/x", f"--storage=mysql://u:{secret}@h/d"]
    run_batch_size_study(req(trials=1), tmp_path / "r", threads=1, device="cpu", command=cmd)
    for p in (tmp_path / "r").rglob("*"):
        if p.is_file() and p.suffix in (".json", ".csv"):
            assert secret not in p.read_text(), p
    study = json.loads((tmp_path / "r" / "study.json").read_text())
    assert study["command"][3] == "postgresql://fw:***@db/x" and study["command"][4] == "--storage=mysql://u:***@h/d"


def test_space_numbers_are_parsed_robustly(tmp_path):
    w = get_workload("mnist1d-mlp")
    y = tmp_path / "space.yaml"
    y.write_text("lr: [1e-3, 10]\none_minus_momentum: [1E-2, 5e-1]\nend_factor: 1e-2\n")
    sp = resolve_space(w.search_space, load_space_file(y), "momentum")
    assert sp["lr"] == [0.001, 10.0] and sp["one_minus_momentum"] == [0.01, 0.5] and sp["end_factor"] == 0.01
    for text, msg in [("lr: [1, .inf]\n", "must be finite"), ("lr: [.nan, 1]\n", "must be finite"),
                      ("lr: [1e-3, ten]\n", "not a number"), ("lr: [true, 2]\n", r"must be \[low, high\]"),
                      ("lr: [1, 2, 3]\n", r"must be \[low, high\]")]:
        y.write_text(text)
        with pytest.raises(FeedwiseError, match=msg):
            resolve_space(w.search_space, load_space_file(y), "momentum")
    b = tmp_path / "space.bin"
    b.write_bytes(bytes(range(256)) * 4)
    with pytest.raises(FeedwiseError, match="cannot read search-space file"):
        load_space_file(b)


BAD_BATCH_SIZE = [
    (["--seeds", "-1"], "--seeds"),
    (["--target", "nan"], "--target"), (["--target", "inf"], "--target"), (["--target", "-0.1"], "--target"),
    (["--target", "1.5"], "--target"), (["--heartbeat", "-5"], "--heartbeat"), (["--heartbeat", "0"], "--heartbeat"),
    (["--jobs", "0"], "--jobs"), (["--storage-retry", "-1"], "--storage-retry"),
    (["--storage-retry", "nan"], "--storage-retry"), (["--seed", "-1"], "--seed"), (["--trials", "0"], "--trials"),
    (["--steps", "0"], "--steps"), (["--eval-every", "-2"], "--eval-every"),
    (["--min-eval-every", "0"], "--min-eval-every"), (["--ref-batch", "-1"], "--ref-batch"),
    (["--batch-sizes", "0,64"], "batch sizes"), (["--storage", "study.db"], "database URL"),
    (["--space", "SPACE:lr: [1, .inf]\n"], "must be finite"), (["--space", "BYTES"], "cannot read"),
    (["--space", "SPACE:lr: [0.1, x]\n"], "not a number"),
]
BAD_NOISE_SCALE = [
    (["--steps", "0"], "--steps"), (["--batch-size", "0"], "--batch-size"),
    (["--batch-size", "-2"], "--batch-size"), (["--b-small", "-4"], "--b-small"), (["--b-big", "0"], "--b-big"),
    (["--measure-every", "0"], "--measure-every"), (["--target", "nan"], "--target"), (["--lr", "0"], "--lr"),
    (["--lr", "nan"], "--lr"), (["--momentum", "1"], "--momentum"), (["--seed", "-3"], "--seed"),
    (["--steps", "10", "--measure-every", "50"], "no gradient measurement"),
    (["--precise-draws", "0"], "--precise-draws"), (["--block", "0"], "--block"),
    (["--hessian", "--hessian-chunks", "1"], "--hessian-chunks"), (["--hessian-batch", "0"], "--hessian-batch"),
]


@pytest.mark.parametrize("cmd,args,msg", [("batch-size", a, m) for a, m in BAD_BATCH_SIZE]
                         + [("noise-scale", a, m) for a, m in BAD_NOISE_SCALE],
                         ids=[f"bs{' '.join(a)[:30]}" for a, _ in BAD_BATCH_SIZE]
                         + [f"ns{' '.join(a)}" for a, _ in BAD_NOISE_SCALE])
def test_bad_inputs_are_one_line_before_anything_is_written(tmp_path, data_cache, capsys, cmd, args, msg):
    args = list(args)
    if args[:1] == ["--space"]:
        f = tmp_path / "space.yaml"
        if args[1] == "BYTES":
            f.write_bytes(bytes(range(256)) * 4)
        else:
            f.write_text(args[1].split(":", 1)[1])
        args[1] = str(f)
    out = tmp_path / "o"
    assert main([cmd, "--num-samples", "2000", *args, "--out", str(out)]) == 2
    err = capsys.readouterr().err
    assert len(err.strip().splitlines()) == 1 and err.startswith("feedwise: error: ") and msg in err, err
    assert not out.exists()


def test_target_must_be_finite_in_the_library_too():
    for t in (math.nan, math.inf, -1.0):
        with pytest.raises(FeedwiseError, match="--target"):
            req(target=t).resolved()


def test_a_missing_driver_is_one_line(monkeypatch, tmp_path, capsys):
    """A fresh install without the postgres extra: the documented URL names the package to install."""
    import sys

    monkeypatch.setitem(sys.modules, "psycopg", None)   # import psycopg -> ImportError
    assert main(["batch-size", "--num-samples", "2000", "--storage", "postgresql://fw@dbhost/fw",
                 "--out", str(tmp_path / "o")]) == 2
    err = capsys.readouterr().err
    assert len(err.strip().splitlines()) == 1 and "pip install 'feedwise[postgres]'" in err
    assert not (tmp_path / "o").exists()


def test_threads_never_pop_the_same_point_twice(tmp_path, data_cache):
    """--jobs 2 on the default SQLite storage: Optuna's pop of an enqueued point is not atomic on SQLite
    (read WAITING, then set RUNNING); unguarded, 5 of 8 fresh runs trained a point twice and crashed
    (FolderClash / 'Cannot tell a COMPLETE trial'). Each run must train points 0..N-1 exactly once."""
    import json

    from feedwise.studies.batch_size.run import BatchSizeRequest, Budget, run_batch_size_study
    from feedwise.studies.train.run import DataOptions

    for i in range(4):
        req = BatchSizeRequest(workload="mnist1d-mlp", batch_sizes=[32, 128], trials=2, optimizer="momentum",
                               target=0.45, budget=Budget(max_steps=100, ref_batch=128, eval_every=25),
                               data=DataOptions(num_samples=2000))
        out = tmp_path / f"r{i}"
        run_batch_size_study(req, out, threads=1, device="cpu", jobs=2)
        recs = [json.loads(p.read_text()) for p in (out / "trials").glob("*/trial.json")]
        assert sorted((r["batch_size"], r["point"]) for r in recs) == [(32, 0), (32, 1), (128, 0), (128, 1)]
