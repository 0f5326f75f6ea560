"""Faults a new user meets, each one line on stderr with exit status 2 and nothing left behind (issue 15):
tools that do not fit a run, damaged run files, filesystem faults (a full disk and a read-only directory
are real small tmpfs mounts where this machine allows them), a code-running optim.pt.

The CLI runs in-process through `interfere.cli.main.main`, the function the console script calls."""

from __future__ import annotations

import pytest

from interfere.cli.main import main


def one_line(capsys) -> str:
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1, err
    assert err[0].startswith("interfere: error: ")
    return err[0]


@pytest.mark.parametrize("tool", ["logit-lens", "induction", "probe", "patch", "dla"])
def test_token_tools_refuse_a_life_run_and_name_the_tools_that_fit(tool, tiny_life_run, capsys):
    runs, out = tiny_life_run
    assert main(["interpret", tool, f"run={out['run']}", f"runs_dir={runs}", "device=cpu", "plots=false"]) == 2
    line = one_line(capsys)
    assert f"`interpret {tool}` would run on random token ids" in line
    assert "tools that fit it: attention, logit-lens prompt=<ids>" in line and "explore life" in line


def test_a_life_run_takes_the_logit_lens_on_given_ids(tiny_life_run, capsys):
    runs, out = tiny_life_run
    assert main(["interpret", "logit-lens", f"run={out['run']}", f"runs_dir={runs}", "device=cpu", "plots=false",
                 "prompt=1,2,3", "--json"]) == 0
    assert '"tool": "logit-lens"' in capsys.readouterr().out


@pytest.fixture
def run_copy(tiny_life_run, tmp_path):
    """(runs_dir, run_dir): a private copy of the shared tiny Life run, free to damage, with runs/latest."""
    import os
    import shutil

    runs, out = tiny_life_run
    copy = tmp_path / "runs"
    shutil.copytree(runs / out["run"], copy / out["run"], symlinks=True)
    os.symlink(out["run"], copy / "latest")
    return copy, copy / out["run"]


def test_runs_flags_broken_weights(run_copy, capsys):
    import json

    runs, run_dir = run_copy
    assert main(["runs", f"runs_dir={runs}", "--json"]) == 0
    assert json.loads(capsys.readouterr().out)["runs"][0]["broken"] is None
    weights = run_dir / "checkpoints" / "latest" / "model.safetensors"
    weights.write_bytes(weights.read_bytes()[:5000])  # cut short, as by a full disk
    assert main(["runs", f"runs_dir={runs}", "--json"]) == 0
    (row,) = json.loads(capsys.readouterr().out)["runs"]
    assert "model.safetensors" in row["broken"] and "truncated" in row["broken"]
    assert main(["runs", f"runs_dir={runs}"]) == 0
    text = capsys.readouterr().out
    assert "BROKEN" in text and f"broken: {run_dir.name}: " in text
