"""F5: how the model stores the rule bits. Rule token i with value v has embedding W_E[R_i_v]; bit i's vector is
W_E[R_i_1] - W_E[R_i_0], the direction flipping that bit moves the token (segment embeddings and rotary
positions are the same for both values, so they cancel). `cosine` [18, 18] compares the bits' vectors; `pca`
[36, 2] places the 36 rule-token embeddings in their top two principal components. For a FiLM model,
`film_cosine` [18, 18] compares the columns of the first block's FiLM projection (gamma and beta together),
the other road the rule takes in."""

from __future__ import annotations

from dataclasses import dataclass

import torch

from interfere.tasks.life.evaluate import ENTRIES
from interfere.tasks.life.rules import N_BITS
from interfere.tasks.life.tokens import rule_token


def cosine_matrix(vectors: torch.Tensor) -> torch.Tensor:
    unit = vectors / vectors.norm(dim=-1, keepdim=True).clamp_min(1e-12)
    return unit @ unit.T


@dataclass
class RuleVectors:
    names: list[str]  # B0..S8
    bit_norm: list[float]  # |W_E[R_i_1] - W_E[R_i_0]|
    cosine: torch.Tensor  # [18, 18]
    pca: torch.Tensor  # [36, 2]: rows R_0_0, R_0_1, R_1_0, ...
    explained: list[float]
    film_cosine: torch.Tensor | None = None

    def to_json(self) -> dict:
        off = self.cosine - torch.eye(len(self.names))
        i = int(off.abs().flatten().argmax())
        a, b = divmod(i, len(self.names))
        out = {"bits": [{"bit": n, "norm": v} for n, v in zip(self.names, self.bit_norm)],
               "cosine": self.cosine.tolist(), "most_aligned_pair": [self.names[a], self.names[b], float(off[a, b])],
               "pca_explained_variance_ratio": self.explained}
        if self.film_cosine is not None:
            out["film_cosine"] = self.film_cosine.tolist()
        return out


@torch.no_grad()
def rule_vectors(model) -> RuleVectors:
    from sklearn.decomposition import PCA

    W_E = model.W_E.detach().float().cpu()
    tokens = torch.tensor([rule_token(i, v) for i in range(N_BITS) for v in (0, 1)])
    emb = W_E[tokens]  # [36, d]
    bits = emb[1::2] - emb[0::2]
    pca = PCA(n_components=2).fit(emb.numpy())
    film = None
    block = model.blocks[0]
    if getattr(block, "film1", None) is not None:
        film = cosine_matrix(block.film1.proj.weight.detach().float().cpu().T)
    return RuleVectors(names=list(ENTRIES), bit_norm=bits.norm(dim=-1).tolist(), cosine=cosine_matrix(bits),
                       pca=torch.from_numpy(pca.transform(emb.numpy())).float(),
                       explained=[float(v) for v in pca.explained_variance_ratio_], film_cosine=film)
