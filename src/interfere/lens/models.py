"""The lens: a decoder that turns an activation into k tokens and an encoder that turns them back.

Decoder: a copy of the subject fed [soft prompt, proj(A)] as input embeddings generates k tokens one at a
time; each is drawn with `gumbel_softmax(hard=True)`: a one-hot token forward, the soft distribution's
gradient backward (straight-through), and its embedding (one-hot @ W_E) is fed back in. proj is a d x d
linear map initialised to the identity. In eval mode the decoder takes the argmax instead (no noise).

Encoder: a copy of the subject reads [soft prompt, the k token embeddings] and its residual after block L at
the last position, through a linear head (identity-initialised), is the reconstruction A_hat.

The copies train by default (`decoder.trainable`, `encoder.trainable`); frozen, only proj, the soft prompts
and the head train, as in the talkative-probes anchor.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

from interfere.lens.subject import embedding_matrix, resid_hook, run_embeds


@dataclass
class Ramp:
    """A value moving linearly from `start` (step 0) to `end` (step `steps`), then held."""

    start: float
    end: float
    steps: int

    def at(self, step: int) -> float:
        if self.steps <= 0 or step >= self.steps:
            return float(self.end)
        return float(self.start + (self.end - self.start) * step / self.steps)


def identity_linear(d: int) -> nn.Linear:
    layer = nn.Linear(d, d)
    with torch.no_grad():
        layer.weight.copy_(torch.eye(d))
        layer.bias.zero_()
    return layer


def soft_prompt(n: int, embeddings: torch.Tensor) -> nn.Parameter:
    """n prompt vectors drawn at the scale of the token embeddings."""
    return nn.Parameter(torch.randn(n, embeddings.shape[1]) * embeddings.detach().float().std())


def _set_trainable(model: nn.Module, on: bool) -> nn.Module:
    for p in model.parameters():
        p.requires_grad_(on)
    return model


class Decoder(nn.Module):
    def __init__(self, backbone: nn.Module, n_prompt: int, length: int, trainable: bool = True):
        super().__init__()
        self.backbone = _set_trainable(backbone, trainable)
        W_E = embedding_matrix(backbone)
        self.proj = identity_linear(W_E.shape[1])
        self.prompt = soft_prompt(n_prompt, W_E)
        self.length = length

    def forward(self, acts: torch.Tensor, tau: float) -> tuple[torch.Tensor, torch.Tensor]:
        """(one-hot tokens [B, k, V], the logits they were drawn from [B, k, V])."""
        W_E = embedding_matrix(self.backbone)
        x = torch.cat([self.prompt.expand(len(acts), -1, -1), self.proj(acts)[:, None]], 1)  # [B, n+1, d]
        tokens, logits = [], []
        for _ in range(self.length):
            step_logits = run_embeds(self.backbone, x)[0][:, -1].float()  # [B, V]
            if self.training:
                y = F.gumbel_softmax(step_logits, tau=tau, hard=True)
            else:
                y = F.one_hot(step_logits.argmax(-1), step_logits.shape[-1]).to(step_logits.dtype)
            tokens.append(y)
            logits.append(step_logits)
            x = torch.cat([x, (y @ W_E)[:, None]], 1)
        return torch.stack(tokens, 1), torch.stack(logits, 1)


class Encoder(nn.Module):
    def __init__(self, backbone: nn.Module, n_prompt: int, layer: int, trainable: bool = True):
        super().__init__()
        self.backbone = _set_trainable(backbone, trainable)
        W_E = embedding_matrix(backbone)
        self.prompt = soft_prompt(n_prompt, W_E)
        self.head = identity_linear(W_E.shape[1])
        self.layer = layer

    def forward(self, one_hot: torch.Tensor) -> torch.Tensor:
        """[B, k, V] tokens (one-hot, or soft) -> A_hat [B, d]."""
        x = one_hot.to(self.prompt.dtype) @ embedding_matrix(self.backbone)
        x = torch.cat([self.prompt.expand(len(x), -1, -1), x], 1)
        resid = run_embeds(self.backbone, x, read=resid_hook(self.layer))[1]
        return self.head(resid[:, -1].float())


class Lens(nn.Module):
    """decoder + encoder; forward(A, tau) -> (one-hot explanation [B, k, V], its logits, A_hat [B, d])."""

    def __init__(self, decoder: Decoder, encoder: Encoder):
        super().__init__()
        self.decoder, self.encoder = decoder, encoder

    def forward(self, acts: torch.Tensor, tau: float = 1.0):
        one_hot, logits = self.decoder(acts, tau)
        return one_hot, logits, self.encoder(one_hot)
