"""The one table renderer: a header and rows of text cells -> a terminal table or a Markdown table.

``robustreg list``, the evaluation report (:mod:`robustreg.report`) and the toolkit comparison
(:mod:`robustreg.compare`) all render through :func:`format_table`.
"""

from __future__ import annotations

from collections.abc import Sequence

__all__ = ["format_table", "shorten"]


def shorten(cell: str, width: int | None) -> str:
    """``cell`` cut to ``width`` characters (ending in ``...``) when longer; unchanged if ``width`` is None."""
    if width is None or len(cell) <= width:
        return cell
    return cell[:max(width - 3, 0)] + "..."


def format_table(header: Sequence[str], rows: Sequence[Sequence[str]], *, markdown: bool = False,
                 max_cell: int | None = None) -> str:
    """``header`` and ``rows`` as a table.

    ``markdown``: a GitHub Markdown table (``|`` in a cell escaped, never shortened); otherwise
    left-aligned columns two spaces apart under a dashed rule, each cell cut to ``max_cell``.
    """
    if markdown:
        def esc(cell: str) -> str:
            return cell.replace("|", "\\|")

        lines = ["| " + " | ".join(esc(h) for h in header) + " |", "|" + "|".join("---" for _ in header) + "|"]
        lines += ["| " + " | ".join(esc(c) for c in row) + " |" for row in rows]
        return "\n".join(lines)
    cells = [[shorten(c, max_cell) for c in row] for row in rows]
    widths = [max([len(h)] + [len(row[i]) for row in cells]) for i, h in enumerate(header)]
    lines = ["  ".join(h.ljust(w) for h, w in zip(header, widths)).rstrip(), "  ".join("-" * w for w in widths)]
    lines += ["  ".join(c.ljust(w) for c, w in zip(row, widths)).rstrip() for row in cells]
    return "\n".join(lines)
