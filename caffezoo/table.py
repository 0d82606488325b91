"""Plain-text tables for every command that prints one (info, zoo, time, doctor, demo,
validate, table): columns padded to their widest cell, two spaces apart, a dashed rule under the
header, numbers right-aligned where the caller says so; and the same as a Markdown table
(`markdown=True`: cells between pipes, the rule row saying each column's alignment) for pages
such as the zoo's accuracy table. One helper so that all tables look alike and a change of style
happens in one place."""

from __future__ import annotations

from collections.abc import Iterable, Sequence


def format_table(header: Sequence[str] | None, rows: Iterable[Sequence[object]], *,
                 align: str = "", indent: str = "", rule: bool = True,
                 markdown: bool = False) -> str:
    """The table as lines joined by newlines (no trailing newline).

    `align` has one letter per column, `l` or `r` (missing letters mean `l`); cells are
    str()-ed; trailing spaces are cut. Without a header there is no rule either. `markdown`:
    a Markdown table (a header is needed; `|` in a cell is escaped)."""
    if markdown:
        return _markdown(header, rows, align)
    body = [[str(cell) for cell in row] for row in rows]
    table = ([list(header)] if header is not None else []) + body
    if not table:
        return ""
    ncols = max(len(row) for row in table)
    for row in table:
        row.extend([""] * (ncols - len(row)))
    widths = [max(len(row[i]) for row in table) for i in range(ncols)]
    sides = align.ljust(ncols, "l")

    def line(cells: Sequence[str]) -> str:
        padded = [c.rjust(w) if side == "r" else c.ljust(w)
                  for c, w, side in zip(cells, widths, sides, strict=False)]
        return (indent + "  ".join(padded)).rstrip()

    lines = [line(row) for row in table]
    if header is not None and rule:
        lines.insert(1, line(["-" * w for w in widths]))
    return "\n".join(lines)


def _markdown(header: Sequence[str] | None, rows: Iterable[Sequence[object]],
              align: str) -> str:
    if header is None:
        raise ValueError("a Markdown table needs a header")
    def cells(row) -> list[str]:
        return [str(cell).replace("|", "\\|") for cell in row]

    body = [cells(row) for row in rows]
    ncols = max([len(header), *(len(row) for row in body)])
    sides = align.ljust(ncols, "l")
    rule = ["---:" if side == "r" else "---" for side in sides]
    table = [cells(header), rule, *body]
    for row in table:
        row.extend([""] * (ncols - len(row)))
    widths = [max(len(row[i]) for row in table) for i in range(ncols)]
    table[1] = [("-" * (w - 1) + ":") if side == "r" else "-" * w
                for w, side in zip(widths, sides, strict=True)]
    lines = []
    for row in table:
        cells = [c.rjust(w) if side == "r" else c.ljust(w)
                 for c, w, side in zip(row, widths, sides, strict=True)]
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)
