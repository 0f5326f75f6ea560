"""H4 (early layers gather local evidence, later layers classify), from the attention maps and the probes.

Per block l: `locality` = the mean over its heads of the 3x3 neighbourhood mass (interfere.explore.life.attend)
and `mean_distance` likewise. Per residual point p (0 = embeddings, p = the stream after block p - 1): the
held-out count R^2 and next-state AUC (interfere.explore.life.probing). Then:

- gather_point: the first point where the count is linearly readable (R^2 >= COUNT_R2);
- classify_point: the first point where the next state is (AUC >= NEXT_AUC);
- most_local_block: the block whose heads put the most attention on the 3x3 neighbourhood.

"Early layers gather, later layers classify" reads: gather_point < classify_point (the count exists before
the answer does) and most_local_block < gather_point (the most local attention sits in a block at or before
the one whose output first holds the count; block l writes point l + 1).
"""

from __future__ import annotations

from dataclasses import dataclass

from interfere.explore.life.attend import AttentionMaps
from interfere.explore.life.probing import CellProbes

COUNT_R2 = 0.9
NEXT_AUC = 0.99


def first_at_least(values: list[float], threshold: float) -> int | None:
    return next((i for i, v in enumerate(values) if v == v and v >= threshold), None)


@dataclass
class LayerRoles:
    locality: list[float]  # per block
    mean_distance: list[float]  # per block
    uniform_locality: float
    count_r2: list[float]  # per point
    next_auc: list[float]  # per point
    state_auc: list[float]  # per point

    @property
    def gather_point(self) -> int | None:
        return first_at_least(self.count_r2, COUNT_R2)

    @property
    def classify_point(self) -> int | None:
        return first_at_least(self.next_auc, NEXT_AUC)

    @property
    def most_local_block(self) -> int:
        return max(range(len(self.locality)), key=lambda layer: self.locality[layer])

    def to_json(self) -> dict:
        return {"blocks": [{"block": layer, "locality": v, "mean_distance": d}
                           for layer, (v, d) in enumerate(zip(self.locality, self.mean_distance))],
                "uniform_locality": self.uniform_locality,
                "points": [{"point": p, "count_r2": c, "next_auc": n, "state_auc": s}
                           for p, (c, n, s) in enumerate(zip(self.count_r2, self.next_auc, self.state_auc))],
                "count_r2_threshold": COUNT_R2, "next_auc_threshold": NEXT_AUC, "gather_point": self.gather_point,
                "classify_point": self.classify_point, "most_local_block": self.most_local_block}


def layer_roles(maps: AttentionMaps, probes: CellProbes) -> LayerRoles:
    return LayerRoles(locality=maps.neighbourhood_mass.mean(1).tolist(),
                      mean_distance=maps.mean_distance.mean(1).tolist(), uniform_locality=maps.uniform_neighbourhood,
                      count_r2=probes.values("count"), next_auc=probes.values("next"), state_auc=probes.values("state"))
