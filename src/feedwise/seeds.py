"""Named random streams spawned from one seed (``numpy.random.SeedSequence``).

Every random choice of a run draws from a stream named for what it decides: ``stream(seed,
"init")`` initialises the model, ``stream(seed, "data")`` orders the data, ``stream(seed,
"batch-size trial", point)`` seeds point ``point`` of the batch-size search, ``stream(seed,
"acquisition", round, member)`` one acquisition model of the subset search. The name is part of
the entropy handed to ``SeedSequence``, so streams of one seed are independent and streams never
collide the way offsets did (``1000 + 100·round + member`` met another round's at 100 members).

The encoding of a name is fixed forever (results depend on it): an integer is itself (it must be
non-negative), a string is ``Σ ord(c)·131^i mod 2^32``.
"""

from __future__ import annotations

import numpy as np

MASK = 0xFFFFFFFF


def _code(name: str | int) -> int:
    if isinstance(name, (int, np.integer)) and not isinstance(name, bool):
        if name < 0:
            raise ValueError(f"a stream name that is a number must be >= 0, got {name}")
        return int(name) & MASK
    return sum(ord(c) * 131 ** i for i, c in enumerate(str(name))) & MASK


def stream(seed: int, *names: str | int) -> int:
    """A 63-bit seed for the stream ``names`` of ``seed`` (independent of every other stream)."""
    key = [int(seed) & MASK] + [_code(n) for n in names]
    state = np.random.SeedSequence(key).generate_state(2, dtype=np.uint32).astype(np.uint64)
    return int(state @ np.array([1, 2**31], dtype=np.uint64))


def derive_seed(seed: int, name: str) -> int:
    """The seed of stream ``name`` of ``seed`` (``stream(seed, name)``): ``init``, ``data``, ..."""
    return stream(seed, name)
