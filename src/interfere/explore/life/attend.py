"""H1 (attention implements a 3x3 stencil) and the attention half of H3 (heads read the rule tokens).

Read from the model's own attention patterns at the query slot t+1, whose cells see the 18 rule tokens and
board t and nothing else (the task's mask). Each pattern row is the softmax over that real key set, so the
shares below add up to 1 per query cell and mean what they say:

- neighbourhood_mass [L, H]: the share of a query cell's attention on the 9 cells of its own 3x3 toroidal
  neighbourhood in board t (the cell itself included), averaged over query cells and boards. A head that
  attends uniformly over its keys gets `uniform_neighbourhood` = 9 / (keys a query sees) = 9 / (HW + 18).
- rule_share [L, H]: the share on the 18 rule tokens (uniform: 18 / (HW + 18)); board_share = 1 - rule_share.
- mean_distance [L, H]: the attention-weighted toroidal Chebyshev distance max(|dr|, |dc|) from the query
  cell to the board-t keys, over the board part of the attention (0 = its own cell, 1 = the ring around it).
- centred [L, H, H, W]: the board-t attention re-indexed by offset (dr, dc) from the query cell and averaged,
  the offset (0, 0) at index (H // 2, W // 2): the head's average stencil.
- first [L, H, HW, H, W]: for the first board, every query cell's attention on board t, as a picture.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from interfere.analysis.common import eval_mode, head_label, n_heads, n_layers
from interfere.explore.life.cells import Cells, chunks

CHUNK = 8  # boards per forward pass: a 16x16 sequence's patterns are [8, H, 532, 532] floats per layer


def offsets(height: int, width: int) -> tuple[torch.Tensor, torch.Tensor]:
    """(dr, dc), each [H, W]: the offsets of the centred picture, (0, 0) at (H // 2, W // 2)."""
    dr = torch.arange(height) - height // 2
    dc = torch.arange(width) - width // 2
    return dr[:, None].expand(height, width), dc[None, :].expand(height, width)


def centred_index(height: int, width: int) -> torch.Tensor:
    """[HW, HW]: for query cell q and picture pixel j (an offset), the board index of the key at q + offset."""
    dr, dc = (o.reshape(-1) for o in offsets(height, width))
    r = torch.arange(height * width) // width
    c = torch.arange(height * width) % width
    return ((r[:, None] + dr) % height) * width + (c[:, None] + dc) % width


def torus_distance(height: int, width: int) -> torch.Tensor:
    """[HW] Chebyshev distance of each centred pixel's offset on the torus."""
    dr, dc = offsets(height, width)
    return torch.maximum(dr.abs(), dc.abs()).reshape(-1).float()


@dataclass
class AttentionMaps:
    height: int
    width: int
    n_boards: int
    visible_keys: int  # keys a query cell may attend to (rules + board t)
    neighbourhood_mass: torch.Tensor  # [L, H]
    rule_share: torch.Tensor  # [L, H]
    mean_distance: torch.Tensor  # [L, H]
    centred: torch.Tensor  # [L, H, H, W]
    first: torch.Tensor  # [L, H, HW, H, W]

    @property
    def uniform_neighbourhood(self) -> float:
        return 9 / self.visible_keys

    @property
    def uniform_rule(self) -> float:
        return 18 / self.visible_keys

    def best_head(self) -> tuple[int, int]:
        """(layer, head) with the largest neighbourhood mass."""
        i = int(self.neighbourhood_mass.flatten().argmax())
        return divmod(i, self.neighbourhood_mass.shape[1])

    def heads(self) -> list[dict]:
        L, H = self.neighbourhood_mass.shape
        return [{"layer": layer, "head": h, "name": head_label(layer, h),
                 "neighbourhood_mass": float(self.neighbourhood_mass[layer, h]),
                 "rule_share": float(self.rule_share[layer, h]), "mean_distance": float(self.mean_distance[layer, h])}
                for layer in range(L) for h in range(H)]

    def to_json(self) -> dict:
        layer, head = self.best_head()
        return {"boards": self.n_boards, "visible_keys": self.visible_keys,
                "uniform_neighbourhood_mass": self.uniform_neighbourhood, "uniform_rule_share": self.uniform_rule,
                "best_head": head_label(layer, head),
                "best_neighbourhood_mass": float(self.neighbourhood_mass[layer, head]),
                "heads": self.heads()}


def _query_rows(model, task, cells: Cells) -> dict[int, torch.Tensor]:
    """layer -> [B, H, HW, T1]: the pattern rows of the query slot's cells (only those are kept)."""
    q = task.seq.query(1)
    rows: dict[int, torch.Tensor] = {}

    def keep(pattern, hook):
        rows[int(hook.name.split(".")[1])] = pattern[:, :, q].float().cpu()

    hooks = [(f"blocks.{layer}.attn.hook_pattern", keep) for layer in range(n_layers(model))]
    model.run_with_hooks(cells.inputs, cond=cells.cond, fwd_hooks=hooks)
    return rows


@torch.no_grad()
def attention_maps(model, task, cells: Cells) -> AttentionMaps:
    """The numbers of the module docstring, from the patterns of every head on `cells`."""
    s, H, W = task.seq, task.height, task.width
    L, nh, hw = n_layers(model), n_heads(model), H * W
    index = centred_index(H, W)
    dist = torus_distance(H, W)
    centre = offsets(H, W)
    near = ((centre[0].abs() <= 1) & (centre[1].abs() <= 1)).reshape(-1)
    centred = torch.zeros(L, nh, hw)
    rule = torch.zeros(L, nh)
    distance = torch.zeros(L, nh)
    first = None
    with eval_mode(model):
        for chunk in chunks(cells, CHUNK):
            rows = _query_rows(model, task, chunk)
            A = torch.stack([rows[layer] for layer in range(L)])  # [L, B, nh, HW, T1]
            board = A[..., s.board(0)]  # [L, B, nh, HW_q, HW_k]
            by_offset = board.gather(-1, index.expand(*board.shape[:-1], hw))  # keys re-indexed by offset
            centred += by_offset.sum((1, 3))
            rule += A[..., s.rules].sum(-1).sum((1, 3))
            share = board.sum(-1, keepdim=True).clamp_min(1e-12)
            distance += ((by_offset / share) @ dist).sum((1, 3))
            if first is None:
                first = board[:, 0].reshape(L, nh, hw, H, W).clone()  # not a view that keeps the chunk alive
    n = len(cells) * hw
    centred /= n
    visible = int(s.attention_mask()[s.query(1).start, : s.query(1).stop].sum())
    return AttentionMaps(height=H, width=W, n_boards=len(cells), visible_keys=visible,
                         neighbourhood_mass=centred[..., near].sum(-1), rule_share=rule / n,
                         mean_distance=distance / n, centred=centred.reshape(L, nh, H, W), first=first)
