"""DESIGN.md's arrows: interfere.analysis imports no task, no trainer and no CLI (checked statically)."""

import ast
from pathlib import Path

import interfere

ANALYSIS = Path(interfere.__file__).parent / "analysis"
FORBIDDEN = ("interfere.tasks", "interfere.train", "interfere.cli", "interfere.explore", "interfere.report")


def imported_modules(path: Path) -> set[str]:
    names = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            names |= {a.name for a in node.names}
        elif isinstance(node, ast.ImportFrom) and node.module:
            names.add(node.module)
    return names


def test_analysis_imports_no_task_trainer_or_cli():
    files = sorted(ANALYSIS.glob("*.py"))
    assert {f.name for f in files} >= {"lens.py", "attention.py", "induction.py", "patching.py", "dla.py",
                                       "probes.py", "plots.py", "tables.py"}
    for f in files:
        bad = sorted(m for m in imported_modules(f) if m.startswith(FORBIDDEN))
        assert not bad, f"{f.name} imports {bad}"


def test_pretrained_loader_imports_no_task():
    bad = [m for m in imported_modules(ANALYSIS.parent / "model" / "pretrained.py") if m.startswith(FORBIDDEN)]
    assert not bad


def test_explore_imports_no_cli():
    files = sorted((ANALYSIS.parent / "explore").rglob("*.py"))
    assert len(files) > 5
    for f in files:
        bad = sorted(m for m in imported_modules(f) if m.startswith("interfere.cli"))
        assert not bad, f"{f.name} imports {bad}"
