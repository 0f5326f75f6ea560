"""Layout: the per-position data a task fixes for every sequence, which the model stores as buffers.

The model consumes it (positions for the positional scheme, segment ids, the attention mask), so it lives
here; a task builds one (`Task.layout()`), and a saved model rebuilds it from its buffers.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch


@dataclass
class Layout:
    """positions:   [T] (1-D) or [T, 2] (row, col) integer coordinates for the positional scheme.
    segment_ids: [T] integer segment of each position (for segment embeddings).
    attn_mask:   [T, T] bool, True where query i may attend to key j; None means causal.
    torus:       the side of each position axis when positions wrap around (a Game of Life board is a
                 torus), else None. A rope2d model's period follows it (see model.config.build_config).
    """

    positions: torch.Tensor | None = None
    segment_ids: torch.Tensor | None = None
    attn_mask: torch.Tensor | None = None
    torus: tuple[int, ...] | None = None
