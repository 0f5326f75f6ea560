"""Positional schemes: learned absolute embeddings and rotary (1-D, and 2-D axial for grids).

Rotary embeddings rotate pairs of query/key dimensions by an angle proportional to the position, so
that q.k depends only on the difference of positions. We use the GPT-NeoX pairing (dimension j with
j + n/2), as TransformerLens does. 2-D axial rotary gives the first half of the rotated dimensions the
row and the second half the column. With `period` set, the frequencies are the harmonics
2*pi*k/period, so a shift by the period is a full turn: the scores see a torus.
"""

from __future__ import annotations

import math

import torch
from torch import nn


class LearnedPositions(nn.Module):
    """W_pos[position]: one learned vector per sequence index."""

    def __init__(self, n_ctx: int, d_model: int):
        super().__init__()
        self.W_pos = nn.Parameter(torch.empty(n_ctx, d_model))

    def forward(self, seq_len: int, offset: int = 0) -> torch.Tensor:
        return self.W_pos[offset:offset + seq_len].unsqueeze(0)  # [1, T, d_model]


def rotary_frequencies(n_dims: int, base: float, period: int | None = None) -> torch.Tensor:
    """Angular frequencies for n_dims rotated dimensions (n_dims/2 pairs)."""
    n_pairs = n_dims // 2
    if period:
        return 2 * math.pi * torch.arange(1, n_pairs + 1, dtype=torch.float64) / period
    return base ** (-torch.arange(0, n_pairs, dtype=torch.float64) * 2 / n_dims)


class Rotary(nn.Module):
    """Rotates the first `rotary_dim` dimensions of q or k ([B, T, H, d_head]) by their positions.

    positions: [T] (1-D) or [T, 2] (row, col) for axial 2-D. Per axis, the rotated dimensions are
    [x1 | x2] and pair j is (x1[j], x2[j]); it turns by angle[j] to (x1 c - x2 s, x2 c + x1 s), i.e.
    x * cos + partner(x) * signed_sin with partner(x) = [x2 | x1]: the halves swapped by one copy and a
    multiply-add, for all axes at once.
    """

    def __init__(self, rotary_dim: int, axes: int, base: float, period: int | None = None):
        super().__init__()
        self.rotary_dim, self.axes = rotary_dim, axes
        freqs = rotary_frequencies(rotary_dim // axes, base, period).float()
        self.register_buffer("freqs", freqs, persistent=False)

    def angles(self, positions: torch.Tensor) -> torch.Tensor:
        """[T, rotary_dim/2] rotation angles: for 2-D, the row's pairs then the column's."""
        positions = positions.to(self.freqs.device, torch.float32)
        if self.axes == 1:
            return positions[:, None] * self.freqs
        return torch.cat([positions[:, a, None] * self.freqs for a in range(self.axes)], dim=-1)

    def tables(self, positions: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """(cos, signed sin), each [T, 1, rotary_dim], laid out like the rotated dimensions (what forward takes)."""
        T, A = positions.shape[0], self.axes
        angles = self.angles(positions).view(T, A, 1, -1)  # per axis: that axis's pairs
        cos = angles.cos().expand(T, A, 2, angles.shape[-1])
        sin = torch.cat([-angles.sin(), angles.sin()], dim=2)
        return cos.reshape(T, 1, -1), sin.reshape(T, 1, -1)

    def forward(self, x: torch.Tensor, cos: torch.Tensor, sin: torch.Tensor) -> torch.Tensor:
        """x [B, T, H, d_head]; cos, sin from `tables` ([T, 1, rotary_dim])."""
        n = self.rotary_dim
        rot = x[..., :n]
        out = torch.addcmul(rot * cos.to(x.dtype), self._partner(rot), sin.to(x.dtype))
        return out if n == x.shape[-1] else torch.cat([out, x[..., n:]], dim=-1)

    def _partner(self, rot: torch.Tensor) -> torch.Tensor:
        """[x2 | x1] per axis. A concatenation of slices: as fast as a permutation matmul in fp32 and,
        where bf16 has no matmul hardware, 20x faster than one."""
        pairs = rot.unflatten(-1, (self.axes, 2, -1))
        return torch.cat([pairs[..., 1:, :], pairs[..., :1, :]], dim=-2).flatten(-3)
