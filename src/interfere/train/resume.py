"""Resuming a run: its own config (plus overrides that cannot change what it learns), the newest valid
checkpoint chosen once for every rank, and metrics.jsonl trimmed back to that checkpoint.

`interfere train resume=<run_id>` alone continues the run as it was configured: `resume_config` starts from
the run's config.yaml, not from the command line's defaults. An override of a model or task key that
changes its value is refused (the checkpoint was trained for the old value); task.eval and task.render
only say how the run is measured and shown, and may change.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

from interfere.errors import CheckpointError, ConfigError
from interfere.files import atomic_write_text
from interfere.formatting import first_line
from interfere.train import distributed
from interfere.train.checkpoint import load_checkpoint
from interfere.train.config import default_node
from interfere.train.errors import CheckpointMismatchError, UnsafeCheckpointError
from interfere.train.runs import resume_candidates, resume_checkpoint, run_config, run_dir_of

FREE = ("task.eval", "task.render")  # model/task keys a resumed run may change
_GROUPS = ("exp", "model", "task", "train")


def resume_config(resume: str, overrides=(), runs_dir: str | Path = "runs"):
    """The config to resume a run with: its own config.yaml, then the `key=value` overrides on top.

    Group choices (exp=..., model=...) are ignored: the saved config already holds what they chose.
    `resume=...` itself and `runs_dir=...` are taken from the arguments. `~key` deletions are refused, and
    so is a changed model or task key (see resume_differences). Train keys the run's config lacks (it was
    written by an older interfere) take today's defaults.
    """
    from omegaconf import OmegaConf

    run_dir = resume_candidates(resume, runs_dir)[0]
    saved = run_config(run_dir)
    cfg = OmegaConf.merge(saved, {"train": default_node()}, {"train": saved.get("train") or {}})
    try:
        cfg = OmegaConf.merge(cfg, OmegaConf.from_dotlist(_key_overrides(overrides)))
    except Exception as e:
        raise ConfigError(f"cannot apply overrides to {run_dir / 'config.yaml'}: {first_line(e)}") from None
    cfg.resume = str(resume)
    cfg.runs_dir = str(runs_dir)
    for difference in resume_differences(cfg, run_dir):
        raise ConfigError(f"{difference}: a resumed run keeps its model and task; drop the override, "
                          "or train a new run (without resume=)")
    return cfg


def _key_overrides(overrides) -> list[str]:
    dotlist = []
    for word in map(str, overrides):
        if word.startswith("~"):
            raise ConfigError(f"{word}: keys cannot be deleted when resuming a run")
        key, eq, value = word.lstrip("+").partition("=")
        if not eq:
            raise ConfigError(f"'{word}' is not key=value")
        if key in ("resume", "runs_dir") or key.split("@", 1)[0] in _GROUPS:
            continue
        dotlist.append(f"{key}={value}")
    return dotlist


def resume_differences(cfg, run_dir: Path) -> list[str]:
    """`key=value (the run had ...)` for each model or task value that differs from the run's config.yaml."""
    from omegaconf import OmegaConf

    saved = OmegaConf.to_container(run_config(run_dir), resolve=True)
    given = OmegaConf.to_container(cfg, resolve=True) if OmegaConf.is_config(cfg) else dict(cfg)
    return [f"{key}={now!r} (the run had {was!r})" for group in ("model", "task")
            for key, was, now in _differences(saved.get(group), given.get(group), group)]


def _differences(a, b, prefix: str):
    if prefix in FREE:
        return
    if isinstance(a, dict) and isinstance(b, dict):
        for k in sorted(set(a) | set(b), key=str):
            yield from _differences(a.get(k), b.get(k), f"{prefix}.{k}")
    elif a != b and not (isinstance(a, (list, tuple)) and isinstance(b, (list, tuple)) and list(a) == list(b)):
        yield prefix, a, b


def resume_from(cfg, dist: distributed.Dist, model, optimizer, named_optim: dict | None):
    """(checkpoint dir, its state, run dir) of the newest valid checkpoint, loaded into model and optimizer on
    every rank. Rank 0 chooses (warning about each checkpoint it skips) and tells the others."""
    runs_dir = cfg.get("runs_dir", "runs")
    warn = (lambda line: print(line, file=sys.stderr, flush=True)) if dist.is_main else None
    ckpt = state = error = None
    if dist.is_main:
        try:
            ckpt, state = resume_checkpoint(cfg.resume, runs_dir, model, optimizer, warn=warn,
                                            optim_state_out=named_optim)
        except CheckpointError as e:
            error = e
    if dist.enabled:
        verdict = distributed.broadcast_object(
            (None, str(ckpt)) if error is None else (type(error).__name__, str(error)), dist)
        if not dist.is_main:
            if verdict[0] is not None:
                kinds = {c.__name__: c for c in (CheckpointError, UnsafeCheckpointError, CheckpointMismatchError)}
                raise kinds.get(verdict[0], CheckpointError)(verdict[1])
            ckpt = Path(verdict[1])
            state = load_checkpoint(ckpt, model, optimizer, optim_state_out=named_optim)
    if error is not None:
        raise error
    return Path(ckpt), state, run_dir_of(ckpt)


def trim_metrics(path: Path, step: int) -> None:
    """Drop records after `step` (logged by the attempt that died after its last checkpoint) and any torn line."""
    if not path.is_file():
        return
    kept = []
    for line in path.read_text(encoding="utf-8", errors="replace").splitlines():
        try:
            rec = json.loads(line)
        except ValueError:
            continue
        if isinstance(rec, dict) and isinstance(rec.get("step"), int) and rec["step"] > step:
            continue
        kept.append(line)
    atomic_write_text(path, "".join(line + "\n" for line in kept))
