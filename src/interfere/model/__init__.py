"""The hooked transformer. It knows nothing of tasks: positions, segments and masks arrive as data."""

from interfere.model.config import ModelConfig, build_config
from interfere.model.serialize import load_model, save_model
from interfere.model.transformer import HookedGPT, KVCache


def build_model(model_cfg, vocab_size: int, seq_len: int) -> HookedGPT:
    """A freshly initialised HookedGPT from the Hydra `model` group and the task's vocabulary and length."""
    return HookedGPT(build_config(model_cfg, vocab_size, seq_len))


__all__ = ["ModelConfig", "HookedGPT", "KVCache", "build_config", "build_model", "save_model", "load_model"]
