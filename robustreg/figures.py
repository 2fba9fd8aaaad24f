"""Figures for the PNG files, drawn without touching the user's matplotlib.

A ``matplotlib.figure.Figure`` with its own ``FigureCanvasAgg``: no pyplot, no ``matplotlib.use``, so a
notebook's inline backend (or any backend the user chose) is left as it was, and drawing is safe in
threads and on headless machines.
"""

from __future__ import annotations

import io
from typing import Any

__all__ = ["figure", "figure_png"]


def figure(width: float = 6.0, height: float = 4.0) -> Any:
    """A matplotlib ``Figure`` on its own Agg canvas (the global backend is never changed)."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    fig = Figure(figsize=(width, height), dpi=100)
    FigureCanvasAgg(fig)  # attaches itself as fig.canvas
    return fig


def figure_png(fig: Any) -> bytes:
    """``fig`` rendered to PNG bytes (tight layout)."""
    fig.tight_layout()
    buf = io.BytesIO()
    fig.savefig(buf, format="png")
    return buf.getvalue()
