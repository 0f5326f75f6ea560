"""Loading a trained lens back: its run's config rebuilds the task (subject, dump), the checkpoint its weights."""

from __future__ import annotations

from pathlib import Path

import torch

from interfere.errors import ConfigError


def load_lens(run_or_ckpt=None, runs_dir: str | Path = "runs", device=None):
    """(task, lens in eval mode, checkpoint dir) of a lens run (run id, run dir or checkpoint; runs/latest by default)."""
    from omegaconf import OmegaConf

    import interfere.lens  # noqa: F401 (registers task.name=lens)
    from interfere.device import pick_device
    from interfere.tasks import build_task
    from interfere.train.checkpoint import load_checkpoint
    from interfere.train.runs import resolve_checkpoint, run_dir_of

    ckpt = resolve_checkpoint(run_or_ckpt, runs_dir)
    cfg = OmegaConf.load(run_dir_of(ckpt) / "config.yaml")
    if OmegaConf.select(cfg, "task.name") != "lens":
        raise ConfigError(f"{run_dir_of(ckpt).name} is a {OmegaConf.select(cfg, 'task.name')} run, not a lens "
                          "(train one with `interfere lens train data=<dump>`)")
    task = build_task(cfg.task, pick_device(device or "auto"))
    lens = fresh_lens(task, int(cfg.get("seed", 0)))
    load_checkpoint(ckpt, lens)
    return task, lens.eval(), ckpt


def fresh_lens(task, seed: int = 0):
    """An untrained lens, initialised as a run with this seed starts (a baseline, and the shape to load into)."""
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        return task.build_model()
