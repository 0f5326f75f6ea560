"""Let a model play the automaton: one step from the prefix up to Q_1, repeated on its own output."""

from __future__ import annotations

import torch

from interfere.model.modes import unwrap
from interfere.tasks.life.simulate import rollout as true_rollout
from interfere.tasks.life.tokens import ALIVE, DEAD, SeqLayout


def one_step_inputs(rule_bits: torch.Tensor, boards: torch.Tensor) -> torch.Tensor:
    """[B, 18], [B, H, W] -> [B, T1] tokens: rule, SEP, B_0 = boards, SEP, Q_1 (MASK); a prefix of any layout."""
    B, H, W = boards.shape
    rule_bits = rule_bits.expand(B, -1) if rule_bits.dim() == 1 else rule_bits
    lay = SeqLayout(H, W, 1)
    inputs, _, _ = lay.encode(rule_bits, boards[:, None], torch.zeros_like(boards)[:, None])
    return inputs


def predict_next(model: torch.nn.Module, boards: torch.Tensor, rule_bits: torch.Tensor) -> torch.Tensor:
    """The model's next boards [B, H, W] (same dtype as `boards`): argmax of the DEAD/ALIVE logits at Q_1."""
    B, H, W = boards.shape
    rule_bits = rule_bits.to(boards.device)
    rule_bits = rule_bits.expand(B, -1) if rule_bits.dim() == 1 else rule_bits
    inputs = one_step_inputs(rule_bits, boards)
    logits = unwrap(model)(inputs, cond=rule_bits.float())
    q = SeqLayout(H, W, 1).query(1)
    pred = logits[:, q, DEAD:ALIVE + 1].argmax(-1)  # other tokens are never a board cell
    return pred.view(B, H, W).to(boards.dtype)


def model_rollout(model: torch.nn.Module, boards: torch.Tensor, rule_bits: torch.Tensor, steps: int) -> torch.Tensor:
    """[B, H, W] -> [B, steps + 1, H, W]: the model fed its own predictions, like simulate.rollout."""
    frames = [boards]
    for _ in range(steps):
        frames.append(predict_next(model, frames[-1], rule_bits))
    return torch.stack(frames, dim=1)


def compare(model: torch.nn.Module, boards: torch.Tensor, rule_bits: torch.Tensor, steps: int) -> dict[str, torch.Tensor]:
    """Sums (not means) over a chunk of boards, so chunks add up: correct cells / boards at t+1, and
    cells where the model's own k-step rollout differs from the simulator's, for k = 1..steps."""
    steps = max(steps, 1)
    pred = model_rollout(model, boards, rule_bits, steps)[:, 1:]
    true = true_rollout(boards, rule_bits, steps)[:, 1:]
    wrong = pred != true  # [B, steps, H, W]
    return {
        "cells_right": (~wrong[:, 0]).sum(),
        "boards_right": (~wrong[:, 0]).flatten(1).all(1).sum(),
        "cells_diverged": wrong.flatten(2).sum((0, 2)),  # [steps]
    }
