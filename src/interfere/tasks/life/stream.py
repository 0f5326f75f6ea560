"""Deterministic random boards and rules: batch `step` of stream `seed` depends on nothing else."""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass

import torch

from interfere.tasks.life import rules as R
from interfere.tasks.base import step_generator
from interfere.tasks.life.simulate import PATTERNS, rollout, stamp

MAX_STAMPS = 3  # a board chosen for patterns gets 1..MAX_STAMPS of them


@dataclass
class LifeStream:
    """Random initial boards and rules, rolled out by the simulator.

    rule_ids: [R] ids (rules.ids) of the rules to draw from, one per board, uniformly.
    """

    height: int
    width: int
    rule_ids: torch.Tensor
    density: tuple[float, float]
    patterns: float
    horizons: int
    seed: int
    device: torch.device

    def __post_init__(self):
        # Patterns with a one-cell dead margin, so each one starts isolated from the soup around it;
        # those that do not fit the board are left out (on a tiny torus they would overlap themselves).
        self._patterns = []
        for p in PATTERNS.values():
            padded = torch.nn.functional.pad(p, (1, 1, 1, 1)).to(self.device)
            if max(padded.shape) <= min(self.height, self.width):
                self._patterns.append(padded)
        self.rule_ids = torch.as_tensor(self.rule_ids, dtype=torch.long).to(self.device)
        if self.rule_ids.dim() != 1 or len(self.rule_ids) == 0:
            raise ValueError(f"a stream needs a non-empty 1-D tensor of rule ids, got shape {tuple(self.rule_ids.shape)}")

    def with_rules(self, rule_ids: torch.Tensor) -> "LifeStream":
        """The same boards, seeds and horizons, drawing its rules from `rule_ids` instead."""
        return dataclasses.replace(self, rule_ids=rule_ids)

    def sample(self, step: int, n: int, seed: int | None = None):
        """(rule_bits [n, 18], boards [n, K+1, H, W] long): initial boards and their true K-step rollouts."""
        return self.draw(step_generator(self.seed if seed is None else seed, step, self.device), n)

    def draw(self, g: torch.Generator, n: int):
        """Like sample, from a given generator (which callers may keep drawing from)."""
        rule_bits = self.sample_rules(g, n)
        boards = self.sample_boards(g, n)
        return rule_bits, rollout(boards, rule_bits, self.horizons)

    def sample_rules(self, g: torch.Generator, n: int) -> torch.Tensor:
        pick = torch.randint(0, len(self.rule_ids), (n,), generator=g, device=self.device)
        return R.from_ids(self.rule_ids[pick])

    def sample_boards(self, g: torch.Generator, n: int) -> torch.Tensor:
        lo, hi = self.density
        dev, H, W = self.device, self.height, self.width
        density = lo + (hi - lo) * torch.rand(n, generator=g, device=dev)
        boards = (torch.rand(n, H, W, generator=g, device=dev) < density[:, None, None]).long()
        # Pattern draws happen whatever the outcome, so the random stream never depends on earlier values.
        has = torch.rand(n, generator=g, device=dev) < self.patterns
        count = torch.randint(1, MAX_STAMPS + 1, (n,), generator=g, device=dev)
        which = torch.randint(0, max(len(self._patterns), 1), (n, MAX_STAMPS), generator=g, device=dev)
        turns = torch.randint(0, 8, (n, MAX_STAMPS), generator=g, device=dev)  # 4 rotations x mirror
        where = torch.randint(0, H * W, (n, MAX_STAMPS), generator=g, device=dev)
        if self._patterns and self.patterns > 0:
            sel = has.nonzero()[:, 0]
            # One host transfer per tensor (not per stamp): cheap on a GPU too.
            for i, k, ws, ts, ps in zip(sel.tolist(), count[sel].tolist(), which[sel].tolist(),
                                        turns[sel].tolist(), where[sel].tolist()):
                for s in range(k):
                    p = self._patterns[ws[s]]
                    p = torch.rot90(p.flip(1) if ts[s] >= 4 else p, ts[s] % 4)
                    r, c = divmod(ps[s], W)
                    stamp(boards[i], p, r, c)
        return boards
