"""Logit lens: what each layer's residual stream would predict if the model stopped there.

Every entry of the accumulated residual stream (the input of each block, then the output of the last,
`cache.accumulated_resid`) goes through the model's own final norm (`ln_final`, statistics recomputed
for each vector) and unembedding (`W_U`, plus `b_U` if any). The last entry is exactly what the model
reads its logits from, so its top-k are the model's own top predictions.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import torch

from interfere.analysis.common import (apply_final_norm, eval_mode, resolve_positions, to_tokens, token_str,
                                       token_strs, unembed)


@dataclass
class LensResult:
    labels: list[str]  # one per stack entry: "0_pre" .. "<L-1>_pre", "final_post" (and "<l>_mid" with MLPs)
    positions: list[int]  # the positions read
    input_tokens: list[str]  # the prompt's tokens, as text
    top_ids: torch.Tensor  # [entries, positions, k]
    top_probs: torch.Tensor  # [entries, positions, k]
    top_tokens: list[list[list[str]]]  # [entries][positions][k]
    model_top_ids: torch.Tensor  # [positions, k]: the model's own top-k at those positions
    target_ids: list[int] | None = None  # the next token at each position, when known
    target_probs: torch.Tensor | None = None  # [entries, positions]
    target_ranks: torch.Tensor | None = None  # [entries, positions]
    extra: dict[str, Any] = field(default_factory=dict)

    def to_json(self) -> dict:
        out = {
            "labels": self.labels,
            "positions": self.positions,
            "input_tokens": self.input_tokens,
            "layers": [
                {"label": lab, "positions": [
                    {"position": p, "top": [{"token": self.top_tokens[i][j][r], "id": int(self.top_ids[i, j, r]),
                                             "prob": float(self.top_probs[i, j, r])}
                                            for r in range(self.top_ids.shape[-1])],
                     **({"target_prob": float(self.target_probs[i, j]), "target_rank": int(self.target_ranks[i, j])}
                        if self.target_probs is not None else {})}
                    for j, p in enumerate(self.positions)]}
                for i, lab in enumerate(self.labels)],
            "model_top_ids": self.model_top_ids.tolist(),
            "final_matches_model": bool(torch.equal(self.top_ids[-1], self.model_top_ids)),
        }
        if self.target_ids is not None:
            out["target_ids"] = self.target_ids
        return out


@torch.no_grad()
def logit_lens(model, prompt: Any, positions: Any = None, k: int = 5, include_mid: bool = False) -> LensResult:
    """Top-k tokens and probabilities of every layer's residual stream at `positions` (default: the last).

    prompt: text (models with a tokenizer), token ids, or a [1, T] tensor. Where the prompt continues past
    a position, the lens also reports the probability and rank of the actual next token there.
    """
    tokens = to_tokens(model, prompt)[:1]
    T = tokens.shape[1]
    pos = resolve_positions(positions, T)
    with eval_mode(model):
        logits, cache = model.run_with_cache(
            tokens, names_filter=lambda n: n.endswith(("hook_resid_pre", "hook_resid_mid", "hook_resid_post")))
        stack, labels = cache.accumulated_resid(incl_mid=include_mid and not getattr(model.cfg, "attn_only", False),
                                                apply_ln=False, return_labels=True)
        resid = stack[:, 0, pos]  # [entries, P, d_model]
        lens_logits = unembed(model, apply_final_norm(model, resid)).float()
        probs = lens_logits.softmax(-1)
        top_probs, top_ids = probs.topk(k, dim=-1)
        model_top = logits[0, pos].float().topk(k, dim=-1).indices
        result = LensResult(
            labels=list(labels), positions=pos, input_tokens=token_strs(model, tokens[0]),
            top_ids=top_ids.cpu(), top_probs=top_probs.cpu(),
            top_tokens=[[[token_str(model, t) for t in row] for row in entry.tolist()] for entry in top_ids],
            model_top_ids=model_top.cpu())
        nxt = [p + 1 for p in pos]
        if all(n < T for n in nxt):
            targets = tokens[0, nxt]  # [P]
            tp = probs.gather(-1, targets[None, :, None].expand(probs.shape[0], -1, 1))[..., 0]
            ranks = (lens_logits > lens_logits.gather(-1, targets[None, :, None].expand(probs.shape[0], -1, 1))).sum(-1)
            result.target_ids = targets.tolist()
            result.target_probs, result.target_ranks = tp.cpu(), ranks.cpu()
    return result
