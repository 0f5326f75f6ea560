"""`interfere` with no arguments on a terminal: arrow-key menus (questionary) over the same commands.

Every action ends in a command line: the menu prints it (`$ interfere train exp=life_smoke`) and runs it
through `cli.main.main`, so the menu teaches the CLI and cannot drift from it. Ctrl-C or Esc at a prompt
goes back one level (at the main menu it quits); a failing action prints its one-line error and the menu
comes back. The main menu follows `cli.main.COMMANDS`: a command without questions of its own here (one
added later, such as `explore` or `lens`) gets generic ones read from its argparse parser: its
sub-command or tool, the run, and any further key=value words.
"""

from __future__ import annotations

import argparse
import os
import shlex
import sys
from pathlib import Path
from typing import Callable

import questionary
from prompt_toolkit.key_binding import KeyBindings, merge_key_bindings
from questionary import Choice

from interfere.cli import runs as runs_cmd

QUIT = "quit"


class Back(Exception):
    """Ctrl-C or Esc at a prompt: leave the current menu for the one above."""


class Quit(Exception):
    """The input is closed (end of file): leave the menus altogether."""


# ----- prompts ------------------------------------------------------------------------------------------------
def _esc_goes_back() -> KeyBindings:
    bindings = KeyBindings()

    @bindings.add("escape", eager=True)  # eager: do not wait to see whether Esc starts a longer key sequence
    def _(event):
        event.app.exit(exception=KeyboardInterrupt, style="class:aborting")

    return bindings


def ask(question: questionary.Question):
    """The answer; Back on Ctrl-C or Esc, Quit when the input has ended."""
    app = question.application
    app.key_bindings = merge_key_bindings([app.key_bindings or KeyBindings(), _esc_goes_back()])
    try:
        return question.unsafe_ask()
    except KeyboardInterrupt:
        raise Back from None
    except EOFError:
        raise Quit from None


def select(message: str, choices: list[tuple[str, str]], default: str | None = None) -> str:
    """One of the values in choices [(title, value)]; type to filter the list."""
    values = [v for _, v in choices]
    return ask(questionary.select(message, [Choice(_fit(t), v) for t, v in choices], use_search_filter=True,
                                  use_jk_keys=False, default=default if default in values else None,
                                  instruction="(arrows, Enter; type to filter; Esc back)"))


def text(message: str, default: str = "", validate: Callable[[str], bool | str] | None = None) -> str:
    return ask(questionary.text(message, default=default, validate=validate or (lambda _: True))).strip()


def confirm(message: str, default: bool = True) -> bool:
    return bool(ask(questionary.confirm(message, default=default)))


def integer(message: str, default: int | None, minimum: int = 1, multiple_of: int | None = None) -> int:
    def check(s: str) -> bool | str:
        if not s.strip().isdigit() or int(s) < minimum:
            return f"an integer of at least {minimum}"
        if multiple_of and int(s) % multiple_of:
            return f"a multiple of {multiple_of}"
        return True

    return int(text(message, "" if default is None else str(default), check))


# ----- the menus ----------------------------------------------------------------------------------------------
class Menu:
    """The main menu and one method per action; `runs_dir` and `train_overrides` go into every command line."""

    def __init__(self, runs_dir: str | os.PathLike = "runs", train_overrides: list[str] | tuple = ()):
        self.runs_dir = str(runs_dir)
        self.train_overrides = list(train_overrides)

    # ... the loop
    def loop(self) -> int:
        last = None
        while True:
            runs = runs_cmd.collect(Path(self.runs_dir))
            entries = self.entries(runs)
            print(self.status(runs))
            try:
                last = select("What now?", [(label, key) for key, (label, _) in entries.items()]
                              + [("Quit", QUIT)], default=last)
            except (Back, Quit):  # back from the main menu is out
                return 0
            if last == QUIT:
                return 0
            try:
                entries[last][1]()
            except Back:
                print("(back)")
            except Quit:
                return 0

    def entries(self, runs: list[dict]) -> dict[str, tuple[str, Callable[[], None]]]:
        """{key: (label, action)} in COMMANDS order, each offered only when there is something to act on."""
        from interfere.cli.main import COMMANDS

        trained = [r for r in runs if r.get("step")]
        own = {
            "train": [("train", "Train a model (a preset, or your width / depth / steps)", self.train, True),
                      ("continue", "Continue a run", self.resume, bool(trained))],
            "generate": [("generate", "Generate text", self.generate, any(r.get("task") == "text" for r in trained))],
            "eval": [("eval", "Evaluate or compare runs", self.evaluate, bool(trained))],
            "interpret": [("interpret", "Interpret a model (logit lens, attention, induction, patching, ...)",
                           self.interpret, bool(trained) or bool(_pretrained()))],
            "report": [("report", "Write a run's HTML report", self.report, bool(runs))],
            "runs": [("runs", "List runs", self.list_runs, True)],
        }
        out = {}
        for command in COMMANDS:
            for key, label, action, available in own.get(command, [(command, _label(command),
                                                                     lambda c=command: self.generic(c), True)]):
                if available:
                    out[key] = (label, action)
        return out

    def status(self, runs: list[dict]) -> str:
        if not runs:
            return f"\ninterfere: no runs under {self.runs_dir}/ yet"
        newest = runs[-1]
        return (f"\ninterfere: {len(runs)} run{'s' if len(runs) > 1 else ''} under {self.runs_dir}/, newest "
                f"{newest['id']} (step {newest.get('step') or '-'})")

    # ... running a command line
    def execute(self, argv: list[str]) -> int:
        """Print the command line, then run it as `interfere` would; its status (errors come back as lines)."""
        from interfere.cli.main import _error, main

        print(f"$ {shlex.join(['interfere', *argv])}", flush=True)
        try:
            status = main(argv)
        except Exception as e:  # noqa: BLE001 - a bug in an action must not end the menus
            _error(f"{type(e).__name__}: {e}")
            status = 1
        if status:
            print(f"(exit status {status})")
        return status

    def _where(self) -> list[str]:
        return [] if self.runs_dir == "runs" else [f"runs_dir={self.runs_dir}"]

    def pick_run(self, message: str, runs: list[dict]) -> str:
        """A run id, chosen from a table of the runs (newest first)."""
        if not runs:
            print(f"no such runs under {self.runs_dir}/ yet")
            raise Back
        header, lines = _table(runs_cmd.COLUMNS, runs_cmd.table_rows(runs[::-1]))
        print(f"   {header}")  # over the choices, which start after the pointer " » "
        return select(message, [(line, r["id"]) for line, r in zip(lines, runs[::-1])])

    def trained_runs(self, task: str | None = None) -> list[dict]:
        return [r for r in runs_cmd.collect(Path(self.runs_dir))
                if r.get("step") and (task is None or r.get("task") == task)]

    # ... the actions
    def train(self) -> None:
        from interfere.config import describe, experiments

        width = max(len(e) for e in experiments())
        choice = select("Train: which preset?", [(f"{e:<{width}}  {describe('exp', e)}", e) for e in experiments()]
                        + [("custom: a preset with your width, depth and steps", "custom")], default="life_smoke")
        argv = ["train", *(self.custom() if choice == "custom" else [f"exp={choice}"])]
        argv += self.train_overrides + self._where()
        if confirm(f"Start `{shlex.join(['interfere', *argv])}`?"):
            self.execute(argv)

    def custom(self) -> list[str]:
        from interfere.config import compose, experiments

        exp = select("Start from which preset?", [(e, e) for e in experiments()], default="life_smoke")
        cfg = compose([f"exp={exp}"])
        d_model = integer("Width (model.d_model):", cfg.model.d_model, multiple_of=int(cfg.model.n_heads))
        n_layers = integer("Depth (model.n_layers):", cfg.model.n_layers)
        steps = integer("Steps (train.steps):", cfg.train.steps)
        budget = ["train.tokens=null"] if cfg.train.get("tokens") is not None else []  # steps replace the token budget
        return [f"exp={exp}", f"model.d_model={d_model}", f"model.n_layers={n_layers}", f"train.steps={steps}", *budget]

    def resume(self) -> None:
        run = self.pick_run("Continue which run?", self.trained_runs())
        self.execute(["train", f"resume={run}", *self._where()])

    def generate(self) -> None:
        run = self.pick_run("Generate with which run?", self.trained_runs("text"))
        prompt = text("Prompt (Enter: the run's own):")
        preset = select("Sampling:", [("balanced (temperature, top-k, top-p)", "balanced"),
                                      ("precise (low temperature)", "precise"), ("creative", "creative"),
                                      ("greedy (always the most likely token)", "greedy")])
        how = "strategy=greedy" if preset == "greedy" else f"preset={preset}"
        self.execute(["generate", f"run={run}", *([f"prompt={prompt}"] if prompt else []), how, *self._where()])

    def evaluate(self) -> None:
        runs = self.trained_runs()
        header, lines = _table(runs_cmd.COLUMNS, runs_cmd.table_rows(runs[::-1]))
        print(f"     {header}")  # over the choices, which start after " » ● "
        chosen = ask(questionary.checkbox(
            "Evaluate which runs? (several give one column each)",
            [Choice(_fit(line), r["id"], checked=i == 0) for i, (line, r) in enumerate(zip(lines, runs[::-1]))],
            instruction="(Space marks, Enter starts, Esc back)"))
        if not chosen:
            raise Back
        self.execute(["eval", f"run={','.join(chosen)}", *self._where()])

    def interpret(self) -> None:
        from interfere.cli.interpret import TOOLS

        tool = select("Which tool?", [(f"{t:<11} {TOOL_HELP[t]}", t) for t in TOOLS])
        targets = [(f"run {r['id']} (step {r['step']})", f"run={r['id']}") for r in self.trained_runs()[::-1]]
        targets += [(f"model={name} (pretrained, offline)", f"model={name}") for name in _pretrained()]
        target = select("On which model?", targets)
        self.execute(["interpret", tool, target, *_tool_words(tool), *self._where()])

    def report(self) -> None:
        run = self.pick_run("Report of which run?", runs_cmd.collect(Path(self.runs_dir)))
        opened = confirm("Open it in a web browser?", default=_has_display())
        self.execute(["report", f"run={run}", *(["--open"] if opened else []), *self._where()])

    def list_runs(self) -> None:
        self.execute(["runs", *self._where()])

    def generic(self, command: str) -> int:
        """A command with no questions of its own: walk its sub-commands and choices, then a run and more words."""
        from interfere.cli.main import build_parser

        parser = _subparsers(build_parser())[command]
        argv = [command]
        while True:
            step = _next_choice(parser)
            if step is None:
                break
            title, options, sub = step
            argv.append(select(title, [(f"{name:<12} {help_}" if help_ else name, name) for name, help_ in options]))
            if sub is None:
                break
            parser = sub[argv[-1]]
        usage = parser.format_help()
        runs = self.trained_runs()
        if "run=" in usage and runs:
            argv.append(f"run={self.pick_run('On which run?', runs)}")
        words = text(f"Anything else? key=value words for `{' '.join(argv)}` (Enter: none):")
        argv += shlex.split(words) + (self._where() if "runs_dir" in usage else [])
        return self.execute(argv)


# ----- what the menus say about commands and tools ---------------------------------------------------------
TOOL_HELP = {
    "logit-lens": "the top predictions of every layer's residual stream",
    "attention": "per-head patterns and head classes (previous-token, first-token, local, ...)",
    "induction": "induction and prefix-matching scores per head on repeated random tokens",
    "patch": "activation patching: how much of the clean answer each component restores",
    "dla": "direct logit attribution: each head's and layer's push toward the answer",
    "probe": "linear probes on a hook, per layer (held out)",
}
# (key, question) per tool: only what the tool needs; an empty answer keeps the tool's default.
TOOL_QUESTIONS = {
    "logit-lens": [("prompt", "Prompt (text, or token ids like 3,17,5; Enter: the default):")],
    "attention": [("prompt", "Prompt (Enter: repeated random tokens):")],
    "induction": [],
    "patch": [("clean", "Clean prompt (Enter: a repeated-token pair made for you):"),
              ("corrupted", "Corrupted prompt:"), ("answer", "Answer token:"), ("wrong", "Wrong token (Enter: none):")],
    "dla": [("prompt", "Prompt (Enter: repeated random tokens):"), ("answer", "Answer token (Enter: the induction answer):")],
    "probe": [],
}


def _tool_words(tool: str) -> list[str]:
    if tool == "probe":
        from interfere.cli.interpret import PROBE_TARGETS

        target = select("Probe for what?", [(t, t) for t in PROBE_TARGETS])
        hook = select("On which hook?", [(h, h) for h in ("resid_post", "resid_pre", "attn_out", "mlp_out")])
        return [f"target={target}", f"hook={hook}"]
    words = []
    for key, question in TOOL_QUESTIONS[tool]:
        answer = text(question)
        if not answer and key == "clean":
            break  # the tool builds its own clean / corrupted pair
        if answer:
            words.append(f"{key}={answer}")
    return words


def _label(command: str) -> str:
    import importlib

    help_ = getattr(importlib.import_module(f"interfere.cli.{command}"), "HELP", "")
    return f"{command.capitalize()}: {help_}" if help_ else command.capitalize()


def _subparsers(parser: argparse.ArgumentParser) -> dict[str, argparse.ArgumentParser] | None:
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            return dict(action.choices)
    return None


def _next_choice(parser: argparse.ArgumentParser):
    """(question, [(name, help)], sub-parsers or None) for the parser's next positional choice, or None."""
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            helps = {a.dest: a.help or "" for a in action._choices_actions}
            return "Which one?", [(n, helps.get(n, "")) for n in action.choices], dict(action.choices)
        if not action.option_strings and action.choices:
            return f"Which {action.dest}?", [(str(c), "") for c in action.choices], None
    return None


def _table(columns: list[str], rows: list[list]) -> tuple[str, list[str]]:
    """(header, lines): the rows as aligned text, to be the choices of a prompt."""
    from interfere.formatting import fmt

    cells = [[fmt(v) for v in row] for row in rows]
    widths = [max([len(c), *(len(r[i]) for r in cells)]) for i, c in enumerate(columns)]

    def line(values):
        return "  ".join(v.ljust(w) if i == 0 else v.rjust(w) for i, (v, w) in enumerate(zip(values, widths))).rstrip()

    return line(columns), [line(r) for r in cells]


def _fit(line: str) -> str:
    """A choice's title cut to the terminal's width (a wrapped choice would break the list)."""
    import shutil

    room = shutil.get_terminal_size((120, 40)).columns - 6
    return line if len(line) <= room else line[: room - 1] + "…"


def _pretrained() -> list[str]:
    """Pretrained models whose weights are installed (their package is found, never imported)."""
    import importlib.util

    from interfere.model.pretrained import PRETRAINED, is_converted

    return [n for n, s in PRETRAINED.items() if importlib.util.find_spec(s.package) or is_converted(n)]


def _has_display() -> bool:
    return sys.platform in ("darwin", "win32") or bool(os.environ.get("DISPLAY") or os.environ.get("WAYLAND_DISPLAY"))


def menu(runs_dir: str | os.PathLike = "runs", train_overrides: list[str] | tuple = ()) -> int:
    """Run the menus until Quit, Ctrl-C / Esc at the main menu, or the end of the input; exit status 0."""
    print("interfere: arrow keys and Enter choose, Esc or Ctrl-C goes back; every action prints its command line")
    try:
        return Menu(runs_dir, train_overrides).loop()
    except KeyboardInterrupt:  # between two prompts (a prompt itself turns Ctrl-C into Back)
        return 0
