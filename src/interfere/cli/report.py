"""`interfere report [run=<id>|ckpt=<path>] [--open] [--json]`: a run's HTML report."""

from __future__ import annotations

from interfere.cli.common import add_json, add_overrides, print_json
from interfere.cli.words import parse_words
from interfere.errors import ConfigError

ELSEWHERE = "copy the run into a writable runs_dir=<dir> and pass run=<id> runs_dir=<dir>"  # when its folder refuses
HELP = "write a run's HTML report, one self-contained page (runs/<id>/report.html; the newest run by default)"
DESCRIPTION = """\
Write runs/<id>/report.html: one page that works offline (figures inline, videos linked beside it) with
a section for each thing the run directory holds: config, loss and learning-rate curves, throughput,
evaluation metrics, rollout GIFs or text samples, and the analyses and explorations run on it.
Training writes it at the end of every run; this command rewrites it (e.g. after `interfere interpret`)."""
EPILOG = """\
examples:
  interfere report                                  the newest run (runs/latest)
  interfere report run=<run_id> --open              and open it in the default browser
  interfere report ckpt=runs/<run_id>/checkpoints/step_300    the run that checkpoint belongs to
  interfere report --json                           {"run": ..., "report": ..., "sections": [...]}"""

KEYS = {"run": "run id or dir", "ckpt": "checkpoint dir", "runs_dir": "dir"}


def add_arguments(p) -> None:
    add_overrides(p, ", ".join(f"{k}=<{v}>" for k, v in KEYS.items()))
    p.add_argument("--open", action="store_true", help="open the report in the default web browser")
    add_json(p)


def run(args) -> int:
    words = parse_words(args.overrides, KEYS, "report")
    if "run" in words and "ckpt" in words:
        raise ConfigError("give run=<id> or ckpt=<path>, not both")
    from interfere.report import build, write_report
    from interfere.train.runs import resolve_run

    run_dir = resolve_run(words.get("run") or words.get("ckpt"), words.get("runs_dir", "runs"))
    built = build(run_dir)
    path = write_report(run_dir, built)
    sections = [s["key"] for s in built]
    if args.json:
        print_json({"run": run_dir.name, "report": str(path), "sections": sections})
    else:
        print(f"report {path}")
        print(f"       sections: {', '.join(sections)}")
    if args.open:
        import webbrowser

        webbrowser.open(path.resolve().as_uri())
    return 0
