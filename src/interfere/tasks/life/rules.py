"""Life-like rules as 18 bits: B0..B8 (a dead cell is born with n live neighbours), then S0..S8
(a live cell survives with n). Bit i of the tensor is B_i for i < 9 and S_(i-9) otherwise, so the
simulator's next state is simply `bits[9 * alive + neighbours]`.

A rule's id is the integer sum(bit_i * 2^i), 0 .. 2^18 - 1. The held-out split: a rule is held out when
a fixed integer hash of its id is 0 modulo HELDOUT_MODULUS (26,051 of the 262,144 rules, 9.94%);
training on `random` rules never draws one, so evaluating on them measures rules the model never saw.
"""

from __future__ import annotations

import functools
import re
from typing import Iterable

import torch

N_BITS = 18
N_RULES = 2 ** N_BITS
HELDOUT_MODULUS = 10  # held out: hash(id) % 10 == 0

CONWAY = "B3/S23"
HIGHLIFE = "B36/S23"
DAY_NIGHT = "B3678/S34678"
SEEDS = "B2/S"
# Lower-case names accepted by `parse` as shorthands (handy on the command line). Serviettes is a held-out rule.
NAMED = {"conway": CONWAY, "highlife": HIGHLIFE, "day_night": DAY_NIGHT, "seeds": SEEDS,
         "life_without_death": "B3/S012345678", "replicator": "B1357/S1357", "maze": "B3/S12345",
         "2x2": "B36/S125", "morley": "B368/S245", "serviettes": "B234/S"}

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


# ----- rule ids and the held-out split ------------------------------------------------------------------
def ids(bits: torch.Tensor) -> torch.Tensor:
    """[..., 18] bits -> [...] long rule ids, sum(bit_i * 2^i)."""
    weights = 2 ** torch.arange(N_BITS, device=bits.device)
    return (bits.long() * weights).sum(-1)


def from_ids(rule_ids: torch.Tensor) -> torch.Tensor:
    """[...] rule ids -> [..., 18] long bits (the inverse of ids)."""
    return (rule_ids.long()[..., None] >> torch.arange(N_BITS, device=rule_ids.device)) & 1


def _hash(x: torch.Tensor) -> torch.Tensor:
    """A fixed 32-bit integer mix (xor-shift, multiply by 0x45d9f3b, twice); every product fits in int64."""
    m = 0xFFFFFFFF
    x = x ^ (x >> 16)
    x = (x * 0x45D9F3B) & m
    x = x ^ (x >> 16)
    x = (x * 0x45D9F3B) & m
    return x ^ (x >> 16)


@functools.cache
def _heldout_table() -> torch.Tensor:
    return _hash(torch.arange(N_RULES)) % HELDOUT_MODULUS == 0  # [2^18] bool, on the CPU


def is_heldout(bits: torch.Tensor) -> torch.Tensor:
    """[..., 18] bits -> [...] bool: is the rule in the held-out split?"""
    return _heldout_table().to(bits.device)[ids(bits)]


def split_ids(part: str) -> torch.Tensor:
    """Sorted long ids of the "train" or "heldout" rules."""
    if part not in ("train", "heldout"):
        raise ValueError(f"the rule split has parts 'train' and 'heldout', not {part!r}")
    held = _heldout_table()
    return (held if part == "heldout" else ~held).nonzero()[:, 0]


SETS = {"random": "train", "heldout": "heldout"}  # task.rules words for the two parts of the split


def resolve(spec) -> tuple[torch.Tensor, str]:
    """A `task.rules` value -> (rule ids to draw from, label).

    "random": every training rule (the held-out split excluded); "heldout": the held-out rules only; a rule
    ("B36/S23", or a name in NAMED); or a list of rules, drawn uniformly by entry (repeat one to weight it).
    """
    if isinstance(spec, str) and spec.strip().lower() in SETS:
        word = spec.strip().lower()
        return split_ids(SETS[word]), word
    given = [spec] if isinstance(spec, str) else list(spec)
    if not given:
        raise ValueError("the rule list is empty")
    bits = torch.stack([parse(r) for r in given])
    return ids(bits), ",".join(format(b) for b in bits)
