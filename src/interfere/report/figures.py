"""The report's own figures (curves drawn from metrics.jsonl and eval.json), as PNG data URIs.

matplotlib's object API (`matplotlib.figure.Figure`, Agg canvas) and no pyplot: no global figure state,
no GUI backend, nothing to close.
"""

from __future__ import annotations

import io
from typing import Sequence

from interfere.report.blocks import Figure, data_uri

Series = tuple[str, list[float], list[float]]  # (label, x, y)


def series(records: Sequence[dict], key: str, x: str = "step") -> tuple[list[float], list[float]]:
    """(x, y) of every record that has a finite number under `key` (and under `x`)."""
    xs, ys = [], []
    for r in records:
        v, s = r.get(key), r.get(x)
        if _number(v) and _number(s):
            xs.append(s)
            ys.append(v)
    return xs, ys


def _number(v) -> bool:
    return isinstance(v, (int, float)) and not isinstance(v, bool) and v == v and abs(v) != float("inf")


def line_plot(lines: Sequence[Series], title: str, xlabel: str, ylabel: str, name: str, logy: bool = False,
              markers: bool = False) -> Figure:
    from matplotlib.figure import Figure as MplFigure

    from matplotlib.ticker import MaxNLocator

    fig = MplFigure(figsize=(5.4, 3.1), layout="constrained")
    ax = fig.add_subplot()
    for label, xs, ys in lines:
        ax.plot(xs, ys, label=label, marker="o" if markers or len(xs) < 12 else None, markersize=3, linewidth=1.4)
    ys = [y for _, _, line in lines for y in line]
    if logy and min(ys) > 0 and max(ys) > 10 * min(ys):  # a log axis only where it spreads something out
        ax.set_yscale("log")
    ax.xaxis.set_major_locator(MaxNLocator(integer=True))
    ax.set(title=title, xlabel=xlabel, ylabel=ylabel)
    ax.grid(alpha=0.3)
    if len(lines) > 1:
        ax.legend(fontsize=8)
    return Figure(png(fig), title, name)


def png(fig, dpi: int = 100) -> str:
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=dpi)
    return data_uri(buf.getvalue(), "image/png")


def small_multiples(lines: Sequence[Series], title: str, xlabel: str, name: str, cols: int = 3) -> Figure:
    """One small plot per series (for metrics on different scales), in a grid `cols` wide."""
    from matplotlib.figure import Figure as MplFigure
    from matplotlib.ticker import MaxNLocator

    rows = -(-len(lines) // cols)
    fig = MplFigure(figsize=(3.2 * min(cols, len(lines)), 2.4 * rows), layout="constrained")
    fig.suptitle(title)
    for i, (label, xs, ys) in enumerate(lines):
        ax = fig.add_subplot(rows, min(cols, len(lines)), i + 1)
        ax.plot(xs, ys, marker="o", markersize=3, linewidth=1.2)
        ax.xaxis.set_major_locator(MaxNLocator(integer=True))
        ax.set_title(label, fontsize=9)
        ax.set_xlabel(xlabel, fontsize=8)
        ax.tick_params(labelsize=7)
        ax.grid(alpha=0.3)
    return Figure(png(fig), title, name)
