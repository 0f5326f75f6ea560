"""The interactive menus, driven by real keystrokes: through prompt_toolkit's pipe input (questionary
itself runs, nothing is mocked) and, once, the real program in a tmux terminal."""

from __future__ import annotations

import json
import os
import shlex
import shutil
import subprocess
import sys
import time
from pathlib import Path

import pytest
from prompt_toolkit.application import create_app_session
from prompt_toolkit.input import create_pipe_input
from prompt_toolkit.output import DummyOutput

from conftest import TINY_LIFE
from toy_task import one_thread  # noqa: F401 (autouse fixture)

from interfere.cli.interactive import Menu, menu

ENTER, CTRL_C, ESC, DOWN = "\r", "\x03", "\x1b", "\x1b[B"


def drive(*keys: str, runs_dir, train_overrides=(), action=None) -> int:
    """Type `keys` into the menus (then end the input, which leaves them); the exit status."""
    with create_pipe_input() as inp:
        for k in keys:
            inp.send_text(k)
        inp.close()  # whatever is still waiting for a key then sees the end of the input
        with create_app_session(input=inp, output=DummyOutput()):
            if action is not None:
                return action(Menu(runs_dir, train_overrides))
            return menu(runs_dir, train_overrides)


def after(text: str, first: str, then: str) -> bool:
    """`then` appears in text after `first`."""
    return first in text and then in text[text.index(first) + len(first):]


# ----- pipe input ---------------------------------------------------------------------------------------------
def test_train_the_smoke_preset_and_come_back_to_the_menu(tmp_path, capsys):
    runs_dir = tmp_path / "runs"
    tiny = [w for w in TINY_LIFE if not w.startswith(("exp=", "train.steps="))] + ["train.steps=2"]
    status = drive("Train a model", ENTER,  # main menu: type to filter, Enter
                   "life_smoke", ENTER,  # the preset
                   ENTER,  # "Start `interfere train ...`?" yes
                   "List runs", ENTER,  # back at the main menu
                   "Quit", ENTER, runs_dir=runs_dir, train_overrides=tiny)
    out = capsys.readouterr().out
    assert status == 0
    command = shlex.join(["interfere", "train", "exp=life_smoke", *tiny, f"runs_dir={runs_dir}"])
    assert f"$ {command}" in out
    (run_dir,) = [p for p in runs_dir.iterdir() if p.is_dir() and not p.is_symlink()]
    assert json.loads((run_dir / "eval.json").read_text())["step"] == 2
    assert (run_dir / "report.html").is_file()  # the same code path as the command line: training wrote it
    assert after(out, f"$ {command}", f"$ interfere runs runs_dir={runs_dir}")
    assert after(out, f"$ interfere runs runs_dir={runs_dir}", run_dir.name)  # the table, after training


@pytest.mark.parametrize("key", [CTRL_C, ESC], ids=["ctrl-c", "esc"])
def test_ctrl_c_or_esc_at_a_prompt_goes_back_to_the_menu(key, tiny_life_run, capsys):
    runs_dir, out = tiny_life_run
    status = drive("Train a model", ENTER, key,  # out of the preset list, back to the main menu
                   "List runs", ENTER,
                   key,  # at the main menu: leave
                   "List runs", ENTER,  # (never read: the menus are gone)
                   runs_dir=runs_dir)
    text = capsys.readouterr().out
    assert status == 0
    assert "$ interfere train" not in text and text.count("$ interfere runs") == 1
    assert after(text, "(back)", f"$ interfere runs runs_dir={runs_dir}")
    assert after(text, f"$ interfere runs runs_dir={runs_dir}", out["run"])


def test_a_failing_action_prints_its_error_and_the_menu_comes_back(tiny_life_run, capsys):
    runs_dir, out = tiny_life_run
    status = drive("Interpret", ENTER, "patch", ENTER, ENTER,  # tool, then the newest run
                   "1,2,3", ENTER, "1,2,4", ENTER, ENTER, ENTER,  # clean, corrupted, no answer, no wrong token
                   "List runs", ENTER, "Quit", ENTER, runs_dir=runs_dir)
    captured = capsys.readouterr()
    assert status == 0
    command = f"$ interfere interpret patch run={out['run']} clean=1,2,3 corrupted=1,2,4 runs_dir={runs_dir}"
    assert command in captured.out and "(exit status 2)" in captured.out
    assert captured.err.strip().splitlines() == [
        "interfere: error: patch takes clean=, corrupted= and answer= together (wrong= optional)"]
    assert after(captured.out, "(exit status 2)", f"$ interfere runs runs_dir={runs_dir}")


def test_a_command_without_its_own_questions_is_walked_from_its_parser(tiny_life_run, capsys):
    """What `explore` and `lens` get until they have questions here: choices read from argparse."""
    runs_dir, out = tiny_life_run
    status = drive("induction", ENTER,  # `interpret`'s <tool> choices, read from its parser
                   ENTER,  # the run
                   "nonsense=1", ENTER, runs_dir=runs_dir, action=lambda m: m.generic("interpret"))
    captured = capsys.readouterr()
    assert status == 2
    assert f"$ interfere interpret induction run={out['run']} nonsense=1 runs_dir={runs_dir}" in captured.out
    assert "`interfere interpret induction` has no key 'nonsense'" in captured.err


def test_the_main_menu_offers_every_command(tiny_life_run):
    from interfere.cli.main import COMMANDS
    from interfere.cli.runs import collect

    runs_dir, _ = tiny_life_run
    entries = Menu(runs_dir).entries(collect(runs_dir))
    assert set(COMMANDS) - {"generate"} <= set(entries) and "continue" in entries
    assert "generate" not in entries  # a Life run writes no text
    empty = Menu(runs_dir / "nowhere").entries([])  # nothing trained yet: nothing to continue, evaluate, report
    assert {"train", "runs"} <= set(empty) and {"continue", "generate", "eval", "report"}.isdisjoint(empty)


def test_every_command_help_has_examples(capsys):
    from interfere.cli.main import COMMANDS, main

    for command in COMMANDS:
        assert main([command, "--help"]) == 0
        text = capsys.readouterr().out
        assert "examples:" in text and f"interfere {command}" in text.split("examples:", 1)[1], command


# ----- the real program in a terminal -------------------------------------------------------------------------
class Tmux:
    def __init__(self, socket: str):
        self.socket = socket

    def __call__(self, *args: str) -> subprocess.CompletedProcess:
        return subprocess.run(["tmux", "-L", self.socket, *args], capture_output=True, text=True, timeout=30)

    def screen(self) -> str:
        return self("capture-pane", "-p", "-t", "menu").stdout

    def wait_for(self, text: str, timeout: float = 120) -> str:
        """The screen once it shows `text` (polled: the program needs a moment to draw)."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            screen = self.screen()
            if text in screen:
                return screen
            time.sleep(0.2)
        raise AssertionError(f"{text!r} never appeared on the screen:\n{self.screen()}")

    def alive(self) -> bool:
        return self("has-session", "-t", "menu").returncode == 0


@pytest.mark.skipif(shutil.which("tmux") is None, reason="tmux is not installed (Debian: apt-get install tmux)")
def test_the_real_program_in_tmux(tiny_life_run, tmp_path):
    runs_dir, out = tiny_life_run
    shutil.copytree(runs_dir, tmp_path / "runs", symlinks=True)  # `interfere` reads runs/ of its directory
    env = {k: os.environ[k] for k in ("PYTHONPATH", "PATH", "HOME") if k in os.environ}
    program = shlex.join(["env", *(f"{k}={v}" for k, v in env.items()), "TERM=xterm-256color", "OMP_NUM_THREADS=1",
                          sys.executable, "-m", "interfere"])
    tmux = Tmux(f"interfere-test-{os.getpid()}")
    assert tmux("new-session", "-d", "-s", "menu", "-x", "120", "-y", "40", "-c", str(tmp_path), program).returncode == 0
    try:
        screen = tmux.wait_for("What now?")
        assert "1 run under runs/" in screen and out["run"] in screen
        for label in ("Train a model", "Continue a run", "Evaluate or compare runs", "Interpret a model",
                      "Write a run's HTML report", "List runs", "Quit"):
            assert label in screen
        lines = screen.splitlines()  # one choice a line: walk from the first to "List runs", wherever it sits
        downs = next(i for i, x in enumerate(lines) if "List runs" in x) - next(
            i for i, x in enumerate(lines) if "Train a model" in x)
        tmux("send-keys", "-t", "menu", *(["Down"] * downs), "Enter")  # List runs
        screen = tmux.wait_for("last loss")  # the command line first, then its table
        table = screen.split("$ interfere runs", 1)[1]
        assert "task" in table and "last loss" in table and "age" in table and out["run"] in table
        tmux("send-keys", "-t", "menu", *(["Up"] * downs), "Enter")  # Train: the presets
        tmux.wait_for("Train: which preset?")
        assert "life_smoke" in tmux.screen()
        tmux("send-keys", "-t", "menu", "Escape")
        tmux.wait_for("(back)")
        tmux("send-keys", "-t", "menu", "C-c")  # at the main menu: leave
        deadline = time.monotonic() + 60
        while tmux.alive() and time.monotonic() < deadline:
            time.sleep(0.2)
        assert not tmux.alive(), tmux.screen()  # the program ended (no traceback kept it waiting)
    finally:
        tmux("kill-server")
