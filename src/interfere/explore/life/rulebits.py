"""H3, the causal half: does the model use rule bit i where, and only where, the rule says it matters?

Flip bit i of every board's rule, in the rule token and in the FiLM conditioning input alike. The simulator
decides which cells must change: those whose next state differs between the two rules, i.e. exactly the cells
whose (state, live-neighbour count) entry reads bit i (B<n>: dead with n, S<n>: alive with n). Per bit:

- must_change: how many cells must change; changed: the share of them whose predicted next state changes;
  stayed: the share of the other cells whose prediction stays (1 for a model that uses the bit exactly).
- token_only / cond_only: `changed` when only the rule token, or only the conditioning input, is flipped:
  the route the rule takes into the model.
- carry [L, H]: the share of must-change cells whose prediction changes when the unflipped run gets only
  head (layer, h)'s output (`hook_z`, every position) from the flipped run: the heads that carry the bit.

A model trained on one rule has never seen another, so nothing here can say what it does with the bits:
`rule_flips` is for models whose training rules vary (`testable`).
"""

from __future__ import annotations

from dataclasses import dataclass, field

import torch

from interfere.analysis.common import eval_mode, head_label, n_heads, n_layers
from interfere.explore.life.cells import Cells, run_cache
from interfere.tasks.life import rules as R
from interfere.tasks.life.evaluate import ENTRIES
from interfere.tasks.life.rollout import one_step_inputs
from interfere.tasks.life.tokens import ALIVE, DEAD


def trained_on_one_rule(task) -> bool:
    return len(task.train_ids) <= 1


def untestable_reason(task) -> str:
    rule = R.format(R.from_ids(task.train_ids[:1])[0])
    return (f"not testable on this model: it was trained on one rule ({rule}), so flipping a bit asks about "
            "rules it never saw")


@torch.no_grad()
def predict(model, task, rule_tokens: torch.Tensor, cond: torch.Tensor, boards: torch.Tensor, hooks=()) -> torch.Tensor:
    """[B, H, W] predicted next state with the rule tokens of `rule_tokens` [B, 18] and FiLM input `cond`."""
    logits = model.run_with_hooks(one_step_inputs(rule_tokens, boards), cond=cond.float(), fwd_hooks=list(hooks))
    pred = logits[:, task.seq.query(1), DEAD:ALIVE + 1].argmax(-1)
    return pred.view_as(boards)


def flip(rule_bits: torch.Tensor, bit: int) -> torch.Tensor:
    out = rule_bits.clone()
    out[:, bit] = 1 - out[:, bit]
    return out


def _share(x: torch.Tensor, where: torch.Tensor) -> float | None:
    n = int(where.sum())
    return float(x[where].float().mean()) if n else None


@dataclass
class BitFlip:
    bit: str  # B0..B8, S0..S8
    must_change: int
    changed: float | None
    stayed: float | None
    token_only: float | None
    cond_only: float | None
    carry: torch.Tensor | None = None  # [L, H]

    def to_json(self) -> dict:
        d = {k: getattr(self, k) for k in ("bit", "must_change", "changed", "stayed", "token_only", "cond_only")}
        if self.carry is not None:
            d["carry"] = self.carry.tolist()
        return d


@dataclass
class RuleFlips:
    testable: bool
    reason: str
    n_boards: int = 0
    accuracy: float | None = None  # the unflipped predictions against the simulator
    heads: bool = True  # were the heads patched (carry)?
    bits: list[BitFlip] = field(default_factory=list)

    def mean(self, key: str) -> float | None:
        vals = [getattr(b, key) for b in self.bits if getattr(b, key) is not None]
        return sum(vals) / len(vals) if vals else None

    def carry(self) -> torch.Tensor | None:
        """[L, H] each head's carry averaged over the bits that have must-change cells."""
        rows = [b.carry for b in self.bits if b.carry is not None and b.must_change]
        return torch.stack(rows).mean(0) if rows else None

    def to_json(self) -> dict:
        out = {"testable": self.testable, "reason": self.reason}
        if self.testable:
            carry = self.carry()
            out.update({"boards": self.n_boards, "accuracy": self.accuracy,
                        **{f"mean_{k}": self.mean(k) for k in ("changed", "stayed", "token_only", "cond_only")},
                        "bits": [b.to_json() for b in self.bits]})
            if carry is not None:
                L, H = carry.shape
                out["mean_carry"] = {head_label(i, h): float(carry[i, h]) for i in range(L) for h in range(H)}
        return out


def _head_patch(head: int, flipped_z: torch.Tensor):
    def patch(z, hook):
        z = z.clone()
        z[:, :, head] = flipped_z[:, :, head]
        return z

    return patch


def _carry(model, task, cells: Cells, flipped: torch.Tensor, base: torch.Tensor, must: torch.Tensor) -> torch.Tensor:
    """[L, H]: the share of must-change cells each head alone changes (module docstring)."""
    L, H = n_layers(model), n_heads(model)
    names = [f"blocks.{layer}.attn.hook_z" for layer in range(L)]
    _, cache = run_cache(model, cells.with_rules(flipped), names, cond=flipped.float())
    out = torch.zeros(L, H)
    for layer in range(L):
        for h in range(H):
            hooks = [(names[layer], _head_patch(h, cache[names[layer]]))]
            pred = predict(model, task, cells.rule_bits, cells.cond, cells.boards, hooks)
            out[layer, h] = _share(pred != base, must) or 0.0
    return out


def rule_flips(model, task, cells: Cells, bits=range(18), heads: bool = True) -> RuleFlips:
    """Flip each bit of `bits` in turn on every board of `cells` (the module docstring's numbers)."""
    if trained_on_one_rule(task):
        return RuleFlips(testable=False, reason=untestable_reason(task))
    result = RuleFlips(testable=True, reason="the training rules vary", n_boards=len(cells), heads=heads)
    with eval_mode(model):
        r = cells.rule_bits
        base = predict(model, task, r, cells.cond, cells.boards)
        result.accuracy = float((base == cells.next).float().mean())
        for i in bits:
            f = flip(r, i)
            must = cells.with_rules(f).next != cells.next
            both = predict(model, task, f, f, cells.boards)
            token = predict(model, task, f, r, cells.boards)
            cond = predict(model, task, r, f, cells.boards)
            changed = both != base
            result.bits.append(BitFlip(
                bit=ENTRIES[i], must_change=int(must.sum()), changed=_share(changed, must),
                stayed=_share(~changed, ~must),
                token_only=_share(token != base, must), cond_only=_share(cond != base, must),
                carry=_carry(model, task, cells, f, base, must) if heads and bool(must.any()) else None))
    return result
