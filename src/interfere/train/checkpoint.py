"""Atomic checkpoints: runs/<id>/checkpoints/step_<n>/ with model.safetensors + model.json (weights),
optim.pt (optimizer tensors; loaded with weights_only=True, so it cannot run code) and state.json
(step, tokens, RNG states as JSON).

A checkpoint is written into a hidden sibling directory, fsynced, renamed into place, and only then does
the `latest` symlink switch, so a crash at any moment leaves either the old or the new checkpoint whole.

optim.pt keys the optimizer state by parameter name (as torch.distributed.checkpoint's full state dicts
do), not by position, so a checkpoint written under one parallelism (single process, DDP, FSDP) resumes
under another.
"""

from __future__ import annotations

import base64
import contextlib
import io
import json
import os
import pickle
import random
import re
import shutil
import warnings
from pathlib import Path
from typing import Any

import numpy as np
import torch
from safetensors.torch import save_model as save_tensors

from interfere.errors import CheckpointError
from interfere.files import atomic_symlink, atomic_write, atomic_write_text
from interfere.formatting import first_line
from interfere.train.errors import CheckpointMismatchError, UnsafeCheckpointError

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
def step_dirs(run_dir: str | Path) -> list[Path]:
    """The run's checkpoint directories, oldest step first."""
    root = Path(run_dir) / "checkpoints"
    if not root.is_dir():
        return []
    found = [(int(m.group(1)), p) for p in root.iterdir()
             if (m := _STEP_DIR.match(p.name)) and p.is_dir() and not p.is_symlink()]
    return [p for _, p in sorted(found)]


# ----- optimizer state keyed by parameter name -------------------------------------------------------
def _param_order(model: torch.nn.Module, optimizer: torch.optim.Optimizer) -> list[str]:
    """The name of each parameter the optimizer holds, in the optimizer's own (index) order."""
    names = {id(p): n for n, p in model.named_parameters()}
    order = []
    for group in optimizer.param_groups:
        for p in group["params"]:
            if id(p) not in names:
                raise ValueError("the optimizer holds a parameter that is not in the model")
            order.append(names[id(p)])
    return order


def optimizer_state_by_name(model: torch.nn.Module, optimizer: torch.optim.Optimizer) -> dict[str, Any]:
    """optimizer.state_dict() with parameter names in place of indices (what optim.pt holds)."""
    sd = optimizer.state_dict()
    order = _param_order(model, optimizer)
    return {"state": {order[i]: s for i, s in sd["state"].items()},
            "param_groups": [{**g, "params": [order[i] for i in g["params"]]} for g in sd["param_groups"]]}


def optimizer_state_by_index(model: torch.nn.Module, optimizer: torch.optim.Optimizer,
                             sd: dict[str, Any], source: str | Path = OPTIM) -> dict[str, Any]:
    """A name-keyed optimizer state turned into what `optimizer.load_state_dict` takes.

    CheckpointMismatchError (naming `source`) when its groups or parameters are not the optimizer's.
    """
    groups = sd.get("param_groups") if isinstance(sd, dict) else None
    if not isinstance(groups, list) or not isinstance(sd.get("state"), dict):
        raise CheckpointError(f"{source} is not an optimizer state (no 'state' / 'param_groups')")
    order = _param_order(model, optimizer)
    if all(isinstance(p, int) for g in groups for p in g.get("params", [])):
        named = {"state": {order[i] if i < len(order) else i: s for i, s in sd["state"].items()},
                 "param_groups": [{**g, "params": [order[i] if i < len(order) else i for i in g["params"]]}
                                  for g in groups]}
        groups = named["param_groups"]
        sd = named
    mine = [[order[i] for i in range(start, start + len(g["params"]))]
            for start, g in zip(_starts(optimizer), optimizer.param_groups)]
    theirs = [list(g.get("params", [])) for g in groups]
    if mine != theirs:
        missing = sorted({n for g in mine for n in g} - {str(n) for g in theirs for n in g})
        extra = sorted({str(n) for g in theirs for n in g} - {n for g in mine for n in g})
        what = "; ".join(x for x in (f"missing {missing[:3]}" if missing else "",
                                     f"unexpected {extra[:3]}" if extra else "") if x)
        raise CheckpointMismatchError(f"{source} does not fit the optimizer: {what or 'its parameter groups differ'} "
                                      f"(is model.* the same as in the run?)")
    index = {n: i for i, n in enumerate(order)}
    return {"state": {index[n]: s for n, s in sd["state"].items() if n in index},
            "param_groups": [{**g, "params": [index[n] for n in g["params"]]} for g in groups]}


def _starts(optimizer: torch.optim.Optimizer) -> list[int]:
    starts, n = [], 0
    for g in optimizer.param_groups:
        starts.append(n)
        n += len(g["params"])
    return starts


# ----- writing a checkpoint -----------------------------------------------------------------------
def save_checkpoint(run_dir: str | Path, model: torch.nn.Module, optimizer: torch.optim.Optimizer | None,
                    state: dict[str, Any], keep_last: int | None = None, *,
                    optim_state: dict[str, Any] | None = None) -> Path:
    """Write checkpoints/step_<state['step']>/ atomically and point checkpoints/latest at it.

    `model` is the plain (unsharded) model; `optim_state` a name-keyed optimizer state already gathered
    (FSDP) in place of `optimizer`.
    """
    from interfere.model import save_model
    from interfere.model.modes import unwrap

    root = Path(run_dir) / "checkpoints"
    name = f"step_{int(state['step'])}"
    with atomic_write(root / name, directory=True, fsync=True) as tmp, _write_errors(root / name):
        if _is_hooked_gpt(model):
            save_model(model, tmp)
        else:  # a task's own module (Task.build_model): its tensors only, rebuilt by the task
            save_tensors(unwrap(model), str(tmp / WEIGHTS))
        buffer = io.BytesIO()  # written by Python, whose OSError says why (torch's own writer only says "unexpected pos")
        torch.save(optim_state if optim_state is not None else optimizer_state_by_name(model, optimizer), buffer)
        (tmp / OPTIM).write_bytes(buffer.getbuffer())
        (tmp / STATE).write_text(json.dumps({**state, "rng": rng_state()}, indent=1))
    final = root / name
    atomic_symlink(root / "latest", name)
    if keep_last:
        for old in step_dirs(run_dir)[:-int(keep_last)]:
            if old != final:
                shutil.rmtree(old, ignore_errors=True)
    return final


def update_state(ckpt_dir: str | Path, **fields: Any) -> None:
    """Add fields to a checkpoint's state.json, atomically (e.g. why the run stopped)."""
    atomic_write_text(Path(ckpt_dir) / STATE, json.dumps({**read_state(ckpt_dir), **fields}, indent=1), fsync=True)


@contextlib.contextmanager
def _write_errors(path: Path):
    """safetensors reports a refused write as its own SafetensorError: raise the OSError it is (errno from its
    message), naming the checkpoint, so that the CLI says where and why in one line."""
    from safetensors import SafetensorError

    try:
        yield
    except SafetensorError as e:
        m = re.search(r"os error (\d+)", str(e))
        if not m:
            raise
        raise OSError(int(m.group(1)), os.strerror(int(m.group(1))), str(path)) from None


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


def checkpoint_problem(ckpt_dir: str | Path) -> str | None:
    """Why a checkpoint's weights would not load (state.json or model.json unreadable, model.safetensors missing,
    truncated or foreign), from the files' headers alone (no tensor is read); None when it looks whole."""
    from safetensors import SafetensorError, safe_open

    ckpt_dir = Path(ckpt_dir)
    config, weights = ckpt_dir / MODEL_CONFIG, ckpt_dir / WEIGHTS
    try:
        read_state(ckpt_dir)
    except CheckpointError as e:
        return str(e)
    try:
        if not isinstance(json.loads(config.read_text()), dict):
            return f"{config} is not a model config"
    except (OSError, ValueError) as e:
        return f"{config} is unreadable: {first_line(e)}"
    try:
        with safe_open(str(weights), "pt"):  # the header must cover the whole file
            pass
    except (OSError, SafetensorError) as e:
        return f"{weights} is unreadable (truncated or not safetensors): {first_line(e)}"
    return None


def load_optimizer_state(ckpt_dir: str | Path, map_location: str | torch.device = "cpu") -> dict:
    """optim.pt as tensors and plain values only: a pickled object that would run code is refused."""
    path = Path(ckpt_dir) / OPTIM
    if not path.is_file():
        raise CheckpointError(f"{path} is missing")
    try:
        with warnings.catch_warnings():  # torch warns about the pickle protocol of files it did not write
            warnings.simplefilter("ignore")
            return torch.load(path, map_location=map_location, weights_only=True)
    except pickle.UnpicklingError as e:
        # The file names something to import (and so to call): tampering, not a crash. torch's message is a
        # page of advice (with weights_only=False "will likely succeed"); name what it would have run instead.
        calls = [g.removeprefix("builtins.").removeprefix("__builtin__.") for g in _pickle_globals(path)
                 if not g.startswith(_TORCH_GLOBALS)]
        if calls:
            raise UnsafeCheckpointError(
                f"{path} refused: unpickling it would import and call {', '.join(calls[:5])}; a checkpoint's "
                f"optim.pt may hold only tensors and plain values (loaded with weights_only=True, nothing ran)"
            ) from None
        raise CheckpointError(f"{path} is unreadable (corrupt pickle): {first_line(e)}") from None
    except Exception as e:  # truncated zip, wrong format, ...
        raise CheckpointError(f"{path} is unreadable (truncated or not a torch file): {first_line(e)}") from None


_TORCH_GLOBALS = ("torch.", "collections.OrderedDict")  # what torch.save itself writes


def _pickle_globals(path: Path) -> list[str]:
    """The module.name globals a pickle refers to (torch.save's zip, or a plain pickle.dump file), read without
    unpickling; best effort (a file too damaged to scan names what it named before the damage)."""
    import pickletools
    import zipfile

    try:
        if zipfile.is_zipfile(path):
            with zipfile.ZipFile(path) as z:
                data = z.read(next(n for n in z.namelist() if n.endswith("data.pkl")))
        else:
            data = path.read_bytes()
    except (OSError, StopIteration, zipfile.BadZipFile):
        return []
    found, pushed, memo = [], [], {}  # pushed: the values ops put on the stack, as far as names go
    try:
        for op, arg, _ in pickletools.genops(data):
            if op.name in ("GLOBAL", "INST"):
                found.append(str(arg).replace(" ", "."))
            elif op.name == "STACK_GLOBAL" and len(pushed) >= 2:
                found.append(f"{pushed[-2]}.{pushed[-1]}")
                pushed.append(found[-1])
            elif op.name == "MEMOIZE" and pushed:
                memo[len(memo)] = pushed[-1]
            elif op.name.endswith("PUT") and pushed:
                memo[arg] = pushed[-1]
            elif op.name.endswith("GET"):
                pushed.append(memo.get(arg))
            else:
                pushed.append(arg if isinstance(arg, str) else None)
    except Exception:  # noqa: BLE001 - a damaged pickle: what was read so far
        pass
    return list(dict.fromkeys(found))


def _is_hooked_gpt(model: torch.nn.Module) -> bool:
    from interfere.model import HookedGPT
    from interfere.model.modes import unwrap

    return isinstance(unwrap(model), HookedGPT)


def _read_tensors(ckpt_dir: Path, model: torch.nn.Module, device) -> dict[str, torch.Tensor]:
    """model.safetensors of a task's own module as a full state dict: a tied tensor, stored once under one of
    its names, is given its other names too (those the model shares with it)."""
    from safetensors import SafetensorError
    from safetensors.torch import load_file

    path = ckpt_dir / WEIGHTS
    if not path.is_file():
        raise CheckpointError(f"{path} is missing; is {ckpt_dir} a checkpoint directory?")
    try:
        state = load_file(str(path), device=str(device))
    except (SafetensorError, OSError, ValueError) as e:
        raise CheckpointError(f"{path} is unreadable (truncated or not safetensors): {e}") from None
    names_of: dict[tuple, list[str]] = {}
    for name, t in model.state_dict(keep_vars=True).items():
        names_of.setdefault((t.data_ptr(), t.shape), []).append(name)
    for names in names_of.values():
        stored = next((n for n in names if n in state), None)
        for n in names if stored is not None else ():
            state.setdefault(n, state[stored])
    return state


def _check_fits(ckpt_dir: Path, model: torch.nn.Module, theirs: dict[str, torch.Tensor]) -> None:
    """Same tensor names and shapes, or CheckpointMismatchError (load_state_dict would half-copy first)."""
    mine = model.state_dict()
    missing, extra = sorted(mine.keys() - theirs.keys()), sorted(theirs.keys() - mine.keys())
    shapes = [f"{k} {tuple(theirs[k].shape)} vs {tuple(mine[k].shape)}" for k in mine.keys() & theirs.keys()
              if mine[k].shape != theirs[k].shape]
    if missing or extra or shapes:
        what = "; ".join(x for x in (f"missing {missing[:3]}" if missing else "",
                                     f"unexpected {extra[:3]}" if extra else "",
                                     f"shape {sorted(shapes)[0]}" if shapes else "") if x)
        raise CheckpointMismatchError(f"{ckpt_dir / WEIGHTS} does not fit the configured model: {what} "
                                      f"(is model.* / task.* the same as in the run?)")


def load_checkpoint(ckpt_dir: str | Path, model: torch.nn.Module | None = None,
                    optimizer: torch.optim.Optimizer | None = None, *,
                    optim_state_out: dict | None = None) -> dict[str, Any]:
    """Load weights into `model` and state into `optimizer` (each optional); return state.json's dict.

    Every file is checked before anything is modified, so a bad checkpoint leaves model and optimizer as
    they were. The caller restores RNG states with set_rng_state(state["rng"]) when it wants them.
    Errors: CheckpointError naming the bad file (missing, truncated, unparseable), its subclasses
    UnsafeCheckpointError (optim.pt would run code) and CheckpointMismatchError (does not fit the model).
    `optim_state_out`, if given, receives the name-keyed optimizer state (for re-sharding under FSDP).
    """
    from interfere.model import load_model

    ckpt_dir = Path(ckpt_dir)
    if not ckpt_dir.is_dir():
        raise CheckpointError(f"{ckpt_dir} is not a checkpoint directory")
    state = read_state(ckpt_dir)
    device = next(model.parameters()).device if model is not None else torch.device("cpu")
    loaded = None
    if model is not None:
        loaded = load_model(ckpt_dir, device).state_dict() if _is_hooked_gpt(model) else _read_tensors(ckpt_dir, model, device)
    optim_state = load_optimizer_state(ckpt_dir, device) if optimizer is not None else None
    if loaded is not None:
        _check_fits(ckpt_dir, model, loaded)
    by_index = None
    if optim_state is not None:
        if model is None:
            raise TypeError("load_checkpoint: loading an optimizer needs its model (for the parameter names)")
        by_index = optimizer_state_by_index(model, optimizer, optim_state, ckpt_dir / OPTIM)
    if loaded is not None:
        model.load_state_dict(loaded)
    if by_index is not None:
        try:
            optimizer.load_state_dict(by_index)
        except (ValueError, KeyError, TypeError) as e:
            raise CheckpointMismatchError(f"{ckpt_dir / OPTIM} does not fit the optimizer: {e}") from None
        if optim_state_out is not None:
            optim_state_out.clear()
            optim_state_out.update(optim_state)
    return state
