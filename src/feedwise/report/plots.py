"""Matplotlib helpers shared by the report sections (Agg backend, files only)."""

from __future__ import annotations

from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402


def figure(width: float = 6.0, height: float = 4.0):
    fig, ax = plt.subplots(figsize=(width, height), dpi=100)
    ax.grid(True, alpha=0.3)
    return fig, ax


def save(fig, path: Path, dpi: float | None = None) -> Path:
    """Lay out, write as PNG (at ``dpi``, default the figure's own), close; returns ``path``."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.tight_layout()
    fig.savefig(path, format="png", dpi=dpi if dpi is not None else "figure")
    plt.close(fig)
    return path


def legend_if_any(ax, **kwargs) -> None:
    """A legend only when something was labelled (an empty legend draws a warning)."""
    if ax.get_legend_handles_labels()[0]:
        ax.legend(**kwargs)
