"""Bit-exact training through the real command line: two runs agree, SIGKILL + bare `resume=<run_id>` agrees
with an uninterrupted run (2 threads, the default dtype), and fp32 runs agree across thread counts.
Bad train values and a non-finite loss end in one line, before (or without) a traceback.

Each child is `python -m interfere train ...` in its own working directory, so `runs/` is the default one and
`resume=<run_id>` really is the whole command.
"""

import os
import random
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from safetensors.torch import load_file

from interfere.cli.main import main

TINY = ["exp=life_smoke", "task.board=[5,5]", "model.rope_period=5", "model.d_model=16", "model.n_heads=2",
        "model.n_layers=1", "train.batch_size=4", "train.artifacts_every=0", "task.eval.samples=8",
        "task.eval.rollout_steps=1", "train.progress=false", "model.dropout=0.1"]
SMALL = ["exp=life_smoke", "task.board=[8,8]", "model.rope_period=8", "model.d_model=32", "model.n_heads=2",
         "train.batch_size=8", "train.artifacts_every=0", "task.eval.samples=8", "task.eval.rollout_steps=2",
         "train.progress=false", "model.dropout=0.1"]


def start(cwd: Path, *words, threads: int = 2) -> tuple[subprocess.Popen, Path]:
    cwd.mkdir(parents=True, exist_ok=True)
    env = {**os.environ, "OMP_NUM_THREADS": str(threads), "PYTHONUNBUFFERED": "1"}
    proc = subprocess.Popen([sys.executable, "-m", "interfere", "train", *words], cwd=cwd, env=env, text=True,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    return proc, cwd


def finished(child: tuple[subprocess.Popen, Path]) -> tuple[Path, str]:
    """(the run directory, what the child printed) once it has ended well."""
    proc, cwd = child
    out, err = proc.communicate(timeout=600)
    assert proc.returncode == 0, err
    return Path(os.path.realpath(cwd / "runs" / "latest")), out


def weights(run: Path, step: int) -> dict:
    return load_file(run / "checkpoints" / f"step_{step}" / "model.safetensors")


def assert_bit_identical(a: dict, b: dict) -> None:
    assert a.keys() == b.keys()
    for k in a:
        assert a[k].dtype == b[k].dtype and a[k].equal(b[k]), k  # equal floats: the same bits (no NaN here)


def test_sigkill_then_bare_resume_equals_two_identical_uninterrupted_runs(tmp_path):
    # Each checkpoint is followed by an evaluation of 256 boards (which leaves the training RNG alone), so the
    # run is still busy when the kill, sent as a randomly chosen checkpoint appears, arrives.
    common = [*TINY, "train.steps=60", "train.ckpt_every=5", "train.eval_every=5", "train.eval_samples=256"]
    doomed, _ = start(tmp_path / "killed", *common)
    chosen = tmp_path / "killed" / "runs" / "latest" / "checkpoints" / f"step_{random.randrange(10, 55, 5)}"
    end = time.monotonic() + 300
    while not chosen.is_dir():
        assert doomed.poll() is None, doomed.communicate()
        assert time.monotonic() < end, f"no {chosen.name} within 300 s"
        time.sleep(0.005)
    doomed.send_signal(signal.SIGKILL)
    assert doomed.wait(timeout=60) == -signal.SIGKILL
    run = Path(os.path.realpath(tmp_path / "killed" / "runs" / "latest"))
    assert not (run / "checkpoints" / "step_60").exists(), "the run finished before it was killed"

    resumed = start(tmp_path / "killed", f"resume={run.name}")  # nothing else: the run's own config
    again, out = finished(resumed)
    assert again == run and f"(resumed from {run / 'checkpoints'}/step_" in out
    (a, _), (b, _) = (finished(start(tmp_path / f"straight{i}", *common)) for i in range(2))
    assert_bit_identical(weights(a, 60), weights(b, 60))  # two uninterrupted runs
    assert_bit_identical(weights(run, 60), weights(a, 60))  # killed + resumed


@pytest.mark.parametrize("dropout", ["0.1", "0.0"])  # without dropout, attention leaves out the unseen keys
def test_fp32_runs_are_bit_identical_at_one_and_two_threads(tmp_path, dropout):
    common = [*SMALL, "train.steps=20", "train.ckpt_every=0", "train.dtype=fp32", f"model.dropout={dropout}"]
    (one, _), (two, _) = (finished(start(tmp_path / f"t{n}", *common, threads=n)) for n in (1, 2))
    assert_bit_identical(weights(one, 20), weights(two, 20))


def test_resume_refuses_a_model_change_naming_the_key(tmp_path, capsys, monkeypatch):
    monkeypatch.chdir(tmp_path)
    assert main(["train", *SMALL, "train.steps=2", "model.dropout=0.0", "task.eval.samples=2"]) == 0
    run = Path(os.path.realpath("runs/latest")).name
    capsys.readouterr()
    assert main(["train", f"resume={run}", "model.d_model=128"]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1
    assert "model.d_model=128 (the run had 32): a resumed run keeps its model and task" in err
    assert main(["train", f"resume={run}", "task.eval.samples=4", "train.steps=3"]) == 0  # free keys apply
    assert (Path("runs") / run / "checkpoints" / "step_3").is_dir()


@pytest.mark.parametrize("word,message", [
    ("train.lr=-1", "train.lr=-1 must be a positive learning rate"),
    ("train.betas=[2,3]", "train.betas=[2, 3] must be two numbers in [0, 1)"),
    ("train.tokens=1e20", "train.tokens=1e+20 is 4.81e+17 steps of 208 tokens: more than a run can take"),
])
def test_impossible_train_values_are_one_line_before_any_run_directory(tmp_path, capsys, word, message):
    words = ["train", "exp=life_smoke", "task.board=[4,4]", "model.rope_period=4", "train.batch_size=4",
             f"runs_dir={tmp_path / 'runs'}"]
    words += ["train.steps=null", word] if word.startswith("train.tokens") else [word]
    assert main(words) == 2
    err = capsys.readouterr().err.strip()
    assert err.splitlines() == [f"interfere: error: {err.removeprefix('interfere: error: ')}"]
    assert message in err
    assert not (tmp_path / "runs").exists()


def test_a_nonfinite_loss_ends_in_one_line_naming_the_step_and_the_last_good_checkpoint(tmp_path, capsys):
    runs = tmp_path / "runs"
    words = ["train", "exp=life_smoke", "task.board=[4,4]", "model.rope_period=4", "train.batch_size=4",
             "train.steps=30", "train.ckpt_every=1", "train.warmup_steps=0", "train.lr=1e30", "train.progress=false",
             f"runs_dir={runs}"]
    assert main(words) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("interfere: error: step ")
    step = int(err[0].split("step ")[1].split(":")[0])
    good = os.path.realpath(runs / "latest" / "checkpoints" / "latest")
    assert f"the last good checkpoint, {good} (step {step - 1})" in err[0]
