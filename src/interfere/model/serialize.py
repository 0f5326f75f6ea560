"""Save and load a HookedGPT as safetensors + JSON: nothing in either file can run code when loaded."""

from __future__ import annotations

from pathlib import Path

import torch
from safetensors import SafetensorError
from safetensors.torch import load_file, save_model as _save_tensors

from interfere.errors import CheckpointError
from interfere.model.config import ModelConfig
from interfere.model.layout import Layout
from interfere.model.modes import unwrap
from interfere.model.transformer import HookedGPT

WEIGHTS, CONFIG = "model.safetensors", "model.json"
_LAYOUT = ("layout_positions", "layout_segment_ids", "layout_attn_mask")


def save_model(model: HookedGPT, directory: str | Path) -> None:
    """Write model.safetensors (weights and layout buffers; tied weights stored once) and model.json."""
    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    model = unwrap(model)
    _save_tensors(model, str(directory / WEIGHTS))
    (directory / CONFIG).write_text(model.cfg.to_json())


def load_model(directory: str | Path, device: str | torch.device = "cpu") -> HookedGPT:
    """The model saved in `directory`; CheckpointError naming the file if anything is missing or broken."""
    directory = Path(directory)
    weights, config = directory / WEIGHTS, directory / CONFIG
    for f in (weights, config):
        if not f.is_file():
            raise CheckpointError(f"{f} is missing; is {directory} a checkpoint directory?")
    try:
        cfg = ModelConfig.from_json(config.read_text())
    except (ValueError, TypeError, KeyError) as e:
        raise CheckpointError(f"{config} is not a valid model config: {e}") from None
    try:
        state = load_file(str(weights), device=str(device))
    except (SafetensorError, OSError, ValueError) as e:
        raise CheckpointError(f"{weights} is unreadable (truncated or not safetensors): {e}") from None
    cfg.device = str(device)
    model = HookedGPT(cfg).to(device)
    model.set_layout(Layout(*(state.get(k) for k in _LAYOUT)))
    missing, unexpected = model.load_state_dict(state, strict=False)
    tied = {"unembed.weight", "embed.weight"} if cfg.tie_embeddings else set()
    if unexpected or set(missing) - tied:
        raise CheckpointError(f"{weights} does not match its config: missing {sorted(set(missing) - tied)}, "
                              f"unexpected {sorted(unexpected)}")
    return model

