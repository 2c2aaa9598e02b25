"""Every code block of the README runs as written (issue 13: a snippet failed with a NameError).

- ```python blocks are extracted and executed. Blocks that use the reader's own objects
  (``train_set``, ``model``, ``opt``, ``pool``, ``checkpoints``, ``predict_proba``, named as such in
  the README's text) run after ``PREAMBLE`` below, which defines tiny stand-ins for them.
- The only change made to a block's text is ``DATA_SIZES``: the size of the generated dataset
  (``w.load()`` -> 2,000 samples instead of 60,000), so that the test takes seconds. Each
  substitution must apply exactly once, so a changed README fails here instead of running untested.
- ```console blocks: ``feedwise workloads`` must print exactly what the README shows; every other
  ``$ feedwise ...`` line must parse and run, with a tiny dataset appended (``TINY_ARGS``), and print
  lines of the shape the README shows. Every option that the README's command table names must
  exist in that command's parser.
"""

from __future__ import annotations

import re
import shlex
from pathlib import Path

import pytest
import torch

from feedwise.cli import build_parser, main

ROOT = Path(__file__).resolve().parents[1]
README = (ROOT / "README.md").read_text()

PREAMBLE = '''
import torch
from torch.utils.data import TensorDataset

torch.manual_seed(0)
train_set = TensorDataset(torch.randn(256, 40), torch.randint(0, 10, (256,)))    # your (x, y) dataset
model = torch.nn.Sequential(torch.nn.Linear(40, 32), torch.nn.ReLU(), torch.nn.Linear(32, 10))  # your model
opt = torch.optim.SGD(model.parameters(), lr=0.1)                                 # your optimizer
pool = torch.randn(300, 40)                                                       # your unlabelled pool
checkpoints = [model, torch.nn.Sequential(torch.nn.Linear(40, 10))]               # your saved models

@torch.no_grad()
def predict_proba(m, x):                                                          # your N x K softmax
    return torch.softmax(m(x), dim=1)
'''

# clearly marked size substitutions (data sizes only): text in the README -> text run by the test
DATA_SIZES = {"data = w.load()": "data = w.load(num_samples=2000)"}
TINY_ARGS = ["--num-samples", "2000", "--steps", "100", "--target", "0.6"]


def code_blocks(lang: str) -> list[str]:
    return re.findall(rf"^```{lang}\n(.*?)^```", README, flags=re.S | re.M)


PYTHON_BLOCKS = code_blocks("python")


def test_the_readme_has_its_python_blocks():
    assert len(PYTHON_BLOCKS) >= 4
    assert any("emphasis_weights" in b for b in PYTHON_BLOCKS)


@pytest.mark.parametrize("i", range(len(PYTHON_BLOCKS)))
def test_python_block_runs_as_written(i, data_cache, capsys, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)   # blocks that save files (labels.npy, runs/...) write them in the current folder
    block = PYTHON_BLOCKS[i]
    for old, new in DATA_SIZES.items():
        assert block.count(old) <= 1
        block = block.replace(old, new)
    ns: dict = {}
    threads = torch.get_num_threads()
    try:
        exec(compile(PREAMBLE, "<test preamble>", "exec"), ns)
        exec(compile(block, f"<README python block {i + 1}>", "exec"), ns)
    finally:
        torch.set_num_threads(threads)
    if "get_workload" in block:  # the library example prints status, steps to result and test error
        status, steps, err = capsys.readouterr().out.split()
        assert status in ("reached", "budget") and float(err) < 1


def test_every_size_substitution_applies():
    for old in DATA_SIZES:
        assert sum(b.count(old) for b in PYTHON_BLOCKS) == 1, old


def test_library_example_trains_what_feedwise_train_trains(data_cache, tmp_path, capsys):
    """issue 13: the library took torch's default threads and evaluated every 100 steps (1600 steps to
    result) where the CLI used 1 thread and the workload's 50 (1450). Now both take the workload's
    defaults through Workload.train_config and run with one thread."""
    from feedwise.engine import train
    from feedwise.workloads import get_workload

    w = get_workload("mnist1d-mlp")
    data = w.load(num_samples=2000)
    seen = []
    torch.set_num_threads(2)
    try:
        result, _ = train(data, w.model_fn(data), w.train_config(max_steps=300, target=0.6),
                          callbacks=[lambda trainer, row: seen.append(torch.get_num_threads())])
        assert torch.get_num_threads() == 2  # restored after the run
    finally:
        torch.set_num_threads(1)
    assert seen and set(seen) == {1}
    assert [r["step"] for r in result.rows][:2] == [w.eval_every, 2 * w.eval_every] == [50, 100]
    assert main(["train", "--workload", "mnist1d-mlp", "--num-samples", "2000", "--steps", "300",
                 "--target", "0.6", "--out", str(tmp_path / "cli")]) == 0
    out = capsys.readouterr().out
    cli_steps = re.search(r"steps_to_result: (\S+)", out).group(1)
    assert result.steps_to_result is not None and cli_steps == str(result.steps_to_result)
    assert f"test_error: {round(result.test_error, 4)}" in out
    # the CLI's config is the workload's train_config with what the command line gave
    a = build_parser().parse_args(["train", "--out", "x"])
    from feedwise.options import train_config as _train_config

    assert _train_config(a) == w.train_config()
    with pytest.raises(Exception, match="unknown TrainConfig field"):
        w.train_config(learning_rate=0.1)


# ------------------------------------------------------------------------------ console blocks
def console_commands() -> list[tuple[list[str], list[str]]]:
    """(argv after `feedwise`, the output lines shown under it) for every `$ feedwise ...` line."""
    out = []
    for block in code_blocks("console"):
        cmd, shown = None, []
        for line in block.splitlines():
            if line.startswith("$ "):
                if cmd is not None:
                    out.append((cmd, shown))
                argv = shlex.split(line[2:])
                assert argv[0] == "feedwise", line
                cmd, shown = argv[1:], []
            elif line.strip() and cmd is not None:
                shown.append(line)
        if cmd is not None:
            out.append((cmd, shown))
    return out


def test_feedwise_workloads_prints_what_the_readme_shows(capsys):
    shown = next(s for c, s in console_commands() if c == ["workloads"])
    assert main(["workloads"]) == 0
    assert capsys.readouterr().out.splitlines() == shown


def _shape(line: str) -> str:
    """A line with its numbers and paths blanked: what must match between README and a tiny run."""
    line = re.sub(r"\S*/trials/0/", "DIR/trials/0/", line)
    return re.sub(r"-?\d+(\.\d+)?", "N", line)


def test_other_console_commands_parse_and_run_tiny(tmp_path, data_cache, capsys):
    cmds = [(c, s) for c, s in console_commands() if c != ["workloads"]]
    assert cmds
    for argv, shown in cmds:
        argv = [str(tmp_path / "out") if i and argv[i - 1] == "--out" else a for i, a in enumerate(argv)]
        build_parser().parse_args(argv)  # parses as written
        assert main(argv + TINY_ARGS) == 0, argv
        printed = [line for line in capsys.readouterr().out.splitlines() if line.strip()]
        assert [_shape(x) for x in printed] == [_shape(x) for x in shown], (printed, shown)


def test_the_command_table_names_only_options_that_exist():
    parser = build_parser()
    sub = next(a for a in parser._actions if a.__class__.__name__ == "_SubParsersAction")
    rows = re.findall(r"^\| `feedwise ([a-z-]+)(.*)$", README, flags=re.M)
    assert len(rows) >= 9
    for cmd, rest in rows:
        assert cmd in sub.choices, cmd
        known = {o for a in sub.choices[cmd]._actions for o in a.option_strings}
        for opt in re.findall(r"(?<![\w-])(--[a-z][a-z0-9-]*)", rest):
            assert opt in known, f"feedwise {cmd} has no option {opt}"


def test_generating_mnist1d_says_so_once(tmp_path, monkeypatch, capsys):
    """The first run generates MNIST-1D (20-40 s for 60,000 samples) and said nothing meanwhile."""
    from feedwise.data.sources import load_dataset

    monkeypatch.setenv("FEEDWISE_DATA", str(tmp_path))
    monkeypatch.delenv("FEEDWISE_QUIET", raising=False)
    load_dataset("mnist1d", num_samples=200, val_size=0.1)
    err = capsys.readouterr().err
    assert "generating MNIST-1D (200 samples, once; cached in" in err and str(tmp_path) in err.replace("\n", "")
    load_dataset("mnist1d", num_samples=200, val_size=0.1)
    assert "generating" not in capsys.readouterr().err  # cached
