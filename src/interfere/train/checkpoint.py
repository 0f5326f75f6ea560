"""Atomic checkpoints: runs/<id>/checkpoints/step_<n>/ with model.safetensors + model.json (weights),
optim.pt (optimizer tensors; loaded with weights_only=True, so it cannot run code) and state.json
(step, tokens, RNG states as JSON).

A checkpoint is written into a hidden sibling directory, fsynced, renamed into place, and only then does
the `latest` symlink switch, so a crash at any moment leaves either the old or the new checkpoint whole.
"""

from __future__ import annotations

import base64
import json
import os
import pickle
import random
import re
import shutil
from pathlib import Path
from typing import Any

import numpy as np
import torch

from interfere.errors import CheckpointError

STATE, OPTIM, WEIGHTS, MODEL_CONFIG = "state.json", "optim.pt", "model.safetensors", "model.json"
_STEP_DIR = re.compile(r"^step_(\d+)$")


# ----- RNG state as JSON ---------------------------------------------------------------------------
def _b64(t: torch.Tensor | np.ndarray) -> str:
    arr = t.cpu().numpy() if isinstance(t, torch.Tensor) else t
    return base64.b64encode(arr.tobytes()).decode("ascii")


def _bytes_tensor(s: str) -> torch.Tensor:
    return torch.frombuffer(bytearray(base64.b64decode(s)), dtype=torch.uint8)


def rng_state() -> dict[str, Any]:
    """Every RNG this process uses, JSON-safe (byte states as base64)."""
    version, internal, gauss = random.getstate()
    name, keys, pos, has_gauss, cached = np.random.get_state(legacy=True)
    state = {
        "torch": _b64(torch.get_rng_state()),
        "python": [version, list(internal), gauss],
        "numpy": [name, _b64(np.asarray(keys, dtype=np.uint32)), int(pos), int(has_gauss), float(cached)],
    }
    if torch.cuda.is_available() and torch.cuda.is_initialized():
        state["cuda"] = [_b64(s) for s in torch.cuda.get_rng_state_all()]
    return state


def set_rng_state(state: dict[str, Any]) -> None:
    torch.set_rng_state(_bytes_tensor(state["torch"]))
    version, internal, gauss = state["python"]
    random.setstate((version, tuple(internal), gauss))
    name, keys, pos, has_gauss, cached = state["numpy"]
    keys = np.frombuffer(base64.b64decode(keys), dtype=np.uint32).copy()
    np.random.set_state((name, keys, pos, has_gauss, cached))
    if "cuda" in state and torch.cuda.is_available():
        cuda = [_bytes_tensor(s) for s in state["cuda"]]
        if len(cuda) == torch.cuda.device_count():
            torch.cuda.set_rng_state_all(cuda)


# ----- writing -------------------------------------------------------------------------------------
def _fsync(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def atomic_symlink(link: Path, target: str) -> None:
    """Point `link` at `target` (relative) in one rename, so readers never see it missing."""
    tmp = link.with_name(f".{link.name}-{os.getpid()}")
    if tmp.is_symlink() or tmp.exists():
        tmp.unlink()
    os.symlink(target, tmp)
    os.replace(tmp, link)


def step_dirs(run_dir: str | Path) -> list[Path]:
    """The run's checkpoint directories, oldest step first."""
    root = Path(run_dir) / "checkpoints"
    if not root.is_dir():
        return []
    found = [(int(m.group(1)), p) for p in root.iterdir()
             if (m := _STEP_DIR.match(p.name)) and p.is_dir() and not p.is_symlink()]
    return [p for _, p in sorted(found)]


def save_checkpoint(run_dir: str | Path, model: torch.nn.Module, optimizer: torch.optim.Optimizer,
                    state: dict[str, Any], keep_last: int | None = None) -> Path:
    """Write checkpoints/step_<state['step']>/ atomically and point checkpoints/latest at it."""
    from interfere.model import save_model

    root = Path(run_dir) / "checkpoints"
    root.mkdir(parents=True, exist_ok=True)
    name = f"step_{int(state['step'])}"
    final, tmp = root / name, root / f".{name}.tmp-{os.getpid()}"
    if tmp.exists():
        shutil.rmtree(tmp)
    tmp.mkdir()
    save_model(model, tmp)
    torch.save(optimizer.state_dict(), tmp / OPTIM)
    (tmp / STATE).write_text(json.dumps({**state, "rng": rng_state()}, indent=1))
    for f in tmp.iterdir():
        _fsync(f)
    _fsync(tmp)
    if final.exists():  # the same step written again (e.g. after a resume): move the old one aside first
        old = root / f".{name}.old-{os.getpid()}"
        os.replace(final, old)
        os.replace(tmp, final)
        shutil.rmtree(old)
    else:
        os.replace(tmp, final)
    _fsync(root)
    atomic_symlink(root / "latest", name)
    _fsync(root)
    if keep_last:
        for old in step_dirs(run_dir)[:-int(keep_last)]:
            if old != final:
                shutil.rmtree(old, ignore_errors=True)
    return final


# ----- reading -------------------------------------------------------------------------------------
def latest_checkpoint(run_dir: str | Path) -> Path | None:
    """checkpoints/latest if it points at a directory, else the highest step_<n>, else None."""
    link = Path(run_dir) / "checkpoints" / "latest"
    if link.is_dir():
        return link.resolve()
    dirs = step_dirs(run_dir)
    return dirs[-1] if dirs else None


def read_state(ckpt_dir: str | Path) -> dict[str, Any]:
    """state.json of a checkpoint, validated (CheckpointError naming the file otherwise)."""
    path = Path(ckpt_dir) / STATE
    if not path.is_file():
        raise CheckpointError(f"{path} is missing; is {ckpt_dir} a checkpoint directory?")
    try:
        state = json.loads(path.read_text())
    except (OSError, ValueError) as e:
        raise CheckpointError(f"{path} is not valid JSON (truncated?): {e}") from None
    if not isinstance(state, dict) or not isinstance(state.get("step"), int):
        raise CheckpointError(f"{path} has no integer 'step'")
    return state


def load_optimizer_state(ckpt_dir: str | Path, map_location: str | torch.device = "cpu") -> dict:
    """optim.pt as tensors and plain values only: a pickled object that would run code is refused."""
    path = Path(ckpt_dir) / OPTIM
    if not path.is_file():
        raise CheckpointError(f"{path} is missing")
    try:
        return torch.load(path, map_location=map_location, weights_only=True)
    except pickle.UnpicklingError as e:
        # torch's message is a page of advice; keep the line that names what was refused.
        m = re.search(r"Unsupported global: GLOBAL (\S+)", str(e))
        what = f"it would import {m.group(1)}" if m else "it holds something other than tensors and plain values"
        raise CheckpointError(f"{path} refused: {what}; a checkpoint's optim.pt may hold only tensors "
                              f"and plain values (was it written by something else?)") from None
    except Exception as e:  # truncated zip, wrong format, ...
        raise CheckpointError(f"{path} is unreadable (truncated or not a torch file): {e}") from None


def load_checkpoint(ckpt_dir: str | Path, model: torch.nn.Module | None = None,
                    optimizer: torch.optim.Optimizer | None = None) -> dict[str, Any]:
    """Load weights into `model` and state into `optimizer` (each optional); return state.json's dict.

    Every file is checked before anything is modified, so a bad checkpoint leaves model and optimizer as
    they were. The caller restores RNG states with set_rng_state(state["rng"]) when it wants them.
    """
    from interfere.model import load_model

    ckpt_dir = Path(ckpt_dir)
    if not ckpt_dir.is_dir():
        raise CheckpointError(f"{ckpt_dir} is not a checkpoint directory")
    state = read_state(ckpt_dir)
    device = next(model.parameters()).device if model is not None else torch.device("cpu")
    loaded = load_model(ckpt_dir, device) if model is not None else None
    optim_state = load_optimizer_state(ckpt_dir, device) if optimizer is not None else None
    if loaded is not None:
        try:
            model.load_state_dict(loaded.state_dict())
        except RuntimeError as e:
            raise CheckpointError(f"{ckpt_dir / WEIGHTS} does not fit the configured model: "
                                  f"{str(e).splitlines()[0]} (is model.* the same as in the run?)") from None
    if optim_state is not None:
        try:
            optimizer.load_state_dict(optim_state)
        except (ValueError, KeyError) as e:
            raise CheckpointError(f"{ckpt_dir / OPTIM} does not fit the optimizer: {e}") from None
    return state
