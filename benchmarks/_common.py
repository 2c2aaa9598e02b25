"""Shared helpers of the benchmarks added for issue 15: interleaved timing statistics and a JSON writer
(no import from feedwise.studies: its module paths are changing)."""

from __future__ import annotations

import json
import math
import os
import platform
import statistics
import sys
from pathlib import Path

RESULTS = Path(__file__).resolve().parent / "results"


def stats(values) -> dict:
    """median, quartiles, min, max and count of a list of numbers."""
    v = [float(x) for x in values]
    if len(v) < 2:
        return {"median": v[0] if v else None, "q1": None, "q3": None, "min": min(v, default=None),
                "max": max(v, default=None), "n": len(v)}
    q = statistics.quantiles(v, n=4)
    return {"median": statistics.median(v), "q1": q[0], "q3": q[2], "min": min(v), "max": max(v), "n": len(v)}


def machine() -> dict:
    import torch

    return {"python": sys.version.split()[0], "torch": torch.__version__, "platform": platform.platform(),
            "cpu_count": os.cpu_count(), "torch_threads": torch.get_num_threads(),
            "cuda": torch.cuda.is_available()}


def _clean(o):
    if isinstance(o, float) and not math.isfinite(o):
        return None
    if isinstance(o, dict):
        return {str(k): _clean(v) for k, v in o.items()}
    if isinstance(o, (list, tuple)):
        return [_clean(v) for v in o]
    if hasattr(o, "item") and callable(o.item):   # numpy / torch scalars
        return _clean(o.item())
    return o


def write_json(path, data: dict) -> Path:
    """Write ``data`` as indented JSON atomically (temp file + rename); NaN/inf become null."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(path.suffix + ".tmp")
    tmp.write_text(json.dumps(_clean(data), indent=2) + "\n")
    tmp.replace(path)
    return path


def load_example(name: str):
    """Import examples/<name>.py (the examples are files, not a package)."""
    import importlib.util

    path = Path(__file__).resolve().parents[1] / "examples" / f"{name}.py"
    spec = importlib.util.spec_from_file_location(f"feedwise_example_{name}", path)
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module
    spec.loader.exec_module(module)
    return module
