"""The fused attention path and the explicit (hookable) path compute the same function."""

from unittest import mock

import pytest
import torch
import torch.nn.functional as F

from model_helpers import grid_layout, tiny

SCHEMES = {
    "learned": dict(positional_embedding_type="learned"),
    "rope": dict(positional_embedding_type="rope", rotary_dim=4),
    "rope2d": dict(positional_embedding_type="rope2d", rotary_dim=8, rope_period=4),
    "none": dict(positional_embedding_type="none"),
}


def _logits_both_ways(model, tokens):
    """(fused logits, explicit logits, number of fused calls in the first run)."""
    with mock.patch("interfere.model.transformer.F.scaled_dot_product_attention",
                    wraps=F.scaled_dot_product_attention) as sdpa:
        fused = model(tokens)
    identity = [(lambda name: name.endswith("hook_pattern"), lambda x, hook: x)]
    with mock.patch("interfere.model.transformer.F.scaled_dot_product_attention") as never:
        explicit = model.run_with_hooks(tokens, fwd_hooks=identity)
        assert never.call_count == 0  # a pattern hook forces the explicit path
    return fused, explicit, sdpa.call_count


@pytest.mark.parametrize("scheme", SCHEMES)
@pytest.mark.parametrize("mask", ["causal", "block"])
def test_fused_and_explicit_attention_agree(scheme, mask):
    if scheme == "rope2d" and mask == "causal":
        layout = grid_layout(4)
        layout.attn_mask = None  # grid positions, causal mask
    elif mask == "block":
        layout = grid_layout(4)
    else:
        layout = None
    n_ctx = 3 + 2 * 16
    model = tiny(n_ctx=n_ctx, n_segments=3 if layout is not None else 0, **SCHEMES[scheme])
    if layout is not None:
        model.set_layout(layout)
    tokens = torch.randint(0, 20, (3, n_ctx))
    fused, explicit, fused_calls = _logits_both_ways(model, tokens)
    assert fused_calls == model.cfg.n_layers
    assert (fused - explicit).abs().max() <= 1e-5


def test_block_mask_is_respected_by_both_paths():
    """A query cell's logits depend only on the prefix and the board, never on other query inputs."""
    layout = grid_layout(3)
    model = tiny(n_ctx=3 + 18, n_segments=3, positional_embedding_type="rope2d", rotary_dim=8).set_layout(layout)
    tokens = torch.randint(0, 20, (1, 21))
    changed = tokens.clone()
    changed[0, 12:] = (changed[0, 12:] + 7) % 20  # every query-slot input
    for run in (model, lambda t: model.run_with_hooks(t, fwd_hooks=[("blocks.0.attn.hook_pattern", lambda x, hook: x)])):
        a, b = run(tokens), run(changed)
        # query positions' own inputs reach them through the residual stream, so compare board cells
        assert torch.allclose(a[0, 3:12], b[0, 3:12], atol=1e-6)


def test_editing_attention_scores_still_works_with_a_block_mask():
    layout = grid_layout(3)
    model = tiny(n_ctx=21, n_segments=3).set_layout(layout)
    tokens = torch.randint(0, 20, (1, 21))

    def only_first_key(scores, hook):
        out = torch.full_like(scores, float("-inf"))
        out[..., 0] = 0.0
        return out

    _, cache = model.run_with_cache(tokens)
    with model.hooks(fwd_hooks=[("blocks.0.attn.hook_attn_scores", only_first_key)]):
        _, edited = model.run_with_cache(tokens)
    pattern = edited["blocks.0.attn.hook_pattern"]
    assert torch.allclose(pattern[..., 0], torch.ones_like(pattern[..., 0]))
    assert not torch.allclose(cache["blocks.0.attn.hook_pattern"], pattern)
    # masked-out keys get exactly zero weight in the unedited run
    assert (cache["blocks.0.attn.hook_pattern"][..., ~layout.attn_mask] == 0).all()


@pytest.mark.parametrize("scheme", ["learned", "rope"])
def test_kv_cache_gives_the_same_logits_as_a_full_forward(scheme):
    from interfere.model import KVCache

    model = tiny(**SCHEMES[scheme])
    tokens = torch.randint(0, 20, (2, 15))
    full = model(tokens)
    cache = KVCache()
    pieces = [model(tokens[:, :9], kv_cache=cache)]  # a prompt, then one token at a time
    pieces += [model(tokens[:, t:t + 1], kv_cache=cache) for t in range(9, 12)]
    pieces += [model(tokens[:, 12:], kv_cache=cache)]  # and a chunk of several new tokens
    assert cache.length == 15
    assert torch.allclose(torch.cat(pieces, dim=1), full, atol=1e-5)
    # hooks still fire on the cached path, for the new positions
    _, step_cache = model.run_with_cache(tokens[:, :1], kv_cache=KVCache())
    assert step_cache["pattern", 0].shape == (2, 4, 1, 1)


def test_kv_cache_follows_a_block_mask_layout():
    from interfere.model import KVCache

    model = tiny(n_ctx=21, n_segments=3, positional_embedding_type="rope2d", rotary_dim=8).set_layout(grid_layout(3))
    tokens = torch.randint(0, 20, (1, 21))
    cache = KVCache()
    stepwise = torch.cat([model(tokens[:, :12], kv_cache=cache), model(tokens[:, 12:], kv_cache=cache)], dim=1)
    assert torch.allclose(stepwise, model(tokens), atol=1e-5)


@pytest.mark.parametrize("horizons", [1, 2])
def test_fused_and_explicit_agree_with_the_life_task_layout(horizons):
    from interfere.tasks.life.task import LifeTask

    task = LifeTask(board=[4, 4], horizons=horizons)
    model = tiny(n_ctx=task.seq_len, d_vocab=task.vocab_size, n_segments=4,
                 positional_embedding_type="rope2d", rotary_dim=8, rope_period=4).set_layout(task.layout())
    batch = task.train_batch(0, 3)
    fused, explicit, fused_calls = _logits_both_ways(model, batch.inputs)
    assert fused_calls == model.cfg.n_layers
    assert (fused - explicit).abs().max() <= 1e-5


def test_keys_seen_matches_a_direct_count():
    from interfere.model.transformer import keys_seen

    mask = torch.rand(9, 9) < 0.3
    mask[:, 0] = True
    direct = [max(j for j in range(9) if mask[i, j]) + 1 for i in range(9)]
    assert keys_seen(mask) == direct


def test_keys_no_query_sees_are_left_out_of_fused_attention():
    from interfere.tasks.life.task import LifeTask

    task = LifeTask(board=[4, 4], horizons=1)
    model = tiny(n_ctx=task.seq_len, d_vocab=task.vocab_size, n_segments=4,
                 positional_embedding_type="rope2d", rotary_dim=8, rope_period=4).set_layout(task.layout())
    visible = int(task.layout().attn_mask.any(0).nonzero().max()) + 1
    assert visible < task.seq_len  # the one-step targets see board t, not each other
    tokens = task.train_batch(0, 2).inputs
    with mock.patch("interfere.model.transformer.F.scaled_dot_product_attention",
                    wraps=F.scaled_dot_product_attention) as sdpa:
        fused = model(tokens)
    assert {call.args[1].shape[2] for call in sdpa.call_args_list} == {visible}
    # the explicit path still shows every key (zero attention on the unseen ones), as TransformerLens does
    _, cache = model.run_with_cache(tokens, names_filter=lambda n: n.endswith("hook_pattern"))
    pattern = cache["blocks.0.attn.hook_pattern"]
    assert pattern.shape[-1] == task.seq_len and pattern[..., visible:].abs().max() == 0
    assert torch.allclose(fused, model(tokens, attn_mask=task.layout().attn_mask), atol=1e-5)
