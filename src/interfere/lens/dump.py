"""Activation dumps: what a lens trains and is scored on.

`dump(subject, out, layer, ...)` reads windows of `ctx` tokens from the subject's pre-tokenised text stream
(train and val splits), picks one position p >= min_pos in each, and stores the residual after block `layer`
at p into safetensors shards:

    out/manifest.json              subject, layer, hook, ctx, min_pos, d_model, seed, and per split its shards
    out/<split>/shard_<i>.safetensors
        acts [n, d] float32        the activation A at (window, p)
        paired [n, d] float32      A' from another window (the next row's, cyclically): resample ablation
        tokens [n, ctx] int64      the window (the subject's input; the lens's KL reruns it)
        positions [n] int64        p

Shard i of a split depends only on (seed, split, i), and each shard is written whole (temporary file,
rename) before the manifest lists it; so an interrupted dump resumes where it stopped and ends equal,
bit for bit, to one that never stopped.
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch

from interfere.errors import ConfigError
from interfere.files import atomic_write_json
from interfere.lens.subject import Subject, resid_hook

MANIFEST = "manifest.json"
SPLITS = ("train", "val")
FIXED = ("subject", "layer", "ctx", "min_pos", "seed", "shard_size")  # what a resumed dump must share


@dataclass
class ActivationSet:
    """One split of a dump, loaded: acts/paired [N, d], tokens [N, ctx], positions [N]."""

    acts: torch.Tensor
    paired: torch.Tensor
    tokens: torch.Tensor
    positions: torch.Tensor

    def __len__(self) -> int:
        return len(self.acts)

    def to(self, device) -> "ActivationSet":
        return ActivationSet(*(t.to(device) for t in (self.acts, self.paired, self.tokens, self.positions)))

    def rows(self, idx) -> "ActivationSet":
        return ActivationSet(self.acts[idx], self.paired[idx], self.tokens[idx], self.positions[idx])


def read_manifest(out: str | os.PathLike) -> dict[str, Any]:
    path = Path(out) / MANIFEST
    if not path.is_file():
        raise ConfigError(f"{path} is missing: {out} is not an activation dump (make one with `interfere lens dump`)")
    return json.loads(path.read_text())


def dump(subject: Subject, out: str | os.PathLike, layer: int, n_train: int, n_val: int, ctx: int = 64,
         min_pos: int = 8, seed: int = 0, shard_size: int = 1024, batch_size: int = 64, log=None) -> dict[str, Any]:
    """Write (or complete) the dump in `out`; return its manifest."""
    subject.check_layer(layer)
    if not 0 <= min_pos < ctx:
        raise ConfigError(f"min_pos={min_pos} must be in 0..ctx-1={ctx - 1}")
    out = Path(out)
    want = {"format": 1, "subject": subject.spec, "layer": layer, "hook": resid_hook(layer), "ctx": ctx,
            "min_pos": min_pos, "seed": seed, "shard_size": shard_size, "d_model": subject.d_model,
            "d_vocab": subject.d_vocab, "splits": {s: {"n": n, "shards": []} for s, n in zip(SPLITS, (n_train, n_val))}}
    manifest = _resumable(out, want)
    for s_i, split in enumerate(SPLITS):
        entry = manifest["splits"][split]
        stream = subject.text.store.tokens(split)
        if len(stream) < ctx:
            raise ConfigError(f"the {split} split has {len(stream)} tokens, fewer than ctx={ctx}")
        n_shards = -(-entry["n"] // shard_size)
        for i in range(len(entry["shards"]), n_shards):
            size = min(shard_size, entry["n"] - i * shard_size)
            name = f"{split}/shard_{i:05d}.safetensors"
            _write_shard(out / name, _shard(subject, stream, layer, ctx, min_pos, [seed, s_i, i], size, batch_size))
            entry["shards"].append(name)
            atomic_write_json(out / MANIFEST, manifest)
            if log:
                log(f"{name}: {size} activations")
    return manifest


def _resumable(out: Path, want: dict) -> dict:
    """The manifest to continue from: the existing one if it describes the same dump, else a fresh one."""
    if not (out / MANIFEST).is_file():
        out.mkdir(parents=True, exist_ok=True)
        atomic_write_json(out / MANIFEST, want)
        return want
    have = read_manifest(out)
    differ = [k for k in FIXED if have.get(k) != want[k]]
    if differ:
        raise ConfigError(f"{out} holds a different dump ({', '.join(f'{k}={have.get(k)!r}' for k in differ)}); "
                          "choose another out= or delete it")
    for split in SPLITS:
        entry, n = have["splits"][split], want["splits"][split]["n"]
        if n > entry["n"] and len(entry["shards"]) * have["shard_size"] > entry["n"]:  # its last shard is short
            raise ConfigError(f"{out} holds a complete {split} split of {entry['n']}: it cannot grow to {n} "
                              "(its last shard is short); choose another out=")
        entry["n"] = max(entry["n"], n)
    return have


def _shard(subject: Subject, stream: np.ndarray, layer: int, ctx: int, min_pos: int, key: list[int],
           size: int, batch_size: int) -> dict[str, torch.Tensor]:
    rng = np.random.default_rng(key)
    starts = rng.integers(0, len(stream) - ctx + 1, size=size)
    positions = torch.from_numpy(rng.integers(min_pos, ctx, size=size))
    tokens = torch.from_numpy(np.stack([np.asarray(stream[s:s + ctx], dtype=np.int64) for s in starts]))
    acts = torch.cat([subject.activations(tokens[i:i + batch_size].to(subject.device),
                                          positions[i:i + batch_size].to(subject.device), layer).cpu()
                      for i in range(0, size, batch_size)])
    return {"acts": acts.contiguous(), "paired": acts.roll(-1, 0).contiguous(), "tokens": tokens.contiguous(),
            "positions": positions.contiguous()}


def _write_shard(path: Path, tensors: dict[str, torch.Tensor]) -> None:
    from safetensors.torch import save_file

    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    try:
        save_file(tensors, str(tmp))
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)


def load_split(out: str | os.PathLike, split: str, device="cpu") -> ActivationSet:
    """Every shard of one split, concatenated in order."""
    from safetensors.torch import load_file

    manifest = read_manifest(out)
    names = manifest["splits"][split]["shards"]
    if not names:
        raise ConfigError(f"{out} has no {split} activations yet: run `interfere lens dump` to completion")
    parts = [load_file(str(Path(out) / n)) for n in names]
    return ActivationSet(*(torch.cat([p[k] for p in parts]) for k in ("acts", "paired", "tokens", "positions"))).to(device)
