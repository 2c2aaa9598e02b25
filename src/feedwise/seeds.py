"""Named random streams from one seed."""

from __future__ import annotations

import numpy as np


def derive_seed(seed: int, stream: str) -> int:
    """An independent 63-bit seed for a named stream (init, data, ...) from one seed."""
    key = [int(seed) & 0xFFFFFFFF, sum(ord(c) * 131 ** i for i, c in enumerate(stream)) & 0xFFFFFFFF]
    return int(np.random.SeedSequence(key).generate_state(2, dtype=np.uint32).astype(np.uint64) @ np.array([1, 2**31], dtype=np.uint64))
