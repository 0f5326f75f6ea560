"""Run directories: runs/<name>_<yyyymmdd-hhmmss>/ with config.yaml, assets/, checkpoints/, metrics.jsonl.

`runs/latest` points at the newest run; anything that reads a checkpoint accepts a run id, a run
directory, a checkpoint directory (or a file inside one), or nothing (meaning runs/latest).
"""

from __future__ import annotations

import json
import os
import shutil
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from interfere.errors import CheckpointError
from interfere.files import atomic_symlink, atomic_write_text
from interfere.formatting import first_line
from interfere.tasks import headline_metric
from interfere.train.checkpoint import (STATE, WEIGHTS, checkpoint_problem, latest_checkpoint,
                                        load_checkpoint, read_state, step_dirs)
from interfere.train.errors import CheckpointMismatchError, UnsafeCheckpointError


def new_run_id(name: str, runs_dir: str | Path, now: float | None = None) -> str:
    """<name>_<yyyymmdd-hhmmss>, with _2, _3, ... when that directory already exists."""
    base = f"{name}_{time.strftime('%Y%m%d-%H%M%S', time.localtime(now))}"
    run_id, n = base, 1
    while (Path(runs_dir) / run_id).exists():
        n += 1
        run_id = f"{base}_{n}"
    return run_id


@dataclass
class NewRun:
    """A run directory just created, and where runs/latest pointed before (to put it back if the run fails)."""

    path: Path
    previous_latest: str | None

    def discard(self) -> None:
        """Remove the run (it never wrote a checkpoint) and point runs/latest back where it was."""
        shutil.rmtree(self.path, ignore_errors=True)
        latest = self.path.parent / "latest"
        if latest.is_symlink() and os.readlink(latest) == self.path.name:
            if self.previous_latest is not None:
                atomic_symlink(latest, self.previous_latest)
            else:
                latest.unlink()


def create_run(cfg) -> NewRun:
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
    latest = runs_dir / "latest"
    new = NewRun(run_dir, os.readlink(latest) if latest.is_symlink() else None)
    try:
        (run_dir / "assets").mkdir()
        atomic_write_text(run_dir / "config.yaml", OmegaConf.to_yaml(cfg, resolve=True))
        atomic_symlink(latest, run_dir.name)
    except BaseException:
        new.discard()
        raise
    return new


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


def resolve_run(run_or_ckpt: str | os.PathLike | None = None, runs_dir: str | Path = "runs") -> Path:
    """The run directory meant by a run id, run dir, checkpoint dir, file in one, or None (runs/latest).

    Unlike resolve_checkpoint, the run need not have a checkpoint yet (a report can show a run that is
    still warming up or died before its first one).
    """
    runs_dir = Path(runs_dir)
    if run_or_ckpt is None or str(run_or_ckpt) == "":
        latest = runs_dir / "latest"
        if not latest.is_dir():
            raise CheckpointError(f"no run given and {latest} does not exist; train one first or pass run=<id>")
        run_config(latest)  # names a missing or damaged config.yaml
        return latest.resolve()
    p = Path(run_or_ckpt)
    candidates = [p] if p.is_absolute() else [p, runs_dir / p]
    for c in candidates:
        if c.is_dir() and (c / "config.yaml").is_file():
            return c.resolve()
        if c.is_dir() and c.name == "checkpoints" and (c.parent / "config.yaml").is_file():
            return c.parent.resolve()
        if _is_checkpoint(c) or (c.is_file() and _is_checkpoint(c.parent)):
            return run_dir_of(c if c.is_dir() else c.parent)
    looked = " or ".join(str(c) for c in candidates)
    raise CheckpointError(f"no run {str(run_or_ckpt)!r}: looked for {looked}/config.yaml "
                          "(`interfere runs` lists the runs)")


def resume_candidates(resume: str | os.PathLike, runs_dir: str | Path = "runs") -> tuple[Path, list[Path], bool]:
    """(run directory, checkpoint directories to try newest first, whether one checkpoint was named).

    A run id or run directory gives all of the run's step_<n> checkpoints, newest first (so that resume can
    fall back past a broken one); a checkpoint directory, a file in one or checkpoints/latest gives just that.
    """
    p = Path(resume)
    candidates = [p] if p.is_absolute() else [p, Path(runs_dir) / p]
    for c in candidates:
        if c.is_dir() and ((c / "checkpoints").is_dir() or (c / "config.yaml").is_file()):
            run_dir = c.resolve()
            dirs = step_dirs(run_dir)[::-1]
            if not dirs:
                raise CheckpointError(f"run {run_dir} has no checkpoint to resume from (looked in {run_dir / 'checkpoints'})")
            return run_dir, dirs, False
        if c.is_dir() and c.name == "checkpoints":
            return resume_candidates(c.parent, runs_dir)
    ckpt = resolve_checkpoint(resume, runs_dir)  # a checkpoint directory or a file in one (or an error)
    return run_dir_of(ckpt), [ckpt], True


def resume_checkpoint(resume: str | os.PathLike, runs_dir: str | Path, model, optimizer, *, warn=None,
                      optim_state_out: dict | None = None) -> tuple[Path, dict[str, Any]]:
    """Load the newest valid checkpoint of `resume` into model and optimizer; (its directory, its state).

    Valid: state.json parses, model.safetensors reads and fits the model, optim.pt loads with
    weights_only=True and fits the optimizer. A broken (e.g. truncated) checkpoint is skipped with a
    warning naming the bad file and why; one that does not fit the configured model, or whose optim.pt
    would run code, stops the resume (those are not crash damage, and falling back would not help).
    A checkpoint named explicitly (a step_<n> directory or a file in one) is used or refused, never skipped.
    """
    run_dir, dirs, explicit = resume_candidates(resume, runs_dir)
    skipped = []
    for ckpt in dirs:
        try:
            state = load_checkpoint(ckpt, model, optimizer, optim_state_out=optim_state_out)
        except (UnsafeCheckpointError, CheckpointMismatchError):
            raise
        except CheckpointError as e:
            if explicit:
                raise
            skipped.append(f"{ckpt.name}: {e}")
            if warn is not None:
                warn(f"warning: skipping checkpoint {ckpt}: {e}")
            continue
        return ckpt, state
    raise CheckpointError(f"run {run_dir} has no valid checkpoint to resume from: " + "; ".join(skipped))


def run_dir_of(ckpt_dir: str | Path) -> Path:
    """runs/<id>/checkpoints/step_<n> -> runs/<id>."""
    return Path(ckpt_dir).resolve().parent.parent


def run_config(run_dir: str | Path):
    """A run's config.yaml (an OmegaConf DictConfig); CheckpointError naming the file if it is missing or damaged."""
    from omegaconf import DictConfig, OmegaConf

    path = Path(run_dir) / "config.yaml"
    fix = "restore it from a copy, or train the run again"
    if not path.is_file():
        raise CheckpointError(f"{path} is missing: a run keeps the config it was trained with there; {fix}")
    try:
        cfg = OmegaConf.load(path)
    except Exception as e:  # YAML syntax, NUL bytes, an undecodable file: whatever the parser says, in one line
        raise CheckpointError(f"{path} is damaged ({first_line(e)}); {fix}") from None
    if not isinstance(cfg, DictConfig) or not all(isinstance(cfg.get(k), DictConfig) for k in ("model", "task")):
        raise CheckpointError(f"{path} is damaged: it is not a run's config (a mapping with model: and task:); {fix}")
    return cfg


def load(run_or_ckpt=None, runs_dir: str | Path = "runs", device=None):
    """(model, task) from a checkpoint: the task rebuilt from the run's config, its layout installed, eval mode."""
    from interfere.device import pick_device
    from interfere.model import load_model
    from interfere.tasks import build_task

    ckpt = resolve_checkpoint(run_or_ckpt, runs_dir)
    cfg = run_config(run_dir_of(ckpt))
    device = pick_device(device if device is not None else "auto")
    task = build_task(cfg.task, device, run_dir=run_dir_of(ckpt))
    model = load_model(ckpt, device)
    model.set_layout(task.layout())
    model.eval()
    return model, task


def _tail_records(metrics: Path, nbytes: int = 65536) -> list[dict]:
    """The last records of metrics.jsonl (reads only the file's tail), oldest first."""
    if not metrics.is_file():
        return []
    with open(metrics, "rb") as f:
        f.seek(0, os.SEEK_END)
        f.seek(max(0, f.tell() - nbytes))
        lines = f.read().decode("utf-8", "replace").splitlines()
    out = []
    for line in lines:
        try:
            rec = json.loads(line)
        except ValueError:
            continue  # the first line may be cut in half by the seek
        if isinstance(rec, dict):
            out.append(rec)
    return out


def _last_headline(run_dir: Path, records: list[dict], headline: str | None) -> tuple[str | None, float | None]:
    """(eval/<headline>, its value) for the run's task's headline metric: eval.json's, else the last logged."""
    if headline is None:
        return None, None
    try:
        final = json.loads((run_dir / "eval.json").read_text())
    except (OSError, ValueError):
        final = {}
    if isinstance(final, dict) and isinstance(final.get(headline), (int, float)):
        return f"eval/{headline}", final[headline]
    value = next((r[f"eval/{headline}"] for r in reversed(records)
                  if isinstance(r.get(f"eval/{headline}"), (int, float))), None)
    return (f"eval/{headline}", value) if value is not None else (None, None)


def _task_name(config: Path) -> str | None:
    """task.name from a run's config.yaml (read with yaml.safe_load: loading never runs code)."""
    import yaml

    try:
        cfg = yaml.safe_load(config.read_text())
    except (OSError, yaml.YAMLError):
        return None
    task = cfg.get("task") if isinstance(cfg, dict) else None
    return task.get("name") if isinstance(task, dict) else None


def _born(run_dir: Path) -> float:
    """When a run started: its config.yaml is written first (the folder itself changes as files arrive)."""
    config = run_dir / "config.yaml"
    return (config if config.is_file() else run_dir).stat().st_mtime


def list_runs(runs_dir: str | Path = "runs") -> list[dict[str, Any]]:
    """One row per run, oldest first: id, task (task.name), step, tokens, loss (last logged), acc and acc_name
    (the task's headline metric, eval.json's, else the last evaluation logged),
    stopped (done | budget | signal | None while running or killed), broken (why the newest checkpoint's
    weights would not load, or None), updated (when its metrics, or its
    config if none, were last written: seconds since the epoch), path."""
    runs_dir = Path(runs_dir)
    if not runs_dir.is_dir():
        return []
    rows = []
    dirs = [p for p in runs_dir.iterdir() if p.is_dir() and not p.is_symlink()
            and ((p / "config.yaml").is_file() or (p / "checkpoints").is_dir())]
    for d in sorted(dirs, key=lambda p: (_born(p), p.name)):
        step = tokens = stopped = broken = None
        ckpt = latest_checkpoint(d)
        if not (d / "config.yaml").is_file():
            broken = f"{d / 'config.yaml'} is missing"
        elif ckpt is not None:
            broken = checkpoint_problem(ckpt)
        if ckpt is not None:
            try:
                state = read_state(ckpt)
                step, tokens, stopped = state.get("step"), state.get("tokens"), state.get("stopped")
            except CheckpointError:
                pass
        records = _tail_records(d / "metrics.jsonl")
        loss = next((r["loss"] for r in reversed(records) if "loss" in r), None)
        task = _task_name(d / "config.yaml")
        acc_name, acc = _last_headline(d, records, headline_metric(task))
        written = next((f for f in (d / "metrics.jsonl", d / "config.yaml") if f.is_file()), d)
        rows.append({"id": d.name, "task": task, "step": step, "tokens": tokens,
                     "loss": loss, "acc": acc, "acc_name": acc_name, "stopped": stopped, "broken": broken,
                     "updated": written.stat().st_mtime, "path": str(d)})
    return rows
