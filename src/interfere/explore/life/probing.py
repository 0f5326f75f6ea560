"""H2 (the residual stream linearly encodes each cell's neighbour count and next state), probed layer by layer.

The probes read the residual stream at the query slot t+1, where cell (r, c)'s position sees all of board t
(a board-t position sees board t too, but its features are the model's inputs, not what it computed).
Residual "points" p = 0 .. L: p = 0 is `blocks.0.hook_resid_pre` (embeddings only), p = i is the stream after
block i - 1 (`blocks.{i}.hook_resid_pre`, and `blocks.{L-1}.hook_resid_post` for p = L). Every probe is fitted on
the cells of 75% of the boards and scored on the other boards' cells (held out by whole board, so a board's
cells never sit on both sides); see interfere.analysis.probes for the fitting.

Targets, per cell: `count` (live neighbours at t, 0..8: ridge R^2, and a 9-way logistic probe's accuracy),
`next` (alive at t+1: logistic AUC), `state` (alive at t: AUC) and `noise`, a control: a standard normal
drawn per cell, which no probe should predict on held-out boards (R^2 near 0 or below).
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from interfere.analysis.common import eval_mode, n_layers
from interfere.analysis.probes import ProbeCurve, logistic_probe, ridge_probe
from interfere.explore.life.cells import Cells, chunks, run_cache

TEST_FRAC = 0.25
# target -> (probe kind, what the headline number is)
TARGETS = {"count": "ridge", "count_class": "logistic", "next": "logistic", "state": "logistic", "noise": "ridge"}


def point_hooks(model) -> list[str]:
    """The residual stream at points 0 .. L (module docstring)."""
    L = n_layers(model)
    return [f"blocks.{i}.hook_resid_pre" for i in range(L)] + [f"blocks.{L - 1}.hook_resid_post"]


@torch.no_grad()
def query_residuals(model, task, cells: Cells, chunk: int = 16) -> torch.Tensor:
    """[L + 1, B, HW, d_model]: the residual stream at every point, at the query slot's cells."""
    names = point_hooks(model)
    q = task.seq.query(1)
    parts = []
    with eval_mode(model):
        for c in chunks(cells, chunk):
            _, cache = run_cache(model, c, names)
            parts.append(torch.stack([cache[n][:, q].float().cpu() for n in names]))
    return torch.cat(parts, dim=1)


def cell_targets(cells: Cells, seed: int = 0) -> dict[str, torch.Tensor]:
    """target -> [B * HW] values, in the order of the residuals' cells."""
    g = torch.Generator().manual_seed(seed + 11)
    count = cells.counts.flatten().cpu()
    return {"count": count.float(), "count_class": count, "next": cells.next.flatten().cpu(),
            "state": cells.boards.flatten().cpu(), "noise": torch.randn(count.shape, generator=g)}


@dataclass
class CellProbes:
    hooks: list[str]  # the hook of each point
    curves: dict[str, ProbeCurve]  # target -> one score per point

    def value(self, target: str, point: int) -> float:
        s = self.curves[target].scores[point]
        return float({"count": s.r2, "noise": s.r2, "count_class": s.accuracy}.get(target, s.auc))

    def values(self, target: str) -> list[float]:
        return [self.value(target, p) for p in range(len(self.hooks))]

    def best(self, target: str) -> tuple[int, float]:
        v = self.values(target)
        p = max(range(len(v)), key=lambda i: v[i] if v[i] == v[i] else -1e9)
        return p, v[p]

    def to_json(self) -> dict:
        return {"points": [{"point": p, "hook": h} for p, h in enumerate(self.hooks)],
                "headline": {"count": "held-out R^2", "count_class": "held-out 9-way accuracy",
                             "next": "held-out AUC", "state": "held-out AUC", "noise": "held-out R^2 (control)"},
                "by_point": {t: self.values(t) for t in self.curves},
                "scores": {t: [s.to_json() for s in c.scores] for t, c in self.curves.items()}}


def probe_cells(model, task, cells: Cells, seed: int = 0, targets=tuple(TARGETS)) -> CellProbes:
    """Held-out probes for each target at each residual point (module docstring)."""
    resid = query_residuals(model, task, cells)  # [P, B, HW, d]
    P, B, hw, d = resid.shape
    groups = torch.arange(B)[:, None].expand(B, hw).flatten().numpy()
    ys = cell_targets(cells, seed)
    curves = {}
    for target in targets:
        fit = ridge_probe if TARGETS[target] == "ridge" else logistic_probe
        scores = [fit(resid[p].reshape(B * hw, d), ys[target], test_frac=TEST_FRAC, seed=seed, groups=groups)
                  for p in range(P)]
        curves[target] = ProbeCurve(hook="resid", kind=TARGETS[target], target=target, layers=list(range(P)),
                                    scores=scores)
    return CellProbes(hooks=point_hooks(model), curves=curves)
