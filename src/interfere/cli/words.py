"""The key=value words of every command but `train` (whose words are Hydra overrides, see interfere.config): one
parser with one set of errors, so that a misspelt key gets "did you mean ...?" in every command alike.

A command lists its keys (`{key: description}`), calls `parse_words(args.overrides, KEYS, "eval")`, and reads
typed values with `option(words, key, default, to_int, minimum=1)`. A command that loads a trained model adds
RUN_KEYS and calls `load_run(words)`.
"""

from __future__ import annotations

import difflib
from typing import Any, Iterable, Mapping

from interfere.errors import ConfigError

# The keys of a command that reads a trained run; load_run reads them.
RUN_KEYS = {"run": "run id or dir", "ckpt": "checkpoint dir", "runs_dir": "dir", "device": "auto|cpu|cuda|mps"}


def parse_words(words: Iterable[str], allowed: Mapping[str, str], command: str) -> dict[str, str]:
    """`key=value` words of a command that takes a fixed set of keys (not a Hydra config).

    `allowed` maps each key to a short description; an unknown or malformed word raises ConfigError
    naming the closest key.
    """
    out: dict[str, str] = {}
    for word in words:
        key, eq, value = word.partition("=")
        key = key.lstrip("+")
        if not eq or not key:
            raise ConfigError(f"'{word}' is not key=value; `interfere {command}` takes {_keys_list(allowed)}")
        if key not in allowed:
            close = difflib.get_close_matches(key, list(allowed), n=1, cutoff=0.5)
            hint = f"did you mean {close[0]}={value}? " if close else ""
            raise ConfigError(f"`interfere {command}` has no key '{key}'; {hint}it takes {_keys_list(allowed)}")
        out[key] = value
    return out


def _keys_list(allowed: Mapping[str, str]) -> str:
    return ", ".join(f"{k}=<{v}>" for k, v in allowed.items())


def to_int(key: str, value: str, minimum: int | None = None) -> int:
    try:
        n = int(value)
    except ValueError:
        raise ConfigError(f"{key} must be an integer, not '{value}'; e.g. {key}=1000") from None
    if minimum is not None and n < minimum:
        raise ConfigError(f"{key}={n} must be at least {minimum}")
    return n


def to_float(key: str, value: str) -> float:
    try:
        return float(value)
    except ValueError:
        raise ConfigError(f"{key} must be a number, not {value!r}") from None


def to_bool(key: str, value: str) -> bool:
    v = value.lower()
    if v not in ("true", "false", "1", "0", "yes", "no"):
        raise ConfigError(f"{key} must be true or false, not {value!r}")
    return v in ("true", "1", "yes")


def option(words: Mapping[str, str], key: str, default: Any, convert, **limits) -> Any:
    """words[key] converted by `convert(key, value, **limits)` (to_int, to_float, to_bool), or default if absent."""
    return convert(key, words[key], **limits) if key in words else default


def load_run(words: Mapping[str, str], default: str | None = None):
    """(model, task, checkpoint dir) of run= or ckpt= (at most one), else `default`, else runs/latest."""
    import interfere
    from interfere.train.runs import resolve_checkpoint

    if "run" in words and "ckpt" in words:
        raise ConfigError("give run=<id> or ckpt=<path>, not both")
    runs_dir = words.get("runs_dir", "runs")
    ckpt = resolve_checkpoint(words.get("run") or words.get("ckpt") or default, runs_dir)
    model, task = interfere.load(str(ckpt), runs_dir=runs_dir, device=words.get("device"))
    return model, task, ckpt
