"""Life-like rules as 18 bits: B0..B8 (a dead cell is born with n live neighbours), then S0..S8
(a live cell survives with n). Bit i of the tensor is B_i for i < 9 and S_(i-9) otherwise, so the
simulator's next state is simply `bits[9 * alive + neighbours]`.
"""

from __future__ import annotations

import re
from typing import Iterable

import torch

N_BITS = 18

CONWAY = "B3/S23"
HIGHLIFE = "B36/S23"
DAY_NIGHT = "B3678/S34678"
SEEDS = "B2/S"
# Lower-case names accepted by `parse` as shorthands (handy on the command line).
NAMED = {"conway": CONWAY, "highlife": HIGHLIFE, "day_night": DAY_NIGHT, "seeds": SEEDS}

# "B3/S23", "b3s23", "B2/S": born digits, optional slash, survive digits.
_NOTATION = re.compile(r"b([0-8]*)/?s([0-8]*)")


def parse(text: str) -> torch.Tensor:
    """'B3/S23' -> LongTensor[18] of 0/1 (case-insensitive; the slash and either digit list are optional)."""
    if not isinstance(text, str):
        raise ValueError(f"rule must be a string like 'B3/S23', got {text!r}")
    key = text.strip().lower()
    key = NAMED.get(key, key).lower()
    m = _NOTATION.fullmatch(key)
    if m is None:
        raise ValueError(
            f"cannot parse rule {text!r}: expected Life-like notation 'B<digits 0-8>/S<digits 0-8>', "
            f"e.g. 'B3/S23' (Conway), 'B36/S23' or 'B2/S', or one of {sorted(NAMED)}")
    bits = torch.zeros(N_BITS, dtype=torch.long)
    for d in m.group(1):
        bits[int(d)] = 1
    for d in m.group(2):
        bits[9 + int(d)] = 1
    return bits


def format(bits: torch.Tensor | Iterable[int]) -> str:  # noqa: A001 - the inverse of parse
    """LongTensor[18] (or any 18 zeros/ones) -> 'B3/S23'."""
    b = [int(x) for x in (bits.tolist() if isinstance(bits, torch.Tensor) else bits)]
    if len(b) != N_BITS or any(x not in (0, 1) for x in b):
        raise ValueError(f"a rule is {N_BITS} bits of 0/1 (B0..B8, S0..S8), got {b}")
    born = "".join(str(n) for n in range(9) if b[n])
    survive = "".join(str(n) for n in range(9) if b[9 + n])
    return f"B{born}/S{survive}"


def random_rules(n: int, generator: torch.Generator | None = None,
                 device: torch.device | str | None = None) -> torch.Tensor:
    """[n, 18] rules drawn uniformly from all 2^18 (each bit a fair coin)."""
    return torch.randint(0, 2, (n, N_BITS), generator=generator, device=device)


def as_bits(rule: str | torch.Tensor) -> torch.Tensor:
    """A rule given as text or bits -> LongTensor[18]."""
    return parse(rule) if isinstance(rule, str) else torch.as_tensor(rule, dtype=torch.long)
