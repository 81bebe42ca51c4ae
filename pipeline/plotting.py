"""Matplotlib without a display: a new figure, and an atomic PNG write that closes it (every plot of the project)."""

from __future__ import annotations

from pathlib import Path

import matplotlib

matplotlib.use("Agg")

import matplotlib.pyplot as plt  # noqa: E402

from pipeline.atomic import atomic_path  # noqa: E402


def new_figure(width: float = 6, height: float = 5, columns: int = 1):
    """(figure, axes) of one plot, or of `columns` plots side by side."""
    return plt.subplots(1, columns, figsize=(width, height))


def grid_figure(rows: int, columns: int, panel_width: float, panel_height: float):
    """(figure, 2-D array of axes) of rows x columns panels of the given size in inches."""
    return plt.subplots(rows, columns, figsize=(panel_width * columns, panel_height * rows), squeeze=False)


def save_figure(fig, png_path: Path, dpi: int = 110) -> None:
    """Write the figure as a PNG (temp file then rename) and release it; a figure title keeps a strip of its own."""
    fig.tight_layout(rect=(0, 0, 1, 1 - 0.4 / fig.get_figheight()) if fig.get_suptitle() else None)
    with atomic_path(png_path) as tmp:
        fig.savefig(tmp, format="png", dpi=dpi)
    plt.close(fig)
