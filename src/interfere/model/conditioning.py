"""Conditioning: FiLM (feature-wise scale and shift from a conditioning vector) and segment embeddings."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn
from transformer_lens.hook_points import HookPoint


class FiLM(nn.Module):
    """x * (1 + gamma(c)) + beta(c), per sample; starts as the identity (zero-initialised projection).

    Applied to a block's normalised inputs, like adaptive LayerNorm: the residual stream itself stays
    an untouched sum of component outputs, which keeps decompositions of it exact.
    """

    def __init__(self, n_cond: int, d_model: int):
        super().__init__()
        self.proj = nn.Linear(n_cond, 2 * d_model)
        self.hook_gamma = HookPoint()  # [B, d_model]
        self.hook_beta = HookPoint()  # [B, d_model]

    def reset_parameters(self):
        nn.init.zeros_(self.proj.weight)
        nn.init.zeros_(self.proj.bias)

    def forward(self, x: torch.Tensor, cond: torch.Tensor) -> torch.Tensor:
        gamma, beta = self.proj(cond.to(x.dtype)).chunk(2, dim=-1)
        gamma, beta = self.hook_gamma(gamma), self.hook_beta(beta)
        return x * (1 + gamma[:, None, :]) + beta[:, None, :]


class SegmentEmbedding(nn.Module):
    """W_seg[segment id]: which part of a structured sequence a token belongs to (rule, board, query...)."""

    def __init__(self, n_segments: int, d_model: int):
        super().__init__()
        self.W_seg = nn.Parameter(torch.empty(n_segments, d_model))

    def forward(self, segment_ids: torch.Tensor) -> torch.Tensor:
        # F.embedding, not W_seg[ids]: indexing's backward accumulates in a thread-dependent order.
        return F.embedding(segment_ids, self.W_seg)
