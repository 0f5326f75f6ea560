"""A run directory -> report.html: the registered sections in order, drawn by one Jinja2 template.

The page is one file that works offline: CSS inline, every picture a data: URI, videos and other large
files linked relative to the report (it sits in the run directory). No script, no font, no URL.
"""

from __future__ import annotations

import time
from pathlib import Path

from interfere import __version__
from interfere.errors import ConfigError
from interfere.files import atomic_write_text
from interfere.report import sections as _builtin  # noqa: F401 (registers the built-in sections)
from interfere.report.registry import ordered
from interfere.report.rundir import RunDir

REPORT = "report.html"


def build(run_dir: str | Path) -> list[dict]:
    """[{key, title, blocks, error}] for every section that has something to show.

    A section that fails shows its one-line error instead of taking the whole report down.
    """
    run = RunDir(run_dir)
    if not (run.path / "config.yaml").is_file():
        raise ConfigError(f"{run.path} is not a run directory (no config.yaml); `interfere runs` lists the runs")
    out = []
    for s in ordered():
        try:
            blocks, error = s.build(run), None
        except Exception as e:  # noqa: BLE001 - shown in the page, the other sections still render
            blocks, error = [], f"{type(e).__name__}: {' '.join(str(e).split())}"
        if blocks or error:
            out.append({"key": s.key, "title": s.title, "blocks": blocks, "error": error})
    return out


def render(run_dir: str | Path, sections: list[dict] | None = None) -> str:
    """The page's HTML; `sections` from build(run_dir) if already built."""
    from jinja2 import Environment, PackageLoader, StrictUndefined

    env = Environment(loader=PackageLoader("interfere.report", "templates"), autoescape=True,
                      undefined=StrictUndefined, trim_blocks=True, lstrip_blocks=True)
    return env.get_template("report.html.j2").render(
        run=Path(run_dir).resolve().name, sections=build(run_dir) if sections is None else sections, version=__version__,
        written=time.strftime("%Y-%m-%d %H:%M:%S"))


def write_report(run_dir: str | Path, sections: list[dict] | None = None) -> Path:
    """Write <run_dir>/report.html atomically (beside the files it links to); its path."""
    return atomic_write_text(Path(run_dir) / REPORT, render(run_dir, sections))
