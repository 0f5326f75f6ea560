"""The explorations as functions of `(model, task)` from `interfere.load`, one per tool. Each draws its own fresh
boards from the task's stream (`boards`, `seed`; `rules=` another rule set, e.g. "B36/S23") and returns a result
with `to_json()`; `interfere.explore.life.outputs` turns them into pictures and summary files."""

from __future__ import annotations

from dataclasses import dataclass

from interfere.analysis.common import head_label
from interfere.explore.life import verdicts
from interfere.explore.life.attend import AttentionMaps, attention_maps
from interfere.explore.life.cells import sample_cells
from interfere.explore.life.contrib import HeadContribution, head_contribution
from interfere.explore.life.probing import CellProbes, probe_cells
from interfere.explore.life.roles import LayerRoles, layer_roles
from interfere.explore.life.rulebits import RuleFlips, rule_flips
from interfere.explore.life.rulevec import RuleVectors
from interfere.explore.life.rulevec import rule_vectors as _rule_vectors
from interfere.explore.life.scatter import ResidualPCA, residual_pca

BOARDS = {"attention": 16, "probes": 48, "rules": 16, "embed": 16}  # boards each tool draws by default


def attention(model, task, boards: int = BOARDS["attention"], seed: int = 0, rules=None) -> AttentionMaps:
    """H1: where the query cells attend on board t and on the rule tokens (interfere.explore.life.attend)."""
    return attention_maps(model, task, sample_cells(task, boards, seed, rules))


def probes(model, task, boards: int = BOARDS["probes"], seed: int = 0, rules=None) -> CellProbes:
    """H2: held-out linear probes of count, next and current state at every residual point."""
    return probe_cells(model, task, sample_cells(task, boards, seed, rules), seed=seed)


@dataclass
class RuleUsage:
    """H3: attention to the rule tokens, and what flipping each bit does (interfere.explore.life.rulebits)."""

    maps: AttentionMaps
    flips: RuleFlips

    def to_json(self) -> dict:
        L, H = self.maps.rule_share.shape
        attention_share = {head_label(i, h): float(self.maps.rule_share[i, h]) for i in range(L) for h in range(H)}
        return {"rule_attention_share": attention_share, "uniform_rule_share": self.maps.uniform_rule,
                **self.flips.to_json()}


def rule_usage(model, task, boards: int = BOARDS["rules"], seed: int = 0, rules=None, heads: bool = True) -> RuleUsage:
    """H3: the rule tokens' share of attention, and every bit flipped (with the heads that carry it if `heads`)."""
    cells = sample_cells(task, boards, seed, rules)
    return RuleUsage(attention_maps(model, task, cells), rule_flips(model, task, cells, heads=heads))


rules = rule_usage  # the tool's name; `rules=` is also every tool's keyword for the rule set, hence the two names


def layers(model, task, boards: int | None = None, seed: int = 0, rules=None) -> LayerRoles:
    """H4: locality and probe quality by layer (`boards` for both, else each tool's default)."""
    maps = attention(model, task, boards or BOARDS["attention"], seed, rules)
    return layer_roles(maps, probes(model, task, boards or BOARDS["probes"], seed, rules))


def embed(model, task, boards: int = BOARDS["embed"], seed: int = 0, rules=None) -> ResidualPCA:
    return residual_pca(model, task, sample_cells(task, boards, seed, rules), seed=seed)


def contrib(model, task, seed: int = 0, rules=None, layer: int | None = None, head: int | None = None,
            query: tuple[int, int] | None = None) -> HeadContribution:
    return head_contribution(model, task, sample_cells(task, 1, seed, rules), layer, head, query)


def rule_vectors(model, task) -> RuleVectors:
    return _rule_vectors(model)


@dataclass
class Hypotheses:
    maps: AttentionMaps
    probes: CellProbes
    usage: RuleUsage
    roles: LayerRoles
    verdicts: list[verdicts.Verdict]

    def to_json(self) -> dict:
        return {"verdicts": [v.to_json() for v in self.verdicts], "attention": self.maps.to_json(),
                "probes": self.probes.to_json(), "rules": self.usage.to_json(), "layers": self.roles.to_json()}


def hypotheses(model, task, boards: int | None = None, seed: int = 0, rules=None, heads: bool = True) -> Hypotheses:
    """H1-H4 with their verdicts (interfere.explore.life.verdicts); H3 only where the rules varied in training.

    `boards` for every part, else each part's default; one set of boards serves H1 and H3."""
    usage = rule_usage(model, task, boards or BOARDS["rules"], seed, rules, heads)
    maps = usage.maps
    probe_result = probes(model, task, boards or BOARDS["probes"], seed, rules)
    r = layer_roles(maps, probe_result)
    found = [verdicts.h1(maps), verdicts.h2(probe_result), verdicts.h3(maps, usage.flips), verdicts.h4(r)]
    return Hypotheses(maps, probe_result, usage, r, found)
