"""`interfere runs [runs_dir=<dir>] [--json]`: one line per run directory."""

from __future__ import annotations

import json
from pathlib import Path

from interfere.cli.common import add_json, add_overrides, parse_words, print_json, print_table

HELP = "list the runs under runs/ (step, tokens, last loss; * marks runs/latest)"
KEYS = {"runs_dir": "dir"}


def add_arguments(p) -> None:
    add_overrides(p, "runs_dir=<dir> (default: runs)")
    add_json(p)


def run(args) -> int:
    runs_dir = Path(parse_words(args.overrides, KEYS, "runs").get("runs_dir", "runs"))
    rows = _list_runs(runs_dir)
    latest = (runs_dir / "latest").resolve() if (runs_dir / "latest").exists() else None
    for r in rows:
        r["latest"] = latest is not None and Path(r["path"]).resolve() == latest
    if args.json:
        print_json({"runs_dir": str(runs_dir), "runs": rows})
    elif not rows:
        print(f"no runs under {runs_dir}/ yet; start one with `interfere train exp=life_smoke`")
    else:
        print_table(None, ["run", "step", "tokens", "loss", "latest"],
                    [[r["id"], r.get("step"), r.get("tokens"), r.get("loss"), "*" if r["latest"] else ""]
                     for r in rows])
    return 0


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
