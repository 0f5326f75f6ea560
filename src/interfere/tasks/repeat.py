"""RepeatTask: sequences of random tokens with one random segment repeated, the induction-head toy.

Each sequence of `seq_len + 1` tokens is

    [BOS] filler... S S filler...

where S is a segment of L uniformly random tokens (L drawn per sequence from `segment`), placed at a
random offset, and every other token is uniformly random too. The model reads the first `seq_len`
tokens and predicts the next token at every position. Only the second copy of S is predictable
(from its second token on): by finding the earlier occurrence of the current token and copying the
token that followed it, which is exactly what an induction head does. Because L and the offset vary,
a head that attends by position alone cannot solve it; the model has to match content.

Token 0 is BOS (when `bos` is true); random tokens are drawn from 1..vocab_size-1.

loss="all":    loss on every next-token position (filler is irreducible noise at ln(vocab_size - 1)).
loss="second": loss only where an induction head can be right (second copy, from its second token).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F

from interfere.errors import ConfigError
from interfere.sequences import repeat_a_segment
from interfere.tasks.base import Batch, Layout, plain, step_generator

BOS = 0
_EVAL_DEFAULTS = {"samples": 512, "seed": 1_000_003}
LOSS_MODES = ("all", "second")


@dataclass
class RepeatBatch(Batch):
    """A Batch that also knows where the two copies are (for log_metrics)."""

    first: torch.Tensor | None = None  # [B, T] bool: targets inside the first copy, from its second token
    second: torch.Tensor | None = None  # [B, T] bool: targets inside the second copy, from its second token


class RepeatTask:
    """Predict the next token of random sequences in which a random segment appears twice in a row."""

    headline = "acc_second"  # the evaluate() key `interfere runs` shows: accuracy on the copy

    def __init__(self, *, name: str = "repeat", vocab_size: int = 64, seq_len: int = 48, segment=(6, 20),
                 loss: str = "all", bos: bool = True, seed: int = 0, eval=None,  # noqa: A002 - config key
                 device="cpu"):
        from interfere.device import pick_device

        segment = plain(segment)
        if isinstance(segment, int):
            segment = [segment, segment]
        self.name = name
        self.vocab_size = int(vocab_size)
        self.seq_len = int(seq_len)
        self.bos = bool(bos)
        self.bos_id = BOS if self.bos else None  # what analysis tools put at position 0
        self.seed = int(seed)
        self.loss = str(loss)
        if self.vocab_size < 3:
            raise ConfigError(f"task.vocab_size={vocab_size}: it must be at least 3")
        if len(segment) != 2 or not 1 <= int(segment[0]) <= int(segment[1]):
            raise ConfigError(f"task.segment must be [min, max] lengths with 1 <= min <= max, got {segment}")
        self.seg_min, self.seg_max = int(segment[0]), int(segment[1])
        start = 1 if self.bos else 0
        if start + 2 * self.seg_max > self.seq_len + 1:
            raise ConfigError(f"task.segment max {self.seg_max} repeated twice does not fit in task.seq_len="
                              f"{self.seq_len}; use seq_len >= {start + 2 * self.seg_max - 1}")
        if self.loss not in LOSS_MODES:
            raise ConfigError(f"task.loss={loss!r}; use one of {', '.join(LOSS_MODES)}")
        given = plain(eval or {})
        unknown = sorted(set(given) - set(_EVAL_DEFAULTS))
        if unknown:
            raise ConfigError(f"task.eval has no key(s) {unknown}; its keys are {sorted(_EVAL_DEFAULTS)}")
        self.eval_cfg = {**_EVAL_DEFAULTS, **given}
        self.device = pick_device(device if device is not None else "cpu")

    # ----- data -----------------------------------------------------------------------------------
    def sample(self, generator: torch.Generator, n: int) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """(tokens [n, seq_len + 1], segment starts [n], segment lengths [n]), on the CPU."""
        return repeat_a_segment(generator, n, self.seq_len + 1, 1 if self.bos else 0, self.vocab_size,
                                BOS if self.bos else None, self.seg_min, self.seg_max)

    def _batch(self, tokens: torch.Tensor, starts: torch.Tensor, lengths: torch.Tensor) -> RepeatBatch:
        T = self.seq_len
        j = torch.arange(1, T + 1)[None]  # the index in `tokens` of each position's target
        s, L = starts[:, None], lengths[:, None]
        first = (j > s) & (j < s + L)
        second = (j > s + L) & (j < s + 2 * L)
        loss_mask = torch.ones_like(second) if self.loss == "all" else second
        d = self.device
        return RepeatBatch(tokens[:, :-1].to(d), tokens[:, 1:].to(d), loss_mask.to(d),
                           first=first.to(d), second=second.to(d))

    def train_batch(self, step: int, batch_size: int, rank: int = 0, world_size: int = 1,
                    model: torch.nn.Module | None = None) -> RepeatBatch:
        # The global batch depends only on (seed, step): every rank draws it all and keeps its slice.
        tokens, starts, lengths = self.sample(step_generator(self.seed, step), batch_size * world_size)
        mine = slice(rank * batch_size, (rank + 1) * batch_size)
        return self._batch(tokens[mine], starts[mine], lengths[mine])

    def layout(self) -> Layout:
        return Layout()  # causal, positions 0..T-1

    def allowed_inputs(self) -> torch.Tensor:
        return torch.ones(self.seq_len, self.seq_len, dtype=torch.bool, device=self.device).tril()

    # ----- metrics --------------------------------------------------------------------------------
    @staticmethod
    def _split_losses(logits: torch.Tensor, batch: RepeatBatch) -> dict[str, torch.Tensor]:
        nll = F.cross_entropy(logits.float().transpose(1, 2), batch.targets, reduction="none")  # [B, T]
        right = logits.argmax(-1) == batch.targets
        out = {}
        for name, mask in (("first", batch.first), ("second", batch.second)):
            n = mask.sum().clamp(min=1)
            out[f"loss_{name}"] = (nll * mask).sum() / n
            out[f"acc_{name}"] = (right & mask).sum() / n
        out["loss"] = (nll * batch.loss_mask).sum() / batch.loss_mask.sum().clamp(min=1)
        return out

    def log_metrics(self, logits: torch.Tensor, batch: Batch) -> dict[str, float]:
        if not isinstance(batch, RepeatBatch) or batch.first is None:
            return {}
        out = self._split_losses(logits, batch)
        out.pop("loss")
        values = torch.stack([v.float() for v in out.values()]).tolist()  # one device sync
        return dict(zip(out, values))

    @torch.no_grad()
    def evaluate(self, model: torch.nn.Module, n_samples: int | None = None, seed: int | None = None) -> dict[str, Any]:
        """Held-out loss and accuracy on the first copy (unpredictable) and the second (induction)."""
        n_samples = int(self.eval_cfg["samples"] if n_samples is None else n_samples)
        seed = int(self.eval_cfg["seed"] if seed is None else seed)
        was_training = model.training
        model.eval()
        try:
            sums: dict[str, float] = {}
            counts: dict[str, int] = {}
            g = step_generator(seed, 0)
            for start in range(0, n_samples, 256):
                n = min(256, n_samples - start)
                batch = self._batch(*self.sample(g, n))
                logits = model(batch.inputs)
                for k, v in self._split_losses(logits, batch).items():
                    sums[k] = sums.get(k, 0.0) + float(v) * n
                    counts[k] = counts.get(k, 0) + n
        finally:
            model.train(was_training)
        out = {k: sums[k] / counts[k] for k in sums}
        out["n_samples"] = n_samples
        return out

    def artifacts(self, model: torch.nn.Module, step: int, out_dir: Path) -> list[Path]:
        return []  # `interfere interpret induction` draws the pictures
