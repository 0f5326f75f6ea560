"""The reference every benchmark measures HookedGPT against: a plain GPT in the style of nanoGPT's model.py.

No hooks, no options: token + learned position embedding, pre-LN blocks (one fused qkv projection,
`scaled_dot_product_attention`, GELU MLP), final LayerNorm, lm_head (tied to the token embedding on
request, as nanoGPT does). GPT-2 initialisation: N(0, 0.02), the residual output projections scaled by
1/sqrt(2 * n_layers), as nanoGPT's `c_proj` weights.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn


class RefBlock(nn.Module):
    """Pre-LN block: x + attn(ln1(x)), then x + mlp(ln2(x))."""

    def __init__(self, d: int, n_heads: int, d_mlp: int):
        super().__init__()
        self.n_heads = n_heads
        self.ln1, self.ln2 = nn.LayerNorm(d), nn.LayerNorm(d)
        self.qkv, self.proj = nn.Linear(d, 3 * d), nn.Linear(d, d)
        self.fc, self.out = nn.Linear(d, d_mlp), nn.Linear(d_mlp, d)

    def forward(self, x: torch.Tensor, mask: torch.Tensor | None) -> torch.Tensor:
        B, T, D = x.shape
        q, k, v = self.qkv(self.ln1(x)).split(D, dim=2)
        q, k, v = (t.view(B, T, self.n_heads, D // self.n_heads).transpose(1, 2) for t in (q, k, v))
        y = F.scaled_dot_product_attention(q, k, v, attn_mask=mask, is_causal=mask is None)
        x = x + self.proj(y.transpose(1, 2).reshape(B, T, D))
        return x + self.out(F.gelu(self.fc(self.ln2(x))))


class RefGPT(nn.Module):
    """`model(idx) -> logits`. mask: None for causal attention, else a [T, T] bool (True = may attend)."""

    def __init__(self, vocab: int, n_ctx: int, d: int, n_layers: int, n_heads: int, d_mlp: int,
                 mask: torch.Tensor | None = None, tie: bool = False):
        super().__init__()
        self.wte, self.wpe = nn.Embedding(vocab, d), nn.Embedding(n_ctx, d)
        self.blocks = nn.ModuleList(RefBlock(d, n_heads, d_mlp) for _ in range(n_layers))
        self.ln_f, self.head = nn.LayerNorm(d), nn.Linear(d, vocab, bias=False)
        if tie:
            self.head.weight = self.wte.weight
        self.register_buffer("mask", mask)
        for name, p in self.named_parameters():
            if p.dim() > 1:
                std = 0.02 / math.sqrt(2 * n_layers) if name.endswith(("proj.weight", "out.weight")) else 0.02
                nn.init.normal_(p, std=std)
            elif name.endswith("bias"):
                nn.init.zeros_(p)

    def forward(self, idx: torch.Tensor) -> torch.Tensor:
        T = idx.shape[1]
        x = self.wte(idx) + self.wpe(torch.arange(T, device=idx.device))
        mask = None if self.mask is None else self.mask[:T, :T]
        for block in self.blocks:
            x = block(x, mask)
        return self.head(self.ln_f(x))
