"""ModelConfig: TransformerLens' config plus the options interfere adds.

Subclassing `TransformerLensConfig` keeps `model.cfg` readable by TransformerLens' own tools
(patching, head_detector, ActivationCache), which look up fields such as n_layers, n_heads, d_head,
normalization_type, attn_only and device.
"""

from __future__ import annotations

import dataclasses
import json
from dataclasses import dataclass
from typing import Any, Mapping, Optional

import torch
from transformer_lens.config import TransformerLensConfig

from interfere.errors import ConfigError

POSITIONAL = ("learned", "rope", "rope2d", "none")
_POSITIONAL_ALIASES = {"standard": "learned", "rotary": "rope"}
NORMS = ("LN", "RMS")
ACTIVATIONS = ("gelu", "relu", "swiglu")


@dataclass
class ModelConfig(TransformerLensConfig):
    """Shape and options of a HookedGPT. Field names follow TransformerLens where it has one."""

    positional_embedding_type: str = "learned"  # learned | rope | rope2d | none
    rotary_dim: Optional[int] = None  # rotated dims per head; the rest carry content only
    rope_base: float = 10000.0
    rope_period: Optional[int] = None  # torus side: harmonics 2*pi*k/period make rope2d wrap around
    normalization_type: Optional[str] = "LN"  # LN | RMS
    act_fn: str = "gelu"  # gelu | relu | swiglu
    tie_embeddings: bool = False
    use_bias: bool = True
    dropout: float = 0.0
    n_segments: int = 0  # > 0: add a learned segment embedding (segment ids come from the layout)
    n_cond: int = 0  # > 0: FiLM-modulate each block's normalised inputs by a conditioning vector
    init_range: float = 0.02

    def __post_init__(self):
        self.positional_embedding_type = _POSITIONAL_ALIASES.get(
            self.positional_embedding_type, self.positional_embedding_type
        )
        _check(self.positional_embedding_type in POSITIONAL, "positional_embedding_type",
               f"is {self.positional_embedding_type!r}; use one of {', '.join(POSITIONAL)}")
        _check(self.normalization_type in NORMS, "normalization_type",
               f"is {self.normalization_type!r}; use one of {', '.join(NORMS)}")
        _check(self.act_fn in ACTIVATIONS, "act_fn", f"is {self.act_fn!r}; use one of {', '.join(ACTIVATIONS)}")
        for key in ("d_model", "n_layers", "n_ctx", "d_vocab", "n_heads", "d_head"):
            _check(getattr(self, key) > 0, key, f"is {getattr(self, key)}; it must be a positive integer")
        _check(0.0 <= self.dropout < 1.0, "dropout", f"is {self.dropout}; use a value in [0, 1)")
        super().__post_init__()
        self.gated_mlp = self.act_fn == "swiglu"
        self.uses_rms_norm = self.normalization_type == "RMS"
        if self.rotary_dim is None:
            self.rotary_dim = self.d_head
        if self.positional_embedding_type in ("rope", "rope2d"):
            step = 4 if self.positional_embedding_type == "rope2d" else 2
            _check(0 < self.rotary_dim <= self.d_head and self.rotary_dim % step == 0, "rotary_dim",
                   f"is {self.rotary_dim}; {self.positional_embedding_type} needs a multiple of {step} "
                   f"no larger than d_head={self.d_head}")

    def to_dict(self) -> dict[str, Any]:
        d = {f.name: getattr(self, f.name) for f in dataclasses.fields(self)}
        d["dtype"] = str(self.dtype).removeprefix("torch.")
        d.pop("device")  # where a model runs is decided when it is loaded
        return d

    def to_json(self) -> str:
        return json.dumps(self.to_dict(), indent=2, sort_keys=True)

    @classmethod
    def from_json(cls, text: str) -> "ModelConfig":
        d = json.loads(text)
        d["dtype"] = getattr(torch, d.get("dtype", "float32"))
        known = {f.name for f in dataclasses.fields(cls)}
        unknown = sorted(set(d) - known)
        if unknown:
            raise ConfigError(f"model config has unknown keys {unknown}; it was written by a newer interfere")
        return cls(**d)


def _check(ok: bool, key: str, problem: str) -> None:
    if not ok:
        raise ConfigError(f"model.{key} {problem}")


def build_config(model_cfg: Mapping[str, Any], vocab_size: int, seq_len: int,
                 torus: tuple[int, ...] | None = None) -> ModelConfig:
    """A ModelConfig from the Hydra `model` group, filling d_vocab and n_ctx from the task (and rope2d's
    period from the torus the task's positions live on, `Layout.torus`)."""
    d = dict(model_cfg)
    d.pop("name", None)
    n_heads = d.get("n_heads") or 0
    if d.get("d_head") is None:
        if n_heads <= 0 or d["d_model"] % n_heads:
            raise ConfigError(
                f"model.d_model={d['d_model']} is not divisible by model.n_heads={n_heads}; "
                f"choose d_model as a multiple of n_heads (e.g. d_model={max(n_heads, 1) * max(1, d['d_model'] // max(n_heads, 1))}) "
                "or set model.d_head explicitly"
            )
        d["d_head"] = d["d_model"] // n_heads
    if d.get("d_vocab") is None:
        d["d_vocab"] = vocab_size
    elif d["d_vocab"] < vocab_size:
        raise ConfigError(f"model.d_vocab={d['d_vocab']} is smaller than the task's vocabulary ({vocab_size}); "
                          "remove the override or raise it")
    if d.get("n_ctx") is None:
        d["n_ctx"] = seq_len
    elif d["n_ctx"] < seq_len:
        raise ConfigError(f"model.n_ctx={d['n_ctx']} is shorter than the task's sequences ({seq_len} tokens); "
                          f"set model.n_ctx={seq_len} (or null to follow the task), or shrink the task")
    if d.get("d_mlp") is None:
        d["d_mlp"] = 4 * d["d_model"]
    if torus and d.get("positional_embedding_type") == "rope2d":
        d["rope_period"] = _torus_period(d.get("rope_period"), tuple(int(s) for s in torus))
    known = {f.name for f in dataclasses.fields(ModelConfig)}
    unknown = sorted(set(d) - known)
    if unknown:
        raise ConfigError(f"unknown model keys {unknown}; see conf/model/small.yaml for the valid ones")
    return ModelConfig(**d)


def _torus_period(period: int | None, sides: tuple[int, ...]) -> int | None:
    """rope2d on a torus: harmonics of period p turn a full circle over a shift of p cells, so p must be the
    torus side; anything else makes cells p apart look alike, or the wrap-around look like a jump."""
    side = sides[0] if len(set(sides)) == 1 else None
    if period is None:
        return side  # a non-square torus has no single period: plain rope2d frequencies
    if side != period:
        board = "x".join(map(str, sides))
        fix = f"model.rope_period={side} or null" if side else "model.rope_period=null"
        raise ConfigError(f"model.rope_period={period} does not fit the task's {board} torus: rope2d's period must "
                          f"be the board's side so that its harmonics wrap with the board; set {fix} "
                          "(null follows the board)")
    return period
