"""`interfere train [key=value ...]`: compose the config, train, write the run's report, print where things are."""

from __future__ import annotations

import contextlib
import json
import sys
from pathlib import Path

from interfere.cli.common import add_json, add_overrides, is_main_process, print_json

HELP = "train a model (exp=<name> picks a preset; any config key can be overridden as key=value)"
DESCRIPTION = """\
Train a model on a task. The config is Hydra's: conf/config.yaml with the groups model/, task/, train/
and an experiment preset exp/<name>.yaml applied last. Works as is under
`torchrun --standalone --nproc_per_node=N -m interfere train ...`."""


def EPILOG() -> str:
    from interfere.config import experiments

    return (f"experiments (exp=<name>): {', '.join(experiments())}\n"
            "examples:\n"
            "  interfere train exp=life_smoke\n"
            "  interfere train exp=life16 train.steps=500 train.batch_size=64 device=cpu\n"
            "  interfere train exp=life_smoke task.board=[8,8] --cfg     (model.rope_period follows the board)\n"
            "  interfere train resume=<run_id>              continue a run with its own config\n"
            "  interfere train resume=<run_id> train.steps=4000   ... and train it for longer\n"
            "at the end: runs/<id>/report.html (`interfere report` rewrites it)")


def add_arguments(p) -> None:
    add_overrides(p, "Hydra overrides: exp=<name>, group=<option>, group.key=value, +new.key=value")
    p.add_argument("--cfg", action="store_true", help="print the composed config and exit")
    add_json(p)


def _resume_config(overrides: list[str]):
    """With resume=<run>, the run's own config plus the overrides (see interfere.train.resume); else None."""
    words = dict(o.lstrip("+").split("=", 1) for o in overrides if "=" in o)
    if not words.get("resume") or words["resume"] == "null":
        return None
    from interfere.train.resume import resume_config

    return resume_config(words["resume"], overrides, runs_dir=words.get("runs_dir", "runs"))


def run(args) -> int:
    from interfere.config import compose, to_yaml

    cfg = _resume_config(args.overrides) or compose(args.overrides)
    if args.cfg:
        if is_main_process():
            sys.stdout.write(to_yaml(cfg))
        return 0

    from interfere.train import train

    # With --json, whatever the loop prints goes to stderr so that stdout holds the JSON object only.
    with contextlib.redirect_stdout(sys.stderr) if args.json else contextlib.nullcontext():
        run_dir = Path(train(cfg))
    if not is_main_process():
        return 0
    report = _write_report(run_dir)
    videos = sorted((run_dir / "assets").rglob("*.mp4"))
    if args.json:
        eval_file = run_dir / "eval.json"
        final = json.loads(eval_file.read_text()) if eval_file.is_file() else None
        print_json({"run": run_dir.name, "run_dir": str(run_dir), "videos": [str(v) for v in videos],
                    "report": str(report) if report else None, "eval": final})
    else:
        if videos:
            print(f"video  {videos[-1]}")
        if report:
            print(f"report {report}")
        print(f"run    {run_dir}")
    return 0


def _write_report(run_dir: Path) -> Path | None:
    """runs/<id>/report.html, or None and one warning line: a finished training never fails on its report."""
    try:
        from interfere.report import write_report

        return write_report(run_dir)
    except Exception as e:  # noqa: BLE001 - the run itself is done and saved
        message = " ".join(str(e).split()) or type(e).__name__
        print(f"interfere: warning: could not write the report ({type(e).__name__}: {message}); "
              f"retry with `interfere report run={run_dir.name}`", file=sys.stderr)
        return None
