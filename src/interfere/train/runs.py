"""Run directories: runs/<name>_<yyyymmdd-hhmmss>/ with config.yaml, assets/, checkpoints/, metrics.jsonl.

`runs/latest` points at the newest run; anything that reads a checkpoint accepts a run id, a run
directory, a checkpoint directory (or a file inside one), or nothing (meaning runs/latest).
"""

from __future__ import annotations

import json
import os
import time
from pathlib import Path
from typing import Any

from interfere.errors import CheckpointError
from interfere.train.checkpoint import WEIGHTS, STATE, atomic_symlink, latest_checkpoint, read_state


def new_run_id(name: str, runs_dir: str | Path, now: float | None = None) -> str:
    """<name>_<yyyymmdd-hhmmss>, with _2, _3, ... when that directory already exists."""
    base = f"{name}_{time.strftime('%Y%m%d-%H%M%S', time.localtime(now))}"
    run_id, n = base, 1
    while (Path(runs_dir) / run_id).exists():
        n += 1
        run_id = f"{base}_{n}"
    return run_id


def create_run(cfg) -> Path:
    """Make runs/<run_id>/ with the resolved config.yaml and assets/, and switch runs/latest to it."""
    from omegaconf import OmegaConf

    runs_dir = Path(cfg.get("runs_dir", "runs"))
    runs_dir.mkdir(parents=True, exist_ok=True)
    while True:  # mkdir without exist_ok claims the id even against a concurrent run
        run_dir = runs_dir / new_run_id(cfg.get("name", "run"), runs_dir)
        try:
            run_dir.mkdir()
            break
        except FileExistsError:
            continue
    (run_dir / "assets").mkdir()
    (run_dir / "config.yaml").write_text(OmegaConf.to_yaml(cfg, resolve=True))
    atomic_symlink(runs_dir / "latest", run_dir.name)
    return run_dir


def _is_checkpoint(p: Path) -> bool:
    return p.is_dir() and ((p / WEIGHTS).exists() or (p / STATE).exists())


def _from_run_dir(run_dir: Path, looked: str) -> Path:
    ckpt = latest_checkpoint(run_dir)
    if ckpt is None:
        raise CheckpointError(f"run {run_dir} has no checkpoint yet ({looked})")
    return ckpt


def resolve_checkpoint(run_or_ckpt: str | os.PathLike | None = None, runs_dir: str | Path = "runs") -> Path:
    """The checkpoint directory meant by a run id, run dir, checkpoint dir, file in one, or None (latest)."""
    runs_dir = Path(runs_dir)
    if run_or_ckpt is None or str(run_or_ckpt) == "":
        latest = runs_dir / "latest"
        if not latest.is_dir():
            raise CheckpointError(f"no run given and {latest} does not exist; train one first or pass run=<id>")
        return _from_run_dir(latest.resolve(), f"looked in {latest}/checkpoints")
    p = Path(run_or_ckpt)
    candidates = [p] if p.is_absolute() else [p, runs_dir / p]
    for c in candidates:
        if c.is_file() and _is_checkpoint(c.parent):
            return c.parent.resolve()
        if _is_checkpoint(c):
            return c.resolve()
        if c.is_dir() and c.name == "checkpoints":
            return _from_run_dir(c.parent.resolve(), f"looked in {c}")
        if c.is_dir() and ((c / "checkpoints").is_dir() or (c / "config.yaml").is_file()):
            return _from_run_dir(c.resolve(), f"looked in {c / 'checkpoints'}")
    looked = " or ".join(str(c) for c in candidates)
    raise CheckpointError(f"no run or checkpoint {str(run_or_ckpt)!r}: looked for {looked}")


def run_dir_of(ckpt_dir: str | Path) -> Path:
    """runs/<id>/checkpoints/step_<n> -> runs/<id>."""
    return Path(ckpt_dir).resolve().parent.parent


def load(run_or_ckpt=None, runs_dir: str | Path = "runs", device=None):
    """(model, task) from a checkpoint: the task rebuilt from the run's config, its layout installed, eval mode."""
    from omegaconf import OmegaConf

    from interfere.device import pick_device
    from interfere.model import load_model
    from interfere.tasks import build_task

    ckpt = resolve_checkpoint(run_or_ckpt, runs_dir)
    config = run_dir_of(ckpt) / "config.yaml"
    if not config.is_file():
        raise CheckpointError(f"{config} is missing: a checkpoint must sit in runs/<id>/checkpoints/")
    cfg = OmegaConf.load(config)
    device = pick_device(device if device is not None else "auto")
    task = build_task(cfg.task, device)
    model = load_model(ckpt, device)
    model.set_layout(task.layout())
    model.eval()
    return model, task


def _last_loss(metrics: Path) -> float | None:
    """The loss of the last logged training step (reads only the file's tail)."""
    if not metrics.is_file():
        return None
    with open(metrics, "rb") as f:
        f.seek(0, os.SEEK_END)
        f.seek(max(0, f.tell() - 65536))
        lines = f.read().decode("utf-8", "replace").splitlines()
    for line in reversed(lines):
        try:
            rec = json.loads(line)
        except ValueError:
            continue
        if isinstance(rec, dict) and "loss" in rec:
            return rec["loss"]
    return None


def list_runs(runs_dir: str | Path = "runs") -> list[dict[str, Any]]:
    """One row per run, oldest first: id, step, tokens, last loss, path."""
    runs_dir = Path(runs_dir)
    if not runs_dir.is_dir():
        return []
    rows = []
    dirs = [p for p in runs_dir.iterdir() if p.is_dir() and not p.is_symlink() and (p / "config.yaml").is_file()]
    for d in sorted(dirs, key=lambda p: ((p / "config.yaml").stat().st_mtime, p.name)):
        step = tokens = None
        ckpt = latest_checkpoint(d)
        if ckpt is not None:
            try:
                state = read_state(ckpt)
                step, tokens = state.get("step"), state.get("tokens")
            except CheckpointError:
                pass
        rows.append({"id": d.name, "step": step, "tokens": tokens,
                     "loss": _last_loss(d / "metrics.jsonl"), "path": str(d)})
    return rows
