"""DDP on CPU (gloo): 2 processes x batch 2 x 2 accumulation steps follow the same curve as 1 process x batch 8."""

import json
import os
import socket

import pytest
import torch

pytestmark = pytest.mark.slow  # two extra Python processes, each importing torch and transformer_lens

COMMON = dict(steps=6, log_every=1, audit=False, warmup_steps=2)
MODEL = dict(use_bias=False)  # see test_train_loop: the key bias turns rounding noise into Adam steps


def _worker(rank, world_size, port, runs):
    os.environ.update(RANK=str(rank), WORLD_SIZE=str(world_size), LOCAL_RANK=str(rank),
                      MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port))
    torch.set_num_threads(1)
    import toy_task  # registers the toy task in this fresh process
    from interfere.train import train

    train(toy_task.make_cfg(runs, model=MODEL, batch_size=2, grad_accum=2, **COMMON))


def _free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_two_processes_match_one(tmp_path):
    import torch.multiprocessing as mp

    from interfere.model import load_model
    from interfere.train import train
    from interfere.train.runs import resolve_checkpoint
    from toy_task import make_cfg

    mp.spawn(_worker, args=(2, _free_port(), str(tmp_path / "ddp")), nprocs=2, join=True)
    ddp = resolve_checkpoint(None, tmp_path / "ddp")
    single = resolve_checkpoint(train(make_cfg(tmp_path / "one", model=MODEL, batch_size=8, **COMMON)))

    def losses(ckpt):
        lines = (ckpt.parent.parent / "metrics.jsonl").read_text().splitlines()
        return [r["loss"] for r in map(json.loads, lines) if "loss" in r]

    assert len(losses(ddp)) == COMMON["steps"]  # rank 0 alone writes the metrics
    for a, b in zip(losses(single), losses(ddp), strict=True):
        assert abs(a - b) <= 1e-5 * abs(a)
    cal = json.loads((ddp.parent.parent / "calibration.json").read_text())
    assert cal["world_size"] == 2 and cal["tokens_per_step"] == 2 * 2 * 2 * 7
    wa, wb = load_model(single).state_dict(), load_model(ddp).state_dict()
    for name in wa:
        assert (wa[name] - wb[name]).abs().max() <= 1e-6, name
