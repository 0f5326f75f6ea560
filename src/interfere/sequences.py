"""Random token sequences in which one segment is copied right after itself: what the repeat task trains on
and what the induction probes read (one generator, so the task and the analysis see the same distribution)."""

from __future__ import annotations

import torch


def repeat_a_segment(generator: torch.Generator, n: int, length: int, low: int, high: int, bos: int | None,
                     seg_min: int, seg_max: int) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """(tokens [n, length], segment starts [n], segment lengths [n]), on the CPU.

    Tokens are drawn uniformly from [low, high) (BOS first when given); in each row a segment of seg_min to
    seg_max tokens, starting at a random place after the BOS, is followed at once by a copy of itself.
    """
    first = 0 if bos is None else 1
    tokens = torch.randint(low, high, (n, length), generator=generator)
    if bos is not None:
        tokens[:, 0] = int(bos)
    lengths = torch.randint(seg_min, seg_max + 1, (n,), generator=generator)
    room = length - first - 2 * lengths + 1  # number of possible starts for each row, >= 1
    starts = first + (torch.rand(n, generator=generator) * room).long().clamp(max=room - 1)
    idx = torch.arange(length)[None].expand(n, -1)
    in_copy = (idx >= (starts + lengths)[:, None]) & (idx < (starts + 2 * lengths)[:, None])
    return tokens.gather(1, torch.where(in_copy, idx - lengths[:, None], idx)), starts, lengths
