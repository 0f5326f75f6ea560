"""Crashes, signals and bad checkpoints end to end: `python -m interfere ...` in real subprocesses on a tiny
Game of Life model (5x5 boards, d_model 16, one layer), each child on one thread.

Most of each test's time is the children importing torch and transformer_lens (several seconds each); the
training itself takes well under a second.
"""

import json
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file

from toy_task import one_thread  # noqa: F401 (autouse fixture)

TINY = ["exp=life_smoke", "task.board=[5,5]", "model.rope_period=5", "model.d_model=16", "model.n_heads=2",
        "model.n_layers=1", "train.batch_size=2", "train.artifacts_every=0", "task.eval.samples=8",
        "task.eval.rollout_steps=2", "train.progress=false"]
ENV = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONUNBUFFERED": "1"}


def interfere(*words, **kw) -> subprocess.Popen:
    return subprocess.Popen([sys.executable, "-m", "interfere", *map(str, words)], env=ENV, text=True,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, **kw)


def finish(proc: subprocess.Popen, timeout: float = 300) -> tuple[int, str, str]:
    out, err = proc.communicate(timeout=timeout)
    return proc.returncode, out, err


def wait_for(path: Path, proc: subprocess.Popen, timeout: float = 300) -> None:
    end = time.monotonic() + timeout
    while not path.is_dir():
        if proc.poll() is not None:
            out, err = proc.communicate()
            pytest.fail(f"the run ended (status {proc.returncode}) before {path} appeared:\n{out}\n{err}")
        if time.monotonic() > end:
            proc.kill()
            pytest.fail(f"{path} did not appear within {timeout} s")
        time.sleep(0.01)


def only_run(runs: Path) -> Path:
    (run,) = [p for p in runs.iterdir() if p.is_dir() and not p.is_symlink()]
    return run


def test_sigkill_after_step_20_then_resume_equals_an_uninterrupted_run(tmp_path):
    from interfere.config import compose
    from interfere.train import train

    common = [*TINY, "train.steps=40", "train.ckpt_every=20", "train.log_every=10", "model.dropout=0.1"]
    # The run to kill evaluates 512 boards right after its step-20 checkpoint: time to kill it there.
    # (Evaluation leaves the training RNG untouched, so this changes nothing in the weights.)
    doomed = interfere("train", *common, "train.eval_every=20", "train.eval_samples=512", f"runs_dir={tmp_path / 'b'}")
    wait_for(tmp_path / "b" / "latest" / "checkpoints" / "step_20", doomed)
    os.kill(doomed.pid, signal.SIGKILL)
    assert doomed.wait(timeout=60) == -signal.SIGKILL
    run = only_run(tmp_path / "b")
    ckpts = run / "checkpoints"
    assert not (ckpts / "step_40").exists(), "the run finished before it was killed: nothing was tested"
    # Killed after step_20/ was renamed into place, maybe before `latest` switched to it: resume copes.
    assert not (ckpts / "latest").is_symlink() or os.readlink(ckpts / "latest") == "step_20"

    resumed = interfere("train", *common, f"resume={run.name}", f"runs_dir={tmp_path / 'b'}")
    # meanwhile the uninterrupted run, in this process (on one thread, like the children)
    straight = train(compose([*common, f"runs_dir={tmp_path / 'a'}"]))
    code, out, err = finish(resumed)
    assert code == 0, err
    assert f"resumed from {ckpts / 'step_20'}" in out

    a = load_file(straight / "checkpoints" / "step_40" / "model.safetensors")
    b = load_file(ckpts / "step_40" / "model.safetensors")
    assert a.keys() == b.keys()
    for name in a:
        assert torch.equal(a[name], b[name]), name

    # metrics.jsonl reads as one run: each step once, the same losses
    def losses(r):
        return [(x["step"], x["loss"]) for x in map(json.loads, (r / "metrics.jsonl").read_text().splitlines())
                if "loss" in x]
    assert losses(run) == losses(straight)
    assert [s for s, _ in losses(run)] == [10, 20, 30, 40]


def test_sigterm_checkpoints_the_current_step_and_exits_0(tmp_path):
    runs = tmp_path / "runs"
    proc = interfere("train", *TINY, "train.steps=100000", "train.ckpt_every=10", "train.log_every=10",
                     f"runs_dir={runs}")
    wait_for(runs / "latest" / "checkpoints" / "step_10", proc)
    proc.send_signal(signal.SIGTERM)
    code, out, err = finish(proc, timeout=120)
    assert code == 0, err
    run = only_run(runs)
    state = json.loads((run / "checkpoints" / "latest" / "state.json").read_text())
    assert state["stopped"] == "signal" and state["step"] >= 10
    assert os.readlink(run / "checkpoints" / "latest") == f"step_{state['step']}"
    assert f"SIGTERM: stopped after step {state['step']}" in out
    assert f"Resume with: interfere train resume={run.name}" in out
    assert not (run / "eval.json").exists()


@pytest.fixture(scope="module")
def life_run(tmp_path_factory):
    """A finished 4-step tiny Life run with checkpoints at steps 2 and 4 (trained in this process)."""
    from interfere.config import compose
    from interfere.train import train

    runs = tmp_path_factory.mktemp("life") / "runs"
    words = [*TINY, "train.steps=4", "train.ckpt_every=2", "train.log_every=1"]
    return train(compose([*words, f"runs_dir={runs}"])), words


def _copy(run: Path, runs: Path) -> Path:
    runs.mkdir(parents=True)
    return Path(shutil.copytree(run, runs / run.name, symlinks=True))


def _one_line_error(err: str) -> str:
    lines = err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("interfere: error: "), err
    return lines[0]


def test_truncated_newest_checkpoint_eval_fails_and_resume_falls_back(tmp_path, life_run):
    run, words = life_run
    broken = _copy(run, tmp_path / "x")
    bad = broken / "checkpoints" / "step_4" / "model.safetensors"
    bad.write_bytes(bad.read_bytes()[:bad.stat().st_size // 2])
    again = _copy(broken, tmp_path / "y")

    evaluation = interfere("eval", f"ckpt={bad}", f"runs_dir={tmp_path / 'x'}")
    resumed = interfere("train", *words, f"resume={again.name}", f"runs_dir={tmp_path / 'y'}")

    code, out, err = finish(evaluation)
    assert code == 2 and out == ""
    line = _one_line_error(err)
    assert str(bad) in line and "truncated" in line

    code, out, err = finish(resumed)
    assert code == 0, err
    step_4 = again / "checkpoints" / "step_4"
    assert f"warning: skipping checkpoint {step_4}: {step_4 / 'model.safetensors'} is unreadable (truncated" in err
    assert f"resumed from {again / 'checkpoints' / 'step_2'}" in out
    a, b = load_file(run / "checkpoints" / "step_4" / "model.safetensors"), load_file(step_4 / "model.safetensors")
    assert all(torch.equal(a[k], b[k]) for k in a)  # redone exactly


class _Payload:
    def __init__(self, marker):
        self.marker = marker

    def __reduce__(self):
        return (Path.write_text, (Path(self.marker), "pickle ran code"))


def test_unsafe_optimizer_file_is_refused_and_a_nan_loss_stops_the_run(tmp_path, life_run):
    run, words = life_run
    tampered = _copy(run, tmp_path / "x")
    optim = tampered / "checkpoints" / "step_4" / "optim.pt"
    evil = torch.load(optim, weights_only=True)
    marker = tmp_path / "marker"
    evil["param_groups"][0]["hook"] = _Payload(marker)
    torch.save(evil, optim)

    refused = interfere("train", *words, f"resume={tampered.name}", f"runs_dir={tmp_path / 'x'}")
    # lr 1e30: the first step leaves the weights at about 1e30 and the second step's loss is nan
    diverging = interfere("train", *TINY, "train.steps=10", "train.lr=1e30", "train.warmup_steps=0",
                          "train.ckpt_every=1", "train.log_every=1", f"runs_dir={tmp_path / 'nan'}")

    code, out, err = finish(refused)
    assert code == 2, err
    line = _one_line_error(err)
    assert f"{optim} refused: unpickling it would import and call" in line
    assert not marker.exists()

    code, out, err = finish(diverging)
    assert code != 0
    nan_run = only_run(tmp_path / "nan")
    good = nan_run / "checkpoints" / "step_1"
    assert "step 2: the loss is nan" in err and f"the last good checkpoint, {good} (step 1)" in err
    assert os.readlink(nan_run / "checkpoints" / "latest") == "step_1"
    assert sorted(p.name for p in (nan_run / "checkpoints").iterdir()) == ["latest", "step_1"]
    assert load_file(good / "model.safetensors")  # whole
    assert not (nan_run / "eval.json").exists()
