"""Accuracy against crop size (the curve the original README shows), drawn with matplotlib's
Agg backend so it works without a display; `png_figure` for the other plots (the zoo table's)."""

from __future__ import annotations

import contextlib
import io
from collections.abc import Iterator, Sequence

from caffezoo.errors import DependencyError
from caffezoo.evaluation.classify import EvalResult


def pyplot():
    """matplotlib.pyplot on the Agg backend (no display needed)."""
    try:
        import matplotlib

        matplotlib.use("Agg", force=True)
        import matplotlib.pyplot as plt
    except ImportError as err:
        raise DependencyError(f"plots need matplotlib ({err}); pip install matplotlib") from None
    return plt


@contextlib.contextmanager
def png_figure(path, figsize: tuple[float, float]) -> Iterator:
    """The axes of a new figure, written atomically to `path` as PNG when the block ends."""
    from caffezoo import netio

    plt = pyplot()
    fig, ax = plt.subplots(figsize=figsize, dpi=100)
    try:
        yield ax
        fig.tight_layout()
        buf = io.BytesIO()
        fig.savefig(buf, format="png")
    finally:
        plt.close(fig)
    netio.atomic_write(path, buf.getvalue())


def plot_accuracy_vs_crop(points: Sequence[tuple[int, EvalResult]], path: str,
                          title: str = "") -> None:
    """One line per top-k: accuracy (%) at each crop size; written atomically as PNG."""
    points = sorted(points, key=lambda p: p[0])
    sizes = [size for size, _ in points]
    with png_figure(path, (6, 4)) as ax:
        for k in points[0][1].top_k:
            accs = [100 * r.accuracy(k) for _, r in points]
            ax.plot(sizes, accs, marker="o", label=f"top-{k}")
            for x, y in zip(sizes, accs, strict=True):
                ax.annotate(f"{y:.2f}", (x, y), textcoords="offset points", xytext=(0, 6),
                            ha="center", fontsize=8)
        ax.set_xlabel("crop size (pixels)")
        ax.set_ylabel("accuracy (%)")
        ax.set_xticks(sizes)
        n = points[0][1].evaluated
        ax.set_title(f"{title} ({n} images)" if title else f"{n} images")
        ax.grid(True, alpha=0.3)
        ax.legend()
