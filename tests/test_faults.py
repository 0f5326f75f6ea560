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
