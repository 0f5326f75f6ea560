"""Each option of ModelConfig does what it says, survives a save/load round trip, and bad configs fail clearly."""

import pytest
import torch
import torch.nn.functional as F

from interfere.errors import CheckpointError, ConfigError
from interfere.model import ModelConfig, build_config, load_model, save_model
from model_helpers import grid_layout, tiny

OPTIONS = [
    dict(normalization_type="RMS"),
    dict(act_fn="relu"),
    dict(act_fn="swiglu"),
    dict(tie_embeddings=True),
    dict(dropout=0.1),
    dict(use_bias=False),
    dict(attn_only=True),
    dict(n_cond=5),
    dict(positional_embedding_type="rope", rotary_dim=4),
    dict(positional_embedding_type="none"),
]


@pytest.mark.parametrize("option", OPTIONS, ids=lambda o: "-".join(f"{k}={v}" for k, v in o.items()))
def test_config_and_weights_round_trip(option, tmp_path):
    model = tiny(**option)
    assert ModelConfig.from_json(model.cfg.to_json()) == model.cfg
    with torch.no_grad():  # make every parameter non-trivial so a lost tensor would show
        for p in model.parameters():
            p.add_(torch.randn_like(p) * 0.01)
    save_model(model, tmp_path)
    loaded = load_model(tmp_path).eval()
    tokens = torch.randint(0, 20, (2, 12))
    kwargs = {"cond": torch.randn(2, 5)} if option.get("n_cond") else {}
    assert torch.equal(model(tokens, **kwargs), loaded(tokens, **kwargs))
    if option.get("tie_embeddings"):
        assert loaded.unembed.weight is loaded.embed.weight


def test_layout_survives_save_and_load(tmp_path):
    model = tiny(n_ctx=21, n_segments=3, positional_embedding_type="rope2d", rotary_dim=8).set_layout(grid_layout(3))
    save_model(model, tmp_path)
    loaded = load_model(tmp_path)
    assert torch.equal(loaded.layout_attn_mask, model.layout_attn_mask)
    assert torch.equal(loaded.layout_positions, model.layout_positions)
    tokens = torch.randint(0, 20, (1, 21))
    assert torch.equal(model(tokens), loaded.eval()(tokens))


def test_truncated_weights_give_a_checkpoint_error(tmp_path):
    save_model(tiny(), tmp_path)
    weights = tmp_path / "model.safetensors"
    weights.write_bytes(weights.read_bytes()[:100])
    with pytest.raises(CheckpointError, match="model.safetensors"):
        load_model(tmp_path)


def test_rms_norm_matches_its_formula():
    model = tiny(normalization_type="RMS")
    x = torch.randn(2, 5, 32)
    norm = model.blocks[0].ln1
    with torch.no_grad():
        norm.w.uniform_(0.5, 1.5)
    expected = x / (x.pow(2).mean(-1, keepdim=True) + norm.eps).sqrt() * norm.w
    assert torch.allclose(norm(x), expected, atol=1e-5)
    assert norm.b is None


def test_layer_norm_explicit_path_matches_fused_and_exposes_its_scale():
    model = tiny()
    tokens = torch.randint(0, 20, (2, 7))
    _, cache = model.run_with_cache(tokens)
    resid = cache["blocks.0.hook_resid_pre"]
    assert torch.allclose(cache["blocks.0.ln1.hook_scale"], (resid.var(-1, unbiased=False, keepdim=True) + 1e-5).sqrt(), atol=1e-5)
    assert torch.allclose(model.blocks[0].ln1(resid), F.layer_norm(resid, (32,), model.blocks[0].ln1.w, model.blocks[0].ln1.b), atol=1e-5)


def test_swiglu_is_silu_gate_times_linear():
    model = tiny(act_fn="swiglu")
    _, cache = model.run_with_cache(torch.randint(0, 20, (1, 6)))
    gate, linear = cache["blocks.0.mlp.hook_pre"], cache["blocks.0.mlp.hook_pre_linear"]
    assert torch.allclose(cache["blocks.0.mlp.hook_post"], F.silu(gate) * linear, atol=1e-6)
    assert model.blocks[0].mlp.W_gate.shape == (32, 64)


def test_attn_only_model_has_no_mlp():
    model = tiny(attn_only=True)
    _, cache = model.run_with_cache(torch.randint(0, 20, (1, 6)))
    assert not any("mlp" in name for name in cache.keys())
    assert torch.allclose(cache["blocks.0.hook_resid_post"],
                          cache["blocks.0.hook_resid_pre"] + cache["blocks.0.hook_attn_out"], atol=1e-6)


def test_no_bias_option_removes_every_bias():
    names = [n for n, _ in tiny(use_bias=False).named_parameters()]
    assert not any(n.endswith(("bias", ".b")) for n in names)


def test_dropout_is_random_in_training_and_off_in_eval():
    model = tiny(dropout=0.5)
    tokens = torch.randint(0, 20, (1, 8))
    model.train()
    assert not torch.equal(model(tokens), model(tokens))
    model.eval()
    assert torch.equal(model(tokens), model(tokens))


def test_film_starts_as_identity_and_then_conditions():
    model = tiny(n_cond=3)
    plain = tiny()
    tokens = torch.randint(0, 20, (2, 8))
    a = model(tokens, cond=torch.zeros(2, 3))
    assert torch.allclose(a, model(tokens, cond=torch.randn(2, 3)))  # zero-initialised projection
    with torch.no_grad():
        model.blocks[0].film1.proj.weight.normal_()
    cond = torch.tensor([[1.0, 0, 0], [0, 1.0, 0]])
    out = model(tokens, cond=cond)
    assert not torch.allclose(out[0], model(tokens[:1], cond=cond[1:])[0])  # same tokens, other condition
    with pytest.raises(ValueError, match="cond"):
        model(tokens)
    assert torch.equal(plain(tokens), plain(tokens, cond=cond))  # ignored without FiLM


def test_segment_embedding_distinguishes_segments():
    layout = grid_layout(2)
    model = tiny(n_ctx=11, n_segments=3).set_layout(layout)
    _, cache = model.run_with_cache(torch.randint(0, 20, (1, 11)))
    assert torch.equal(cache["hook_segment_embed"][0], model.segment_embed.W_seg[layout.segment_ids])


def test_tied_embeddings_share_one_tensor():
    model = tiny(tie_embeddings=True)
    assert model.unembed.weight is model.embed.weight
    assert sum(p.numel() for p in model.parameters()) < sum(p.numel() for p in tiny().parameters())


def test_activation_checkpointing_gives_the_same_gradients():
    tokens = torch.randint(0, 20, (2, 10))
    grads = []
    for on in (False, True):
        model = tiny().train()
        model.set_activation_checkpointing(on)
        model(tokens, return_type="loss").backward()
        grads.append(torch.cat([p.grad.flatten() for p in model.parameters()]))
    assert torch.allclose(grads[0], grads[1], atol=1e-6)


def test_loss_is_next_token_cross_entropy():
    model = tiny()
    tokens = torch.randint(0, 20, (2, 9))
    logits = model(tokens)
    expected = F.cross_entropy(logits[:, :-1].reshape(-1, 20), tokens[:, 1:].reshape(-1))
    assert torch.allclose(model(tokens, return_type="loss"), expected, atol=1e-6)


@pytest.mark.parametrize("bad, key", [
    (dict(d_model=130, n_heads=4), "d_model"),
    (dict(n_ctx=10), "n_ctx"),
    (dict(positional_embedding_type="alibi"), "positional_embedding_type"),
    (dict(positional_embedding_type="rope2d", rotary_dim=6), "rotary_dim"),
    (dict(act_fn="tanh"), "act_fn"),
    (dict(colour="red"), "colour"),
])
def test_impossible_configs_name_the_key(bad, key):
    cfg = dict(d_model=64, n_layers=1, n_heads=4, d_head=None, n_ctx=None, d_vocab=None)
    cfg.update(bad)
    with pytest.raises(ConfigError, match=key):
        build_config(cfg, vocab_size=20, seq_len=16)


def test_sequences_longer_than_the_context_are_refused():
    with pytest.raises(ValueError, match="n_ctx"):
        tiny()(torch.zeros(1, 25, dtype=torch.long))
