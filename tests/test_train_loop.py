"""The training loop end to end on the toy task with the real HookedGPT."""

import json
import math
import os

import pytest
import torch
from omegaconf import OmegaConf

import toy_task
from interfere.model import load_model
from interfere.train import train
from interfere.train.runs import list_runs, load, resolve_checkpoint
from toy_task import SimulatedCrash, ToyTask, make_cfg, one_thread  # noqa: F401 (autouse fixture)


def _records(run_dir):
    lines = (run_dir / "metrics.jsonl").read_text().splitlines()
    return [json.loads(line) for line in lines]


def _losses(run_dir):
    return [r["loss"] for r in _records(run_dir) if "loss" in r]


def _weights(run_dir):
    return load_model(resolve_checkpoint(run_dir), "cpu").state_dict()


@pytest.fixture(scope="module")
def toy_run(tmp_path_factory):
    """One 40-step run (budget given in tokens) shared by the tests that only inspect its outputs."""
    runs = tmp_path_factory.mktemp("shared") / "runs"
    # 40 steps x 8 samples x 7 tokens = 2240 tokens; a budget of 2200 rounds up to the same 40 steps.
    cfg = make_cfg(runs, steps=None, tokens=2200, lr=2e-2, log_every=5, ckpt_every=10, artifacts_every=20,
                   eval_every=15)
    return train(cfg), cfg


def test_loss_falls(toy_run):
    run_dir, _ = toy_run
    losses = _losses(run_dir)
    assert losses[0] > 0.9 * math.log(6)  # starts near chance over 6 symbols
    assert losses[-1] < 0.6 * losses[0]


def test_token_budget_is_printed_and_stored(tmp_path, capsys):
    run_dir = train(make_cfg(tmp_path / "runs", steps=None, tokens="100", log_every=1, audit=False))
    # 100 tokens / (1 x 8 x 1 x 7 tokens per step) -> 2 steps
    assert "2 steps x 56 tokens/step = 112 tokens" in capsys.readouterr().out
    cal = json.loads((run_dir / "calibration.json").read_text())
    assert (cal["total_steps"], cal["tokens_per_step"]) == (2, 56)
    state = json.loads((run_dir / "checkpoints" / "latest" / "state.json").read_text())
    assert (state["step"], state["tokens"], state["total_steps"], state["tokens_per_step"]) == (2, 112, 2, 56)
    assert list((run_dir / "assets").iterdir()) == []  # artifacts_every=0 renders nothing


def test_run_directory(toy_run):
    run_dir, cfg = toy_run
    runs = run_dir.parent
    assert os.readlink(runs / "latest") == run_dir.name
    assert run_dir.name.startswith("toy_")
    assert OmegaConf.load(run_dir / "config.yaml") == OmegaConf.create(OmegaConf.to_container(cfg, resolve=True))

    train_recs = [r for r in _records(run_dir) if "loss" in r]
    assert [r["step"] for r in train_recs] == [5, 10, 15, 20, 25, 30, 35, 40]
    for r in train_recs:
        assert r["tokens"] == r["step"] * 56 and r["lr"] > 0 and r["tokens_per_s"] > 0 and "acc" in r
    eval_recs = [r for r in _records(run_dir) if "eval/loss" in r]
    assert [r["step"] for r in eval_recs] == [15, 30, 40]  # eval_every=15, and at the end
    assert json.loads((run_dir / "eval.json").read_text())["step"] == 40

    cal = json.loads((run_dir / "calibration.json").read_text())
    assert cal["tokens_per_step"] == 56 and cal["tokens_per_s"] > 0 and cal["world_size"] == 1
    assert cal["device"] == "cpu" and cal["dtype"] == "fp32" and cal["n_params"] > 0

    ckpts = run_dir / "checkpoints"
    assert sorted(p.name for p in ckpts.iterdir()) == ["latest", "step_10", "step_20", "step_30", "step_40"]
    assert os.readlink(ckpts / "latest") == "step_40"
    # artifacts at step 1, every 20 steps and at the end, rendered in eval mode without grad
    assets = run_dir / "assets"
    assert sorted(p.name for p in assets.iterdir()) == ["step_1.txt", "step_20.txt", "step_40.txt"]
    assert (assets / "step_1.txt").read_text().strip() == "training=False grad=False"


def test_load_and_list_runs(toy_run):
    run_dir, _ = toy_run
    model, task = load(run_dir.name, runs_dir=run_dir.parent)
    assert isinstance(task, ToyTask) and not model.training
    batch = task.train_batch(0, 4)
    loss = torch.nn.functional.cross_entropy(model(batch.inputs)[batch.loss_mask], batch.targets[batch.loss_mask])
    assert loss.item() < 0.6 * math.log(6)  # the trained weights, not a fresh model
    rows = list_runs(run_dir.parent)
    row = next(r for r in rows if r["id"] == run_dir.name)
    assert (row["step"], row["tokens"]) == (40, 2240) and row["loss"] == _losses(run_dir)[-1]


def test_accumulation_equals_a_bigger_batch(tmp_path, monkeypatch):
    drawn = []

    class Recording(ToyTask):
        def train_batch(self, step, batch_size, rank=0, world_size=1, model=None):
            drawn.append((step, batch_size, rank, world_size))
            return super().train_batch(step, batch_size, rank, world_size, model)

    monkeypatch.setitem(toy_task.__dict__, "ToyTask", Recording)
    from interfere.tasks import REGISTRY

    monkeypatch.setitem(REGISTRY, "toy", lambda: Recording)
    common = dict(steps=10, log_every=1, audit=False, grad_clip=0.5, warmup_steps=3)
    # No biases: the key bias has an exactly-zero true gradient (softmax ignores it), so Adam turns the
    # float rounding noise of its gradient into lr-sized steps that differ between any two summation orders.
    model = dict(use_bias=False)
    big = train(make_cfg(tmp_path / "a", model=model, batch_size=8, grad_accum=1, **common))
    assert drawn[:3] == [(0, 8, 0, 1), (1, 8, 0, 1), (2, 8, 0, 1)]
    drawn.clear()
    acc = train(make_cfg(tmp_path / "b", model=model, batch_size=4, grad_accum=2, **common))
    # each micro-batch is a slice ("virtual rank") of the same per-step global batch
    assert drawn[:4] == [(0, 4, 0, 2), (0, 4, 1, 2), (1, 4, 0, 2), (1, 4, 1, 2)]

    for a, b in zip(_losses(big), _losses(acc), strict=True):
        assert abs(a - b) <= 1e-5 * abs(a)
    wa, wb = _weights(big), _weights(acc)
    for name in wa:
        assert (wa[name] - wb[name]).abs().max() <= 1e-6, name


def test_killed_and_resumed_equals_uninterrupted(tmp_path):
    common = dict(steps=20, ckpt_every=10, log_every=5, audit=False)
    model = dict(dropout=0.1)  # dropout makes the RNG state part of what must be restored
    straight = train(make_cfg(tmp_path / "a", model=model, **common))

    runs = tmp_path / "b"
    with pytest.raises(SimulatedCrash):
        train(make_cfg(runs, model=model, task={"crash_at": 13}, **common))  # dies during step 14
    (killed,) = [p for p in runs.iterdir() if not p.is_symlink()]
    assert os.readlink(killed / "checkpoints" / "latest") == "step_10"
    cfg = make_cfg(runs, model=model, **common)
    cfg.resume = killed.name
    resumed = train(cfg)
    assert resumed == killed

    wa, wb = _weights(straight), _weights(resumed)
    assert wa.keys() == wb.keys()
    for name in wa:
        assert torch.equal(wa[name], wb[name]), name
    assert _losses(resumed)[-1] == _losses(straight)[-1]


class SilentToy(ToyTask):
    """A task with its own loss: the squared logits at the loss positions (minimised by logits of zero)."""

    def training_loss(self, model, batch):
        logits = model(batch.inputs, **batch.model_kwargs)
        return (logits.float().square().sum(-1) * batch.loss_mask).sum(), logits


def test_a_task_can_supply_its_own_loss(tmp_path):
    from interfere.tasks import REGISTRY, register

    register("silent_toy", lambda: SilentToy)
    try:
        run_dir = train(make_cfg(tmp_path / "runs", task=dict(name="silent_toy"), steps=30, lr=3e-2, log_every=1))
        model, task = load(run_dir)
    finally:
        REGISTRY.pop("silent_toy")
    losses = _losses(run_dir)
    assert losses[-1] < 0.05 * losses[0]  # the logged loss is the task's, and it is what was minimised
    batch = task.train_batch(0, 8)
    with torch.no_grad():  # measured again on the final weights: the squared logits went towards zero
        assert model(batch.inputs).square().sum(-1)[batch.loss_mask].mean() < 0.05 * losses[0]


def test_bf16_and_activation_checkpointing(tmp_path):
    base = dict(steps=3, log_every=1, audit=False)
    plain = _losses(train(make_cfg(tmp_path / "a", **base)))
    recomputed = _losses(train(make_cfg(tmp_path / "b", activation_checkpointing=True, **base)))
    assert recomputed == plain  # recomputing activations in backward changes nothing
    run = train(make_cfg(tmp_path / "c", dtype="bf16", **base))
    bf16 = _losses(run)
    assert all(math.isfinite(x) for x in bf16) and bf16 != plain  # autocast really ran in bf16
    assert abs(bf16[0] - plain[0]) < 0.05
    assert json.loads((run / "calibration.json").read_text())["dtype"] == "bf16"


@pytest.mark.slow
def test_compile_matches_eager(tmp_path):
    base = dict(steps=3, log_every=1, audit=False)
    eager = _losses(train(make_cfg(tmp_path / "a", **base)))
    compiled = _losses(train(make_cfg(tmp_path / "b", compile=True, **base)))
    for a, b in zip(eager, compiled, strict=True):
        assert abs(a - b) <= 1e-5 * abs(a)


def test_accumulation_equals_a_bigger_batch_on_the_life_task(tmp_path):
    """Life draws a whole global batch per step; micro-batches must be slices of it, not new draws."""
    life = OmegaConf.to_container(OmegaConf.merge(OmegaConf.load(toy_task.CONF / "task" / "life.yaml"),
                                                  dict(board=[5, 5], eval=dict(samples=8))))
    model = dict(use_bias=False, positional_embedding_type="rope2d", rope_period=5, n_segments=4, n_heads=2)
    common = dict(steps=6, log_every=1, audit=False, warmup_steps=2, lr=3e-3)
    big = train(toy_task.make_cfg(tmp_path / "a", task=life, model=model, batch_size=6, grad_accum=1, **common))
    acc = train(toy_task.make_cfg(tmp_path / "b", task=life, model=model, batch_size=2, grad_accum=3, **common))
    for a, b in zip(_losses(big), _losses(acc), strict=True):
        assert abs(a - b) <= 1e-5 * abs(a)
    wa, wb = _weights(big), _weights(acc)
    for name in wa:
        if not wa[name].is_floating_point():  # the layout buffers
            assert torch.equal(wa[name], wb[name]), name
            continue
        assert (wa[name] - wb[name]).abs().max() <= 1e-6, name
