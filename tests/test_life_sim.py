"""Rules notation and the simulator, checked against a plain loop written independently here."""

import numpy as np
import pytest
import torch

from interfere.tasks.life import rules as R
from interfere.tasks.life.simulate import (BEACON, BLINKER, BLOCK, GLIDER, LWSS, TOAD, rollout, step, stamp)

NAMED = ["B3/S23", "B36/S23", "B3678/S34678", "B2/S"]


# ----- an independent reference: sets of neighbour counts, a double loop, modulo indexing ----------
def ref_sets(text):
    born, survive = text.upper().split("/")
    return {int(c) for c in born[1:]}, {int(c) for c in survive[1:]}


def ref_step(board, born, survive):
    H, W = board.shape
    out = np.zeros_like(board)
    for i in range(H):
        for j in range(W):
            n = sum(board[(i + di) % H, (j + dj) % W]
                    for di in (-1, 0, 1) for dj in (-1, 0, 1) if (di, dj) != (0, 0))
            out[i, j] = 1 if (n in survive if board[i, j] else n in born) else 0
    return out


def bits_to_sets(bits):
    b = [int(x) for x in bits]
    return {n for n in range(9) if b[n]}, {n for n in range(9) if b[9 + n]}


# ----- rules ------------------------------------------------------------------------------------------
def test_parse_named_rules():
    for text in NAMED:
        born, survive = ref_sets(text)
        bits = R.parse(text)
        assert bits.dtype == torch.long and bits.shape == (18,)
        assert bits_to_sets(bits) == (born, survive)
        assert R.format(bits) == text
    assert (R.CONWAY, R.HIGHLIFE, R.DAY_NIGHT, R.SEEDS) == tuple(NAMED)


def test_parse_accepts_variants():
    conway = R.parse("B3/S23")
    for text in ["b3s23", "B3S23", "b3/s23", " B3/S23 ", "conway"]:
        assert torch.equal(R.parse(text), conway), text
    assert bits_to_sets(R.parse("B2/S")) == ({2}, set())
    assert bits_to_sets(R.parse("b/s012345678")) == (set(), set(range(9)))
    assert torch.equal(R.parse("B36/S23"), R.parse("b36s23"))


@pytest.mark.parametrize("bad", ["B9/S23", "3/23", "S23/B3", "", "B3/S23x", "life", "B3/S2-3"])
def test_parse_rejects_bad_text_clearly(bad):
    with pytest.raises(ValueError) as e:
        R.parse(bad)
    msg = str(e.value)
    assert repr(bad) in msg and "B3/S23" in msg


def test_format_rejects_bad_bits():
    with pytest.raises(ValueError):
        R.format([1] * 17)
    with pytest.raises(ValueError):
        R.format([2] + [0] * 17)


def test_round_trip_random_rules():
    g = torch.Generator().manual_seed(0)
    bits = R.random_rules(2000, g)
    assert bits.shape == (2000, 18) and set(bits.unique().tolist()) <= {0, 1}
    assert abs(bits.float().mean().item() - 0.5) < 0.02  # each bit a fair coin
    assert len({tuple(b) for b in bits.tolist()}) > 1990  # 2^18 outcomes: nearly all distinct
    for b in bits[:500]:
        text = R.format(b)
        assert torch.equal(R.parse(text), b)
        assert R.format(R.parse(text.lower().replace("/", ""))) == text
    again = R.random_rules(2000, torch.Generator().manual_seed(0))
    assert torch.equal(bits, again)


# ----- simulator vs reference -------------------------------------------------------------------------
@pytest.mark.parametrize("shape", [(3, 4), (5, 7), (8, 8), (6, 11)])
@pytest.mark.parametrize("rule", NAMED)
def test_step_matches_reference_named(shape, rule):
    g = torch.Generator().manual_seed(shape[0] * 1000 + shape[1] * 10 + NAMED.index(rule))
    boards = (torch.rand(4, *shape, generator=g) < torch.rand(4, 1, 1, generator=g)).long()
    got = step(boards, R.parse(rule))
    born, survive = ref_sets(rule)
    for b in range(4):
        assert np.array_equal(got[b].numpy(), ref_step(boards[b].numpy(), born, survive))


@pytest.mark.parametrize("shape", [(4, 4), (5, 9), (7, 3)])
def test_step_matches_reference_per_board_random_rules(shape):
    g = torch.Generator().manual_seed(shape[0] * 100 + shape[1])
    rule_bits = R.random_rules(6, g)  # one rule per board: [B, 18]
    boards = torch.randint(0, 2, (6, *shape), generator=g)
    got = rollout(boards, rule_bits, 3)
    assert got.shape == (6, 4, *shape)
    for b in range(6):
        born, survive = bits_to_sets(rule_bits[b])
        x = boards[b].numpy()
        for t in range(1, 4):
            x = ref_step(x, born, survive)
            assert np.array_equal(got[b, t].numpy(), x), (b, t)


@pytest.mark.parametrize("dtype", [torch.long, torch.uint8, torch.int32, torch.float32, torch.float64])
def test_step_keeps_dtype(dtype):
    boards = torch.randint(0, 2, (3, 6, 5)).to(dtype)
    out = step(boards, R.parse("B3/S23"))
    assert out.dtype == dtype and out.shape == boards.shape
    assert torch.equal(out.long(), step(boards.long(), R.parse("B3/S23")))


def test_single_board_and_rollout_shape():
    board = torch.zeros(6, 6, dtype=torch.long)
    stamp(board, BLINKER, 2, 1)
    assert step(board, R.parse("B3/S23")).shape == (6, 6)
    assert rollout(board, R.parse("B3/S23"), 5).shape == (6, 6, 6)


# ----- canonical patterns -----------------------------------------------------------------------------
CONWAY = R.parse("B3/S23")


def placed(pattern, shape, row, col):
    return stamp(torch.zeros(shape, dtype=torch.long), pattern, row, col)


def test_glider_moves_diagonally_and_wraps():
    H = 8
    board = placed(GLIDER, (H, H), 1, 1)
    run = rollout(board, CONWAY, 4 * H)
    assert torch.equal(run[4], board.roll((1, 1), (0, 1)))
    for t in (1, 2, 3):
        assert not torch.equal(run[t], board)  # a glider changes shape in between
        assert run[t].sum() == 5
    assert torch.equal(run[4 * H], board)  # all the way round the torus


def test_glider_stamped_across_the_edge():
    board = placed(GLIDER, (7, 9), 5, 7)  # wraps around both edges
    assert board.sum() == 5
    assert torch.equal(rollout(board, CONWAY, 4)[4], board.roll((1, 1), (0, 1)))


def test_lwss_moves_two_cells_left():
    board = placed(LWSS, (9, 12), 3, 5)
    assert torch.equal(rollout(board, CONWAY, 4)[4], board.roll(-2, 1))


def test_block_is_still():
    board = placed(BLOCK, (6, 6), 2, 2)
    assert torch.equal(step(board, CONWAY), board)


@pytest.mark.parametrize("pattern", [BLINKER, TOAD, BEACON], ids=["blinker", "toad", "beacon"])
def test_oscillators_have_period_two(pattern):
    board = placed(pattern, (8, 8), 2, 2)
    run = rollout(board, CONWAY, 4)
    assert not torch.equal(run[1], board)
    assert torch.equal(run[2], board) and torch.equal(run[4], board)


def test_blinker_flips_orientation():
    board = placed(BLINKER, (5, 5), 2, 1)  # horizontal in row 2, cols 1..3
    vertical = placed(BLINKER.T, (5, 5), 1, 2)
    assert torch.equal(step(board, CONWAY), vertical)
