"""Helpers shared by the sub-commands: `key=value` words that are not Hydra keys, JSON and table output."""

from __future__ import annotations

import difflib
import json
import os
import sys
from typing import Any, Iterable, Mapping

from interfere.errors import ConfigError
from interfere.files import jsonable  # noqa: F401 (one home; the commands import it from here)
from interfere.formatting import flatten, fmt  # noqa: F401 (the commands' tables use them from here)


def add_overrides(parser, help: str) -> None:
    parser.add_argument("overrides", nargs="*", metavar="key=value", help=help)


def add_json(parser) -> None:
    parser.add_argument("--json", action="store_true", help="print one JSON object on stdout and nothing else there")


def parse_words(words: Iterable[str], allowed: Mapping[str, str], command: str) -> dict[str, str]:
    """`key=value` words of a command that takes a fixed set of keys (not a Hydra config).

    `allowed` maps each key to a short description; an unknown or malformed word raises ConfigError
    naming the closest key.
    """
    out: dict[str, str] = {}
    for word in words:
        key, eq, value = word.partition("=")
        key = key.lstrip("+")
        if not eq or not key:
            raise ConfigError(f"'{word}' is not key=value; `interfere {command}` takes {_keys_list(allowed)}")
        if key not in allowed:
            close = difflib.get_close_matches(key, list(allowed), n=1, cutoff=0.5)
            hint = f"did you mean {close[0]}={value}? " if close else ""
            raise ConfigError(f"`interfere {command}` has no key '{key}'; {hint}it takes {_keys_list(allowed)}")
        out[key] = value
    return out


def _keys_list(allowed: Mapping[str, str]) -> str:
    return ", ".join(f"{k}=<{v}>" for k, v in allowed.items())


def to_int(key: str, value: str, minimum: int | None = None) -> int:
    try:
        n = int(value)
    except ValueError:
        raise ConfigError(f"{key} must be an integer, not '{value}'; e.g. {key}=1000") from None
    if minimum is not None and n < minimum:
        raise ConfigError(f"{key}={n} must be at least {minimum}")
    return n


def to_float(key: str, value: str) -> float:
    try:
        return float(value)
    except ValueError:
        raise ConfigError(f"{key} must be a number, not {value!r}") from None


def to_bool(key: str, value: str) -> bool:
    v = value.lower()
    if v not in ("true", "false", "1", "0", "yes", "no"):
        raise ConfigError(f"{key} must be true or false, not {value!r}")
    return v in ("true", "1", "yes")


def option(words: Mapping[str, str], key: str, default: Any, convert, **limits) -> Any:
    """words[key] converted by `convert(key, value, **limits)` (to_int, to_float, to_bool), or default if absent."""
    return convert(key, words[key], **limits) if key in words else default


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
