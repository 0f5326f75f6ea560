"""`torchrun --standalone --nproc_per_node=2 -m interfere train ...` on CPU (gloo), on a tiny Game of Life model.

Two processes x micro-batch b (DDP, and FSDP with 2 accumulation steps of b/2), one process x 2b, and one
process x b with 2 accumulation steps see the same global batches: same losses and weights over 10 fp32 steps.
Each launch costs a torchrun agent and two workers importing torch and transformer_lens.
"""

import json
import os
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file

from toy_task import one_thread  # noqa: F401 (autouse fixture)

TINY = ["exp=life_smoke", "task.board=[5,5]", "model.rope_period=5", "model.d_model=16", "model.n_heads=2",
        "model.n_layers=1", "train.artifacts_every=0", "task.eval.samples=8", "task.eval.rollout_steps=2",
        "train.progress=false"]
# fp32, 10 steps, no biases (the key bias has a zero true gradient, so Adam would amplify rounding noise)
EXACT = [*TINY, "train.steps=10", "train.log_every=1", "train.warmup_steps=2", "train.ckpt_every=5",
         "model.use_bias=false", "train.dtype=fp32"]  # fp32 arithmetic on every machine (auto follows the CPU)
ENV = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONUNBUFFERED": "1"}


def torchrun(*words) -> subprocess.Popen:
    exe = Path(sys.executable).with_name("torchrun")
    launcher = [str(exe)] if exe.is_file() else [sys.executable, "-m", "torch.distributed.run"]
    return subprocess.Popen([*launcher, "--standalone", "--nproc_per_node=2", "-m", "interfere", "train",
                             *map(str, words)], env=ENV, text=True, stdout=subprocess.PIPE, stderr=subprocess.PIPE)


def only_run(runs: Path) -> Path:
    dirs = [p for p in runs.iterdir() if p.is_dir() and not p.is_symlink()]
    assert len(dirs) == 1, dirs  # rank 0 alone creates the run directory
    return dirs[0]


def losses(run: Path) -> list[float]:
    return [r["loss"] for r in map(json.loads, (run / "metrics.jsonl").read_text().splitlines()) if "loss" in r]


def assert_same(reference: Path, run: Path) -> None:
    a, b = losses(reference), losses(run)
    assert len(a) == len(b) == 10
    for x, y in zip(a, b):
        assert abs(x - y) <= 1e-5 * abs(x), (a, b)
    wa = load_file(reference / "checkpoints" / "step_10" / "model.safetensors")
    wb = load_file(run / "checkpoints" / "step_10" / "model.safetensors")
    assert wa.keys() == wb.keys()
    for name in wa:
        assert wa[name].shape == wb[name].shape, name  # full tensors, also under FSDP
        if wa[name].is_floating_point():
            assert (wa[name] - wb[name]).abs().max() <= 1e-6, name
        else:
            assert torch.equal(wa[name], wb[name]), name


@pytest.fixture(scope="module")
def single(tmp_path_factory):
    """One process, micro-batch 4 (the reference), in this process."""
    from interfere.config import compose
    from interfere.train import train

    runs = tmp_path_factory.mktemp("single")
    return train(compose([*EXACT, "train.batch_size=4", f"runs_dir={runs}"]))


def test_torchrun_ddp_matches_one_process_and_accumulation(tmp_path, single):
    from interfere.config import compose
    from interfere.train import train

    proc = torchrun(*EXACT, "train.batch_size=2", f"runs_dir={tmp_path / 'ddp'}")
    # meanwhile, in this process: one process x 2 with 2 accumulation steps
    accumulated = train(compose([*EXACT, "train.batch_size=2", "train.grad_accum=2", f"runs_dir={tmp_path / 'acc'}"]))
    out, err = proc.communicate(timeout=600)
    assert proc.returncode == 0, err

    run = only_run(tmp_path / "ddp")
    assert out.count(f"run    {run}") == 1  # the CLI's last line, from rank 0 only
    assert sorted(p.name for p in (run / "checkpoints").iterdir()) == ["latest", "step_10", "step_5"]
    assert (run / "config.yaml").is_file() and (run / "eval.json").is_file()
    cal = json.loads((run / "calibration.json").read_text())
    assert (cal["world_size"], cal["parallel"], cal["tokens_per_step"]) == (2, "ddp", 2 * 2 * 70)
    assert_same(single, run)
    assert_same(single, accumulated)


def test_torchrun_fsdp_matches_and_saves_full_checkpoints(tmp_path, single):
    from interfere.config import compose
    from interfere.train import train

    proc = torchrun(*EXACT, "train.parallel=fsdp", "train.batch_size=1", "train.grad_accum=2",
                    f"runs_dir={tmp_path / 'fsdp'}")
    out, err = proc.communicate(timeout=600)
    assert proc.returncode == 0, err
    run = only_run(tmp_path / "fsdp")
    state = json.loads((run / "checkpoints" / "step_10" / "state.json").read_text())
    assert (state["parallel"], state["world_size"], state["stopped"]) == ("fsdp", 2, "done")
    assert_same(single, run)
    # optim.pt is keyed by parameter name, the same under FSDP as in one process ...
    a = torch.load(single / "checkpoints" / "step_10" / "optim.pt", weights_only=True)
    b = torch.load(run / "checkpoints" / "step_10" / "optim.pt", weights_only=True)
    assert a["state"].keys() == b["state"].keys() and [g["params"] for g in a["param_groups"]] == \
        [g["params"] for g in b["param_groups"]]
    # ... so one process resumes the FSDP run's step 5 and ends where the reference does
    cfg = compose([*EXACT, "train.batch_size=4", f"resume={run / 'checkpoints' / 'step_5'}", f"runs_dir={tmp_path}"])
    train(cfg)
    assert_same(single, run)


def _worker_pid(agent: int, rank: int, timeout: float = 300) -> int:
    """The pid of torchrun's worker with this RANK (its child whose environment says so)."""
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        for entry in Path("/proc").iterdir():
            if not entry.name.isdigit():
                continue
            try:
                ppid = int((entry / "stat").read_text().rsplit(")", 1)[1].split()[1])
                env = (entry / "environ").read_bytes().split(b"\0") if ppid == agent else []
            except (OSError, ValueError, IndexError):
                continue
            if f"RANK={rank}".encode() in env:
                return int(entry.name)
        time.sleep(0.05)
    pytest.fail(f"no worker with RANK={rank} under torchrun (pid {agent})")


@pytest.mark.skipif(not Path("/proc/self/environ").exists(), reason="finds torchrun's workers through /proc")
def test_a_signal_to_one_rank_stops_every_rank_at_the_same_step(tmp_path):
    runs = tmp_path / "runs"
    proc = torchrun(*TINY, "train.steps=100000", "train.batch_size=2", "train.ckpt_every=5", "train.log_every=5",
                    f"runs_dir={runs}")
    end = time.monotonic() + 300
    while not (runs / "latest" / "checkpoints" / "step_5").is_dir():
        assert proc.poll() is None and time.monotonic() < end, proc.communicate()
        time.sleep(0.02)
    os.kill(_worker_pid(proc.pid, rank=1), 15)  # SIGTERM to rank 1 alone; rank 0 learns it through the all-reduce
    out, err = proc.communicate(timeout=300)
    assert proc.returncode == 0, err  # both workers exited 0 (a rank left behind would hang or fail)
    run = only_run(runs)
    state = json.loads((run / "checkpoints" / "latest" / "state.json").read_text())
    assert state["stopped"] == "signal" and state["step"] >= 5
    assert f"stopped after step {state['step']}" in out and f"interfere train resume={run.name}" in out
