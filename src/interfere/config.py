"""Compose the Hydra config tree shipped in `interfere/conf` from command-line overrides.

`compose(["exp=life_smoke", "train.steps=10"])` returns the DictConfig every command works from. Anything
wrong with the overrides (a misspelt key, an unknown group option, a value of the wrong type, bad override
syntax) raises `interfere.errors.ConfigError` with a one-line message naming the key and the fix; the CLI
prints it and exits with status 2.

Hydra is imported inside the functions so that `interfere --help` stays instant.
"""

from __future__ import annotations

import difflib
import re
from pathlib import Path
from typing import Any, Iterable

from interfere.errors import ConfigError
from interfere.formatting import first_line

CONF_DIR = Path(__file__).resolve().parent / "conf"
CONFIG_NAME = "config"

# Types of keys whose default is null (every other key must keep the type of its default).
NULLABLE_TYPES: dict[str, tuple[type, ...]] = {
    "train.steps": (int,),
    "train.tokens": (int, float, str),  # 2000000, 2e6 or "2M" (train.config.parse_tokens reads them)
    "train.eval_samples": (int,),
    "model.d_head": (int,),
    "model.d_mlp": (int,),
    "model.n_ctx": (int,),
    "model.d_vocab": (int,),
    "model.rotary_dim": (int,),
    "model.rope_period": (int,),
}

_TYPE_NAMES = {bool: "true or false", int: "an integer", float: "a number", str: "a string"}


# ----- the config tree ------------------------------------------------------------------------------
def groups() -> list[str]:
    """Config groups: the sub-directories of conf/ (model, task, train, exp, ...)."""
    return sorted(p.name for p in CONF_DIR.iterdir() if p.is_dir() and not p.name.startswith(("_", ".")))


def options(group: str) -> list[str]:
    """The choices of a group: conf/<group>/*.yaml without the suffix."""
    return sorted(p.stem for p in (CONF_DIR / group).glob("*.yaml"))


def experiments() -> list[str]:
    return options("exp")


def describe(group: str, option: str) -> str:
    """The first line of the comment that opens conf/<group>/<option>.yaml (what the preset is for)."""
    for line in (CONF_DIR / group / f"{option}.yaml").read_text().splitlines():
        text = line.lstrip("#").strip()
        if not line.startswith("#"):
            break
        if text and not text.startswith("@package"):
            return text
    return ""


# ----- composition ----------------------------------------------------------------------------------
def compose(overrides: Iterable[str] = ()) -> "DictConfig":  # noqa: F821 (omegaconf is imported lazily)
    """The root config with `overrides` (Hydra syntax: key=value, group=option, +new.key=value, ~key)."""
    overrides = [str(o) for o in overrides]
    parsed = _parse(overrides)
    cfg = _compose(overrides, parsed)
    # Values are checked against the types of the same config composed without the key=value overrides.
    key_overrides = [o for o in parsed if not _is_group(o.key_or_group) and not (o.is_add() or o.is_delete() or o.is_force_add())]
    if key_overrides:
        reference = _compose([o.input_line for o in parsed if _is_group(o.key_or_group)], parsed)
        for o in key_overrides:
            _check_type(o.key_or_group, o.input_line, _select(reference, o.key_or_group), _select(cfg, o.key_or_group))
    return cfg


def to_yaml(cfg) -> str:
    """The config as YAML, interpolations resolved (what `--cfg` prints)."""
    from omegaconf import OmegaConf

    try:
        return OmegaConf.to_yaml(cfg, resolve=True)
    except Exception as e:  # a broken ${...} interpolation
        raise ConfigError(f"cannot resolve the config: {first_line(e)}") from None


def _parse(overrides: list[str]):
    from hydra.core.override_parser.overrides_parser import OverridesParser
    from hydra.errors import OverrideParseException

    parser = OverridesParser.create()
    parsed = []
    for line in overrides:
        try:
            (o,) = parser.parse_overrides([line])
        except OverrideParseException as e:
            raise ConfigError(_parse_problem(line, e)) from None
        if o.is_sweep_override():
            raise ConfigError(f"{line}: a comma-separated value is a sweep, which interfere does not run; "
                              f"for a list write {o.key_or_group}=[...], for a string quote it: {o.key_or_group}='...'")
        parsed.append(o)
    return parsed


def _parse_problem(line: str, e: Exception) -> str:
    if "=" not in line:
        if line in experiments():
            return f"'{line}' is not an override; to pick that experiment write exp={line}"
        close = difflib.get_close_matches(line, experiments(), n=1)
        hint = f" (did you mean exp={close[0]}?)" if close else ""
        return f"'{line}' is not an override; overrides are key=value, e.g. exp=life_smoke or train.steps=10{hint}"
    return f"cannot parse override '{line}': {first_line(e)}; see https://hydra.cc/docs/advanced/override_grammar/basic/"


def _compose(overrides: list[str], parsed):
    from hydra import compose as hydra_compose
    from hydra import initialize_config_dir
    from hydra.errors import MissingConfigException

    try:
        # A directory, not `initialize_config_module("interfere.conf")`: conf/ is data, not a Python package.
        with initialize_config_dir(config_dir=str(CONF_DIR), version_base="1.3", job_name="interfere"):
            return hydra_compose(CONFIG_NAME, overrides=overrides)
    except MissingConfigException as e:
        raise ConfigError(_missing_option(e)) from None
    except ConfigError:
        raise
    except Exception as e:  # Hydra/OmegaConf errors about the user's overrides; translate them to one line
        raise ConfigError(_composition_problem(e, parsed)) from None


def _missing_option(e) -> str:
    m = re.search(r"Could not find '([^']+)/([^'/]+)'", str(e))
    if not m:
        return first_line(e)
    group, option = m.group(1), m.group(2)
    choices = options(group) if (CONF_DIR / group).is_dir() else list(getattr(e, "options", None) or [])
    close = difflib.get_close_matches(option, choices, n=1)
    hint = f"did you mean {group}={close[0]}? " if close else ""
    return (f"{group}={option}: there is no conf/{group}/{option}.yaml; {hint}"
            f"choose one of: {', '.join(choices)}")


def _composition_problem(e: Exception, parsed) -> str:
    text = str(e)
    m = re.search(r"Could not override '([^']+)'", text)
    if m:
        key = m.group(1)
        line = next((o.input_line for o in parsed if o.key_or_group == key), f"{key}=...")
        return _unknown_key(key, line, parsed)
    m = re.search(r"Could not delete from config. '([^']+)' does not exist", text)
    if m:
        key = m.group(1)
        close = _closest_key(key, parsed)
        hint = f"; did you mean ~{close}?" if close else ""
        return f"cannot delete {key}: there is no such key{hint}"
    # e.g. a ValueError from OmegaConf for `train.betas.x=3`: find the override that alone fails
    line = next((o.input_line for o in parsed if o.key_or_group in text), None) or _culprit(parsed)
    where = f"{line}: " if line else ""
    return f"{where}{first_line(e)}"


def _culprit(parsed) -> str | None:
    from hydra import compose as hydra_compose
    from hydra import initialize_config_dir

    base = [o.input_line for o in parsed if _is_group(o.key_or_group)]
    for o in parsed:
        try:
            with initialize_config_dir(config_dir=str(CONF_DIR), version_base="1.3", job_name="interfere"):
                hydra_compose(CONFIG_NAME, overrides=[*base, o.input_line])
        except Exception:
            return o.input_line
    return None


def _unknown_key(key: str, line: str, parsed) -> str:
    value = line.split("=", 1)[1] if "=" in line else "..."
    close = _closest_key(key, parsed)
    hint = f"did you mean {close}={value}? " if close else ""
    return f"unknown config key '{key}': {hint}(to add a new key, write +{key}={value})"


def _closest_key(key: str, parsed) -> str | None:
    try:
        reference = _compose([o.input_line for o in parsed if _is_group(o.key_or_group)], parsed)
    except ConfigError:
        reference = _compose([], [])
    candidates = list(_keys(reference)) + groups()
    parent = key.rsplit(".", 1)[0] if "." in key else ""
    siblings = [c for c in candidates if parent and c.startswith(parent + ".")]
    for pool in (siblings, candidates):
        close = difflib.get_close_matches(key, pool, n=1, cutoff=0.6)
        if close:
            return close[0]
    return None


def _keys(cfg, prefix: str = ""):
    """Every dotted key of a config, nodes included (list items excluded)."""
    from omegaconf import DictConfig

    for k in cfg.keys():
        path = f"{prefix}{k}"
        yield path
        node = cfg._get_node(k)
        if isinstance(node, DictConfig):
            yield from _keys(node, path + ".")


def _is_group(key: str) -> bool:
    return key.split("@", 1)[0] in groups()


_MISSING = object()


def _select(cfg, key: str):
    from omegaconf import OmegaConf

    try:
        value = OmegaConf.select(cfg, key, default=_MISSING, throw_on_missing=False)
    except Exception:
        return _MISSING
    if OmegaConf.is_config(value):
        return OmegaConf.to_container(value)
    return value


def _check_type(key: str, line: str, default: Any, value: Any) -> None:
    if default is _MISSING or value is _MISSING:
        return
    if value is None and key in NULLABLE_TYPES:  # e.g. train.tokens=null to switch an exp to train.steps
        return
    if default is None:
        expected = NULLABLE_TYPES.get(key)
        if expected is None or value is None:
            return
    elif isinstance(default, bool):
        expected = (bool,)
    elif isinstance(default, int):
        expected = (int,)
    elif isinstance(default, float):
        expected = (int, float)
    else:  # strings, lists and mappings: the library checks them (a rule may be a string or a list)
        return
    if isinstance(value, bool) and bool not in expected:
        ok = False
    else:
        ok = isinstance(value, expected)
    if not ok:
        want = _TYPE_NAMES[expected[-1] if expected != (int, float) else float]
        example = default if default is not None else {int: 100, float: 1.0}[expected[-1]]
        if isinstance(example, bool):
            example = str(example).lower()
        got = f"'{value}'" if isinstance(value, str) else repr(value)
        raise ConfigError(f"{key} must be {want}, not {got}; e.g. {key}={example}")

