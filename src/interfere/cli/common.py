"""Helpers shared by the sub-commands: their flags, JSON and table output (their key=value words: cli/words.py)."""

from __future__ import annotations

import json
import os
import sys
from typing import Any

from interfere.files import jsonable  # noqa: F401 (one home; the commands import it from here)
from interfere.formatting import flatten, fmt  # noqa: F401 (the commands' tables use them from here)


def add_overrides(parser, help: str) -> None:
    parser.add_argument("overrides", nargs="*", metavar="key=value", help=help)


def add_json(parser) -> None:
    parser.add_argument("--json", action="store_true", help="print one JSON object on stdout and nothing else there")


def is_main_process() -> bool:
    """True unless this is a torchrun worker other than rank 0."""
    return os.environ.get("RANK", "0") == "0"


# ----- output -----------------------------------------------------------------------------------------
def print_json(obj: Any, stream=None) -> None:
    stream = stream or sys.stdout
    stream.write(json.dumps(jsonable(obj), allow_nan=False) + "\n")
    stream.flush()


def print_table(title: str | None, columns: list[str], rows: list[list[Any]]) -> None:
    """A rich table on stdout (plain aligned text when stdout is not a terminal)."""
    from rich.console import Console
    from rich.table import Table

    table = Table(title=title, title_justify="left", box=None, header_style="bold", pad_edge=False)
    for i, c in enumerate(columns):
        table.add_column(c, justify="left" if i == 0 else "right", overflow="fold")
    for row in rows:
        table.add_row(*(fmt(v) for v in row))
    Console(width=None if sys.stdout.isatty() else 200).print(table)
