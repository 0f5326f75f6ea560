"""`interfere <command> [options] [key=value ...]`: the command layer (argparse) over Hydra overrides.

Each sub-command is a module `interfere.cli.<name>` with
    HELP: str                       one line for `interfere --help`
    add_arguments(parser) -> None   its flags (the `key=value` words are collected in `args.overrides`)
    run(args) -> int                the exit status
and one entry in COMMANDS below. Command modules import torch, transformer_lens and hydra only inside
`run`, so that `interfere --help` stays instant.
"""

from __future__ import annotations

import argparse
import importlib
import os
import sys

from interfere import __version__
from interfere.errors import CheckpointError, ConfigError
from interfere.files import os_problem
from interfere.train.errors import NonFiniteLossError

# Sub-commands in the order `--help` lists them: adding one is a module plus a line here.
COMMANDS = (
    "train",
    "generate",
    "eval",
    "interpret",
    "explore",
    "lens",
    "report",
    "runs",
)

# How to write somewhere else when a disk refuses (a command module may say better, as its ELSEWHERE).
ELSEWHERE = "choose another runs_dir=<dir>"

EPILOG = """\
examples:
  interfere                                         on a terminal: arrow-key menus for everything below
  interfere train exp=life_smoke                    train the smoke preset (conf/exp/life_smoke.yaml)
  interfere train exp=life16 train.steps=500        any config key can be overridden as key=value
  interfere train exp=life_smoke --cfg              print the composed config and exit
  interfere eval --json                             evaluate the newest run (runs/latest)
  interfere eval run=<run_id> task.eval.samples=64  evaluate one run on 64 held-out samples
  interfere generate prompt="ROMEO:"                 continue a prompt with a text run
  interfere interpret induction model=smollm2       induction heads of a pretrained model, offline
  interfere explore life hypotheses                 H1-H4 verdicts for the newest Game of Life run
  interfere lens dump run=<text_run_id> layer=2      then lens train data=<dump>, lens eval (a consistency lens)
  interfere report --open                           the newest run's HTML report (runs/<id>/report.html)
  interfere runs                                    list the runs under runs/
  torchrun --standalone --nproc_per_node=2 -m interfere train exp=life_smoke
"""


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="interfere",
        description="Train small transformers and take them apart (TransformerLens hook names).",
        epilog=EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--version", action="version", version=f"interfere {__version__}")
    sub = parser.add_subparsers(dest="command", title="commands", metavar="<command>")
    for name in COMMANDS:
        module = importlib.import_module(f"interfere.cli.{name}")
        p = sub.add_parser(
            name,
            help=module.HELP,
            description=getattr(module, "DESCRIPTION", module.HELP),
            epilog=_call_or_value(getattr(module, "EPILOG", None)),
            formatter_class=argparse.RawDescriptionHelpFormatter,
        )
        module.add_arguments(p)
        p.set_defaults(_run=module.run)
    return parser


def _call_or_value(x):
    return x() if callable(x) else x


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else list(argv)
    if not argv and _on_a_terminal():
        from interfere.cli.interactive import menu

        return menu()
    parser = build_parser()
    if not argv:  # piped or under CI: the help, as a script would want
        parser.print_help()
        return 0
    try:
        args, extra = parser.parse_known_args(argv)
        # argparse stops a positional `nargs="*"` at the first flag; key=value words after it come back here.
        flags = [a for a in extra if a.startswith("-")]
        if flags or (extra and not hasattr(args, "overrides")):
            parser.error(f"unrecognized arguments: {' '.join(flags or extra)}")
        if extra:
            args.overrides = [*args.overrides, *extra]
    except SystemExit as e:  # --help, --version and usage errors
        return _exit_code(e.code)
    try:
        return int(args._run(args) or 0)
    except (ConfigError, CheckpointError, NonFiniteLossError) as e:
        _error(str(e) or type(e).__name__)
        return 2
    except OSError as e:  # a full disk, a read-only folder, a file where a folder should be
        _error(os_problem(e, getattr(sys.modules[args._run.__module__], "ELSEWHERE", ELSEWHERE)))
        return 2
    except KeyboardInterrupt:
        print("interfere: interrupted", file=sys.stderr)
        return 130


def _on_a_terminal() -> bool:
    return sys.stdin.isatty() and sys.stdout.isatty() and "RANK" not in os.environ


def _error(message: str) -> None:
    """One line on stderr; under torchrun each rank prefixes its number."""
    message = " ".join(message.split())
    rank = os.environ.get("RANK")
    who = f"interfere[rank {rank}]" if rank is not None and os.environ.get("WORLD_SIZE", "1") != "1" else "interfere"
    print(f"{who}: error: {message}", file=sys.stderr, flush=True)


def _exit_code(code) -> int:
    if code is None:
        return 0
    if isinstance(code, int):
        return code
    print(code, file=sys.stderr)
    return 1


if __name__ == "__main__":
    raise SystemExit(main())
