"""Generation: the KV cache changes nothing but speed; sampling is seeded; the filters match hand-computed
distributions; presets; stopping at end-of-text."""

from __future__ import annotations

import pytest
import torch
from torch import nn
from toy_task import one_thread  # noqa: F401 (autouse fixture)

from interfere.model.generate import (
    PRESETS,
    filter_logits,
    generate,
    generate_text,
    next_token_probs,
    pick,
    resolve,
)
from interfere.model import KVCache, build_model


def _model(positions="learned", n_ctx=32, vocab=40, seed=0):
    torch.manual_seed(seed)
    m = build_model({"d_model": 32, "n_layers": 2, "n_heads": 2, "positional_embedding_type": positions}, vocab, n_ctx)
    with torch.no_grad():  # a spikier random model: greedy choices far from ties
        m.unembed.weight.mul_(20.0)
    return m


@pytest.mark.parametrize("positions", ["learned", "rope"])
def test_greedy_is_the_same_with_and_without_the_cache(positions):
    m = _model(positions)
    prompt = torch.randint(0, 40, (3, 5), generator=torch.Generator().manual_seed(1))
    cached = generate(m, prompt, 20, use_cache=True)
    uncached = generate(m, prompt, 20, use_cache=False)
    assert cached.shape == (3, 25) and torch.equal(cached[:, :5], prompt)
    assert torch.equal(cached, uncached)


def test_past_the_context_the_cache_falls_back_to_a_sliding_window():
    m = _model(n_ctx=16)
    prompt = torch.randint(0, 40, (2, 6), generator=torch.Generator().manual_seed(2))
    assert torch.equal(generate(m, prompt, 30, use_cache=True), generate(m, prompt, 30, use_cache=False))
    long_prompt = torch.randint(0, 40, (1, 20), generator=torch.Generator().manual_seed(3))  # longer than n_ctx
    out = generate(m, long_prompt, 5)
    assert out.shape == (1, 25) and torch.equal(out, generate(m, long_prompt, 5, use_cache=False))


def test_cached_logits_equal_full_logits():
    m = _model().eval()
    x = torch.randint(0, 40, (2, 12), generator=torch.Generator().manual_seed(4))
    full = m(x)
    cache = KVCache()
    parts = [m(x[:, :7], kv_cache=cache)] + [m(x[:, t:t + 1], kv_cache=cache) for t in range(7, 12)]
    torch.testing.assert_close(torch.cat(parts, dim=1), full, atol=1e-5, rtol=1e-5)


def test_sampling_is_reproducible_with_a_seed():
    m = _model()
    prompt = torch.tensor([[1, 2, 3]])
    for strategy, kw in [("sample", {}), ("top_k", {"top_k": 5}), ("top_p", {"top_p": 0.9})]:
        a = generate(m, prompt, 15, strategy=strategy, temperature=1.5, seed=7, **kw)
        b = generate(m, prompt, 15, strategy=strategy, temperature=1.5, seed=7, **kw)
        c = generate(m, prompt, 15, strategy=strategy, temperature=1.5, seed=7, use_cache=False, **kw)
        assert torch.equal(a, b) and torch.equal(a, c)
    draws = {tuple(generate(m, prompt, 15, strategy="sample", temperature=2.0, seed=s)[0].tolist()) for s in range(4)}
    assert len(draws) > 1


def test_top_k_of_one_is_greedy():
    m = _model()
    prompt = torch.randint(0, 40, (2, 4), generator=torch.Generator().manual_seed(5))
    greedy = generate(m, prompt, 12)
    assert torch.equal(generate(m, prompt, 12, strategy="top_k", top_k=1, temperature=3.0, seed=0), greedy)


def test_top_p_keeps_the_smallest_set_reaching_p():
    p = torch.tensor([0.05, 0.5, 0.15, 0.3])  # sorted: 0.5, 0.3, 0.15, 0.05 (shuffled here on purpose)
    logits = p.log()
    expect = {
        0.4: [0, 1, 0, 0],                      # 0.5 alone reaches 0.4
        0.7: [0, 0.5 / 0.8, 0, 0.3 / 0.8],      # 0.5 + 0.3 = 0.8 >= 0.7
        0.85: [0, 0.5 / 0.95, 0.15 / 0.95, 0.3 / 0.95],
        0.99: [0.05, 0.5, 0.15, 0.3],
        1.0: [0.05, 0.5, 0.15, 0.3],
    }
    for top_p, want in expect.items():
        got = next_token_probs(logits, "top_p", 1.0, top_p=top_p)
        torch.testing.assert_close(got, torch.tensor(want, dtype=torch.float32), atol=1e-6, rtol=0)
    # Batched rows filter independently.
    rows = torch.stack([logits, logits.flip(0)])
    got = next_token_probs(rows, "top_p", 1.0, top_p=0.7)
    torch.testing.assert_close(got[1], torch.tensor([0.3 / 0.8, 0, 0.5 / 0.8, 0]), atol=1e-6, rtol=0)


def test_top_k_and_temperature_by_hand():
    p = torch.tensor([0.1, 0.4, 0.2, 0.3])
    got = next_token_probs(p.log(), "top_k", 1.0, top_k=2)
    torch.testing.assert_close(got, torch.tensor([0, 0.4 / 0.7, 0, 0.3 / 0.7]), atol=1e-6, rtol=0)
    hot = p.sqrt() / p.sqrt().sum()  # temperature 2: p^(1/2), renormalised
    torch.testing.assert_close(next_token_probs(p.log(), "sample", 2.0), hot, atol=1e-6, rtol=0)
    assert torch.equal(filter_logits(p.log()), p.log())


def test_sampled_frequencies_follow_the_filtered_distribution():
    p = torch.tensor([0.05, 0.5, 0.15, 0.3])
    settings = resolve("top_p", 1.0, top_p=0.7)
    draws = pick(p.log().expand(20000, 4).clone(), settings, torch.Generator().manual_seed(0))
    freq = torch.bincount(draws, minlength=4).float() / len(draws)
    assert freq[0] == 0 and freq[2] == 0
    assert abs(freq[1] - 0.625) < 0.015 and abs(freq[3] - 0.375) < 0.015


def test_presets_and_overrides():
    assert set(PRESETS) == {"precise", "balanced", "creative"}
    assert resolve(preset="balanced") == PRESETS["balanced"]
    assert resolve(preset="precise", temperature=0.2)["temperature"] == 0.2
    assert resolve() == {"strategy": "greedy", "temperature": 1.0, "top_k": None, "top_p": None}
    for bad in [dict(preset="wild"), dict(strategy="beam"), dict(strategy="top_k"), dict(strategy="top_p"),
                dict(strategy="sample", temperature=0.0), dict(strategy="top_p", top_p=1.5)]:
        with pytest.raises(ValueError):
            resolve(**bad)
    m = _model()
    for name in PRESETS:
        out = generate(m, torch.tensor([1, 2]), 5, preset=name, seed=0)
        assert out.shape == (1, 7)


class _Scripted(nn.Module):
    """A stand-in model: row r always predicts token script[r] (for the end-of-text logic)."""

    def __init__(self, script, vocab=10, n_ctx=64):
        super().__init__()
        self.cfg = type("Cfg", (), {"n_ctx": n_ctx})()
        self.w = nn.Parameter(torch.zeros(1))
        self.script = script
        self.vocab = vocab

    def forward(self, tokens, kv_cache=None):
        if kv_cache is not None:
            kv_cache.length += tokens.shape[1]
        logits = torch.zeros(tokens.shape[0], tokens.shape[1], self.vocab)
        for r, t in enumerate(self.script):
            logits[r, :, t] = 10.0
        return logits


def test_rows_stop_at_end_of_text():
    out = generate(_Scripted([9, 3]), torch.zeros(2, 2, dtype=torch.long), 5, eot_id=9)
    assert out[0, 2:].tolist() == [9] * 5 and out[1, 2:].tolist() == [3] * 5
    done = generate(_Scripted([9, 9]), torch.zeros(2, 2, dtype=torch.long), 5, eot_id=9)
    assert done.shape == (2, 3)  # every row finished after one token


def test_generate_text_reads_the_prompt_as_a_document_start():
    from interfere.tasks.text.tokenizer import ByteTokenizer

    tok = ByteTokenizer()
    m = _model(vocab=257, n_ctx=64)
    text = generate_text(m, tok, "Hi", max_new_tokens=8)
    ids = generate(m, [tok.eot_id, *tok.encode("Hi")], 8)[0, 3:].tolist()
    assert text == tok.decode(ids)
    with pytest.raises(ValueError, match="prompt_tokens"):
        generate(m, torch.zeros(1, 0, dtype=torch.long), 3)


def test_filtered_distributions_are_normalised():
    logits = torch.randn(3, 50)
    for kw in [dict(top_k=5), dict(top_p=0.5), dict(top_k=3, top_p=0.9)]:
        probs = next_token_probs(logits, "sample", 0.7, **kw)
        assert torch.allclose(probs.sum(-1), torch.ones(3)) and not probs.isnan().any()
        if "top_k" in kw:
            assert int((probs > 0).sum(-1).max()) <= kw["top_k"]
