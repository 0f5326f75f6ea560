"""What a report section is made of: headings, tables, figures, text and links to files beside the report.

Sections return lists of these; the template draws each kind one way. Figures carry their image as a
data URI, so the page needs nothing but itself (links point at files of the run, relative to the report).
"""

from __future__ import annotations

import base64
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, ClassVar, Mapping

from interfere.formatting import fmt

MIME = {".png": "image/png", ".gif": "image/gif", ".jpg": "image/jpeg", ".jpeg": "image/jpeg",
        ".svg": "image/svg+xml", ".webp": "image/webp"}


@dataclass
class Heading:
    text: str
    kind: ClassVar[str] = "heading"


@dataclass
class Table:
    columns: list[str]
    rows: list[list[str]]
    caption: str = ""
    kind: ClassVar[str] = "table"

    @classmethod
    def of(cls, columns: list[str], rows: list[list[Any]], caption: str = "") -> "Table":
        """A table whose cells are formatted as the terminal tables are (interfere.formatting.fmt)."""
        return cls(columns, [[fmt(v) for v in row] for row in rows], caption)

    @classmethod
    def pairs(cls, items: Mapping[str, Any], caption: str = "", columns=("key", "value")) -> "Table":
        return cls.of(list(columns), [[k, v] for k, v in items.items()], caption)


@dataclass
class Figure:
    src: str  # a data: URI
    caption: str
    name: str = ""  # what the figure shows, for the page's table of contents and tests
    kind: ClassVar[str] = "figure"

    @classmethod
    def of_file(cls, path: Path, caption: str, name: str = "") -> "Figure":
        return cls(data_uri(path.read_bytes(), MIME[path.suffix.lower()]), caption, name or path.stem)


@dataclass
class Text:
    text: str
    caption: str = ""
    kind: ClassVar[str] = "text"


@dataclass
class Links:
    items: list[tuple[str, str]] = field(default_factory=list)  # (relative href, label)
    caption: str = ""
    kind: ClassVar[str] = "links"


def data_uri(data: bytes, mime: str) -> str:
    return f"data:{mime};base64,{base64.b64encode(data).decode('ascii')}"
