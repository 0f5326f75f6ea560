"""DESIGN.md's arrows, checked statically over every module of the package and benchmarks/: `cli` -> everything;
explore, lens, report -> analysis, train, tasks, model; train -> tasks, model; tasks -> model; nothing imports
`cli`; model imports no task, trainer or analysis; analysis imports no task or trainer."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

import interfere

SRC = Path(interfere.__file__).parent
BENCHMARKS = SRC.parent.parent / "benchmarks"
ABOVE_TRAIN = ("interfere.explore", "interfere.lens", "interfere.report", "interfere.cli")
# For each part of the house, the packages it must not import (interfere.cli is forbidden to all but itself).
FORBIDDEN = {
    "model": ("interfere.tasks", "interfere.train", "interfere.analysis", "interfere.config", *ABOVE_TRAIN),
    "analysis": ("interfere.tasks", "interfere.train", *ABOVE_TRAIN),
    "tasks": ("interfere.train", "interfere.analysis", *ABOVE_TRAIN),
    "train": ("interfere.analysis", *ABOVE_TRAIN),
    "explore": ("interfere.cli",),
    "lens": ("interfere.cli",),
    "report": ("interfere.cli",),
    "conf": ("interfere.cli",),
    "": ("interfere.cli", "interfere.train", "interfere.analysis", *ABOVE_TRAIN),  # files.py, errors.py, config.py ...
    "benchmarks": ("interfere.cli",),
}


def imported_modules(path: Path) -> set[str]:
    names = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            names |= {a.name for a in node.names}
        elif isinstance(node, ast.ImportFrom) and node.module:
            names.add(node.module)
    return names


def part_of(path: Path) -> str:
    if BENCHMARKS in path.parents:
        return "benchmarks"
    rel = path.relative_to(SRC)
    return rel.parts[0] if len(rel.parts) > 1 else ""


# The package's two doors sit above everything: `interfere.load` (the trainer's loader) and `python -m interfere`.
DOORS = {SRC / "__init__.py", SRC / "__main__.py"}


def modules() -> list[Path]:
    files = sorted(SRC.rglob("*.py")) + sorted(BENCHMARKS.glob("*.py"))
    return [f for f in files if part_of(f) != "cli" and f not in DOORS]


def test_every_part_of_the_house_has_a_rule():
    parts = {part_of(f) for f in modules()}
    assert parts <= set(FORBIDDEN), parts - set(FORBIDDEN)
    assert {"model", "analysis", "tasks", "train", "explore", "report", "benchmarks", ""} <= parts


@pytest.mark.parametrize("path", modules(), ids=lambda p: str(p.relative_to(SRC.parent.parent)))
def test_imports_follow_the_arrows(path):
    bad = sorted(m for m in imported_modules(path) if m.startswith(FORBIDDEN[part_of(path)]))
    assert not bad, f"{path.name} ({part_of(path) or 'interfere'}) imports {bad}"


def test_tasks_declare_their_headline_metric_and_the_trainer_names_none():
    from interfere.tasks import REGISTRY, headline_metric

    assert {name: headline_metric(name) for name in ("life", "text", "repeat")} == {
        "life": "cell_accuracy", "text": "accuracy", "repeat": "acc_second"}
    assert all(isinstance(getattr(loader(), "headline", None), str) for loader in REGISTRY.values())
    trainer = "".join(p.read_text() for p in (SRC / "train").glob("*.py"))
    assert not any(name in trainer for name in ("cell_accuracy", "acc_t1", "board_accuracy"))
