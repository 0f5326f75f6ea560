"""The batched toroidal simulator: one conv2d counts every cell's neighbours, a table lookup applies the rule."""

from __future__ import annotations

import torch
import torch.nn.functional as F


def neighbours(boards: torch.Tensor) -> torch.Tensor:
    """[B, H, W] boards of 0/1 -> [B, H, W] long count of live neighbours on the torus."""
    x = boards.ne(0).to(torch.float32)[:, None]  # float: conv2d has no integer kernels on most devices
    x = F.pad(x, (1, 1, 1, 1), mode="circular")  # the torus: row -1 is row H-1, and so on
    kernel = torch.ones(1, 1, 3, 3, device=boards.device)
    kernel[0, 0, 1, 1] = 0  # a cell is not its own neighbour
    return F.conv2d(x, kernel)[:, 0].round().long()


def step(boards: torch.Tensor, rule_bits: torch.Tensor) -> torch.Tensor:
    """One generation. boards [B, H, W] (or [H, W]) of 0/1, any dtype; rule_bits [18] or [B, 18].

    Returns the next boards in the same dtype and shape.
    """
    single = boards.dim() == 2
    b = boards[None] if single else boards
    B = b.shape[0]
    rule = rule_bits.to(device=b.device, dtype=torch.long)
    rule = rule.expand(B, -1) if rule.dim() == 1 else rule
    # Bits 0..8 say "born with n", 9..17 "survives with n": index 9 * alive + n.
    idx = neighbours(b) + 9 * b.ne(0).long()
    nxt = torch.gather(rule, 1, idx.flatten(1)).view_as(idx).to(boards.dtype)
    return nxt[0] if single else nxt


def rollout(boards: torch.Tensor, rule_bits: torch.Tensor, steps: int) -> torch.Tensor:
    """[B, H, W] -> [B, steps + 1, H, W]: the initial boards and `steps` generations ([H, W] -> [steps+1, H, W])."""
    frames = [boards]
    for _ in range(steps):
        frames.append(step(frames[-1], rule_bits))
    return torch.stack(frames, dim=-3)


# Canonical Conway patterns (row-major, 1 = alive), in the orientation of the usual pictures.
GLIDER = torch.tensor([[0, 1, 0],
                       [0, 0, 1],
                       [1, 1, 1]])  # moves (+1, +1) every 4 generations
BLINKER = torch.tensor([[1, 1, 1]])  # period 2
BLOCK = torch.tensor([[1, 1],
                      [1, 1]])  # still life
TOAD = torch.tensor([[0, 1, 1, 1],
                     [1, 1, 1, 0]])  # period 2
BEACON = torch.tensor([[1, 1, 0, 0],
                       [1, 1, 0, 0],
                       [0, 0, 1, 1],
                       [0, 0, 1, 1]])  # period 2
LWSS = torch.tensor([[0, 1, 0, 0, 1],
                     [1, 0, 0, 0, 0],
                     [1, 0, 0, 0, 1],
                     [1, 1, 1, 1, 0]])  # lightweight spaceship: moves (0, -2) every 4 generations

PATTERNS = {"glider": GLIDER, "blinker": BLINKER, "block": BLOCK, "toad": TOAD, "beacon": BEACON, "lwss": LWSS}


def stamp(board: torch.Tensor, pattern: torch.Tensor, row: int, col: int) -> torch.Tensor:
    """Write `pattern` into board [H, W] with its top-left cell at (row, col), wrapping around the torus.

    Overwrites the pattern's bounding box (dead cells included) in place and returns the board.
    """
    H, W = board.shape
    p = torch.as_tensor(pattern, device=board.device)
    rows = (row + torch.arange(p.shape[0], device=board.device)) % H
    cols = (col + torch.arange(p.shape[1], device=board.device)) % W
    board[rows[:, None], cols[None, :]] = p.to(board.dtype)
    return board
