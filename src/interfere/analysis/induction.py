"""Induction heads on repeated random tokens.

The probe input is a batch of sequences `[BOS] r_1 .. r_L r_1 .. r_L`: L uniformly random tokens, then
the same L again (BOS only when the model expects one). Call `offset` the index of r_1 (1 with BOS, else
0). In the second repeat, the query at position t holds the token first seen at t - L, and the token that
followed it is at t - L + 1. Scores, for each head, averaged over the batch and over the queries
t = offset + L .. offset + 2L - 1 of the second repeat:

- induction:       A[t, t - L + 1], the attention on the token after the earlier copy of the current one.
- prefix_matching: the attention on every key k whose predecessor is the current token
                   (tokens[k - 1] == tokens[t], k <= t), wherever it is. On sequences without chance
                   repeats this equals the induction score; it also counts chance repeats inside r.
- duplicate_token: A[t, t - L], the attention on the earlier copy of the current token itself.
- previous_token:  A[t, t - 1], for finding the heads that feed an induction head (K-composition).

Per-token loss: the model's loss predicting r_2 .. r_L in the first repeat (chance: it cannot know them)
and in the second repeat (an induction head can copy them). The first token of each repeat is left out.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import torch

from interfere.analysis.common import bos_id, device_of, eval_mode, head_label, n_heads, n_layers
from interfere.sequences import repeat_a_segment


def repeated_tokens(batch: int, seq_len: int, vocab: tuple[int, int] | int, bos: int | None = None,
                    seed: int = 0, device: Any = "cpu") -> torch.Tensor:
    """[batch, (1 if bos) + 2 * seq_len]: random tokens from vocab=(low, high) (or [0, vocab)), then a copy."""
    low, high = (0, int(vocab)) if isinstance(vocab, int) else (int(vocab[0]), int(vocab[1]))
    if high - low < 2:
        raise ValueError(f"need at least two tokens to draw from, got [{low}, {high})")
    g = torch.Generator().manual_seed(int(seed))
    r = torch.randint(low, high, (batch, seq_len), generator=g)
    parts = [r, r]
    if bos is not None:
        parts.insert(0, torch.full((batch, 1), int(bos), dtype=torch.long))
    return torch.cat(parts, dim=1).to(device)


def repeated_segments(batch: int, seq_len: int, vocab: tuple[int, int] | int, bos: int | None = None,
                      segment: tuple[int, int] | None = None, seed: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
    """Random sequences in which one random segment appears twice in a row, at a random place.

    Returns tokens [batch, seq_len] (BOS first when given) and in_repeat [batch, seq_len] bool: the
    positions inside the second copy except its first, where the current and the previous token both repeat
    the earlier copy. segment: (min, max) length, default (seq_len // 8, seq_len // 3).
    """
    low, high = (0, int(vocab)) if isinstance(vocab, int) else (int(vocab[0]), int(vocab[1]))
    start0 = 0 if bos is None else 1
    lo, hi = segment or (max(2, seq_len // 8), max(2, seq_len // 3))
    hi = min(hi, (seq_len - start0) // 2)
    lo = min(lo, hi)
    tokens, starts, lengths = repeat_a_segment(torch.Generator().manual_seed(int(seed)), batch, seq_len, low, high,
                                               bos, lo, hi)
    idx = torch.arange(seq_len)[None].expand(batch, -1)
    s, n = starts[:, None], lengths[:, None]
    in_repeat = (idx > s + n) & (idx < s + 2 * n)
    return tokens, in_repeat


def seen_before(tokens: torch.Tensor) -> torch.Tensor:
    """[B, T] bool: the token at t also occurs at some position < t of the same sequence."""
    eq = tokens[:, :, None] == tokens[:, None, :]  # [B, T, T]
    return (eq & torch.ones_like(eq[0]).tril(-1)[None]).any(-1)


def default_vocab_range(model) -> tuple[int, int]:
    """Token ids to draw random tokens from: skip a pretrained tokenizer's special tokens at the low end."""
    d_vocab = int(model.cfg.d_vocab)
    tok = getattr(model, "tokenizer", None)
    if tok is None:
        low = 1 if d_vocab > 8 else 0  # models trained here often keep id 0 for BOS / padding
        return low, d_vocab
    special = [i for i in (getattr(tok, "all_special_ids", None) or []) if isinstance(i, int)]
    low = max(special) + 1 if special and max(special) < d_vocab // 4 else 0
    high = min(d_vocab, len(tok)) if hasattr(tok, "__len__") else d_vocab
    return low, high


@dataclass
class InductionResult:
    seq_len: int
    offset: int
    scores: dict[str, torch.Tensor]  # name -> [n_layers, H]
    loss_first: float
    loss_second: float
    loss_per_position: torch.Tensor  # [T - 1] mean loss predicting token t + 1 at position t
    induction_head: tuple[int, int]
    previous_token_head: tuple[int, int] | None
    patterns: dict[str, torch.Tensor] = field(default_factory=dict)  # head label -> [T, T] (first sequence)

    def top_heads(self, n: int = 10, score: str = "induction") -> list[dict]:
        s = self.scores[score]
        H = s.shape[1]
        order = s.flatten().argsort(descending=True)[:n].tolist()
        return [self.head(i // H, i % H) for i in order]

    def head(self, layer: int, h: int) -> dict:
        return {"layer": layer, "head": h, "name": head_label(layer, h),
                **{k: float(v[layer, h]) for k, v in self.scores.items()}}

    def to_json(self, n: int = 10) -> dict:
        L, H = self.scores["induction"].shape
        ih, ph = self.induction_head, self.previous_token_head
        return {
            "seq_len": self.seq_len,
            "loss_first_repeat": self.loss_first,
            "loss_second_repeat": self.loss_second,
            "loss_ratio": self.loss_second / self.loss_first if self.loss_first else None,
            "induction_head": self.head(*ih),
            "previous_token_head": self.head(*ph) if ph is not None else None,
            "top_heads": self.top_heads(n),
            "heads": [self.head(layer, h) for layer in range(L) for h in range(H)],
        }


@torch.no_grad()
def induction_analysis(model, seq_len: int = 50, batch: int = 8, seed: int = 0, vocab: tuple[int, int] | None = None,
                       bos: int | None | str = "auto", tokens: torch.Tensor | None = None) -> InductionResult:
    """Scores of every head and the first/second-repeat loss on `batch` repeated random sequences.

    bos: "auto" prepends the model's BOS when it expects one (pretrained models); an id; or None.
    tokens: give the sequences yourself ([B, offset + 2 * seq_len]) instead of drawing them.
    """
    L = int(seq_len)
    if bos == "auto":
        bos = bos_id(model)
    offset = 0 if bos is None else 1
    if tokens is None:
        n_ctx = int(getattr(model.cfg, "n_ctx", 10**9) or 10**9)
        if offset + 2 * L > n_ctx:
            raise ValueError(f"seq_len={L} repeated twice (+BOS) is longer than the model's n_ctx={n_ctx}; "
                             f"use seq_len <= {(n_ctx - offset) // 2}")
        tokens = repeated_tokens(batch, L, vocab or default_vocab_range(model), bos, seed, device_of(model))
    tokens = tokens.to(device_of(model))
    T = tokens.shape[1]
    n_l, n_h = n_layers(model), n_heads(model)
    with eval_mode(model):
        logits, cache = model.run_with_cache(tokens, names_filter=lambda n: n.endswith("attn.hook_pattern"))
    log_probs = logits.float().log_softmax(-1)
    nll = -log_probs[:, :-1].gather(-1, tokens[:, 1:, None])[..., 0]  # [B, T-1]: predicting t+1 at t
    # predicting r_2..r_L: positions offset .. offset+L-2 (first), offset+L .. offset+2L-2 (second)
    loss_first = nll[:, offset:offset + L - 1].mean().item()
    loss_second = nll[:, offset + L:offset + 2 * L - 1].mean().item()

    t = torch.arange(offset + L, offset + 2 * L)
    prev_tok = torch.cat([torch.full_like(tokens[:, :1], -1), tokens[:, :-1]], 1)  # tokens[k-1]
    match = (prev_tok[:, None, :] == tokens[:, t, None])  # [B, Q, T]: key k follows a copy of token t
    match &= torch.arange(T, device=tokens.device)[None, None] <= t.to(tokens.device)[None, :, None]
    scores = {name: torch.zeros(n_l, n_h) for name in ("induction", "prefix_matching", "duplicate_token",
                                                          "previous_token")}
    patterns = {}
    for layer in range(n_l):
        A = cache[f"blocks.{layer}.attn.hook_pattern"].float()  # [B, H, T, T]
        rows = A[:, :, t]  # [B, H, Q, T]
        scores["induction"][layer] = rows[..., torch.arange(len(t)), t - L + 1].mean((0, 2)).cpu()
        scores["duplicate_token"][layer] = rows[..., torch.arange(len(t)), t - L].mean((0, 2)).cpu()
        scores["previous_token"][layer] = rows[..., torch.arange(len(t)), t - 1].mean((0, 2)).cpu()
        scores["prefix_matching"][layer] = (rows * match[:, None]).sum(-1).mean((0, 2)).cpu()
        for h in range(n_h):
            patterns[head_label(layer, h)] = A[0, h].cpu()
    ind = scores["induction"]
    best = int(ind.flatten().argmax())
    ih = (best // n_h, best % n_h)
    ph = None
    if ih[0] > 0:  # its previous-token head: the best previous-token head in an earlier layer
        prev = scores["previous_token"][: ih[0]]
        p = int(prev.flatten().argmax())
        ph = (p // n_h, p % n_h)
    keep = {head_label(*ih)} | ({head_label(*ph)} if ph else set())
    return InductionResult(seq_len=L, offset=offset, scores=scores, loss_first=loss_first, loss_second=loss_second,
                           loss_per_position=nll.mean(0).cpu(), induction_head=ih, previous_token_head=ph,
                           patterns={k: v for k, v in patterns.items() if k in keep})
