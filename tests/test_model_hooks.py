"""HookedGPT speaks TransformerLens: hook names, the model protocol, patching and the head detector."""

import pytest
import torch
from transformer_lens import patching
from transformer_lens import utilities as utils
from transformer_lens.head_detector import detect_head
from transformer_lens.model_protocol import TransformerLensModelWithWeights

from model_helpers import tiny

STANDARD = ["hook_embed", "hook_pos_embed", "ln_final.hook_normalized"] + [
    f"blocks.{l}.{name}" for l in range(2) for name in (
        "hook_resid_pre", "attn.hook_q", "attn.hook_k", "attn.hook_v", "attn.hook_attn_scores",
        "attn.hook_pattern", "attn.hook_z", "hook_attn_out", "mlp.hook_pre", "mlp.hook_post",
        "hook_mlp_out", "hook_resid_post")
]


def test_run_with_cache_has_every_standard_hook():
    model = tiny()
    tokens = torch.randint(0, 20, (2, 10))
    logits, cache = model.run_with_cache(tokens)
    assert set(STANDARD) <= set(cache.keys())
    assert cache["pattern", 0].shape == (2, 4, 10, 10)
    assert cache[utils.get_act_name("z", 1)].shape == (2, 10, 4, 8)
    # The cache is a faithful record: the residual stream adds up to what the unembedding reads.
    resid = cache["blocks.1.hook_resid_post"]
    assert torch.allclose(model.unembed(model.ln_final(resid)), logits, atol=1e-6)
    # Attention patterns are causal probability distributions.
    pattern = cache["pattern", 0]
    assert torch.allclose(pattern.sum(-1), torch.ones(2, 4, 10))
    assert pattern.triu(1).abs().max() == 0


def test_model_satisfies_transformer_lens_protocol():
    assert isinstance(tiny(), TransformerLensModelWithWeights)


def test_activation_cache_helpers_decompose_the_residual_stream():
    model = tiny()
    tokens = torch.randint(0, 20, (1, 8))
    _, cache = model.run_with_cache(tokens)
    parts = cache.decompose_resid(layer=2, return_labels=False)
    total = parts.sum(0) + model.accumulated_bias(2) * 0  # biases are inside attn_out / mlp_out here
    assert torch.allclose(total, cache["blocks.1.hook_resid_post"], atol=1e-5)
    accumulated = cache.accumulated_resid(layer=2)
    assert torch.allclose(accumulated[-1], cache["blocks.1.hook_resid_post"], atol=1e-6)


def test_residual_patching_recovers_exactly_where_the_prompts_differ():
    model = tiny()
    clean = torch.randint(0, 20, (1, 8))
    corrupted = clean.clone()
    corrupted[0, 3] = (clean[0, 3] + 1) % 20
    answer = 5

    def metric(logits):
        return logits[0, -1, answer]

    _, clean_cache = model.run_with_cache(clean)
    clean_value, corrupted_value = metric(model(clean)), metric(model(corrupted))
    result = patching.get_act_patch_resid_pre(model, corrupted, clean_cache, metric)
    assert result.shape == (2, 8)
    # At layer 0 only position 3 differs between the runs: patching it restores the clean run exactly,
    # patching any other position changes nothing.
    assert torch.isclose(result[0, 3], clean_value, atol=1e-5)
    others = torch.cat([result[0, :3], result[0, 4:]])
    assert torch.allclose(others, corrupted_value.expand_as(others), atol=1e-5)
    # Positions before the difference are identical in both runs at every layer.
    assert torch.allclose(result[1, :3], corrupted_value.expand(3), atol=1e-5)


def test_head_patching_runs_and_all_heads_together_restore_the_clean_run():
    model = tiny()
    clean = torch.randint(0, 20, (1, 8))
    corrupted = torch.randint(0, 20, (1, 8))
    _, clean_cache = model.run_with_cache(clean)

    def metric(logits):
        return logits[0, -1].log_softmax(-1)[3]

    per_head = patching.get_act_patch_attn_head_out_all_pos(model, corrupted, clean_cache, metric)
    assert per_head.shape == (2, 4)
    # Patching every head's z in every layer and resid at the MLP inputs is the clean run.
    hooks = [(utils.get_act_name("resid_pre", 0), lambda x, hook: clean_cache[hook.name])]
    assert torch.isclose(metric(model.run_with_hooks(corrupted, fwd_hooks=hooks)), metric(model(clean)), atol=1e-5)


def test_split_qkv_input_and_attn_result_modes_leave_logits_unchanged():
    model = tiny()
    tokens = torch.randint(0, 20, (2, 10))
    reference = model(tokens)
    model.set_use_split_qkv_input(True)
    model.set_use_attn_result(True)
    try:
        _, cache = model.run_with_cache(tokens)
        assert cache["blocks.0.hook_q_input"].shape == (2, 10, 4, 32)
        result = cache["blocks.0.attn.hook_result"]
        assert torch.allclose(result.sum(2) + model.blocks[0].attn.b_O, cache["blocks.0.hook_attn_out"], atol=1e-5)
        assert torch.allclose(model(tokens), reference, atol=1e-5)
    finally:
        model.set_use_split_qkv_input(False)
        model.set_use_attn_result(False)


def _make_previous_token_head(model, layer: int, head: int, sharpness: float = 30.0):
    """Hand-set weights so that `head` attends from t to t-1 (a known pattern for the detector).

    Positions are orthonormal directions (scaled so LayerNorm leaves them as they are); the head's query
    reads position t and its key reads the shift map M p_s = p_{s+1}, so q_t . k_s peaks at s = t-1.
    """
    cfg = model.cfg
    n, d, dh = cfg.n_ctx, cfg.d_model, cfg.d_head
    basis = torch.linalg.qr(torch.randn(d, d))[0]
    centred = basis - basis.mean(0, keepdim=True)  # LayerNorm subtracts the mean: work in that subspace
    p = torch.linalg.qr(centred[:, : n + 1])[0][:, :n]  # [d, n] orthonormal, zero-mean columns
    with torch.no_grad():
        model.embed.weight.zero_()
        model.pos_embed.W_pos.copy_((p * d**0.5).T)
        shift = sum(torch.outer(p[:, s + 1], p[:, s]) for s in range(n - 1))
        W = model.blocks[layer].attn.qkv.weight  # rows: [q heads | k heads | v heads], each d_head rows
        H = cfg.n_heads
        rows_q = slice(head * dh, (head + 1) * dh)
        rows_k = slice(H * dh + head * dh, H * dh + (head + 1) * dh)
        W[rows_q] = 0
        W[rows_k] = 0
        # project onto the first d_head position directions (positions beyond them don't matter for n<=dh)
        W[rows_q, :] = sharpness * p[:, :dh].T / d**0.5
        W[rows_k, :] = (shift.T @ p[:, :dh]).T / d**0.5
        model.blocks[layer].attn.qkv.bias.zero_()


def test_head_detector_finds_a_hand_built_previous_token_head():
    model = tiny(n_ctx=8, d_head=8, d_model=32)
    _make_previous_token_head(model, layer=0, head=2)
    tokens = torch.randint(0, 20, (1, 7))  # the detector wants fewer tokens than n_ctx
    scores = detect_head(model, tokens, "previous_token_head")
    assert scores.shape == (2, 4)
    # A perfect previous-token head scores 6/7 here: position 0 has no previous token.
    assert scores[0, 2] > 0.85
    others = scores.clone()
    others[0, 2] = -1
    assert others.max() < 0.6


def test_every_hook_shared_with_transformer_lens_native_has_its_shape_at_batch_3():
    """TransformerLens' own model of the same config is the reference; then its cache helpers run on ours."""
    from transformer_lens import TransformerBridge

    shape = dict(d_model=32, n_layers=2, n_heads=4, d_head=8, d_mlp=64, n_ctx=12, d_vocab=20, act_fn="gelu",
                 normalization_type="LN")
    model = tiny(**shape)
    native = TransformerBridge.boot_native(dict(shape, positional_embedding_type="standard"), device="cpu")
    tokens = torch.randint(0, 20, (3, 10))
    logits, cache = model.run_with_cache(tokens)
    _, reference = native.run_with_cache(tokens)
    shared = sorted(set(cache.keys()) & set(reference.keys()))
    assert len(shared) >= 38 and "hook_pos_embed" in shared
    assert {k: tuple(cache[k].shape) for k in shared} == {k: tuple(reference[k].shape) for k in shared}

    parts, labels = cache.decompose_resid(layer=2, return_labels=True)  # [components, 3, 10, d]
    assert labels[:2] == ["embed", "pos_embed"] and parts.shape == (6, 3, 10, 32)
    assert torch.allclose(parts.sum(0), cache["blocks.1.hook_resid_post"], atol=1e-5)
    heads = cache.stack_head_results(layer=1, pos_slice=-1)  # layer 0's heads at the last position
    assert heads.shape == (4, 3, 32)
    assert torch.allclose(heads.sum(0) + model.blocks[0].attn.b_O, cache["blocks.0.hook_attn_out"][:, -1], atol=1e-5)
    # Direct logit attributions of every component add up to the model's logit difference (ln_final's
    # weight is 1 and its bias 0 at initialisation, so the folded and unfolded views agree).
    answer, wrong = torch.tensor([1, 2, 3]), torch.tensor([4, 5, 6])
    attrs = cache.logit_attrs(parts[:, :, -1], tokens=answer, incorrect_tokens=wrong, pos_slice=-1)
    rows = torch.arange(3)
    assert attrs.shape == (6, 3)
    assert torch.allclose(attrs.sum(0), logits[rows, -1, answer] - logits[rows, -1, wrong], atol=1e-4)


def test_weight_views_for_transformer_lens_tools():
    """QK / OV are the per-head bilinear forms (W_Q W_K^T, W_V W_O) TransformerLens' circuit tools read;
    tokens_to_residual_directions is the unembedding column logit_attrs projects onto."""
    model = tiny()
    l, h = 1, 2
    attn = model.blocks[l].attn
    assert torch.allclose(model.QK.AB[l, h], attn.W_Q[h] @ attn.W_K[h].T, atol=1e-6)
    assert torch.allclose(model.OV.AB[l, h], attn.W_V[h] @ attn.W_O[h], atol=1e-6)
    assert torch.equal(model.tokens_to_residual_directions(7), model.unembed.weight[7])
    tokens = torch.randint(0, 20, (1, 6))
    _, cache = model.run_with_cache(tokens)
    attrs = cache.logit_attrs(cache.accumulated_resid(layer=2, pos_slice=-1), tokens=tokens[0, -1])
    assert attrs.shape[0] == 3 and torch.isfinite(attrs).all()
    model.set_use_attn_in(False)  # TransformerLens' patching calls it; per-head attn_in it refuses
    with pytest.raises(NotImplementedError):
        model.set_use_attn_in(True)
