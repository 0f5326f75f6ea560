"""Direct logit attribution: how much each head and layer writes the answer directly into the logits.

The residual stream the model reads its logits from is a sum of the components' outputs (embeddings,
each head's output z @ W_O, each layer's MLP output, biases). The final norm is linear once its scale is
fixed at the value the model actually used (TransformerLens' `apply_ln_to_stack` with the cached
scale), so the answer's logit (or the answer - wrong logit difference) splits exactly into one term per
component, plus the final norm's bias. When the final norm's weight is not folded into W_U (HookedGPT),
it is multiplied into the unembedding direction here.

`per_head` [n_layers, H] uses `cache.stack_head_results`; `per_layer` has the attention and MLP output of
each layer (`cache.decompose_resid`), so heads + attention biases = attention layer.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import torch

from interfere.analysis.common import (eval_mode, final_norm_bias, final_norm_weight, has_mlp, head_label, n_heads,
                                       n_layers, single_token, to_tokens, token_str, token_strs)


@dataclass
class DLAResult:
    answer: int
    wrong: int | None
    position: int
    answer_str: str
    wrong_str: str | None
    per_head: torch.Tensor  # [n_layers, H]
    attn: torch.Tensor  # [n_layers] whole attention layer (heads + b_O)
    mlp: torch.Tensor | None  # [n_layers]
    other: dict[str, float]  # embed, pos_embed, norm bias, remainder ...
    total: float  # sum of all terms
    model_value: float  # the model's own logit (difference) at the position
    input_tokens: list[str]

    def top_heads(self, n: int = 10) -> list[dict]:
        H = self.per_head.shape[1]
        order = self.per_head.flatten().abs().argsort(descending=True)[:n].tolist()
        return [{"name": head_label(i // H, i % H), "layer": i // H, "head": i % H,
                 "dla": float(self.per_head.flatten()[i])} for i in order]

    def to_json(self, n: int = 10) -> dict:
        return {"answer": self.answer, "answer_str": self.answer_str, "wrong": self.wrong, "wrong_str": self.wrong_str,
                "position": self.position, "model_value": self.model_value, "total": self.total,
                "per_head": self.per_head.tolist(), "attn_per_layer": self.attn.tolist(),
                "mlp_per_layer": None if self.mlp is None else self.mlp.tolist(), "other": self.other,
                "top_heads": self.top_heads(n)}


@torch.no_grad()
def direct_logit_attribution(model, prompt: Any, answer: Any = None, wrong: Any = None, position: int = -1) -> DLAResult:
    """Per-head and per-layer direct contributions to the answer's logit at `position` (first sequence).

    answer: a token id or single-token string; None takes the model's own top prediction. With `wrong`,
    the attributions are to the logit difference answer - wrong.
    """
    tokens = to_tokens(model, prompt)[:1]
    T = tokens.shape[1]
    pos = position + T if position < 0 else position
    with eval_mode(model):
        logits, cache = model.run_with_cache(tokens)
        last = logits[0, pos].float()
        a = int(last.argmax()) if answer is None or answer == "" else single_token(model, answer)
        w = single_token(model, wrong) if wrong is not None and wrong != "" else None
        W_U = model.W_U.float()
        direction = W_U[:, a] - (W_U[:, w] if w is not None else 0)
        model_value = float(last[a] - (last[w] if w is not None else 0))
        scale_w = final_norm_weight(model)
        if scale_w is not None:
            direction = direction * scale_w.float()

        def project(stack: torch.Tensor) -> torch.Tensor:  # [C, 1, d] at this position -> [C]
            normed = cache.apply_ln_to_stack(stack.float(), layer=-1, pos_slice=pos)
            return (normed[:, 0] @ direction).cpu()

        heads, _ = cache.stack_head_results(layer=-1, pos_slice=pos, return_labels=True)  # [L*H, 1, d]
        per_head = project(heads).reshape(n_layers(model), n_heads(model))
        parts, labels = cache.decompose_resid(layer=-1, pos_slice=pos, return_labels=True)  # [C, 1, d]
        contrib = dict(zip(labels, project(parts).tolist()))
        L = n_layers(model)
        attn = torch.tensor([contrib.get(f"{i}_attn_out", 0.0) for i in range(L)])
        mlp = torch.tensor([contrib.get(f"{i}_mlp_out", 0.0) for i in range(L)]) if has_mlp(model) else None
        other = {k: v for k, v in contrib.items() if not k.endswith(("_attn_out", "_mlp_out"))}
        # what decompose_resid does not see (e.g. segment embeddings) and the norm bias / b_U
        full = cache[f"blocks.{L - 1}.hook_resid_post"][:, pos:pos + 1].float()
        resid_sum = parts.float().sum(0)
        remainder = project((full[:, 0] - resid_sum)[None])
        if float(remainder.abs().max()) > 1e-6:
            other["remainder"] = float(remainder[0])
        const = 0.0
        b = final_norm_bias(model)
        if b is not None:
            unit = W_U[:, a] - (W_U[:, w] if w is not None else 0)
            const += float(b.float() @ unit)
        b_U = getattr(model, "b_U", None)
        if isinstance(b_U, torch.Tensor):
            const += float(b_U[a] - (b_U[w] if w is not None else 0))
        if const:
            other["final_bias"] = const
        total = float(attn.sum() + (mlp.sum() if mlp is not None else 0) + sum(other.values()))
    return DLAResult(answer=a, wrong=w, position=pos, answer_str=token_str(model, a),
                     wrong_str=None if w is None else token_str(model, w), per_head=per_head, attn=attn, mlp=mlp,
                     other=other, total=total, model_value=model_value, input_tokens=token_strs(model, tokens[0]))
