"""The zoo's accuracy table, as the original README laid it out: one row per model (input size,
parameters, MACs), top-1/top-5 error per crop scheme, and images/s on the backend used; written
as Markdown, CSV (one row per model and scheme), JSON, and a plot of accuracy against MACs.

`caffezoo table` (commands/table.py) fills it; this module only lays out what was measured."""

from __future__ import annotations

import csv
import io
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field


@dataclass
class Column:
    """A crop scheme of the table, e.g. the models' first evaluation size at 12 crops."""

    key: tuple           # (size index or crop size, crop_num)
    label: str           # "224/299 12-crop"


@dataclass
class Cell:
    """One model at one crop scheme: what was measured, and the original README's figure."""

    column: str
    crop_size: int
    base_size: int
    crop_num: int
    top1: float          # accuracy, percent
    top5: float
    evaluated: int
    listed: int
    failed: int
    images_per_s: float
    gmacs: float         # per image as evaluated: the net at crop_size, times crop_num
    backend: str
    executor: str
    record: str
    reference_top1: float | None = None  # the original README's accuracy, percent
    reference_top5: float | None = None

    @property
    def errors(self) -> str:
        return f"{100 - self.top1:.2f}/{100 - self.top5:.2f}"


@dataclass
class Row:
    name: str
    input_size: int
    params: int
    macs: int            # one image at input_size
    source: str          # "zoo card X" or the contract file
    cells: list[Cell] = field(default_factory=list)


def markdown(rows: Sequence[Row], columns: Sequence[Column], note: str) -> str:
    """The README's table: error cells "top-1/top-5" (the original's in brackets when the card
    has it), then the first scheme's images/s."""
    from caffezoo.table import format_table

    speed = columns[0].label
    header = ["model", "input", "params (M)", "GMACs",
              *[f"{c.label} top-1/top-5 err %" for c in columns], f"img/s ({speed})"]
    body = []
    for row in rows:
        by_column = {cell.column: cell for cell in row.cells}
        cells = []
        for column in columns:
            cell = by_column.get(column.label)
            if cell is None:
                cells.append("")
                continue
            text = cell.errors
            if cell.reference_top1 is not None:
                text += f" ({100 - cell.reference_top1:.2f}/{100 - cell.reference_top5:.2f})"
            cells.append(text)
        first = by_column.get(columns[0].label)
        body.append([row.name, row.input_size, f"{row.params / 1e6:.1f}",
                     f"{row.macs / 1e9:.2f}", *cells,
                     f"{first.images_per_s:.1f}" if first else ""])
    table = format_table(header, body, align="lrrr" + "r" * (len(columns) + 1), markdown=True)
    return f"{table}\n\n{note}\n"


CSV_COLUMNS = ("model", "input_size", "param_count", "gmacs", "scheme", "img_size", "base_size",
               "crop_num", "top1", "top1_err", "top5", "top5_err", "images", "failed",
               "images_per_s", "backend", "executor", "reference_top1", "reference_top5")


def csv_text(rows: Sequence[Row]) -> str:
    """One row per model and crop scheme; accuracies in percent, param_count in millions (as
    timm's results), gmacs of one image at the input size."""
    buf = io.StringIO()
    writer = csv.DictWriter(buf, fieldnames=CSV_COLUMNS, lineterminator="\n")
    writer.writeheader()
    for row in rows:
        for cell in row.cells:
            writer.writerow({
                "model": row.name, "input_size": row.input_size,
                "param_count": round(row.params / 1e6, 2), "gmacs": round(row.macs / 1e9, 3),
                "scheme": cell.column, "img_size": cell.crop_size, "base_size": cell.base_size,
                "crop_num": cell.crop_num, "top1": round(cell.top1, 4),
                "top1_err": round(100 - cell.top1, 4), "top5": round(cell.top5, 4),
                "top5_err": round(100 - cell.top5, 4), "images": cell.evaluated,
                "failed": cell.failed, "images_per_s": round(cell.images_per_s, 3),
                "backend": cell.backend, "executor": cell.executor,
                "reference_top1": "" if cell.reference_top1 is None else cell.reference_top1,
                "reference_top5": "" if cell.reference_top5 is None else cell.reference_top5})
    return buf.getvalue()


def json_payload(rows: Sequence[Row], columns: Sequence[Column], meta: dict) -> dict:
    return {"tool": "caffezoo table", **meta,
            "columns": [c.label for c in columns],
            "models": [{**{k: v for k, v in asdict(row).items() if k != "cells"},
                        "cells": [asdict(cell) for cell in row.cells]} for row in rows]}


def plot(rows: Sequence[Row], columns: Sequence[Column], path, title: str) -> None:
    """Top-1 accuracy against GMACs per image as evaluated (the net at the crop size, times the
    crops), one marker per crop scheme, each point named; PNG through matplotlib's Agg."""
    from caffezoo.evaluation.plots import png_figure

    with png_figure(path, (7, 4.5)) as ax:
        for column, marker in zip(columns, "osD^v<>phX*", strict=False):
            points = [(cell.gmacs, cell.top1, row.name) for row in rows for cell in row.cells
                      if cell.column == column.label]
            if not points:
                continue
            ax.scatter([p[0] for p in points], [p[1] for p in points], marker=marker,
                       label=column.label)
            for x, y, name in points:
                ax.annotate(name, (x, y), textcoords="offset points", xytext=(4, 4), fontsize=7)
        ax.set_xscale("log")
        ax.margins(x=0.15, y=0.1)  # room for the names
        ax.set_xlabel("GMACs per image as evaluated (crop size, times the crops)")
        ax.set_ylabel("top-1 accuracy (%)")
        ax.set_title(title)
        ax.grid(True, alpha=0.3, which="both")
        ax.legend(fontsize=8)
