"""The unembedding and the cross-entropy in one pass, a block of rows at a time: the training loss without the
[tokens, vocab] logits, their log-softmax or its gradient ever existing in full.

For each block of rows the forward computes the logits, the loss and already the gradients (softmax - one-hot,
then through the unembedding), so the elementwise work stays in cache and the autograd graph holds two small
tensors instead of three [tokens, vocab] ones; backward only scales them. The same idea as Liger Kernel's
fused linear cross-entropy, in plain torch ops, so it runs on any device and under autocast (its matmuls in
the autocast dtype, the softmax in fp32, as `F.cross_entropy(linear(h).float())` would).
"""

from __future__ import annotations

import torch
from torch import nn

IGNORE = -100  # a target the loss skips (F.cross_entropy's default ignore_index)
BLOCK_ELEMENTS = 1 << 21  # logits per block: 8 MB in fp32, which stays in cache while it is worked on
MIN_BLOCK_ROWS = 128  # for large vocabularies: fewer rows make slow matmuls
MAX_BLOCK_ROWS = 16384  # for small ones: torch sums 32768 or more numbers in per-thread parts, which would make
# a block's loss depend on the thread count


def linear_cross_entropy(hidden: torch.Tensor, weight: torch.Tensor, targets: torch.Tensor,
                         keep_logits: bool = False) -> tuple[torch.Tensor, torch.Tensor | None]:
    """(summed cross-entropy of hidden @ weight.T against targets, the logits or None).

    hidden [..., d], weight [vocab, d] (nn.Linear's, no bias), targets [...] ids (IGNORE: no loss there).
    keep_logits: also return the [..., vocab] logits, detached (for logging; costs their memory, no compute).
    """
    if targets.shape != hidden.shape[:-1]:
        raise ValueError(f"targets have shape {tuple(targets.shape)}; the hidden states {tuple(hidden.shape)} "
                         "need one target per position")
    if not torch.is_grad_enabled():  # no backward will come: compute no gradients (forward sees requires_grad only)
        hidden, weight = hidden.detach(), weight.detach()
    logits = hidden.new_empty(*hidden.shape[:-1], weight.shape[0]) if keep_logits else None
    loss = _LinearCrossEntropy.apply(hidden.flatten(0, -2), weight, targets.flatten(),
                                     None if logits is None else logits.view(-1, weight.shape[0]))
    return loss, logits


class _LinearCrossEntropy(torch.autograd.Function):
    @staticmethod
    def forward(ctx, hidden, weight, targets, logits_out):
        rows = (targets != IGNORE).nonzero().squeeze(1)  # only these cost anything
        need_grad = ctx.needs_input_grad[0] or ctx.needs_input_grad[1]
        d_hidden = torch.zeros_like(hidden) if ctx.needs_input_grad[0] else None
        d_weight = torch.zeros_like(weight, dtype=torch.float32) if ctx.needs_input_grad[1] else None
        total = hidden.new_zeros((), dtype=torch.float32)
        if logits_out is not None and len(rows) < len(targets):
            logits_out.fill_(float("nan"))  # no logits computed at ignored positions
        step = min(MAX_BLOCK_ROWS, max(MIN_BLOCK_ROWS, BLOCK_ELEMENTS // weight.shape[0]))
        for start in range(0, len(rows), step):
            idx = rows[start:start + step]
            h, y = hidden[idx], targets[idx]
            z = nn.functional.linear(h, weight)  # autocast (if on) runs this in its dtype
            if logits_out is not None:
                logits_out[idx] = z.to(logits_out.dtype)
            log_p = z.float().log_softmax(-1)
            total -= log_p.gather(-1, y[:, None]).sum()
            if need_grad:  # d loss / d logits = softmax - one-hot, in place
                g = log_p.exp_().scatter_add_(-1, y[:, None], log_p.new_full((len(y), 1), -1.0)).to(h.dtype)
                # (under autocast the matmuls below cast g to bf16, as autograd's backward of F.linear would)
                if d_hidden is not None:
                    d_hidden[idx] = (g @ weight).to(d_hidden.dtype)
                if d_weight is not None:
                    d_weight += g.T @ h
        ctx.save_for_backward(d_hidden, d_weight)
        ctx.weight_dtype = weight.dtype
        return total

    @staticmethod
    def backward(ctx, grad_loss):
        d_hidden, d_weight = ctx.saved_tensors
        dh = d_hidden * grad_loss if d_hidden is not None else None
        dw = (d_weight * grad_loss).to(ctx.weight_dtype) if d_weight is not None else None
        return dh, dw, None, None
