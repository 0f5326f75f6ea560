"""Where a Life model is right and where it is wrong, on boards it never trained on.

Every number compares the model's prediction of board t+1 (from the true board t and the rule) with the
simulator's:

- cell_accuracy: the share of cells right; board_accuracy: the share of boards with every cell right.
- by_state_count: cell accuracy split by the 18 entries of the rule table. Entry B<n> holds the dead
  cells with n live neighbours at t (their next state is rule bit B<n>), S<n> the live cells with n;
  state_count_share says which share of all cells each entry holds (null accuracy: no such cell).
- border_cell_accuracy / interior_cell_accuracy: the cells on the edge rows and columns of the board
  (whose neighbourhood wraps around the torus) and the others.
- rollout_divergence_k<k>: the share of cells where the model's own k-step rollout (fed its predictions)
  differs from the simulator's, over the first `rollout_samples` boards.
"""

from __future__ import annotations

from typing import Any

import torch

from interfere.tasks.life.rollout import model_rollout, predict_next
from interfere.tasks.life.simulate import neighbours
from interfere.tasks.life.simulate import rollout as true_rollout

ENTRIES = [f"B{n}" for n in range(9)] + [f"S{n}" for n in range(9)]  # index 9 * alive + count, as rule bits


def border_mask(height: int, width: int, device=None) -> torch.Tensor:
    """[H, W] bool: True on the first and last row and column."""
    m = torch.zeros(height, width, dtype=torch.bool, device=device)
    m[[0, -1], :] = True
    m[:, [0, -1]] = True
    return m


def tally(model, boards: torch.Tensor, rule_bits: torch.Tensor, rollout_steps: int, n_rollout: int) -> dict:
    """Sums (not means) over a chunk of boards [B, H, W], so that chunks add up.

    The first n_rollout boards are also rolled out for rollout_steps steps (the model fed its own output).
    """
    true1 = true_rollout(boards, rule_bits, 1)[:, 1]
    pred1 = predict_next(model, boards, rule_bits)
    right = pred1 == true1  # [B, H, W]
    entry = (9 * boards.ne(0).long() + neighbours(boards)).flatten()
    border = border_mask(*boards.shape[1:], device=boards.device)
    sums = {
        "boards": torch.tensor(len(boards)),
        "cells_right": right.sum(),
        "boards_right": right.flatten(1).all(1).sum(),
        "border_right": right[:, border].sum(),
        "border_cells": border.sum() * len(boards),
        "entry_cells": torch.bincount(entry, minlength=2 * 9),
        "entry_right": torch.bincount(entry, weights=right.flatten().double(), minlength=2 * 9),
    }
    if rollout_steps > 0:  # the same keys in every chunk, even one with no board to roll out
        sums["rollout_boards"] = torch.tensor(min(n_rollout, len(boards)))
        sums["cells_diverged"] = torch.zeros(rollout_steps, dtype=torch.long, device=boards.device)
        if n_rollout > 0:
            b, r = boards[:n_rollout], rule_bits[:n_rollout]
            later = model_rollout(model, pred1[:n_rollout], r, rollout_steps - 1)  # from the model's t+1
            wrong = later != true_rollout(b, r, rollout_steps)[:, 1:]  # [n, steps, H, W]
            sums["cells_diverged"] = wrong.flatten(2).sum((0, 2))
    return sums


def add(total: dict | None, sums: dict) -> dict:
    return dict(sums) if total is None else {k: total[k] + v for k, v in sums.items()}


def summarize(total: dict, height: int, width: int) -> dict[str, Any]:
    """The metrics of the module docstring from summed tallies."""
    n, hw = int(total["boards"]), height * width
    cells = total["entry_cells"].double()
    border_cells = int(total["border_cells"])
    out = {
        "cell_accuracy": total["cells_right"].item() / (n * hw),
        "board_accuracy": total["boards_right"].item() / n,
        "border_cell_accuracy": total["border_right"].item() / border_cells,
        "interior_cell_accuracy": ((total["cells_right"] - total["border_right"]).item() / (n * hw - border_cells)
                                   if n * hw > border_cells else None),
        "by_state_count": {name: (total["entry_right"][i].item() / cells[i].item() if cells[i] > 0 else None)
                           for i, name in enumerate(ENTRIES)},
        "state_count_share": {name: cells[i].item() / (n * hw) for i, name in enumerate(ENTRIES)},
    }
    if "cells_diverged" in total:
        m = int(total["rollout_boards"])
        for k, d in enumerate(total["cells_diverged"].tolist(), start=1):
            out[f"rollout_divergence_k{k}"] = d / (m * hw)
        out["rollout_samples"] = m
    out["n_samples"] = n
    return out
