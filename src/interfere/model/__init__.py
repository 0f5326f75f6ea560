"""The hooked transformer. It knows nothing of tasks: positions, segments and masks arrive as data.

Names load on first use (PEP 562), so that `interfere.model.layout` (which tasks import) costs no
transformer_lens import.
"""

from __future__ import annotations

import importlib

_HOME = {"ModelConfig": "config", "build_config": "config", "Layout": "layout", "HookedGPT": "transformer",
         "KVCache": "transformer", "save_model": "serialize", "load_model": "serialize"}


def __getattr__(name: str):
    if name in _HOME:
        return getattr(importlib.import_module(f"interfere.model.{_HOME[name]}"), name)
    raise AttributeError(f"module 'interfere.model' has no attribute {name!r}")


def build_model(model_cfg, vocab_size: int, seq_len: int, layout=None):
    """A freshly initialised HookedGPT from the Hydra `model` group and the task's vocabulary, length and
    layout (installed, and its torus setting rope2d's period)."""
    from interfere.model.config import build_config
    from interfere.model.transformer import HookedGPT

    model = HookedGPT(build_config(model_cfg, vocab_size, seq_len, torus=layout.torus if layout else None))
    return model.set_layout(layout) if layout is not None else model


__all__ = ["ModelConfig", "Layout", "HookedGPT", "KVCache", "build_config", "build_model", "save_model", "load_model"]
