"""Language-modelling metrics in the units papers use.

Sums are accumulated over every scored target token (float64), then:
    loss            nats per token (mean next-token cross-entropy)
    perplexity      exp(loss)
    bits_per_token  loss / ln 2
    bits_per_byte   total bits / UTF-8 bytes of the scored text = bits_per_token * tokens / bytes
    accuracy        fraction of targets that are the argmax prediction

The byte count of a target is the length of the bytes its token stands for; an end-of-text token counts
as one byte (the document separator). For a raw-byte tokenizer every token is one byte, tokens == bytes,
and bits_per_byte equals loss / ln 2 exactly (the ratio is exactly 1.0).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
import torch.nn.functional as F

LN2 = math.log(2.0)


@dataclass
class LMSums:
    nats: float = 0.0
    tokens: int = 0
    bytes: int = 0
    correct: int = 0

    def add(self, other: "LMSums") -> "LMSums":
        return LMSums(self.nats + other.nats, self.tokens + other.tokens, self.bytes + other.bytes,
                      self.correct + other.correct)


def batch_sums(logits: torch.Tensor, targets: torch.Tensor, byte_lengths: torch.Tensor,
               mask: torch.Tensor | None = None) -> LMSums:
    """Sums for one batch: logits [B, T, V], targets [B, T], byte_lengths [V] (long), mask [B, T] bool."""
    logits = logits.float()
    nll = F.cross_entropy(logits.reshape(-1, logits.shape[-1]), targets.reshape(-1), reduction="none")
    correct = (logits.argmax(-1) == targets).reshape(-1)
    nbytes = byte_lengths.to(targets.device)[targets].reshape(-1)
    if mask is not None:
        m = mask.reshape(-1)
        nll, correct, nbytes = nll[m], correct[m], nbytes[m]
    return LMSums(nats=float(nll.double().sum()), tokens=int(nll.numel()), bytes=int(nbytes.sum()),
                  correct=int(correct.sum()))


def summarize(s: LMSums) -> dict[str, float]:
    """The flat metrics dict of the module docstring (plus the token and byte counts)."""
    if s.tokens == 0:
        raise ValueError("no tokens were scored")
    loss = s.nats / s.tokens
    bits_per_token = loss / LN2
    return {
        "loss": loss,
        "perplexity": math.exp(loss) if loss < 700 else float("inf"),
        "bits_per_token": bits_per_token,
        "bits_per_byte": bits_per_token * (s.tokens / s.bytes) if s.bytes else float("nan"),
        "accuracy": s.correct / s.tokens,
        "n_tokens": s.tokens,
        "n_bytes": s.bytes,
        "bytes_per_token": s.bytes / s.tokens,
    }
