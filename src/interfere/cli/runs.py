"""`interfere runs [runs_dir=<dir>] [--json]`: one line per run directory."""

from __future__ import annotations

import json
import time
from pathlib import Path

from interfere.cli.common import add_json, add_overrides, parse_words, print_json, print_table
from interfere.formatting import age

HELP = "list the runs under runs/ (task, step, tokens, last loss, age; * marks runs/latest)"
KEYS = {"runs_dir": "dir"}
EPILOG = """\
examples:
  interfere runs
  interfere runs runs_dir=/data/runs
  interfere runs --json        one JSON object: {"runs_dir": ..., "runs": [{"id", "task", "step", ...}]}"""


def add_arguments(p) -> None:
    add_overrides(p, "runs_dir=<dir> (default: runs)")
    add_json(p)


def run(args) -> int:
    runs_dir = Path(parse_words(args.overrides, KEYS, "runs").get("runs_dir", "runs"))
    rows = collect(runs_dir)
    if args.json:
        print_json({"runs_dir": str(runs_dir), "runs": rows})
    elif not rows:
        print(f"no runs under {runs_dir}/ yet; start one with `interfere train exp=life_smoke`")
    else:
        show(rows)
    return 0


def show(rows: list[dict]) -> None:
    """The runs table (the interactive menu shows the same one)."""
    print_table(None, ["run", "task", "step", "tokens", "last loss", "age", "latest"], table_rows(rows))


def collect(runs_dir: Path) -> list[dict]:
    """The runs under runs_dir, oldest first, each with "latest": whether runs/latest points at it."""
    rows = _list_runs(Path(runs_dir))
    latest = (Path(runs_dir) / "latest").resolve() if (Path(runs_dir) / "latest").exists() else None
    for r in rows:
        r["latest"] = latest is not None and Path(r["path"]).resolve() == latest
    return rows


def table_rows(rows: list[dict]) -> list[list]:
    now = time.time()
    return [[r["id"], r.get("task"), r.get("step"), r.get("tokens"), r.get("loss"),
             age(now - r["updated"]) if r.get("updated") else None, "*" if r.get("latest") else ""] for r in rows]


def _list_runs(runs_dir: Path) -> list[dict]:
    try:
        from interfere.train.runs import list_runs
    except ImportError:  # the training package is absent: read metrics.jsonl directly
        return _read_runs(runs_dir)
    return [dict(r) for r in list_runs(runs_dir)]


def _read_runs(runs_dir: Path) -> list[dict]:
    rows = []
    if not runs_dir.is_dir():
        return rows
    for d in sorted(p for p in runs_dir.iterdir() if p.is_dir() and not p.is_symlink()):
        metrics = d / "metrics.jsonl"
        if not metrics.is_file():
            continue
        last = {}
        for line in metrics.read_text().splitlines():
            try:
                rec = json.loads(line)
            except ValueError:
                continue
            if isinstance(rec, dict) and "loss" in rec:
                last = rec
        rows.append({"id": d.name, "step": last.get("step"), "tokens": last.get("tokens"),
                     "loss": last.get("loss"), "path": str(d)})
    return rows
