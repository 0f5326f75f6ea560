"""Vocabulary and sequence layout of the Life task.

    [18 rule tokens] SEP [B_0] SEP [Q_1] SEP [B_1] SEP [Q_2] ... SEP [Q_K]

B_k is board t+k as input (HW cell tokens), Q_k is HW MASK inputs whose targets are board t+k.
Q_k attends only the rule tokens and B_{k-1}, so every Q_k computes the same one-step function, and the
prefix up to the end of Q_1 is a complete one-step sequence for any K.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from interfere.tasks.life.rules import N_BITS

DEAD, ALIVE, MASK, SEP = 0, 1, 2, 3
RULE_BASE = 4  # rule bit i with value v is token RULE_BASE + 2 * i + v: R_i_0 and R_i_1 sit side by side
VOCAB_SIZE = RULE_BASE + 2 * N_BITS  # 40

SEG_RULE, SEG_SEP, SEG_BOARD, SEG_QUERY = 0, 1, 2, 3
N_SEGMENTS = 4


def rule_token(i: int, v: int) -> int:
    return RULE_BASE + 2 * i + v


def token_names() -> list[str]:
    """Human-readable name of every token id (for plots and `to_str_tokens`)."""
    names = ["DEAD", "ALIVE", "MASK", "SEP"]
    for i in range(N_BITS):
        bit = f"B{i}" if i < 9 else f"S{i - 9}"
        names += [f"{bit}=0", f"{bit}=1"]
    return names


def seq_len(height: int, width: int, horizons: int) -> int:
    hw = height * width
    return N_BITS + 1 + hw + (2 * horizons - 1) * (1 + hw)


@dataclass(frozen=True)
class SeqLayout:
    """Where everything sits in a sequence for HxW boards and K horizons."""

    height: int
    width: int
    horizons: int

    @property
    def hw(self) -> int:
        return self.height * self.width

    @property
    def seq_len(self) -> int:
        return seq_len(self.height, self.width, self.horizons)

    @property
    def rules(self) -> slice:
        return slice(0, N_BITS)

    def _segment(self, s: int) -> slice:
        # Segment s = 0 is B_0 (after the first SEP); then s = 1, 2, ... alternate Q_1, B_1, Q_2, B_2, ...
        start = N_BITS + 1 + s * (1 + self.hw)
        return slice(start, start + self.hw)

    def board(self, k: int) -> slice:
        """Cells of input board B_k (board t+k), k = 0 .. K-1."""
        assert 0 <= k < self.horizons, k
        return self._segment(2 * k)

    def query(self, k: int) -> slice:
        """Cells of target slot Q_k (predicts board t+k), k = 1 .. K."""
        assert 1 <= k <= self.horizons, k
        return self._segment(2 * k - 1)

    def seps(self) -> list[int]:
        """Positions of the SEP tokens (one before every board or query segment)."""
        return [self._segment(s).start - 1 for s in range(2 * self.horizons)]

    # ----- per-position data ----------------------------------------------------------------------
    def segment_ids(self) -> torch.Tensor:
        seg = torch.full((self.seq_len,), SEG_SEP, dtype=torch.long)
        seg[self.rules] = SEG_RULE
        for k in range(self.horizons):
            seg[self.board(k)] = SEG_BOARD
            seg[self.query(k + 1)] = SEG_QUERY
        return seg

    def positions(self) -> torch.Tensor:
        """[T, 2] (row, col) of board and query cells; rule tokens and SEPs sit at (0, 0)."""
        pos = torch.zeros(self.seq_len, 2, dtype=torch.long)
        rc = torch.stack(torch.meshgrid(torch.arange(self.height), torch.arange(self.width), indexing="ij"), -1)
        rc = rc.reshape(self.hw, 2)
        for k in range(self.horizons):
            pos[self.board(k)] = rc
            pos[self.query(k + 1)] = rc
        return pos

    def loss_mask(self) -> torch.Tensor:
        """[T] bool: True exactly on the query cells."""
        return self.segment_ids() == SEG_QUERY

    def attention_mask(self) -> torch.Tensor:
        """[T, T] bool, True where query i may attend key j."""
        T = self.seq_len
        m = torch.zeros(T, T, dtype=torch.bool)
        m[:, self.rules] = True  # everyone reads the rule
        for p in self.seps():
            m[p, p] = True  # a SEP sees the rule and itself, so no row is empty
        for k in range(self.horizons):
            b = self.board(k)
            m[b, b] = True  # a board sees all of itself
            m[self.query(k + 1), b] = True  # Q_{k+1} sees B_k (and the rule) only
        return m

    def allowed_inputs(self) -> torch.Tensor:
        """[T, T] bool: may the prediction at i depend on the input at j? Written from meaning alone.

        A prediction of board t+k may use the rule, the separators, boards t..t+k-1 and its own input.
        Rows that are not predictions are all True (nothing to audit there).
        """
        T = self.seq_len
        a = torch.ones(T, T, dtype=torch.bool)
        for k in range(1, self.horizons + 1):
            q = self.query(k)
            a[q] = False
            a[q, self.rules] = True
            a[q, self.seps()] = True
            for j in range(k):
                a[q, self.board(j)] = True
            cells = torch.arange(q.start, q.stop)
            a[cells, cells] = True
        return a

    # ----- sequences ------------------------------------------------------------------------------
    def encode(self, rule_bits: torch.Tensor, in_boards: torch.Tensor, target_boards: torch.Tensor):
        """Build (inputs, targets, loss_mask), each [B, T], on the boards' device.

        rule_bits [B, 18]; in_boards [B, K, H, W] are B_0..B_{K-1}; target_boards [B, K, H, W] are the true
        boards t+1..t+K that Q_1..Q_K must predict.
        """
        B, K = in_boards.shape[:2]
        assert K == self.horizons and target_boards.shape[1] == K, (in_boards.shape, target_boards.shape)
        dev = in_boards.device
        T = self.seq_len
        inputs = torch.full((B, T), SEP, dtype=torch.long, device=dev)
        targets = torch.zeros(B, T, dtype=torch.long, device=dev)  # ignored outside the queries
        bit_ids = torch.arange(N_BITS, device=dev)
        inputs[:, self.rules] = RULE_BASE + 2 * bit_ids + rule_bits.to(device=dev, dtype=torch.long)
        for k in range(K):
            inputs[:, self.board(k)] = in_boards[:, k].reshape(B, -1).long()
            q = self.query(k + 1)
            inputs[:, q] = MASK
            targets[:, q] = target_boards[:, k].reshape(B, -1).long()
        loss_mask = self.loss_mask().to(dev).expand(B, T).clone()
        return inputs, targets, loss_mask

    def cells(self, tokens: torch.Tensor, where: slice) -> torch.Tensor:
        """[B, T(, ...)] -> [B, H, W(, ...)]: the cells of one board or query segment."""
        x = tokens[:, where]
        return x.reshape(x.shape[0], self.height, self.width, *x.shape[2:])

    def rule_bits(self, inputs: torch.Tensor) -> torch.Tensor:
        """[B, T] inputs -> [B, 18] rule bits read back from the rule tokens."""
        bit_ids = torch.arange(N_BITS, device=inputs.device)
        return inputs[:, self.rules] - RULE_BASE - 2 * bit_ids
