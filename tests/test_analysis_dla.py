"""Direct logit attribution (interfere.analysis.dla): the terms add up to the model's own logits."""

import pytest
import torch

from model_helpers import tiny
from toy_task import one_thread  # noqa: F401 (autouse fixture)

from interfere.analysis.dla import direct_logit_attribution


@pytest.mark.parametrize("options", [{}, {"attn_only": True},
                                     {"normalization_type": "RMS", "positional_embedding_type": "rope", "use_bias": False}])
def test_terms_sum_to_the_logit_difference(options):
    model = tiny(init_range=0.2, **options)
    with torch.no_grad():  # a final norm whose weight and bias are not the identity
        model.ln_final.w.uniform_(0.5, 1.5)
        if model.ln_final.b is not None:
            model.ln_final.b.normal_(0, 0.1)
    tokens = torch.randint(0, 20, (1, 12))
    r = direct_logit_attribution(model, tokens, answer=3, wrong=7, position=-2)
    with torch.no_grad():
        logits = model(tokens)[0, -2]
    assert r.model_value == pytest.approx(float(logits[3] - logits[7]), abs=1e-4)
    assert r.total == pytest.approx(r.model_value, abs=1e-3)
    assert r.per_head.shape == (2, 4)
    if options.get("use_bias", True) is False:  # without output biases, an attention layer is its heads
        assert torch.allclose(r.per_head.sum(1), r.attn, atol=1e-4)
    assert (r.mlp is None) == bool(options.get("attn_only"))


def test_default_answer_is_the_models_top_prediction():
    model = tiny()
    tokens = torch.randint(0, 20, (1, 9))
    r = direct_logit_attribution(model, tokens)
    assert r.answer == int(model(tokens)[0, -1].argmax()) and r.wrong is None
    assert r.total == pytest.approx(r.model_value, abs=1e-3)
    out = r.to_json(3)
    assert len(out["top_heads"]) == 3 and out["answer"] == r.answer
