"""Life models whose answers are known: one attention layer with weights set by hand on the task's own layout.

With 2-D rotary positions of period `side` (every harmonic up to Nyquist), a head whose query reads a fixed
direction and whose key reads "is a board cell" scores a key by F(dr) + F(dc), any even function F of the
toroidal offset (the harmonics span them all; the constant term, which they miss, is zero for side 6 below).

- head 0, "stencil": F = +beta on |d| <= 1, -beta elsewhere: the 3x3 neighbourhood scores 2 beta, the rule
  tokens 0, so the head attends to the neighbourhood (mass ~ 1 - 1e-9); its value reads "dead" (+1) or
  "alive" (-1) and writes it along o1: o1 * (9 - 2 (count + state)) / 9.
- head 1, "self": F = +beta at d = 0 only: attends to the query cell's own board cell and writes its state
  along o2.
So the residual stream at a query cell holds count and state linearly (count = -4.5 o1 - o2 / 2 + const).
`uniform=True` zeroes the query weights: every score is 0 and both heads attend uniformly over their keys.
Rule tokens (and the FiLM input, absent here) change nothing: these models ignore the rule.
"""

from __future__ import annotations

import math

import torch

from interfere.model import HookedGPT, ModelConfig
from interfere.tasks.life import LifeTask
from interfere.tasks.life.tokens import ALIVE, DEAD, MASK, RULE_BASE, SEP

SIDE = 6
BETA = 12.0


def life_task(rules="B3/S23", side: int = SIDE) -> LifeTask:
    return LifeTask(board=[side, side], rules=rules, density=[0.2, 0.6], device="cpu")


def _even_coefficients(values: torch.Tensor) -> torch.Tensor:
    """c_1..c_{P/2} with sum_j c_j cos(2 pi j d / P) = values[d] - mean(values) for d = 0..P-1."""
    P = len(values)
    d = torch.arange(P, dtype=torch.float64)
    basis = torch.stack([torch.cos(2 * math.pi * j * d / P) for j in range(1, P // 2 + 1)], dim=1)
    return torch.linalg.lstsq(basis, (values - values.mean())[:, None]).solution[:, 0]


def _offset_values(side: int, near: int, beta: float) -> torch.Tensor:
    d = torch.arange(side)
    dist = torch.minimum(d, side - d)
    return torch.where(dist <= near, beta, -beta).double()


def planted(task: LifeTask, uniform: bool = False, beta: float = BETA) -> HookedGPT:
    side = task.height
    assert task.width == side and side % 2 == 0
    pairs = side // 2  # harmonics per axis
    d_head = 4 * pairs  # all rotated: [row x1 | row x2 | col x1 | col x2], each `pairs` wide
    d = 32
    cfg = ModelConfig(d_model=d, n_layers=1, n_heads=2, d_head=d_head, d_mlp=4, n_ctx=task.seq_len, d_vocab=40,
                      attn_only=True, positional_embedding_type="rope2d", rope_period=side)
    torch.manual_seed(0)
    model = HookedGPT(cfg).eval()
    g = torch.Generator().manual_seed(1)
    basis = torch.linalg.qr(torch.randn(d, d, generator=g, dtype=torch.float64))[0]
    centred = basis - basis.mean(0, keepdim=True)  # LayerNorm removes the mean: work in that subspace
    w, a, m, r, sep, o1, o2 = torch.linalg.qr(centred[:, :8])[0][:, :7].T.float()  # unit, zero-mean, orthogonal
    s = d ** 0.5  # an embedding of norm sqrt(d) and mean 0 passes LayerNorm unchanged
    W_Q = torch.zeros(2, d_head, d)
    W_K = torch.zeros(2, d_head, d)
    W_V = torch.zeros(2, d_head, d)
    W_O = torch.zeros(2, d_head, d)
    for head, near in ((0, 1), (1, 0)):
        c = _even_coefficients(_offset_values(side, near, beta)).float()
        for axis in range(2):
            x1 = slice(axis * 2 * pairs, axis * 2 * pairs + pairs)  # the first of each rotated pair
            W_Q[head, x1] = 0 if uniform else c[:, None] * m[None] * d_head ** 0.5 / s
            W_K[head, x1] = math.sqrt(2) * w[None] / s  # a board cell's key: 1 in every pair
        W_V[head, 0] = math.sqrt(2) * a / s  # +1 for DEAD, -1 for ALIVE
        W_O[head, 0] = o1 if head == 0 else o2
    with torch.no_grad():
        emb = model.embed.weight
        emb.zero_()
        emb[DEAD] = s * (w + a) / math.sqrt(2)
        emb[ALIVE] = s * (w - a) / math.sqrt(2)
        emb[MASK] = s * m
        emb[SEP] = s * sep
        emb[RULE_BASE:] = s * r
        attn = model.blocks[0].attn
        attn.qkv.weight.copy_(torch.cat([W.reshape(-1, d) for W in (W_Q, W_K, W_V)]))
        attn.qkv.bias.zero_()
        attn.out.weight.copy_(W_O.reshape(-1, d).T)
        attn.out.bias.zero_()
    return model.set_layout(task.layout())
