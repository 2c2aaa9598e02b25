"""Matplotlib helpers shared by the report sections (Agg backend, files only)."""

from __future__ import annotations

from pathlib import Path

import matplotlib

from feedwise.files import atomic_writer, mkdir

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402


def figure(width: float = 6.0, height: float = 4.0):
    fig, ax = plt.subplots(figsize=(width, height), dpi=100)
    ax.grid(True, alpha=0.3)
    return fig, ax


def save(fig, path: Path, dpi: float | None = None) -> Path:
    """Lay out, write as PNG (at ``dpi``, default the figure's own), close; returns ``path``."""
    path = Path(path)
    try:
        mkdir(path.parent, parents=True)
        fig.tight_layout()
        with atomic_writer(path, binary=True) as f:   # a full disk leaves no half-written PNG behind
            fig.savefig(f, format="png", dpi=dpi if dpi is not None else "figure")
    finally:
        plt.close(fig)
    return path


def legend_if_any(ax, **kwargs) -> None:
    """A legend only when something was labelled (an empty legend draws a warning)."""
    if ax.get_legend_handles_labels()[0]:
        ax.legend(**kwargs)
