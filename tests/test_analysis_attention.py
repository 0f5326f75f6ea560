"""Head scores, classes and distance histograms (interfere.analysis.attention) on patterns built by hand."""

import pytest
import torch

from model_helpers import tiny
from toy_task import one_thread  # noqa: F401 (autouse fixture)

from interfere.analysis.attention import analyze_attention, classify, distance_histograms, head_scores, mean_distance

T = 12


def pattern(kind: str) -> torch.Tensor:
    """[T, T] causal attention pattern of one idealised head."""
    A = torch.zeros(T, T)
    for q in range(T):
        if kind == "previous_token":
            A[q, max(q - 1, 0)] = 1
        elif kind == "first_token":
            A[q, 0] = 1
        elif kind == "current_token":
            A[q, q] = 1
        elif kind == "uniform":
            A[q, : q + 1] = 1 / (q + 1)
        elif kind == "local":  # spread evenly over the last 3 keys
            lo = max(q - 2, 0)
            A[q, lo:q + 1] = 1 / (q + 1 - lo)
        elif kind == "sparse":  # sharp but content-dependent: a fixed far-back key
            A[q, q // 2 if q > 3 else 0] = 1
    return A


KINDS = ["previous_token", "first_token", "current_token", "uniform", "local", "sparse"]


def patterns() -> torch.Tensor:
    return torch.stack([pattern(k) for k in KINDS])[None, None].expand(2, 3, -1, -1, -1)  # [L, B, H, T, T]


def test_each_idealised_head_gets_its_class_and_score_one():
    scores = head_scores(patterns(), window=3)
    for h, kind in enumerate(KINDS):
        if kind in ("previous_token", "first_token", "current_token", "local", "uniform"):
            assert scores[kind][0, h] == pytest.approx(1.0, abs=1e-5), kind
    assert scores["sparse"][0, KINDS.index("uniform")] < 0.4
    labels = classify(scores)
    assert labels[0] == ["previous-token", "first-token", "current-token", "uniform", "local", "sparse"]
    assert labels[1] == labels[0]


def test_distance_histograms():
    hist = distance_histograms(patterns())
    assert hist.shape == (2, len(KINDS), T)
    assert torch.allclose(hist.sum(-1), torch.ones(2, len(KINDS)))
    assert hist[0, KINDS.index("previous_token"), 1] > 0.9  # query 0 sits at distance 0
    assert hist[0, KINDS.index("current_token"), 0] == pytest.approx(1.0)
    d = mean_distance(hist)
    assert d[0, KINDS.index("current_token")] == pytest.approx(0.0)
    assert d[0, KINDS.index("first_token")] == pytest.approx(sum(range(T)) / T)
    capped = distance_histograms(patterns(), max_distance=4)
    assert capped.shape[-1] == 5 and torch.allclose(capped.sum(-1), torch.ones(2, len(KINDS)))


def test_analyze_attention_on_a_model():
    model = tiny()
    r = analyze_attention(model, torch.randint(0, 20, (3, 16)))
    assert r.patterns.shape == (2, 4, 16, 16)
    assert set(r.scores) == {"previous_token", "first_token", "current_token", "local", "sparse", "uniform"}
    heads = r.to_json()["heads"]
    assert len(heads) == 8 and all(0 <= h["uniform"] <= 1 for h in heads)
    assert r.labels[0][0] == "uniform"  # a freshly initialised model attends almost evenly
