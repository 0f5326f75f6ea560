"""Language-modelling metrics: bits per byte of a byte model is its loss / ln 2 exactly; for a BPE model the
byte count is the UTF-8 size of the validation text; losses agree with an independent computation."""

from __future__ import annotations

import math
import random

import numpy as np
import pytest
import torch
from toy_task import one_thread  # noqa: F401 (autouse fixture)

from interfere.model import build_model
from interfere.tasks.text import TextTask
from interfere.tasks.text import metrics as M

DOCS = [f"Document {i}: " + " ".join(random.Random(i).choice(["naïve", "café", "über", "plain", "words", "日本", "🙂"])
                                     for _ in range(40)) + "\n" for i in range(24)]


@pytest.fixture(scope="module")
def corpus(tmp_path_factory):
    f = tmp_path_factory.mktemp("c") / "docs.jsonl"
    import json
    f.write_text("".join(json.dumps({"text": d}) + "\n" for d in DOCS), encoding="utf-8")
    return str(f)


def _task(corpus, cache, kind, **kw):
    tokenizer = {"kind": kind, "vocab_size": 300} if kind == "bpe" else {"kind": kind}
    return TextTask(corpus={"source": corpus}, tokenizer=tokenizer, seq_len=32, val_fraction=0.25,
                    cache_dir=str(cache), eval={"samples": 0, "batch_size": 4}, **kw)


def _model(task, seed=0):
    torch.manual_seed(seed)
    return build_model({"d_model": 32, "n_layers": 1, "n_heads": 2}, task.vocab_size, task.seq_len)


def _independent_nll(model, tokens: np.ndarray, seq_len: int) -> tuple[float, int, int]:
    """Summed nats, token count and correct count over consecutive windows, computed by hand."""
    nats, n, correct = 0.0, 0, 0
    with torch.no_grad():
        for s in range(0, len(tokens) - 1, seq_len):
            w = torch.as_tensor(tokens[s:s + seq_len + 1].astype(np.int64))[None]
            logp = model(w[:, :-1]).double().log_softmax(-1)
            nats -= float(logp[0].gather(-1, w[0, 1:, None]).sum())
            correct += int((logp[0].argmax(-1) == w[0, 1:]).sum())
            n += w.shape[1] - 1
    return nats, n, correct


def test_bits_per_byte_of_a_byte_model_is_loss_over_ln2(corpus, tmp_path):
    task = _task(corpus, tmp_path, "bytes")
    model = _model(task).eval()
    out = task.evaluate(model)
    assert out["n_bytes"] == out["n_tokens"]
    assert out["bits_per_byte"] == out["loss"] / math.log(2)  # exactly
    assert out["bits_per_token"] == out["bits_per_byte"]
    # The loss itself, from the validation token file and the model, computed independently.
    val = np.fromfile(task.store.dir / "val.bin", dtype=task.store.dtype)
    nats, n, correct = _independent_nll(model, val, task.seq_len)
    assert out["n_tokens"] == n == len(val) - 1
    assert out["loss"] == pytest.approx(nats / n, rel=1e-5)
    assert out["perplexity"] == pytest.approx(math.exp(nats / n), rel=1e-5)
    assert out["accuracy"] == correct / n


def test_bits_per_byte_of_a_bpe_model_counts_the_utf8_bytes_of_the_text(corpus, tmp_path):
    task = _task(corpus, tmp_path, "bpe")
    model = _model(task, seed=1).eval()
    out = task.evaluate(model)
    val_docs = [d for d, v in zip(task.corpus.documents(), task.split.val) if v]
    # Scored text: every validation document, plus one byte per end-of-text separator between them.
    n_bytes = sum(len(d.encode("utf-8")) for d in val_docs) + len(val_docs) - 1
    assert out["n_bytes"] == n_bytes
    val = np.fromfile(task.store.dir / "val.bin", dtype=task.store.dtype)
    nats, n, _ = _independent_nll(model, val, task.seq_len)
    assert out["n_tokens"] == n and n < n_bytes
    assert out["bits_per_byte"] == pytest.approx(nats / math.log(2) / n_bytes, rel=1e-5)
    assert out["bits_per_token"] == pytest.approx(out["loss"] / math.log(2), rel=1e-12)


def test_subsampled_evaluation_is_deterministic(corpus, tmp_path):
    task = _task(corpus, tmp_path, "bytes")
    model = _model(task)
    a, b = task.evaluate(model, n_samples=3, seed=5), task.evaluate(model, n_samples=3, seed=5)
    assert a == b and a["n_windows"] == 3 and a["n_tokens"] == 3 * task.seq_len
    assert task.evaluate(model, n_samples=3, seed=6) != a


def test_formulas_on_hand_made_logits():
    V = 8
    logits = torch.zeros(2, 3, V)  # uniform: loss = ln V, accuracy from the argmax (token 0)
    targets = torch.tensor([[0, 1, 2], [0, 0, 7]])
    lengths = torch.tensor([1, 2, 3, 1, 1, 1, 1, 4])
    s = M.batch_sums(logits, targets, lengths)
    assert (s.tokens, s.bytes, s.correct) == (6, 1 + 2 + 3 + 1 + 1 + 4, 3)
    out = M.summarize(s)
    assert out["loss"] == pytest.approx(math.log(V))
    assert out["perplexity"] == pytest.approx(V)
    assert out["bits_per_token"] == pytest.approx(3.0)
    assert out["bits_per_byte"] == pytest.approx(3.0 * 6 / 12)
    assert out["accuracy"] == 0.5
    masked = M.batch_sums(logits, targets, lengths, mask=torch.tensor([[True, False, False], [False, False, True]]))
    assert (masked.tokens, masked.bytes) == (2, 5)
