"""Checkpoints: exact round trip, refusal of broken or unsafe files, the `latest` links, path resolution."""

import os
from pathlib import Path

import pytest
import torch

from interfere.errors import CheckpointError
from interfere.model import build_model
from interfere.train.checkpoint import load_checkpoint, save_checkpoint, set_rng_state
from interfere.train.optim import build_optimizer
from interfere.train.runs import new_run_id, resolve_checkpoint

TCFG = dict(lr=1e-2, weight_decay=0.1, betas=[0.9, 0.95])


def _model(seed=0):
    torch.manual_seed(seed)
    return build_model(dict(d_model=16, n_layers=1, n_heads=2, d_mlp=32, dropout=0.1), vocab_size=7, seq_len=6)


def _trained(seed=0, steps=2):
    """A model and optimizer with non-trivial state (Adam moments, step counts)."""
    model = _model(seed)
    opt = build_optimizer(model, TCFG)
    for _ in range(steps):
        x = torch.randint(0, 7, (3, 6))
        model(x).logsumexp(-1).mean().backward()
        opt.step()
        opt.zero_grad()
    return model, opt


def _save(run_dir, model, opt, step, **kw):
    return save_checkpoint(run_dir, model, opt, {"step": step, "tokens": 10 * step, "run_id": "r"}, **kw)


def test_save_then_load_restores_identical_state(tmp_path):
    model, opt = _trained(seed=0)
    ckpt = _save(tmp_path, model, opt, step=7)
    after_save = torch.rand(5)  # the RNG state was captured before this draw

    fresh, fresh_opt = _trained(seed=1, steps=1)
    state = load_checkpoint(ckpt, fresh, fresh_opt)
    assert (state["step"], state["tokens"], state["run_id"]) == (7, 70, "r")
    for (name, a), (_, b) in zip(model.state_dict().items(), fresh.state_dict().items()):
        assert torch.equal(a, b), name
    saved, loaded = opt.state_dict(), fresh_opt.state_dict()
    assert saved["param_groups"] == loaded["param_groups"]
    for i, s in saved["state"].items():
        for k, v in s.items():
            assert torch.equal(v, loaded["state"][i][k]), (i, k)

    set_rng_state(state["rng"])
    assert torch.equal(torch.rand(5), after_save)


def test_truncated_weights_raise_naming_the_file(tmp_path):
    model, opt = _trained()
    ckpt = _save(tmp_path, model, opt, step=1)
    weights = ckpt / "model.safetensors"
    weights.write_bytes(weights.read_bytes()[: weights.stat().st_size // 2])
    fresh, fresh_opt = _trained(seed=1)
    before = {k: v.clone() for k, v in fresh.state_dict().items()}
    with pytest.raises(CheckpointError, match="model.safetensors"):
        load_checkpoint(ckpt, fresh, fresh_opt)
    assert all(torch.equal(before[k], v) for k, v in fresh.state_dict().items())  # left untouched


def test_missing_and_broken_state_json(tmp_path):
    model, opt = _trained()
    ckpt = _save(tmp_path, model, opt, step=1)
    (ckpt / "state.json").write_text('{"step": 1, "tok')
    with pytest.raises(CheckpointError, match="state.json"):
        load_checkpoint(ckpt, model, opt)
    (ckpt / "state.json").unlink()
    with pytest.raises(CheckpointError, match="state.json is missing"):
        load_checkpoint(ckpt, model, opt)


class _Payload:
    """Unpickling this calls Path.write_text(marker, ...): code running at load time."""

    def __init__(self, marker):
        self.marker = marker

    def __reduce__(self):
        return (Path.write_text, (Path(self.marker), "pickle ran code"))


def test_pickled_callable_in_optim_pt_is_refused(tmp_path):
    model, opt = _trained()
    ckpt = _save(tmp_path / "run", model, opt, step=1)
    marker = tmp_path / "marker"
    evil = opt.state_dict()
    evil["param_groups"][0]["hook"] = _Payload(marker)
    torch.save(evil, ckpt / "optim.pt")

    with pytest.raises(CheckpointError, match="optim.pt"):
        load_checkpoint(ckpt, model, opt)
    assert not marker.exists()

    # The payload is real: an unrestricted load would have run it.
    other = tmp_path / "unsafe_marker"
    torch.save({"x": _Payload(other)}, tmp_path / "unsafe.pt")
    torch.load(tmp_path / "unsafe.pt", weights_only=False)
    assert other.read_text() == "pickle ran code"


def test_latest_points_at_the_newest_and_keep_last(tmp_path):
    model, opt = _trained()
    for step in (1, 2, 3):
        _save(tmp_path, model, opt, step=step, keep_last=2)
    root = tmp_path / "checkpoints"
    assert os.readlink(root / "latest") == "step_3"
    assert resolve_checkpoint(tmp_path) == (root / "step_3").resolve()
    assert sorted(p.name for p in root.iterdir()) == ["latest", "step_2", "step_3"]  # no temp leftovers
    _save(tmp_path, model, opt, step=3)  # the same step again replaces it whole
    assert sorted(p.name for p in root.iterdir()) == ["latest", "step_2", "step_3"]


def test_resolve_checkpoint_forms(tmp_path):
    runs = tmp_path / "runs"
    run = runs / "toy_20250101-000000"
    model, opt = _trained()
    ckpt = _save(run, model, opt, step=4).resolve()
    (run / "config.yaml").write_text("name: toy\n")
    os.symlink(run.name, runs / "latest")

    assert resolve_checkpoint(None, runs) == ckpt
    assert resolve_checkpoint(run.name, runs) == ckpt  # a run id
    assert resolve_checkpoint(str(run), runs) == ckpt  # a run directory
    assert resolve_checkpoint(run / "checkpoints" / "step_4", runs) == ckpt
    assert resolve_checkpoint(run / "checkpoints" / "latest", runs) == ckpt
    assert resolve_checkpoint(ckpt / "model.safetensors", runs) == ckpt  # a file inside one

    with pytest.raises(CheckpointError, match="nope") as e:
        resolve_checkpoint("nope", runs)
    assert "\n" not in str(e.value) and str(runs / "nope") in str(e.value)
    with pytest.raises(CheckpointError, match="latest"):
        resolve_checkpoint(None, tmp_path / "empty")


def test_run_ids_get_suffixes_on_collision(tmp_path):
    now = 1_700_000_000.0
    first = new_run_id("exp", tmp_path, now)
    assert first.startswith("exp_") and len(first) == len("exp_yyyymmdd-hhmmss")
    (tmp_path / first).mkdir()
    assert new_run_id("exp", tmp_path, now) == first + "_2"
    (tmp_path / (first + "_2")).mkdir()
    assert new_run_id("exp", tmp_path, now) == first + "_3"
