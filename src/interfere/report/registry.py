"""The report's sections: each a function from the run directory to blocks, registered with its place.

A section that finds nothing to show returns no blocks and does not appear. Adding one (say, for the
consistency lens) is a function in a module of this package plus an import in `report/sections.py`:

    @register("lens", "Consistency lens", order=70)
    def lens(run: RunDir) -> list:
        files = run.files("*.json", "assets/lens")
        run.show(*files)                  # so that "Other files" does not list them again
        return [Table.pairs(run.json(f), f.name) for f in files]
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable

from interfere.report.rundir import RunDir


@dataclass(frozen=True)
class Section:
    key: str  # the HTML id is "section-<key>"
    title: str
    order: int
    build: Callable[[RunDir], list]


SECTIONS: dict[str, Section] = {}


def register(key: str, title: str, order: int):
    """Decorator: add `build(run) -> blocks` to the report as section `key` (lower `order` comes first)."""
    def add(build: Callable[[RunDir], list]) -> Callable[[RunDir], list]:
        SECTIONS[key] = Section(key, title, order, build)
        return build
    return add


def ordered() -> list[Section]:
    return sorted(SECTIONS.values(), key=lambda s: (s.order, s.key))
