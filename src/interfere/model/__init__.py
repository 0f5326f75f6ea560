"""The hooked transformer. It knows nothing of tasks: positions, segments and masks arrive as data."""

from interfere.model.config import ModelConfig, build_config
from interfere.model.layout import Layout
from interfere.model.serialize import load_model, save_model
from interfere.model.transformer import HookedGPT, KVCache


def build_model(model_cfg, vocab_size: int, seq_len: int, layout: Layout | None = None) -> HookedGPT:
    """A freshly initialised HookedGPT from the Hydra `model` group and the task's vocabulary, length and
    layout (installed, and its torus setting rope2d's period)."""
    model = HookedGPT(build_config(model_cfg, vocab_size, seq_len, torus=layout.torus if layout else None))
    return model.set_layout(layout) if layout is not None else model


__all__ = ["ModelConfig", "Layout", "HookedGPT", "KVCache", "build_config", "build_model", "save_model", "load_model"]
