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


# ----- filesystem faults -----------------------------------------------------------------------------------
TINY = ["exp=life_smoke", "train.steps=2", "task.board=[5,5]", "model.d_model=16", "model.n_layers=1",
        "train.batch_size=2", "train.warmup_steps=1", "train.artifacts_every=0", "train.progress=false",
        "train.audit=false", "task.eval.samples=4", "device=cpu"]


@pytest.fixture
def tmpfs(tmp_path):
    """mount(size, readonly=False) -> a fresh tmpfs folder: a real full disk or read-only file system.
    Mounting needs root (CI runs as root); elsewhere these tests skip, saying so."""
    import subprocess

    mounted = []

    def mount(size: str = "64k", readonly: bool = False):
        where = tmp_path / f"fs{len(mounted)}"
        where.mkdir()
        options = f"size={size}" + (",ro" if readonly else "")
        p = subprocess.run(["mount", "-t", "tmpfs", "-o", options, "tmpfs", str(where)], capture_output=True, text=True)
        if p.returncode != 0:
            pytest.skip(f"cannot mount a tmpfs here (needs root): {p.stderr.strip()}")
        mounted.append(where)
        return where

    yield mount
    for where in mounted:
        subprocess.run(["umount", str(where)], capture_output=True)


def test_a_full_disk_leaves_no_run_and_latest_where_it_was(tmpfs, capsys):
    import os

    runs = tmpfs("64k") / "runs"  # room for config.yaml and metrics, not for the first checkpoint
    runs.mkdir()
    os.symlink("an_older_run", runs / "latest")
    assert main(["train", *TINY, f"runs_dir={runs}"]) == 2
    line = one_line(capsys)
    assert f"cannot write {runs}/life_smoke_" in line and "/checkpoints/step_2: the disk is full" in line
    assert "choose another runs_dir=" in line
    assert sorted(p.name for p in runs.iterdir()) == ["latest"] and os.readlink(runs / "latest") == "an_older_run"


def test_a_read_only_runs_dir_and_a_file_in_its_place(tmpfs, tmp_path, capsys):
    runs = tmpfs(readonly=True) / "runs"
    assert main(["train", *TINY, f"runs_dir={runs}"]) == 2
    assert one_line(capsys) == f"interfere: error: cannot write {runs}: the file system is read-only; choose another runs_dir=<dir>"
    afile = tmp_path / "afile"
    afile.write_text("")
    assert main(["train", *TINY, f"runs_dir={afile}"]) == 2
    assert f"cannot write {afile}: a file stands where a folder is needed" in one_line(capsys)


def test_interpret_on_a_read_only_run_says_where_else(run_copy, tmpfs, capsys):
    import shutil
    import subprocess

    runs, run_dir = run_copy
    fs = tmpfs("4m")
    shutil.copytree(runs, fs / "runs", symlinks=True)
    subprocess.run(["mount", "-o", "remount,ro", str(fs)], check=True)
    assert main(["interpret", "attention", f"runs_dir={fs / 'runs'}", "batch=2", "device=cpu"]) == 2
    line = one_line(capsys)
    assert "the file system is read-only" in line and "out=<a writable folder>" in line


def test_an_unknown_logger_is_refused_before_a_run_exists(tmp_path, capsys):
    runs = tmp_path / "runs"
    assert main(["train", *TINY, "train.loggers=[foo]", f"runs_dir={runs}"]) == 2
    assert "train.loggers has 'foo'" in one_line(capsys)
    assert not runs.exists()


# ----- damaged run files ------------------------------------------------------------------------------------
@pytest.mark.parametrize("damage", ["syntax", "nul", "string", "deleted"])
def test_a_damaged_config_is_one_line_naming_it(damage, run_copy, capsys):
    runs, run_dir = run_copy
    config = run_dir / "config.yaml"
    {"syntax": lambda: config.write_text("model: [d_model\n"), "nul": lambda: config.write_bytes(b"model:\0\0 x"),
     "string": lambda: config.write_text("just a string\n"), "deleted": config.unlink}[damage]()
    for argv in (["eval"], ["interpret", "attention", "plots=false"], ["train", f"resume={run_dir.name}"]):
        assert main([*argv, f"runs_dir={runs}", "device=cpu"]) == 2, argv
        line = one_line(capsys)
        assert f"{config} is {'missing' if damage == 'deleted' else 'damaged'}" in line, line
