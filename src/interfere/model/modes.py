"""Small helpers for handling a model that may be wrapped (DDP, torch.compile) or in training mode."""

from __future__ import annotations

import contextlib

import torch
from torch import nn


def unwrap(model: nn.Module) -> nn.Module:
    """The plain module under DDP and torch.compile wrappers (what checkpoints and tasks see).

    Calling a DDP wrapper on one rank alone would run collectives that never complete.
    """
    while True:
        inner = getattr(model, "module", None) or getattr(model, "_orig_mod", None)
        if not isinstance(inner, nn.Module):
            return model
        model = inner


@contextlib.contextmanager
def eval_mode(model: nn.Module):
    """no_grad + eval() for the block, then the model's previous train/eval state."""
    was_training = model.training
    model.eval()
    try:
        with torch.no_grad():
            yield model
    finally:
        model.train(was_training)
