"""Vocabulary, sequence layout, attention mask and the allowed-inputs map of the Life task."""

import pytest
import torch

from interfere.tasks.life import LifeTask
from interfere.tasks.life import tokens as tok
from interfere.tasks.life.simulate import rollout
from interfere.tasks.life.tokens import SeqLayout


def test_vocab():
    assert tok.VOCAB_SIZE == 40 and LifeTask(board=[4, 4]).vocab_size == 40
    assert (tok.DEAD, tok.ALIVE, tok.MASK, tok.SEP) == (0, 1, 2, 3)
    assert tok.rule_token(0, 0) == 4 and tok.rule_token(0, 1) == 5 and tok.rule_token(17, 1) == 39
    names = tok.token_names()
    assert len(names) == 40 and names[4] == "B0=0" and names[39] == "S8=1"


@pytest.mark.parametrize("H,W,K", [(16, 16, 1), (4, 5, 1), (4, 5, 2), (3, 7, 3)])
def test_seq_len_and_segments_tile_the_sequence(H, W, K):
    lay = SeqLayout(H, W, K)
    hw = H * W
    assert lay.seq_len == 19 + hw + (2 * K - 1) * (1 + hw) == tok.seq_len(H, W, K)
    seen = torch.zeros(lay.seq_len, dtype=torch.long)
    seen[lay.rules] += 1
    seen[lay.seps()] += 1
    for k in range(K):
        seen[lay.board(k)] += 1
        seen[lay.query(k + 1)] += 1
    assert (seen == 1).all()  # every position in exactly one place
    # the order is rule, SEP, B_0, SEP, Q_1, SEP, B_1, SEP, Q_2, ...
    starts = [lay.board(0).start] + [s for k in range(1, K + 1)
                                     for s in (lay.query(k).start, *([lay.board(k).start] if k < K else []))]
    assert starts == sorted(starts) and lay.query(K).stop == lay.seq_len
    seg = lay.segment_ids()
    assert (seg[:18] == tok.SEG_RULE).all() and (seg[lay.seps()] == tok.SEG_SEP).all()
    assert (seg == tok.SEG_BOARD).sum() == K * hw and (seg == tok.SEG_QUERY).sum() == K * hw


def test_16x16_one_horizon_is_532():
    assert LifeTask(board=[16, 16]).seq_len == 532


def test_positions():
    lay = SeqLayout(3, 4, 2)
    pos = lay.positions()
    assert pos.shape == (lay.seq_len, 2) and pos.dtype == torch.long
    assert (pos[:18] == 0).all() and (pos[lay.seps()] == 0).all()
    want = torch.tensor([[r, c] for r in range(3) for c in range(4)])
    for sl in (lay.board(0), lay.board(1), lay.query(1), lay.query(2)):
        assert torch.equal(pos[sl], want)


def test_batch_encoding_decodes_to_the_simulator():
    task = LifeTask(board=[5, 6], rules="random", horizons=3, seed=3)
    lay = task.seq
    b = task.train_batch(step=7, batch_size=8)
    T = task.seq_len
    assert b.inputs.shape == b.targets.shape == b.loss_mask.shape == (8, T)
    assert b.inputs.dtype == b.targets.dtype == torch.long and b.loss_mask.dtype == torch.bool
    # the loss mask is exactly the query cells
    q_cells = torch.zeros(T, dtype=torch.bool)
    for k in (1, 2, 3):
        q_cells[lay.query(k)] = True
    assert (b.loss_mask == q_cells).all()
    # query inputs are all MASK, SEPs are SEP, rule tokens encode the rule
    assert (b.inputs[:, q_cells] == tok.MASK).all()
    assert (b.inputs[:, lay.seps()] == tok.SEP).all()
    rule_bits = b.model_kwargs["cond"].long()
    assert b.model_kwargs["cond"].shape == (8, 18) and b.model_kwargs["cond"].dtype == torch.float32
    assert torch.equal(b.inputs[:, :18], 4 + 2 * torch.arange(18) + rule_bits)
    # targets and teacher-forced boards are the simulator's rollout of B_0 under that rule
    b0 = lay.cells(b.inputs, lay.board(0))
    assert set(b0.unique().tolist()) <= {0, 1}
    truth = rollout(b0, rule_bits, 3)
    for k in (1, 2, 3):
        assert torch.equal(lay.cells(b.targets, lay.query(k)), truth[:, k])
        if k < 3:
            assert torch.equal(lay.cells(b.inputs, lay.board(k)), truth[:, k])
    assert torch.equal(lay.rule_bits(b.inputs), rule_bits)


# ----- attention mask vs meaning -------------------------------------------------------------------
def row_set(mask, i):
    return set(mask[i].nonzero()[:, 0].tolist())


def span(sl):
    return set(range(sl.start, sl.stop))


@pytest.mark.parametrize("K", [1, 2, 3])
def test_attention_mask_structure(K):
    lay = SeqLayout(3, 4, K)
    m = lay.attention_mask()
    T = lay.seq_len
    assert m.shape == (T, T) and m.dtype == torch.bool
    assert m.any(1).all()  # no empty row
    assert m[:, :18].all()  # everyone reads the rule
    rule = set(range(18))
    for i in list(range(18)) + lay.seps():
        assert row_set(m, i) == rule | {i}
    for k in range(K):
        for i in span(lay.board(k)):
            assert row_set(m, i) == rule | span(lay.board(k))
        for i in span(lay.query(k + 1)):
            assert row_set(m, i) == rule | span(lay.board(k))  # Q_{k+1}: rule + B_k, nothing else


def test_layout_of_task():
    task = LifeTask(board=[4, 4], horizons=2)
    layout = task.layout()
    lay = task.seq
    assert torch.equal(layout.attn_mask, lay.attention_mask())
    assert torch.equal(layout.positions, lay.positions())
    assert torch.equal(layout.segment_ids, lay.segment_ids())


def test_prefix_of_a_longer_layout_is_the_one_step_layout():
    long, short = SeqLayout(4, 5, 3), SeqLayout(4, 5, 1)
    T1 = short.seq_len
    assert torch.equal(long.attention_mask()[:T1, :T1], short.attention_mask())
    assert torch.equal(long.positions()[:T1], short.positions())
    assert torch.equal(long.segment_ids()[:T1], short.segment_ids())
    assert long.query(1) == short.query(1)


def reach(mask, layers):
    """Which inputs can reach which outputs through `layers` attention layers plus the residual stream."""
    step = mask | torch.eye(len(mask), dtype=torch.bool)
    r = step.clone()
    for _ in range(layers - 1):
        r = (r.float() @ step.float()) > 0
    return r


def violations(mask, allowed, target_rows, layers=1):
    r = reach(mask, layers)
    return (r & ~allowed)[target_rows].sum().item()


@pytest.mark.parametrize("K", [1, 2, 3])
def test_attention_within_allowed(K):
    lay = SeqLayout(3, 4, K)
    allowed, m = lay.allowed_inputs(), lay.attention_mask()
    targets = lay.loss_mask()
    assert allowed.shape == m.shape and allowed.dtype == torch.bool
    assert allowed[~targets].all()  # rows that are not predictions are not audited
    for layers in (1, 2, 4):  # through any depth, not just one layer
        assert violations(m, allowed, targets, layers) == 0


def test_allowed_inputs_meaning():
    lay = SeqLayout(3, 3, 3)
    a = lay.allowed_inputs()
    i = lay.query(2).start + 4  # a cell of Q_2 (board t+2)
    ok = set(range(18)) | set(lay.seps()) | span(lay.board(0)) | span(lay.board(1)) | {i}
    assert row_set(a, i) == ok
    assert not a[i, lay.board(2)].any() and not a[i, lay.query(1)].any()


def test_sabotaged_masks_are_caught():
    lay = SeqLayout(3, 4, 2)
    allowed, targets = lay.allowed_inputs(), lay.loss_mask()
    leaky = lay.attention_mask().clone()
    leaky[lay.query(1), lay.board(1)] = True  # Q_1 sees board t+1: the answer
    assert violations(leaky, allowed, targets) > 0
    # an indirect leak (B_0 sees B_1) only shows through two layers
    indirect = lay.attention_mask().clone()
    indirect[lay.board(0), lay.board(1)] = True
    assert violations(indirect, allowed, targets, layers=1) == 0
    assert violations(indirect, allowed, targets, layers=2) > 0
    # a query seeing its neighbours' (masked) inputs is also outside the meaning
    chatty = lay.attention_mask().clone()
    chatty[lay.query(2), lay.query(2)] = True
    assert violations(chatty, allowed, targets) > 0
