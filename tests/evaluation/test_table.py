"""caffezoo.table.format_table, the one table printer, and caffezoo.progress, the one bar."""

from __future__ import annotations

import io

from caffezoo.progress import Progress, steps
from caffezoo.table import format_table


def test_columns_rule_alignment_and_indent():
    text = format_table(("name", "n", "note"), [("a", 1, "x"), ("long name", 1234, "")],
                        align="lr", indent="  ")
    assert text.splitlines() == [
        "  name          n  note",
        "  ---------  ----  ----",
        "  a             1  x",
        "  long name  1234",
    ]


def test_no_header_no_rule_and_ragged_rows():
    assert format_table(None, [("a", "b"), ("ccc",)]) == "a    b\nccc"
    assert format_table(("h",), [], rule=False) == "h"
    assert format_table(None, []) == ""


def test_progress_is_tqdm_and_quiet_off_a_terminal(capsys):
    p = Progress(3, label="work", stream=io.StringIO())
    assert not p.enabled and type(p._bar).__module__.startswith("tqdm")
    assert list(steps(range(3), label="x")) == [0, 1, 2]  # stderr is captured: no terminal
    assert capsys.readouterr().err == ""


def test_markdown_tables_align_and_escape():
    text = format_table(("model", "a|b", "n"), [("x", 1, 2.5), ("longer", 22, 3)], align="lrr",
                        markdown=True)
    assert text.splitlines() == [
        "| model  | a\\|b |    n |",
        "| ------ | ---: | ---: |",
        "| x      |    1 |  2.5 |",
        "| longer |   22 |    3 |",
    ]
