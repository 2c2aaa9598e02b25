"""Label noise as a data transform with its own seed."""

from __future__ import annotations

import numpy as np

from feedwise.errors import FeedwiseError


def add_label_noise(labels: np.ndarray, fraction: float, num_classes: int, seed: int):
    """Flip ``round(fraction * N)`` labels, each uniformly to a *different* class.

    Returns ``(noisy_labels, flipped_indices)``; ``flipped_indices`` is sorted.
    The input array is not modified.
    """
    if not (0.0 <= fraction < 1.0):
        raise FeedwiseError(f"label noise must be in [0, 1), got {fraction}")
    if num_classes < 2 and fraction > 0:
        raise FeedwiseError("label noise needs at least two classes")
    labels = np.asarray(labels)
    n = len(labels)
    count = int(round(fraction * n))
    rng = np.random.default_rng(seed)
    flipped = np.sort(rng.choice(n, size=count, replace=False)) if count else np.zeros(0, dtype=np.int64)
    noisy = labels.copy()
    if count:
        # an offset in 1..K-1 guarantees a different class, uniform over the others
        offset = rng.integers(1, num_classes, size=count)
        noisy[flipped] = (labels[flipped] + offset) % num_classes
    return noisy, flipped.astype(np.int64)
