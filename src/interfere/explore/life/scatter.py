"""F5: where the query cells sit in the residual stream. A 2-D PCA (scikit-learn) of the residual stream at one
point (see interfere.explore.life.probing: 0 = embeddings, p = after block p - 1) at the query slot's cells,
each dot coloured by its cell's live-neighbour count at t or its next state. `explained` is the share of the
variance the two components hold."""

from __future__ import annotations

from dataclasses import dataclass

import torch

from interfere.explore.life.cells import Cells
from interfere.explore.life.probing import point_hooks, query_residuals

MAX_DOTS = 4000


@dataclass
class ResidualPCA:
    points: list[int]
    hooks: list[str]
    coords: torch.Tensor  # [P, N, 2]
    explained: list[list[float]]  # [P][2]
    counts: torch.Tensor  # [N]
    next: torch.Tensor  # [N]

    def to_json(self) -> dict:
        return {"dots": int(self.coords.shape[1]),
                "points": [{"point": p, "hook": h, "explained_variance_ratio": e}
                           for p, h, e in zip(self.points, self.hooks, self.explained)]}


def residual_pca(model, task, cells: Cells, points: list[int] | None = None, seed: int = 0) -> ResidualPCA:
    from sklearn.decomposition import PCA

    resid = query_residuals(model, task, cells)  # [P, B, HW, d]
    points = list(range(resid.shape[0])) if points is None else points
    X = resid.flatten(1, 2)  # [P, N, d]
    keep = torch.randperm(X.shape[1], generator=torch.Generator().manual_seed(seed))[:MAX_DOTS]
    coords, explained = [], []
    for p in points:
        pca = PCA(n_components=2, random_state=seed).fit(X[p, keep].numpy())
        coords.append(torch.from_numpy(pca.transform(X[p, keep].numpy())).float())
        explained.append([float(v) for v in pca.explained_variance_ratio_])
    hooks = point_hooks(model)
    return ResidualPCA(points=points, hooks=[hooks[p] for p in points], coords=torch.stack(coords),
                       explained=explained, counts=cells.counts.flatten().cpu()[keep],
                       next=cells.next.flatten().cpu()[keep])
