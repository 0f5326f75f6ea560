"""Small models and layouts shared by the model tests."""

import torch

from interfere.model import HookedGPT, ModelConfig
from interfere.tasks.base import Layout


def tiny(**overrides) -> HookedGPT:
    kwargs = dict(d_model=32, n_layers=2, n_heads=4, d_head=8, d_mlp=64, n_ctx=24, d_vocab=20)
    kwargs.update(overrides)
    torch.manual_seed(0)
    return HookedGPT(ModelConfig(**kwargs)).eval()


def grid_layout(side: int, n_prefix: int = 3) -> Layout:
    """A Life-like layout: a prefix, then a board, then a query slot that may see only prefix + board."""
    cells = side * side
    n = n_prefix + 2 * cells
    rows = torch.arange(cells) // side
    cols = torch.arange(cells) % side
    grid = torch.stack([rows, cols], dim=1)
    positions = torch.cat([torch.zeros(n_prefix, 2, dtype=torch.long), grid, grid])
    segments = torch.tensor([0] * n_prefix + [1] * cells + [2] * cells)
    prefix, board, query = slice(0, n_prefix), slice(n_prefix, n_prefix + cells), slice(n_prefix + cells, n)
    mask = torch.zeros(n, n, dtype=torch.bool)
    mask[:, prefix] = True
    mask[board, board] = True
    mask[query, board] = True
    return Layout(positions=positions, segment_ids=segments, attn_mask=mask)
