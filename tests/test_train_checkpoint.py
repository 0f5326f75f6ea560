"""Checkpoints: exact round trip, refusal of broken or unsafe files, the `latest` links, path resolution."""

import os
from pathlib import Path

import pytest
import torch

from interfere.errors import CheckpointError
from interfere.model import build_model
from interfere.train.checkpoint import load_checkpoint, save_checkpoint, set_rng_state
from interfere.train.config import TrainConfig
from interfere.train.optim import build_optimizer
from interfere.train.runs import new_run_id, resolve_checkpoint

TCFG = TrainConfig.defaults(lr=1e-2, weight_decay=0.1, betas=[0.9, 0.95], steps=1)


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


# ----- resume: the newest valid checkpoint, and what stops it --------------------------------------------
def _toy_run(runs, **kw):
    from interfere.train import train
    from toy_task import make_cfg

    return train(make_cfg(runs, steps=15, ckpt_every=5, log_every=5, audit=False, **kw))


def _resume_cfg(runs, run, **kw):
    from toy_task import make_cfg

    cfg = make_cfg(runs, steps=15, ckpt_every=5, log_every=5, audit=False, **kw)
    cfg.resume = run.name
    return cfg


def _truncate(path):
    path.write_bytes(path.read_bytes()[: path.stat().st_size // 2])


@pytest.mark.parametrize("bad_file", ["model.safetensors", "optim.pt", "state.json"])
def test_resume_falls_back_past_a_truncated_checkpoint(tmp_path, capsys, bad_file):
    from interfere.model import load_model
    from interfere.train import train
    from toy_task import one_thread  # noqa: F401

    torch.set_num_threads(1)
    straight = _toy_run(tmp_path / "a")
    runs = tmp_path / "b"
    run = _toy_run(runs)
    bad = run / "checkpoints" / "step_15" / bad_file
    _truncate(bad)
    capsys.readouterr()

    train(_resume_cfg(runs, run))  # resumes at step 10 and redoes 11..15
    err = capsys.readouterr().err
    assert f"warning: skipping checkpoint {run / 'checkpoints' / 'step_15'}" in err and str(bad) in err
    assert "truncated" in err or "not valid JSON" in err
    assert os.readlink(run / "checkpoints" / "latest") == "step_15"
    wa = load_model(straight / "checkpoints" / "step_15").state_dict()
    wb = load_model(run / "checkpoints" / "step_15").state_dict()  # rewritten whole
    assert all(torch.equal(wa[k], wb[k]) for k in wa)


def test_resume_with_no_valid_checkpoint_names_each_one(tmp_path):
    from interfere.train import train

    runs = tmp_path / "runs"
    run = _toy_run(runs)
    for step in (5, 10, 15):
        _truncate(run / "checkpoints" / f"step_{step}" / "model.safetensors")
    with pytest.raises(CheckpointError, match="no valid checkpoint") as e:
        train(_resume_cfg(runs, run))
    assert all(f"step_{s}:" in str(e.value) for s in (5, 10, 15))
    # an explicitly named checkpoint is used or refused, never skipped
    cfg = _resume_cfg(runs, run)
    cfg.resume = str(run / "checkpoints" / "step_10")
    with pytest.raises(CheckpointError, match="step_10/model.safetensors"):
        train(cfg)


@pytest.mark.parametrize("writer", ["torch.save", "pickle.dump"])
def test_resume_refuses_a_pickled_callable_and_never_runs_it(tmp_path, writer):
    import pickle

    from interfere.train import train
    from interfere.train.errors import UnsafeCheckpointError

    runs = tmp_path / "runs"
    run = _toy_run(runs)
    optim = run / "checkpoints" / "step_15" / "optim.pt"
    evil = torch.load(optim, weights_only=True)
    marker = tmp_path / "marker"
    evil["param_groups"][0]["hook"] = _Payload(marker)
    if writer == "torch.save":
        torch.save(evil, optim)
    else:  # a plain pickle, not torch's zip: once reported as a "corrupt pickle", and resume fell back to step_10
        optim.write_bytes(pickle.dumps(evil))

    with pytest.raises(UnsafeCheckpointError) as e:  # no falling back to step_10: this is no crash
        train(_resume_cfg(runs, run))
    assert not marker.exists()
    msg = str(e.value)
    assert "\n" not in msg and msg.startswith(f"{optim} refused: unpickling it would import and call ")
    assert "pathlib.PosixPath" in msg and "nothing ran" in msg  # (and getattr, where the scan can tell)
    assert isinstance(e.value, CheckpointError)  # the CLI prints it as one line, exit status 2


def test_resume_into_another_model_is_refused_not_skipped(tmp_path):
    from interfere.train import train
    from interfere.train.errors import CheckpointMismatchError

    runs = tmp_path / "runs"
    run = _toy_run(runs)
    with pytest.raises(CheckpointMismatchError, match=r"step_15/model.safetensors does not fit .*shape"):
        train(_resume_cfg(runs, run, model=dict(d_model=16)))


def test_optimizer_state_is_keyed_by_name_and_legacy_indices_load(tmp_path):
    model, opt = _trained()
    ckpt = _save(tmp_path, model, opt, step=3)
    saved = torch.load(ckpt / "optim.pt", weights_only=True)
    names = [n for n, _ in model.named_parameters()]
    assert set(saved["state"]) <= set(names) and sorted(p for g in saved["param_groups"] for p in g["params"]) == \
        sorted(names)
    torch.save(opt.state_dict(), ckpt / "optim.pt")  # the old, index-keyed form
    fresh, fresh_opt = _trained(seed=1, steps=1)
    load_checkpoint(ckpt, fresh, fresh_opt)
    for i, s in opt.state_dict()["state"].items():
        assert all(torch.equal(v, fresh_opt.state_dict()["state"][i][k]) for k, v in s.items())


def test_resume_config_is_the_runs_own_config_plus_key_overrides(tmp_path):
    from omegaconf import OmegaConf

    from interfere.errors import ConfigError
    from interfere.train.resume import resume_config

    runs = tmp_path / "runs"
    run = runs / "toy_20250101-000000"
    (run / "checkpoints" / "step_3").mkdir(parents=True)
    (run / "checkpoints" / "step_3" / "state.json").write_text('{"step": 3}')
    (run / "config.yaml").write_text(OmegaConf.to_yaml(OmegaConf.create(
        {"name": "toy", "runs_dir": "elsewhere", "resume": None, "model": {"d_model": 16},
         "train": {"steps": 10, "lr": 0.01}, "task": {"name": "toy", "board": [5, 5]}})))
    cfg = resume_config(run.name, ["exp=life_smoke", "model=small", "train.steps=20", "+train.max_minutes=5",
                                   f"resume={run.name}", "task.board=[5,5]"], runs_dir=runs)
    assert cfg.train.steps == 20 and cfg.train.lr == 0.01 and cfg.train.max_minutes == 5
    assert cfg.model.d_model == 16 and list(cfg.task.board) == [5, 5]  # the run's, not the defaults
    assert (cfg.resume, cfg.runs_dir) == (run.name, str(runs))
    assert resume_config(str(run / "checkpoints" / "step_3"), [], runs_dir=runs).train.steps == 10
    with pytest.raises(ConfigError, match="~train.lr"):
        resume_config(run.name, ["~train.lr"], runs_dir=runs)
    with pytest.raises(CheckpointError, match="nope"):
        resume_config("nope", [], runs_dir=runs)


def test_after_a_fallback_latest_points_at_the_checkpoint_resumed_from(tmp_path):
    from interfere.train import train
    from interfere.train.errors import NonFiniteLossError

    runs = tmp_path / "runs"
    run = _toy_run(runs, model=dict(n_cond=1), task=dict(cond=1))
    _truncate(run / "checkpoints" / "step_15" / "model.safetensors")
    with pytest.raises(NonFiniteLossError, match="step 11: .*step_10 \\(step 10\\), is intact and still `latest`"):
        train(_resume_cfg(runs, run, model=dict(n_cond=1), task=dict(cond=1, nan_at=[10])))
    assert os.readlink(run / "checkpoints" / "latest") == "step_10"  # not the broken step_15
