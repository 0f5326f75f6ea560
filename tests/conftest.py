"""Fixtures shared by test modules: runs that are expensive enough to build once per session."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

# life_smoke shrunk to seconds (as in test_cli): 6x6 boards, 3 steps of 4 boards, one board rendered for
# 2 frames at step 1 and at the end, no leakage audit (it has its own tests).
TINY_LIFE = [
    "exp=life_smoke", "train.steps=3", "task.board=[6,6]", "model.rope_period=6", "model.d_model=32",
    "train.batch_size=4", "train.warmup_steps=1", "train.log_every=1", "train.artifacts_every=100",
    "train.progress=false", "train.audit=false", "task.eval.samples=16", "task.render.boards=1",
    "task.render.steps=2", "device=cpu",
]


@pytest.fixture(scope="session")
def tiny_life_run(tmp_path_factory):
    """(runs_dir, train's --json record) of one tiny Life run trained by the real CLI, then looked at with
    `interfere interpret attention` so that its assets hold analysis plots too."""
    runs_dir = tmp_path_factory.mktemp("shared") / "runs"
    p = subprocess.run([sys.executable, "-m", "interfere", "train", *TINY_LIFE, f"runs_dir={runs_dir}", "--json"],
                       capture_output=True, text=True, timeout=300)
    assert p.returncode == 0, p.stderr[-3000:]
    out = json.loads(p.stdout)
    p = subprocess.run([sys.executable, "-m", "interfere", "interpret", "attention", f"run={out['run']}",
                        f"runs_dir={runs_dir}", "batch=2", "device=cpu", "--json"],
                       capture_output=True, text=True, timeout=300)
    assert p.returncode == 0, p.stderr[-3000:]
    return runs_dir, out
