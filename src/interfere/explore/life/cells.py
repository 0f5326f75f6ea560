"""The boards an exploration looks at: one-step sequences (rule, board t, query slot t+1) with the simulator's
answers for every cell, and a forward pass that caches only the hooks asked for.

Every sequence is the one-step prefix of the task's layout (`rollout.one_step_inputs`), so a model trained
with several horizons is asked the same one-step question; `task.seq` gives the positions in it.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from interfere.errors import ConfigError
from interfere.tasks.life import rules as R
from interfere.tasks.life.rollout import one_step_inputs
from interfere.tasks.life.simulate import neighbours, step

EXPLORE_SEED = 7_000_003  # the explorations' boards: a stream seed training and evaluation never use


@dataclass
class Cells:
    """B boards and what the simulator says about each of their cells."""

    rule_bits: torch.Tensor  # [B, 18] long
    boards: torch.Tensor  # [B, H, W] board t (0/1)
    next: torch.Tensor  # [B, H, W] board t+1
    counts: torch.Tensor  # [B, H, W] live neighbours at t

    @property
    def inputs(self) -> torch.Tensor:
        """[B, T1] tokens: 18 rule tokens, SEP, board t, SEP, query slot t+1 (MASK)."""
        return one_step_inputs(self.rule_bits, self.boards)

    @property
    def cond(self) -> torch.Tensor:
        """The FiLM conditioning input, as the task feeds it."""
        return self.rule_bits.float()

    @property
    def entry(self) -> torch.Tensor:
        """[B, H, W] the rule-table entry each cell reads: 9 * state + count (the index of its rule bit)."""
        return 9 * self.boards + self.counts

    def with_rules(self, rule_bits: torch.Tensor) -> "Cells":
        """The same boards under other rules (the simulator's next boards follow)."""
        return cells_of(rule_bits, self.boards)

    def __len__(self) -> int:
        return len(self.boards)


def cells_of(rule_bits: torch.Tensor, boards: torch.Tensor) -> Cells:
    rule_bits = rule_bits.long().expand(len(boards), -1) if rule_bits.dim() == 1 else rule_bits.long()
    return Cells(rule_bits, boards.long(), step(boards.long(), rule_bits), neighbours(boards))


def sample_cells(task, n: int, seed: int = 0, rules=None) -> Cells:
    """n fresh boards from the task's stream (its densities and patterns), under its training rules or `rules`
    (anything task.rules takes: "B36/S23", "heldout", a list)."""
    stream = task.stream
    if rules is not None:
        try:
            stream = stream.with_rules(R.resolve(rules)[0])
        except ValueError as e:
            raise ConfigError(f"rules={rules!r}: {e}") from None
    rule_bits, truth = stream.sample(0, n, seed=EXPLORE_SEED + seed)
    return cells_of(rule_bits, truth[:, 0])


@torch.no_grad()
def run_cache(model, cells: Cells, names, cond: torch.Tensor | None = None) -> tuple[torch.Tensor, dict]:
    """(logits, {hook name: activation}) of one forward pass, caching only `names`."""
    keep = set(names)
    cond = cells.cond if cond is None else cond
    logits, cache = model.run_with_cache(cells.inputs, cond=cond, names_filter=lambda name: name in keep,
                                         return_cache_object=False)
    return logits, cache


def chunks(cells: Cells, size: int):
    """The boards in slices of at most `size` (attention patterns of 532-token sequences are large)."""
    for start in range(0, len(cells), size):
        sl = slice(start, start + size)
        yield Cells(cells.rule_bits[sl], cells.boards[sl], cells.next[sl], cells.counts[sl])
