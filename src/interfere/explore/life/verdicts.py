"""The verdict on each hypothesis: the numbers that decide it, each beside its threshold, so a reader can disagree.

A hypothesis is "supported" when every one of its criteria holds, "not supported" when one fails (or its
number does not exist, e.g. a count that no layer encodes), and "not testable on this model" when the model
cannot answer the question (H3 on a model trained on one rule).

- H1 (3x3 stencil): the best head's mean attention mass on the query cell's 3x3 neighbourhood >= 0.5.
- H2 (linear world variables): at the best residual point, held-out count R^2 >= 0.9 and next-state AUC >= 0.99.
- H3 (heads read the rule bits): flipping a bit changes >= 90% of the cells that must change and keeps >= 99%
  of those that must stay; some head puts >= 2x the uniform share of its attention on the rule tokens; some
  head's output alone carries the flip to >= 50% of the must-change cells (mean over bits).
- H4 (gather, then classify): see interfere.explore.life.roles.
"""

from __future__ import annotations

import operator
from dataclasses import dataclass, field

from interfere.explore.life import roles
from interfere.explore.life.attend import AttentionMaps
from interfere.explore.life.probing import CellProbes
from interfere.explore.life.roles import LayerRoles
from interfere.explore.life.rulebits import RuleFlips

H1_MASS = 0.5
H2_COUNT_R2 = 0.9
H2_NEXT_AUC = 0.99
H3_CHANGED, H3_STAYED, H3_ATTENTION_X_UNIFORM, H3_CARRY = 0.9, 0.99, 2.0, 0.5
OPS = {">=": operator.ge, "<=": operator.le}
SUPPORTED, NOT_SUPPORTED, NOT_TESTABLE = "supported", "not supported", "not testable on this model"


@dataclass
class Criterion:
    name: str
    value: float | None
    op: str
    threshold: float

    @property
    def holds(self) -> bool:
        return self.value is not None and self.value == self.value and OPS[self.op](self.value, self.threshold)

    def text(self) -> str:
        v = "none" if self.value is None else f"{self.value:.4g}"
        return f"{self.name} = {v} (needs {self.op} {self.threshold:.4g}): {'holds' if self.holds else 'fails'}"

    def to_json(self) -> dict:
        return {"name": self.name, "value": self.value, "op": self.op, "threshold": self.threshold, "holds": self.holds}


@dataclass
class Verdict:
    id: str
    claim: str
    criteria: list[Criterion] = field(default_factory=list)
    note: str = ""
    testable: bool = True

    @property
    def verdict(self) -> str:
        if not self.testable:
            return NOT_TESTABLE
        return SUPPORTED if self.criteria and all(c.holds for c in self.criteria) else NOT_SUPPORTED

    def to_json(self) -> dict:
        return {"id": self.id, "claim": self.claim, "verdict": self.verdict,
                "criteria": [c.to_json() for c in self.criteria], "note": self.note}


def h1(maps: AttentionMaps) -> Verdict:
    layer, head = maps.best_head()
    mass = float(maps.neighbourhood_mass[layer, head])
    return Verdict("H1", "attention implements a 3x3 stencil: some head attends to the query cell's 3x3 neighbourhood",
                   [Criterion(f"L{layer}H{head}'s mean attention mass on the 3x3 neighbourhood", mass, ">=", H1_MASS)],
                   f"uniform attention over the {maps.visible_keys} keys a query cell sees gives "
                   f"{maps.uniform_neighbourhood:.4f}; over {maps.n_boards} boards")


def h2(probes: CellProbes) -> Verdict:
    pc, count = probes.best("count")
    pn, nxt = probes.best("next")
    noise = max(probes.values("noise"))
    return Verdict("H2", "the residual stream linearly encodes each cell's neighbour count and next state",
                   [Criterion(f"held-out count R^2 at point {pc}", count, ">=", H2_COUNT_R2),
                    Criterion(f"held-out next-state AUC at point {pn}", nxt, ">=", H2_NEXT_AUC)],
                   f"probes on the query slot's cells, held out by whole board; control (a random target): "
                   f"best held-out R^2 {noise:.4f}. The last point feeds the unembedding, so an accurate model "
                   f"has the next state linearly there: the count is the informative half")


def h3(maps: AttentionMaps, flips: RuleFlips) -> Verdict:
    claim = "specific heads read the rule bits and carry them to the cells that need them"
    if not flips.testable:
        return Verdict("H3", claim, note=flips.reason, testable=False)
    carry = flips.carry()
    best_carry = (None, "the best head" if flips.heads else "no head (patching skipped, heads=false)")
    if carry is not None:
        i = int(carry.flatten().argmax())
        best_carry = (float(carry.flatten()[i]), f"L{i // carry.shape[1]}H{i % carry.shape[1]}")
    i = int(maps.rule_share.flatten().argmax())
    head = f"L{i // maps.rule_share.shape[1]}H{i % maps.rule_share.shape[1]}"
    return Verdict("H3", claim, [
        Criterion("share of must-change cells that change when a bit flips (mean over bits)",
                  flips.mean("changed"), ">=", H3_CHANGED),
        Criterion("share of must-stay cells that stay (mean over bits)", flips.mean("stayed"), ">=", H3_STAYED),
        Criterion(f"{head}'s attention share on the rule tokens / uniform share",
                  float(maps.rule_share.flatten()[i]) / maps.uniform_rule, ">=", H3_ATTENTION_X_UNIFORM),
        Criterion(f"{best_carry[1]}'s output alone: share of must-change cells changed", best_carry[0], ">=",
                  H3_CARRY)],
        f"flipping the rule token only changes {_pct(flips.mean('token_only'))} of the must-change cells, "
        f"the FiLM input only {_pct(flips.mean('cond_only'))}; {flips.n_boards} boards, base accuracy "
        f"{_pct(flips.accuracy)}")


def h4(r: LayerRoles) -> Verdict:
    g, c = r.gather_point, r.classify_point
    return Verdict("H4", "early layers gather local evidence (the count), later layers classify (the next state)", [
        Criterion("first point with next-state AUC >= 0.99 minus first point with count R^2 >= 0.9",
                  None if g is None or c is None else float(c - g), ">=", 1.0),
        Criterion("first count point - 1 - the most local block (its heads' mean 3x3 mass)",
                  None if g is None else float(g - 1 - r.most_local_block), ">=", 0.0)],
        f"point p is the residual stream after block p - 1 (0 = embeddings); count R^2 first >= "
        f"{roles.COUNT_R2} at {_point(g)}, next-state AUC first >= {roles.NEXT_AUC} at {_point(c)}; most local "
        f"block {r.most_local_block} (mean 3x3 mass by block: {', '.join(f'{v:.3f}' for v in r.locality)})")


def _point(p: int | None) -> str:
    return "no point" if p is None else f"point {p}"


def _pct(x: float | None) -> str:
    return "n/a" if x is None else f"{100 * x:.1f}%"


def markdown(verdicts: list[Verdict], model_name: str, figures: dict[str, str]) -> str:
    """summary.md: one section per hypothesis with its verdict, the deciding numbers and thresholds."""
    lines = [f"# Hypotheses H1-H4 on {model_name}", ""]
    for v in verdicts:
        lines += [f"## {v.id}: {v.verdict}", "", f"*{v.claim}*", ""]
        lines += [f"- {c.text()}" for c in v.criteria]
        if v.note:
            lines += ["", v.note[0].upper() + v.note[1:] + "."]
        if v.id in figures:
            lines += ["", f"![{v.id}]({figures[v.id]})"]
        lines.append("")
    return "\n".join(lines)
