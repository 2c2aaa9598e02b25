"""End to end on CUDA (skipped without a CUDA device; benchmarks/gpu_check.py is the fuller device check)."""

import json
from pathlib import Path

import pytest
import torch

from feedwise.cli import main

ROOT = Path(__file__).resolve().parents[1]
pytestmark = pytest.mark.skipif(not torch.cuda.is_available(),
                                reason="no CUDA device here: the --device cuda runs need one")


def test_train_on_cuda_end_to_end(tmp_path, data_cache):
    out = tmp_path / "cuda"
    assert main(["train", "--workload", "mnist1d-mlp", "--num-samples", "2000", "--steps", "300",
                 "--target", "0.6", "--device", "cuda", "--out", str(out)]) == 0
    rec = json.loads((out / "trials/0/trial.json").read_text())
    assert rec["device"].startswith("cuda") and rec["status"] == "reached"


def test_lazy_image_folder_on_cuda(tmp_path, monkeypatch):
    """A Dataset read lazily by loader workers (pinned memory) feeds a model on the GPU."""
    import importlib.util

    import feedwise.data.lazy as lazy

    spec = importlib.util.spec_from_file_location("feedwise_example_image_folder", ROOT / "examples/image_folder.py")
    ex = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(ex)
    root = ex.write_tiny_folder(tmp_path / "imgs", classes=3, train_per_class=30, test_per_class=6, size=12)
    monkeypatch.setattr(lazy, "IN_MEMORY_LIMIT", 0)
    out = tmp_path / "lazy"
    assert main(["train", "--workload", f"{ROOT / 'examples/image_folder.py'}:IMAGE_FOLDER", "--data-dir", str(root),
                 "--steps", "40", "--eval-every", "20", "--batch-size", "16", "--device", "cuda",
                 "--out", str(out)]) == 0
    rec = json.loads((out / "trials/0/trial.json").read_text())
    assert rec["device"].startswith("cuda") and rec["steps_run"] == 40
    assert json.loads((out / "study.json").read_text())["dataset"]["in_memory"] is False
