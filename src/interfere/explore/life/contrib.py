"""F5: what one head writes towards "alive". The direction is u = (W_U[:, ALIVE] - W_U[:, DEAD]) * ln_final.w: a
vector x added to the final residual stream moves the logit difference alive - dead by centre(x) . u / scale,
with the final norm's scale fixed at the value the model used (direct logit attribution, as in
interfere.analysis.dla). For head (l, h), query cell q and key k, the head writes A[q, k] * (v_k @ W_O[h]):

- per_key [H, W]: that term's contribution for one query cell (`query`) and every key cell of board t:
  attention x OV, projected on u;
- per_query [H, W]: the head's whole direct contribution at each query cell (the sum over its keys, rule
  tokens included), whose gradient the picture draws as arrows;
- rule_part: the part of per_query[query] that comes from the rule tokens.

All of it on the first board of `cells`. Direct only: what later layers make of the head's output is not here.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from interfere.analysis.common import eval_mode, final_norm_weight, head_label, n_layers
from interfere.explore.life.cells import Cells, run_cache
from interfere.tasks.life.tokens import ALIVE, DEAD


@dataclass
class HeadContribution:
    layer: int
    head: int
    query: tuple[int, int]
    board: torch.Tensor  # [H, W] board t
    next: torch.Tensor  # [H, W] board t+1
    per_key: torch.Tensor  # [H, W]
    per_query: torch.Tensor  # [H, W]
    rule_part: float

    def to_json(self) -> dict:
        r, c = self.query
        return {"head": head_label(self.layer, self.head), "query": [r, c],
                "contribution_at_query": float(self.per_query[r, c]), "from_rule_tokens": self.rule_part,
                "per_query_mean_alive": _mean(self.per_query, self.next == 1),
                "per_query_mean_dead": _mean(self.per_query, self.next == 0), "per_key": self.per_key.tolist()}


def _mean(x: torch.Tensor, where: torch.Tensor) -> float | None:
    return float(x[where].mean()) if bool(where.any()) else None


def alive_direction(model) -> torch.Tensor:
    """[d_model] u of the module docstring."""
    W_U = model.W_U.detach().float()
    u = W_U[:, ALIVE] - W_U[:, DEAD]
    w = final_norm_weight(model)
    return u if w is None else u * w.detach().float()


def _per_head(model, cache, layer: int) -> torch.Tensor:
    """[H, T_q, T_k]: every head of `layer`'s direct contribution through each (query, key) pair."""
    v = cache[f"blocks.{layer}.attn.hook_v"][0].float()  # [T, H, d_head]
    written = torch.einsum("the,hed->htd", v, model.W_O[layer].float())  # v_k @ W_O per head
    if model.cfg.normalization_type == "LN":
        written = written - written.mean(-1, keepdim=True)  # LayerNorm centres what it reads (RMSNorm does not)
    scale = cache["ln_final.hook_scale"][0, :, 0].float()  # [T]
    per_token = written @ alive_direction(model).to(written.device)  # [H, T_k]
    A = cache[f"blocks.{layer}.attn.hook_pattern"][0].float()  # [H, T_q, T_k]
    return A * per_token[:, None, :] / scale[None, :, None]


@torch.no_grad()
def head_contribution(model, task, cells: Cells, layer: int | None = None, head: int | None = None,
                      query: tuple[int, int] | None = None) -> HeadContribution:
    """One head's pictures (module docstring); without layer and head, the head whose direct contribution at
    the query cells is largest on average (in absolute value)."""
    H, W, s = task.height, task.width, task.seq
    query = (H // 2, W // 2) if query is None else query
    first = Cells(cells.rule_bits[:1], cells.boards[:1], cells.next[:1], cells.counts[:1])
    layers = range(n_layers(model)) if layer is None else [layer]
    names = ["ln_final.hook_scale"] + [f"blocks.{i}.attn.{n}" for i in layers for n in ("hook_pattern", "hook_v")]
    with eval_mode(model):
        _, cache = run_cache(model, first, names)
        per_layer = {i: _per_head(model, cache, i)[:, s.query(1)] for i in layers}  # [H, HW_q, T_k]
    if head is None:
        size = {(i, h): float(c[h].sum(-1).abs().mean()) for i, c in per_layer.items() for h in range(len(c))}
        layer, head = max(size, key=size.get)
    elif layer is None:
        raise ValueError(f"head={head} needs its layer too")
    contrib = per_layer[layer][head]  # [HW_q, T_k]
    q = query[0] * W + query[1]
    return HeadContribution(layer=layer, head=head, query=query, board=first.boards[0].cpu(), next=first.next[0].cpu(),
                            per_key=contrib[q, s.board(0)].reshape(H, W).cpu(),
                            per_query=contrib.sum(-1).reshape(H, W).cpu(), rule_part=float(contrib[q, s.rules].sum()))
