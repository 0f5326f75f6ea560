"""`interfere explore life <tool> [run=<id>|ckpt=<path>] [--json] [key=value ...]`: the Game of Life hypotheses
(interfere.explore.life) on a trained Life run, the newest one by default. Each tool writes its pictures and a
summary.json under the run's assets/explorations/<yyyymmdd-hhmmss>_<tool>/ and prints its numbers (a table, or
one JSON object with --json)."""

from __future__ import annotations

import contextlib
import re
import sys

from interfere.cli.words import RUN_KEYS, load_run, option, parse_words, to_bool, to_int
from interfere.errors import CheckpointError, ConfigError

ELSEWHERE = "copy the run into a writable runs_dir=<dir> and pass run=<id> runs_dir=<dir>"  # when its folder refuses
HELP = "test hypotheses about a trained model: explore life <tool> (H1-H4 on a Game of Life run)"
TOOLS = {
    "attention": "H1: each head's attention on board t, query-centred average and 3x3 mass vs uniform",
    "probes": "H2: held-out linear probes of neighbour count, next and current state at every layer",
    "rules": "H3: attention share on the 18 rule tokens; flip each bit and test against the simulator",
    "layers": "H4: locality of attention and probe quality by layer, in one figure",
    "embed": "PCA of the residual stream at the query cells, coloured by count and next state",
    "contrib": "a head's direct contribution towards 'alive' (attention x OV) with its gradient",
    "rule-vectors": "the rule-bit embeddings: cosine heatmap, PCA with bit 0 -> 1 arrows (and FiLM's)",
    "hypotheses": "all of it: a verdict per hypothesis with its number and threshold (summary.md)",
}
KEYS = {**RUN_KEYS, "boards": "N", "seed": "S", "rules": "B36/S23|heldout|...", "heads": "true|false (rules: patch each head)",
        "head": "L<l>H<h> (contrib)", "query": "row,col", "video": "true|false (attention: MP4 + GIF, a frame per head)"}
DESCRIPTION = """\
Test the explorations' hypotheses on a trained Game of Life run (run=<id>, ckpt=<path>; the newest Life run
by default): H1 attention is a 3x3 stencil, H2 the residual stream linearly encodes each cell's neighbour count
and next state, H3 heads read the rule bits, H4 early layers gather and later ones classify. Pictures and a
summary.json go to the run's assets/explorations/<yyyymmdd-hhmmss>_<tool>/."""


def _tool_lines() -> str:
    return "\n".join(f"  {name:<13} {line}" for name, line in TOOLS.items())


EXAMPLES = """\
examples:
  interfere explore life hypotheses                     verdicts for the newest Life run (summary.md)
  interfere explore life attention run=<run_id> video=true
  interfere explore life rules boards=8 --json          one JSON object on stdout
  interfere explore life contrib head=L1H0 query=8,8"""
EPILOG = f"life tools:\n{_tool_lines()}\n{EXAMPLES}"
LIFE_EPILOG = f"tools:\n{_tool_lines()}\nkeys:\n" + "".join(f"  {k}=<{v}>\n" for k, v in KEYS.items()) + EXAMPLES


def add_arguments(p) -> None:
    import argparse

    domains = p.add_subparsers(dest="domain", metavar="<domain>", required=True)
    life = domains.add_parser("life", help="the Game of Life hypotheses H1-H4 (tools below)",
                              description=DESCRIPTION, epilog=LIFE_EPILOG,
                              formatter_class=argparse.RawDescriptionHelpFormatter)
    life.add_argument("tool", choices=list(TOOLS), metavar="<tool>", help="one of the tools below")
    life.add_argument("overrides", nargs="*", metavar="key=value", help="run=<id> | ckpt=<path>, and the keys below")
    life.add_argument("--json", action="store_true", help="print one JSON object on stdout and nothing else there")


def _options(tool: str, words: list[str]) -> dict:
    o = parse_words(words, KEYS, f"explore life {tool}")
    out = {"boards": option(o, "boards", None, to_int, minimum=1), "seed": option(o, "seed", 0, to_int),
           "rules": o.get("rules"), "heads": option(o, "heads", True, to_bool),
           "video": option(o, "video", False, to_bool)}
    if "head" in o:
        m = re.fullmatch(r"L(\d+)H(\d+)", o["head"].strip(), re.IGNORECASE)
        if not m:
            raise ConfigError(f"head={o['head']!r}: write it as L<layer>H<head>, e.g. head=L1H0")
        out["layer"], out["head"] = int(m.group(1)), int(m.group(2))
    if "query" in o:
        m = re.fullmatch(r"\s*(\d+)\s*,\s*(\d+)\s*", o["query"])
        if not m:
            raise ConfigError(f"query={o['query']!r}: write it as row,col, e.g. query=8,8")
        out["query"] = (int(m.group(1)), int(m.group(2)))
    return {**out, **{k: o[k] for k in ("run", "ckpt", "runs_dir", "device") if k in o}}


def _newest_life_run(runs_dir: str) -> str:
    from interfere.train.runs import list_runs

    rows = [r for r in list_runs(runs_dir) if r["task"] == "life" and r["step"] is not None]
    if not rows:
        raise CheckpointError(f"no Life run with a checkpoint under {runs_dir}/; train one (interfere train "
                              "exp=life_smoke) or pass run=<id>")
    return rows[-1]["path"]


def _load(o: dict):
    from interfere.tasks.life import LifeTask
    from interfere.train.runs import run_dir_of

    given = "run" in o or "ckpt" in o
    model, task, ckpt = load_run(o, default=None if given else _newest_life_run(o.get("runs_dir", "runs")))
    if not isinstance(task, LifeTask):
        raise ConfigError(f"{run_dir_of(ckpt).name} is not a Game of Life run; `explore life` needs one "
                          "(interfere runs lists them)")
    _check_cells(o, task)
    return model, task, run_dir_of(ckpt)


def _check_cells(o: dict, task) -> None:
    q = o.get("query")
    if q is not None and not (q[0] < task.height and q[1] < task.width):
        raise ConfigError(f"query={q[0]},{q[1]} is off the {task.height}x{task.width} board")


def run(args) -> int:
    from interfere.cli.common import print_json, print_table
    from interfere.explore.life import explore, output_dir

    o = _options(args.tool, list(args.overrides))
    with contextlib.redirect_stdout(sys.stderr) if args.json else contextlib.nullcontext():
        model, task, run_dir = _load(o)
        if "layer" in o and not (o["layer"] < model.cfg.n_layers and o["head"] < model.cfg.n_heads):
            raise ConfigError(f"head=L{o['layer']}H{o['head']} does not exist: the model has "
                              f"{model.cfg.n_layers} layers of {model.cfg.n_heads} heads")
        opts = {k: v for k, v in o.items() if k not in ("run", "ckpt", "runs_dir", "device")}
        record = explore(args.tool, model, task, output_dir(run_dir, args.tool), model_name=run_dir.name, **opts)
    if args.json:
        print_json(record)
        return 0
    if args.tool == "hypotheses":
        _print_verdicts(record["result"]["verdicts"], run_dir.name)
    else:
        print_table(f"{args.tool} on {run_dir.name}", ["", "value"], _rows(record["result"]))
    for f in record["files"]:
        print(f"file   {f}")
    return 0


def _print_verdicts(verdicts: list[dict], name: str) -> None:
    print(f"hypotheses on {name}")
    for v in verdicts:
        print(f"  {v['id']}  {v['verdict']}: {v['claim']}")
        for c in v["criteria"]:
            value = "none" if c["value"] is None else f"{c['value']:.4g}"
            print(f"        {c['name']} = {value} (needs {c['op']} {c['threshold']:g}): "
                  f"{'holds' if c['holds'] else 'fails'}")
        if not v["criteria"]:
            print(f"        {v['note']}")


def _rows(result: dict) -> list[list]:
    """A result's numbers as table rows: scalars, and lists of numbers on one line (tables of records left out)."""
    from interfere.formatting import flatten, fmt

    rows = []
    for key, value in flatten(result).items():
        if isinstance(value, list):
            if not value or not all(v is None or isinstance(v, (int, float)) for v in value):
                continue
            value = ", ".join(fmt(v) for v in value)
        rows.append([key, value])
    return rows
