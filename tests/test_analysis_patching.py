"""Activation patching (interfere.analysis.patching) on a model where the answer's path is known.

The toy: a 2-layer HookedGPT with random weights in which every attention head's output matrix W_O is
zero except head L1H1's, every MLP's output matrix is zero (its bias, a constant, stays), and L1H1's
query weights are zero, so it averages the values of all positions so far. Clean and
corrupted prompts differ only at position 2, and the answer is read at the last position. The only way
information moves between positions is attention, and only L1H1 writes anything, so L1H1 must carry
the whole difference: patching its z gives recovery 1, every other head and MLP 0; in the residual
stream, position 2 before either layer gives 1 and every other position 0.
"""

import pytest
import torch

from model_helpers import tiny
from toy_task import one_thread  # noqa: F401 (autouse fixture)

from interfere.analysis.patching import activation_patching, category


def known_path_model():
    model = tiny(init_range=0.3)
    with torch.no_grad():
        H, dh = model.cfg.n_heads, model.cfg.d_head
        model.blocks[1].attn.qkv.weight[dh:2 * dh] = 0  # L1H1's W_Q (rows: q of heads 0..H-1, then k, v)
        model.blocks[1].attn.qkv.bias[dh:2 * dh] = 0
        for layer, block in enumerate(model.blocks):
            w = block.attn.out.weight.view(model.cfg.d_model, H, dh)
            for h in range(H):
                if (layer, h) != (1, 1):
                    w[:, h] = 0
            block.mlp.fc_out.weight.zero_()
    return model


def test_full_recovery_at_the_carrying_head_and_none_elsewhere():
    model = known_path_model()
    torch.manual_seed(0)
    clean = torch.randint(0, 20, (1, 8))
    corrupted = clean.clone()
    corrupted[0, 2] = (clean[0, 2] + 7) % 20
    logits = model(clean)[0, -1]
    answer, wrong = int(logits.argmax()), int(logits.argmin())
    r = activation_patching(model, clean, corrupted, answer, wrong)
    assert abs(r.clean - r.corrupted) > 0.05  # the prompts' answers do differ

    heads = r.recovery["heads"]
    assert heads[1, 1] == pytest.approx(1.0, abs=1e-4)
    others = heads.clone()
    others[1, 1] = 0
    assert others.abs().max() < 1e-4

    assert r.recovery["mlp"].abs().max() < 1e-4
    resid = r.recovery["resid"].clone()
    assert resid[:, 2] == pytest.approx(torch.ones(2), abs=1e-4)
    resid[:, 2] = 0
    assert resid.abs().max() < 1e-4

    top = r.ranked(3)
    assert {t["component"] for t in top} == {"L1H1", "resid L0 pos2", "resid L1 pos2"}
    assert all(t["category"] == "critical" for t in top)
    assert r.ranked()[3]["category"] == "minimal"
    out = r.to_json()
    assert out["counts"] == {"critical": 3, "important": 0, "moderate": 0}


def test_log_prob_metric_attention_outputs_and_errors():
    model = known_path_model()
    clean = torch.randint(0, 20, (1, 6))
    corrupted = clean.clone()
    corrupted[0, 1] = (clean[0, 1] + 3) % 20
    answer = int(model(clean)[0, -1].argmax())
    r = activation_patching(model, clean, corrupted, answer, components=("attn",))
    assert r.metric_name.startswith("log_prob")
    assert r.recovery["attn"][1, -1] == pytest.approx(1.0, abs=1e-4)  # L1's attention output at the last position
    assert r.recovery["attn"][0].abs().max() < 1e-4
    with pytest.raises(ValueError, match="same number of tokens"):
        activation_patching(model, clean, clean[:, :5], answer)
    with pytest.raises(ValueError, match="nothing to recover"):
        activation_patching(model, clean, clean, answer)


def test_categories():
    assert [category(x) for x in (0.9, 0.71, 0.5, 0.3, 0.2, -1.0)] == \
        ["critical", "critical", "important", "moderate", "minimal", "minimal"]


@pytest.mark.parametrize("options", [{}, {"normalization_type": "RMS", "positional_embedding_type": "rope"}])
def test_batched_engine_equals_transformer_lens_patching(options):
    model = tiny(**options)
    clean = torch.randint(0, 20, (1, 7))
    corrupted = clean.clone()
    corrupted[0, 1:3] = (clean[0, 1:3] + 5) % 20
    components = ("resid", "heads", "mlp", "attn")
    fast = activation_patching(model, clean, corrupted, 4, 9, components=components, chunk=3)
    slow = activation_patching(model, clean, corrupted, 4, 9, components=components, engine="transformer_lens")
    for comp in components:
        assert torch.allclose(fast.recovery[comp], slow.recovery[comp], atol=1e-4), comp
