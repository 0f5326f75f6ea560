"""`interfere runs [runs_dir=<dir>] [--json]`: one line per run directory."""

from __future__ import annotations

import time
from pathlib import Path

from interfere.cli.common import add_json, add_overrides, print_json, print_table
from interfere.cli.words import parse_words
from interfere.formatting import age

HELP = "list the runs under runs/ (task, step, tokens, last loss, age; * marks runs/latest; broken weights flagged)"
KEYS = {"runs_dir": "dir"}
COLUMNS = ["run", "task", "step", "tokens", "last loss", "age", "latest", "weights"]  # of table_rows
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
    print_table(None, COLUMNS, table_rows(rows))
    for r in rows:
        if r.get("broken"):
            print(f"broken: {r['id']}: {r['broken']}")


def collect(runs_dir: Path) -> list[dict]:
    """The runs under runs_dir, oldest first, each with "latest": whether runs/latest points at it."""
    from interfere.train.runs import list_runs

    rows = list_runs(Path(runs_dir))
    latest = (Path(runs_dir) / "latest").resolve() if (Path(runs_dir) / "latest").exists() else None
    for r in rows:
        r["latest"] = latest is not None and Path(r["path"]).resolve() == latest
    return rows


def table_rows(rows: list[dict]) -> list[list]:
    now = time.time()
    return [[r["id"], r.get("task"), r.get("step"), r.get("tokens"), r.get("loss"),
             age(now - r["updated"]) if r.get("updated") else None, "*" if r.get("latest") else "",
             "BROKEN" if r.get("broken") else ("ok" if r.get("step") is not None else "-")] for r in rows]
