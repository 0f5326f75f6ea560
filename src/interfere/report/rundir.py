"""The files of one run directory as the report reads them: each parsed once, never executed.

JSON and YAML go through `json` and `yaml.safe_load`, so a run directory cannot make the report run code.
A file that is missing or does not parse reads as absent (its section then does not appear).
"""

from __future__ import annotations

import json
from functools import cached_property
from pathlib import Path
from typing import Any


class RunDir:
    """One run directory, and which of its files the report has shown so far."""

    def __init__(self, path: str | Path):
        self.path = Path(path).resolve()
        self.shown: set[Path] = set()

    @property
    def name(self) -> str:
        return self.path.name

    @cached_property
    def config(self) -> dict[str, Any]:
        import yaml

        try:
            cfg = yaml.safe_load((self.path / "config.yaml").read_text())
        except (OSError, yaml.YAMLError):
            return {}
        return cfg if isinstance(cfg, dict) else {}

    @cached_property
    def config_text(self) -> str | None:
        try:
            return (self.path / "config.yaml").read_text()
        except OSError:
            return None

    @cached_property
    def records(self) -> list[dict[str, Any]]:
        """metrics.jsonl, one dict per logged step (a line cut short by a crash is skipped)."""
        try:
            lines = (self.path / "metrics.jsonl").read_text().splitlines()
        except OSError:
            return []
        out = []
        for line in lines:
            try:
                rec = json.loads(line)
            except ValueError:
                continue
            if isinstance(rec, dict):
                out.append(rec)
        return out

    def json(self, relpath: str | Path) -> Any:
        try:
            return json.loads((self.path / relpath).read_text())
        except (OSError, ValueError):
            return None

    def files(self, pattern: str, under: str | Path = ".") -> list[Path]:
        """Files matching a glob under a sub-directory, sorted, hidden ones (temporaries) left out."""
        root = self.path / under
        if not root.is_dir():
            return []
        return sorted(p for p in root.glob(pattern)
                      if p.is_file() and not any(part.startswith(".") for part in p.relative_to(self.path).parts))

    def rel(self, path: Path) -> str:
        """The path relative to the run directory, with forward slashes (an href beside report.html)."""
        return path.relative_to(self.path).as_posix()

    def show(self, *paths: Path) -> None:
        self.shown.update(paths)
