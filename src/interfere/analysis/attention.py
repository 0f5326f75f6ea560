"""Attention patterns, head classification and attention distances.

Scores are computed from the patterns A[b, h, q, k] (each query row sums to 1 over the keys it may see)
averaged over the batch and over the query positions q = 1 .. T-1 (query 0 sees only itself, which says
nothing about a head). With `visible` the number of keys query q may see (q + 1 under a causal mask):

- previous_token: mean A[q, q-1], the attention on the token just before.
- first_token:    mean A[q, 0], the attention on position 0 (BOS, the usual "attention sink").
- current_token:  mean A[q, q], the attention on the query's own position.
- local:          mean over q >= window of sum_{k = q-window..q} A[q, k], the attention within the last
                  window + 1 positions (queries closer to the start are left out: for them it is 1 trivially).
- sparse:         mean max_k A[q, k], how much of the attention the single most-attended key gets.
- uniform:        mean H(A[q]) / log(visible), the entropy as a fraction of its maximum: 1 for a head
                  that spreads its attention evenly over every key it may see.

Each score is in [0, 1]. `classify` names a head by the first rule that holds:

1. previous-token / first-token / current-token: the largest of those three, if >= `threshold` (0.5);
2. local:   local >= `local_threshold` (0.7), i.e. most attention within `window` tokens back;
3. sparse:  sparse >= `threshold`: on average one key gets at least half, but which one depends on content
            (induction and duplicate-token heads land here on repeated text);
4. uniform: uniform >= `uniform_threshold` (0.9);
5. mixed:   none of the above.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import torch

from interfere.analysis.common import eval_mode, head_label, n_layers, to_tokens

SCORES = ("previous_token", "first_token", "current_token", "local", "sparse", "uniform")


@torch.no_grad()
def attention_patterns(model, tokens: Any, layers: list[int] | None = None) -> torch.Tensor:
    """[n_layers, B, H, T, T] attention patterns (float32, on the CPU) for token ids or a prompt."""
    tokens = to_tokens(model, tokens)
    layers = list(range(n_layers(model))) if layers is None else layers
    names = {f"blocks.{layer}.attn.hook_pattern" for layer in layers}
    with eval_mode(model):
        _, cache = model.run_with_cache(tokens, names_filter=lambda n: n in names)
    return torch.stack([cache[f"blocks.{layer}.attn.hook_pattern"].float().cpu() for layer in layers])


def head_scores(patterns: torch.Tensor, window: int = 3, attn_mask: torch.Tensor | None = None) -> dict[str, torch.Tensor]:
    """Each score of the module docstring, [n_layers, H], from patterns [n_layers, B, H, T, T].

    attn_mask: [T, T] bool (True = may attend) when the model's mask is not causal; it sets `visible`.
    """
    A = patterns.float()
    T = A.shape[-1]
    if T < 2:
        raise ValueError("attention scores need at least 2 positions")
    q = torch.arange(1, T)
    rows = A[..., 1:, :]  # [L, B, H, T-1, T]: the queries 1..T-1
    out = {
        "previous_token": A[..., q, q - 1].mean((1, 3)),
        "first_token": rows[..., 0].mean((1, 3)),
        "current_token": A[..., q, q].mean((1, 3)),
        "sparse": rows.max(-1).values.mean((1, 3)),
    }
    # local: attention within the last `window` + 1 keys, for queries that have more keys than that
    k = torch.arange(T)
    qq = torch.arange(T)[:, None]
    near = (k[None] <= qq) & (k[None] >= qq - window)  # [T, T]
    if T > window + 1:
        local = (A * near).sum(-1)[..., window + 1:]
        out["local"] = local.mean((1, 3))
    else:
        out["local"] = torch.ones_like(out["sparse"])
    visible = (attn_mask.to(torch.bool).sum(-1) if attn_mask is not None else torch.arange(1, T + 1)).float()
    ent = -(rows * rows.clamp_min(1e-12).log()).sum(-1)  # [L, B, H, T-1]
    norm = visible[1:].clamp_min(2).log()
    out["uniform"] = (ent / norm).clamp(0, 1).mean((1, 3))
    return {name: out[name] for name in SCORES}


def classify(scores: dict[str, torch.Tensor], threshold: float = 0.5, local_threshold: float = 0.7,
             uniform_threshold: float = 0.9) -> list[list[str]]:
    """[n_layers][H] labels by the rules of the module docstring."""
    L, H = scores["sparse"].shape
    labels = []
    for layer in range(L):
        row = []
        for h in range(H):
            s = {name: float(v[layer, h]) for name, v in scores.items()}
            positional = max(("previous_token", "first_token", "current_token"), key=lambda n: s[n])
            if s[positional] >= threshold:
                row.append(positional.replace("_", "-"))
            elif s["local"] >= local_threshold:
                row.append("local")
            elif s["sparse"] >= threshold:
                row.append("sparse")
            elif s["uniform"] >= uniform_threshold:
                row.append("uniform")
            else:
                row.append("mixed")
        labels.append(row)
    return labels


def distance_histograms(patterns: torch.Tensor, max_distance: int | None = None) -> torch.Tensor:
    """[n_layers, H, D + 1]: the share of attention at each query-key distance d = q - k (0 = itself).

    Averaged over the batch and over the queries; distances beyond max_distance go into the last bin.
    Rows sum to 1 (attention on keys after the query, which a causal mask forbids, is ignored).
    """
    A = patterns.float()
    T = A.shape[-1]
    D = T - 1 if max_distance is None else min(int(max_distance), T - 1)
    dist = (torch.arange(T)[:, None] - torch.arange(T)[None]).clamp(min=-1)  # [T_q, T_k]
    dist = torch.where(dist > D, torch.full_like(dist, D), dist)
    L, B, H = A.shape[:3]
    hist = torch.zeros(L, H, D + 2)
    flat = A.permute(0, 2, 1, 3, 4).reshape(L, H, -1)  # [L, H, B*T*T]
    index = (dist + 1).reshape(-1).repeat(B)  # bin 0 holds the (forbidden) future keys
    hist.scatter_add_(2, index.expand(L, H, -1), flat)
    hist = hist[..., 1:]
    return hist / hist.sum(-1, keepdim=True).clamp_min(1e-12)


def mean_distance(hist: torch.Tensor) -> torch.Tensor:
    """[n_layers, H] the attention-weighted mean distance of each head, from distance_histograms."""
    d = torch.arange(hist.shape[-1], dtype=hist.dtype)
    return (hist * d).sum(-1)


@dataclass
class AttentionResult:
    scores: dict[str, torch.Tensor]  # name -> [n_layers, H]
    labels: list[list[str]]  # [n_layers][H]
    histograms: torch.Tensor  # [n_layers, H, D + 1]
    mean_distance: torch.Tensor  # [n_layers, H]
    patterns: torch.Tensor  # [n_layers, H, T, T]: the first sequence's patterns (for pictures)
    window: int
    input_tokens: list[str] | None = None

    def heads(self) -> list[dict]:
        L, H = self.mean_distance.shape
        return [{"layer": layer, "head": h, "name": head_label(layer, h), "label": self.labels[layer][h],
                 **{k: float(v[layer, h]) for k, v in self.scores.items()},
                 "mean_distance": float(self.mean_distance[layer, h])}
                for layer in range(L) for h in range(H)]

    def to_json(self) -> dict:
        return {"window": self.window, "heads": self.heads(),
                "distance_histogram_per_layer": self.histograms.mean(1).tolist()}


@torch.no_grad()
def analyze_attention(model, tokens: Any, window: int = 3, threshold: float = 0.5, local_threshold: float = 0.7,
                      uniform_threshold: float = 0.9, max_distance: int | None = None,
                      attn_mask: torch.Tensor | None = None) -> AttentionResult:
    """Patterns, scores, labels and distance histograms of every head on `tokens` ([B, T] ids or a prompt)."""
    from interfere.analysis.common import token_strs

    tokens = to_tokens(model, tokens)
    patterns = attention_patterns(model, tokens)
    scores = head_scores(patterns, window=window, attn_mask=attn_mask)
    hist = distance_histograms(patterns, max_distance)
    return AttentionResult(scores=scores, labels=classify(scores, threshold, local_threshold, uniform_threshold),
                           histograms=hist, mean_distance=mean_distance(hist), patterns=patterns[:, 0],
                           window=window, input_tokens=token_strs(model, tokens[0]))
