"""Rotary embeddings against an independent complex-number formula, and their relativity."""

import math

import pytest
import torch

from interfere.model.positions import Rotary
from model_helpers import grid_layout, tiny


def reference_rotary(x, positions, rotary_dim, base=10000.0, period=None):
    """Each axis owns rotary_dim/axes dims; within them dim j pairs with j+half as the complex number
    x_j + i x_{j+half}, multiplied by exp(i * position * w_j)."""
    axes = 1 if positions.dim() == 1 else positions.shape[1]
    per_axis = rotary_dim // axes
    half = per_axis // 2
    out = x.clone()
    for a in range(axes):
        pos = positions.float() if axes == 1 else positions[:, a].float()
        for j in range(half):
            w = 2 * math.pi * (j + 1) / period if period else base ** (-2 * j / per_axis)
            lo, hi = a * per_axis + j, a * per_axis + j + half
            z = torch.complex(x[..., lo], x[..., hi]) * torch.polar(torch.ones_like(pos), pos * w)[:, None]
            out[..., lo], out[..., hi] = z.real, z.imag
    return out


def _rotate(rotary, x, positions):
    return rotary(x, *rotary.tables(positions))


@pytest.mark.parametrize("period", [None, 5])
def test_rope2d_matches_the_reference_formula(period):
    rotary = Rotary(rotary_dim=8, axes=2, base=100.0, period=period)
    positions = torch.randint(0, 7, (11, 2))
    x = torch.randn(2, 11, 3, 12)  # [B, T, H, d_head]; the last 4 dims are not rotated
    expected = reference_rotary(x, positions, 8, base=100.0, period=period)
    assert torch.allclose(_rotate(rotary, x, positions), expected, atol=1e-5)
    assert torch.equal(_rotate(rotary, x, positions)[..., 8:], x[..., 8:])


def test_rope1d_matches_the_reference_formula():
    rotary = Rotary(rotary_dim=6, axes=1, base=10000.0)
    positions = torch.arange(9)
    x = torch.randn(1, 9, 2, 6)
    assert torch.allclose(_rotate(rotary, x, positions), reference_rotary(x, positions, 6), atol=1e-5)


def _scores(rotary, q, k, pq, pk):
    return (_rotate(rotary, q, pq) * _rotate(rotary, k, pk)).sum(-1)


@pytest.mark.parametrize("axes", [1, 2])
def test_rope_scores_depend_only_on_relative_position(axes):
    rotary = Rotary(rotary_dim=8, axes=axes, base=10000.0)
    q, k = torch.randn(1, 6, 2, 8), torch.randn(1, 6, 2, 8)
    shape = (6,) if axes == 1 else (6, 2)
    pq, pk = torch.randint(0, 10, shape), torch.randint(0, 10, shape)
    shift = torch.randint(1, 50, shape[1:] or (1,)).squeeze() if axes == 1 else torch.tensor([13, 29])
    before = _scores(rotary, q, k, pq, pk)
    after = _scores(rotary, q, k, pq + shift, pk + shift)
    assert torch.allclose(before, after, atol=1e-4)
    assert not torch.allclose(before, _scores(rotary, q, k, pq, pk + 1), atol=1e-3)


def test_rope2d_with_a_period_sees_a_torus():
    rotary = Rotary(rotary_dim=8, axes=2, base=10000.0, period=16)
    q, k = torch.randn(1, 5, 2, 8), torch.randn(1, 5, 2, 8)
    pq, pk = torch.randint(0, 16, (5, 2)), torch.randint(0, 16, (5, 2))
    wrapped = pk + torch.tensor([16, -16])  # a key one full turn away on both axes
    assert torch.allclose(_scores(rotary, q, k, pq, pk), _scores(rotary, q, k, pq, wrapped), atol=1e-4)


def test_rotation_is_visible_at_hook_rot_q_and_hook_rot_k():
    model = tiny(n_ctx=3 + 2 * 9, n_segments=3, positional_embedding_type="rope2d", rotary_dim=4)
    layout = grid_layout(3)
    model.set_layout(layout)
    _, cache = model.run_with_cache(torch.randint(0, 20, (2, 21)))
    for name in ("q", "k"):
        raw, rotated = cache[f"blocks.0.attn.hook_{name}"], cache[f"blocks.0.attn.hook_rot_{name}"]
        expected = reference_rotary(raw, layout.positions, rotary_dim=4)
        assert torch.allclose(rotated, expected, atol=1e-5)
        assert not torch.allclose(rotated, raw)


def test_learned_positions_are_absolute_and_hooked():
    model = tiny()
    _, cache = model.run_with_cache(torch.randint(0, 20, (1, 6)))
    assert torch.equal(cache["hook_pos_embed"][0], model.W_pos[:6])
