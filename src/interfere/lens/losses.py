"""The lens's loss terms, each per example (summed over the batch by the caller).

kl:       KL(P_orig(A) || P_orig(A_hat)): the subject's next-token distribution at p with its own residual
          after block L, against the same with A_hat patched in at exactly (L, p). The primary term.
fluency:  KL(P_subject || P_decoder) over the k explanation tokens: the frozen subject reading
          [generic prefix, explanation so far] against the decoder's distribution for the same token.
entropy:  the decoder's mean entropy per token (subtracted with its weight: it keeps the choice open).
usage:    the entropy of the batch's average token distribution (subtracted with its weight: it spreads the
          explanations over the vocabulary, against collapse onto a few tokens; not in the anchor).
mse:      ||A - A_hat||^2 / sum_j var(A)_j: 1 - FVE per example, in the activation's own units.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

from interfere.lens.subject import Subject, embedding_matrix, run_embeds


def kl_from_logits(p_logits: torch.Tensor, q_logits: torch.Tensor) -> torch.Tensor:
    """[B] KL(softmax(p) || softmax(q)) over the last axis."""
    p_log, q_log = p_logits.float().log_softmax(-1), q_logits.float().log_softmax(-1)
    return (p_log.exp() * (p_log - q_log)).sum(-1)


def patched_kl(subject: Subject, tokens, positions, layer: int, a_hat, orig_logits=None) -> torch.Tensor:
    """[B] KL between the subject's next-token distribution at p unpatched and with A_hat at (layer, p)."""
    if orig_logits is None:
        with torch.no_grad():
            orig_logits = subject.logits_at(tokens, positions, layer)
    return kl_from_logits(orig_logits, subject.logits_at(tokens, positions, layer, replace=a_hat))


def fluency_kl(subject: Subject, prefix: torch.Tensor, one_hot: torch.Tensor, dec_logits: torch.Tensor) -> torch.Tensor:
    """[B] sum over the k tokens of KL(subject | decoder) for each next explanation token."""
    B, k, _ = one_hot.shape
    with torch.no_grad():
        W_E = embedding_matrix(subject.model)
        x = torch.cat([W_E[prefix].expand(B, -1, -1), one_hot[:, :-1].detach().to(W_E.dtype) @ W_E], 1)
        target = run_embeds(subject.model, x)[0][:, -k:]  # the distribution for explanation token t
    return kl_from_logits(target, dec_logits).sum(-1)


def decoder_entropy(dec_logits: torch.Tensor) -> torch.Tensor:
    """[B] mean entropy (nats) of the decoder's token distributions."""
    logp = dec_logits.float().log_softmax(-1)
    return -(logp.exp() * logp).sum(-1).mean(-1)


def usage_entropy(dec_logits: torch.Tensor) -> torch.Tensor:
    """[B] the entropy (nats) of the token distribution averaged over the batch and the k tokens, per example."""
    marginal = dec_logits.float().softmax(-1).mean((0, 1))
    return (-(marginal * marginal.clamp_min(1e-12).log()).sum()).expand(len(dec_logits))


def normalised_mse(acts: torch.Tensor, a_hat: torch.Tensor, total_var: float) -> torch.Tensor:
    """[B] ||A - A_hat||^2 / sum_j var(A)_j."""
    return (acts - a_hat).pow(2).sum(-1) / total_var
