"""TrainConfig: the `train` group, typed and checked once, before anything is written.

Every default lives in conf/train/default.yaml, beside its comment, and nowhere else: the dataclass has no
defaults of its own. It names the types, and `__post_init__` refuses a value that cannot work with one line
naming the key and the fix (a ConfigError; the CLI prints it and exits with status 2).
"""

from __future__ import annotations

import dataclasses
import math
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Mapping, Optional

from interfere.errors import ConfigError

SCHEDULES = ("cosine", "linear", "constant")
DTYPES = ("auto", "fp32", "bf16")
PARALLEL = ("ddp", "fsdp")
LOGGERS = ("wandb", "tensorboard")
DEFAULTS_FILE = Path(__file__).resolve().parent.parent / "conf" / "train" / "default.yaml"
MAX_STEPS = 10**9  # about 12 days at 1 ms a step: a plan beyond this is a typo, not a run


@dataclass
class TrainConfig:
    steps: Optional[int]
    tokens: Any  # 2000000, 2e6 or "2M"; exactly one of steps and tokens is set
    batch_size: int
    grad_accum: int
    lr: float
    min_lr_ratio: float
    schedule: str
    warmup_steps: int
    hold_steps: int
    weight_decay: float
    betas: list
    grad_clip: float
    dtype: str
    deterministic: Any  # true | false | auto
    compile: bool
    activation_checkpointing: bool
    audit: bool
    log_every: int
    eval_every: int
    ckpt_every: int
    keep_last: Optional[int]
    artifacts_every: int
    eval_samples: Optional[int]
    progress: bool
    loggers: list
    parallel: str
    skip_nonfinite: int
    max_minutes: Optional[float]

    def __post_init__(self):
        self.betas, self.loggers = list(self.betas or []), list(self.loggers or [])
        _integers(self, "batch_size", "grad_accum", "log_every", minimum=1)
        _integers(self, "warmup_steps", "hold_steps", "eval_every", "ckpt_every", "artifacts_every", "skip_nonfinite",
                  minimum=0)
        _integers(self, "steps", "keep_last", "eval_samples", minimum=1, optional=True)
        _one_of(self, "schedule", SCHEDULES)
        _one_of(self, "dtype", DTYPES)
        _one_of(self, "parallel", PARALLEL)
        if self.deterministic not in (True, False, "auto"):
            raise ConfigError(f"train.deterministic={self.deterministic!r}; choose true, false or auto")
        _number(self, "lr", lambda x: x > 0, "must be a positive learning rate, e.g. train.lr=3e-3")
        _number(self, "min_lr_ratio", lambda x: 0 <= x <= 1, "must be in [0, 1] (a fraction of train.lr)")
        _number(self, "weight_decay", lambda x: x >= 0, "must be >= 0")
        _number(self, "grad_clip", lambda x: x >= 0, "must be >= 0 (0 disables clipping)")
        if len(self.betas) != 2 or not all(_is_number(b) and 0 <= b < 1 for b in self.betas):
            raise ConfigError(f"train.betas={self.betas} must be two numbers in [0, 1), e.g. train.betas=[0.9,0.95]")
        unknown = [name for name in self.loggers if name not in LOGGERS]
        if unknown:
            raise ConfigError(f"train.loggers has {unknown[0]!r}; known loggers: {', '.join(LOGGERS)}")
        if self.max_minutes is not None:
            _number(self, "max_minutes", lambda x: x > 0,
                    "must be a positive number of minutes, or null for no limit")
        if (self.steps is None) == (self.tokens is None):
            got = f"both are set (steps={self.steps}, tokens={self.tokens})" if self.steps is not None else "neither is set"
            raise ConfigError(f"set exactly one of train.steps and train.tokens; {got}")
        if self.tokens is not None:
            self.tokens = parse_tokens(self.tokens)
        if self.steps is not None and self.steps > MAX_STEPS:
            raise ConfigError(f"train.steps={self.steps} is more steps than a run can take (at most {MAX_STEPS:.0e})")

    @classmethod
    def from_node(cls, node: Mapping[str, Any]) -> "TrainConfig":
        """From the composed Hydra/OmegaConf `train` node (or a dict): every key, no more, no fewer."""
        from omegaconf import DictConfig, OmegaConf

        d = OmegaConf.to_container(node, resolve=True) if isinstance(node, DictConfig) else dict(node)
        names = [f.name for f in dataclasses.fields(cls)]
        unknown, missing = sorted(set(d) - set(names)), [n for n in names if n not in d]
        if unknown:
            raise ConfigError(f"unknown train key(s) {unknown}; the keys are those of conf/train/default.yaml")
        if missing:
            raise ConfigError(f"the train config lacks {missing}; compose it with conf/train/default.yaml")
        return cls(**d)

    @classmethod
    def defaults(cls, **overrides: Any) -> "TrainConfig":
        """conf/train/default.yaml with `overrides` on top (for Python callers and tests)."""
        return cls.from_node({**default_node(), **overrides})

    def plan(self, seq_len: int, world_size: int = 1) -> tuple[int, int]:
        """(optimizer steps, tokens per step) for this world size and the task's sequence length."""
        tokens_per_step = world_size * self.batch_size * self.grad_accum * int(seq_len)
        steps = self.steps if self.steps is not None else math.ceil(self.tokens / tokens_per_step)
        if steps > MAX_STEPS:
            raise ConfigError(f"train.tokens={self.tokens:.3g} is {steps:.3g} steps of {tokens_per_step:,} tokens: "
                              f"more than a run can take (at most {MAX_STEPS:.0e}); lower train.tokens")
        return steps, tokens_per_step


def default_node() -> dict[str, Any]:
    """conf/train/default.yaml as a dict: the train config's defaults."""
    from omegaconf import OmegaConf

    return OmegaConf.to_container(OmegaConf.load(DEFAULTS_FILE))


# ----- checks ------------------------------------------------------------------------------------------
def _is_number(x) -> bool:
    return isinstance(x, (int, float)) and not isinstance(x, bool) and math.isfinite(x)


def _integers(cfg, *keys: str, minimum: int, optional: bool = False) -> None:
    for key in keys:
        value = getattr(cfg, key)
        if value is None and optional:
            continue
        if isinstance(value, bool) or not isinstance(value, int) or value < minimum:
            null = ", or null" if optional else ""
            raise ConfigError(f"train.{key}={value!r} must be an integer >= {minimum}{null}")


def _one_of(cfg, key: str, choices: tuple[str, ...]) -> None:
    if getattr(cfg, key) not in choices:
        raise ConfigError(f"train.{key}={getattr(cfg, key)!r}; choose one of {', '.join(choices)}")


def _number(cfg, key: str, ok, problem: str) -> None:
    if not _is_number(getattr(cfg, key)) or not ok(getattr(cfg, key)):
        raise ConfigError(f"train.{key}={getattr(cfg, key)!r} {problem}")


_SUFFIX = {"": 1, "k": 10**3, "m": 10**6, "b": 10**9, "g": 10**9, "t": 10**12}


def parse_tokens(value: Any) -> int:
    """A token count: 2000000, 2e6, "2M", "2.5k", "1_000_000"."""
    bad = ConfigError(f"train.tokens={value!r} is not a token count (e.g. 2000000, 2e6 or 2M)")
    if _is_number(value):
        n = value
    else:
        m = re.fullmatch(r"\s*([0-9_.eE+]+)\s*([kKmMbBgGtT]?)\s*", str(value))
        if not m:
            raise bad
        try:
            n = float(m.group(1).replace("_", "")) * _SUFFIX[m.group(2).lower()]
        except ValueError:
            raise bad from None
    if not (math.isfinite(n) and n > 0):
        raise ConfigError(f"train.tokens={value!r} must be a positive token count")
    return int(math.ceil(n))
