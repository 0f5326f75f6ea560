"""Logit lens (interfere.analysis.lens): the last entry is the model's own prediction."""

import pytest
import torch

from model_helpers import tiny
from toy_task import one_thread  # noqa: F401 (autouse fixture)

from interfere.analysis.lens import logit_lens


@pytest.mark.parametrize("options", [{}, {"attn_only": True}, {"normalization_type": "RMS", "positional_embedding_type": "rope"}])
def test_last_layer_equals_the_models_top_predictions(options):
    model = tiny(**options)
    torch.manual_seed(1)
    tokens = torch.randint(0, 20, (1, 16))
    r = logit_lens(model, tokens, positions="all", k=5)
    assert r.labels[0] == "0_pre" and r.labels[-1] == "final_post" and len(r.labels) == model.cfg.n_layers + 1
    assert r.top_ids.shape == (len(r.labels), 16, 5)
    assert torch.equal(r.top_ids[-1], r.model_top_ids)
    probs = model(tokens)[0].softmax(-1)
    assert torch.allclose(r.top_probs[-1], probs.topk(5, dim=-1).values, atol=1e-5)
    assert r.to_json()["final_matches_model"]


def test_positions_and_next_token_ranks():
    model = tiny()
    tokens = torch.randint(0, 20, (1, 10))
    r = logit_lens(model, tokens, positions="0,-2", k=3, include_mid=True)
    assert r.positions == [0, 8]
    assert "0_mid" in r.labels  # the residual stream between attention and MLP
    assert r.target_ids == tokens[0, [1, 9]].tolist()
    logits = model(tokens)[0, [0, 8]]
    true_rank = (logits > logits.gather(-1, tokens[0, [1, 9], None])).sum(-1)
    assert torch.equal(r.target_ranks[-1], true_rank)
    last = logit_lens(model, tokens, k=3)  # default: the last position, whose next token is unknown
    assert last.positions == [9] and last.target_ids is None
    with pytest.raises(ValueError, match="outside"):
        logit_lens(model, tokens, positions="12")
