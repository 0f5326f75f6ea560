"""HTML report of a run: `write_report(run_dir)` -> runs/<id>/report.html, one self-contained page.

It reads only the run directory (config.yaml, metrics.jsonl, calibration.json, eval.json, assets/) and
shows a section for each thing it finds there; `registry.py` says how a new feature adds its section.
"""

from interfere.report.registry import SECTIONS, register
from interfere.report.render import REPORT, build, render, write_report

__all__ = ["REPORT", "SECTIONS", "build", "register", "render", "write_report"]
