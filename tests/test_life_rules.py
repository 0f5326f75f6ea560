"""Rule-general Life: the held-out rule split, rule sets and curricula, the (state, count) breakdown of the
evaluation, and a FiLM-conditioned model whose every parameter trains."""

import pytest
import torch

from interfere.errors import ConfigError
from interfere.tasks.life import LifeTask
from interfere.tasks.life import evaluate as E
from interfere.tasks.life import rules as R
from interfere.tasks.life.simulate import step
from interfere.tasks.life.tokens import ALIVE, DEAD, VOCAB_SIZE, SeqLayout


# ----- the split --------------------------------------------------------------------------------------
def ref_hash(x: int) -> int:
    """The split's hash in plain Python integers (no int64 tricks): an independent implementation."""
    x ^= x >> 16
    x = (x * 0x45D9F3B) % 2**32
    x ^= x >> 16
    x = (x * 0x45D9F3B) % 2**32
    return x ^ (x >> 16)


def test_split_is_the_documented_hash_and_partitions_all_rules():
    g = torch.Generator().manual_seed(0)
    some = torch.randint(0, R.N_RULES, (500,), generator=g)
    expected = torch.tensor([ref_hash(int(i)) % R.HELDOUT_MODULUS == 0 for i in some])
    assert torch.equal(R.is_heldout(R.from_ids(some)), expected)
    train, held = R.split_ids("train"), R.split_ids("heldout")
    assert len(train) + len(held) == R.N_RULES and not torch.isin(held, train).any()
    assert len(held) == 26_051  # 9.94%, the share the docs state
    assert torch.equal(R.split_ids("heldout"), held)  # deterministic
    assert not R.is_heldout(R.parse("B3/S23")) and R.is_heldout(R.parse("serviettes"))
    with pytest.raises(ValueError, match="'train' and 'heldout'"):
        R.split_ids("test")


def test_ids_round_trip():
    bits = R.random_rules(100, torch.Generator().manual_seed(1))
    assert torch.equal(R.from_ids(R.ids(bits)), bits)
    assert R.ids(R.parse("B3/S23")).item() == 2**3 + 2**(9 + 2) + 2**(9 + 3)


def test_training_stream_never_draws_a_heldout_rule():
    train, held = LifeTask(board=[3, 3], rules="random"), LifeTask(board=[3, 3], rules="heldout")
    seen_train = torch.cat([train.train_batch(s, 256).model_kwargs["cond"] for s in range(200)]).long()
    seen_held = torch.cat([held.train_batch(s, 256).model_kwargs["cond"] for s in range(20)]).long()
    assert not R.is_heldout(seen_train).any() and R.is_heldout(seen_held).all()
    assert len(R.ids(seen_train).unique()) > 40_000  # 51,200 draws over 236,093 rules: nearly all distinct
    assert abs(seen_train.float().mean().item() - 0.5) < 0.01


def test_rule_specs():
    ids, label = R.resolve(["conway", "B2/S", "conway"])
    assert label == "B3/S23,B2/S,B3/S23" and ids.tolist() == [R.ids(R.parse("B3/S23")).item(), 4, ids[0].item()]
    assert R.resolve("HeldOut")[1] == "heldout"
    with pytest.raises(ConfigError, match="task.rules: .*'B9'.*heldout"):
        LifeTask(rules="B9")
    with pytest.raises(ConfigError, match="empty"):
        LifeTask(rules=[])


def test_curriculum_phases_then_the_rules():
    task = LifeTask(board=[4, 4], rules="random", curriculum=[{"rules": "B3/S23", "steps": 3},
                                                              {"rules": ["B36/S23", "B2/S"], "steps": 2}])
    conway = R.parse("B3/S23").float()
    assert all((task.train_batch(s, 8).model_kwargs["cond"] == conway).all() for s in range(3))
    second = {R.format(r.long()) for s in (3, 4) for r in task.train_batch(s, 32).model_kwargs["cond"]}
    assert second == {"B36/S23", "B2/S"}
    later = task.train_batch(5, 64).model_kwargs["cond"]
    assert len({tuple(r.tolist()) for r in later}) > 60
    assert torch.isin(R.ids(R.parse("B3/S23")), task.train_ids)
    with pytest.raises(ConfigError, match=r"task.curriculum\[0\].*steps"):
        LifeTask(curriculum=[{"rules": "B3/S23"}])
    with pytest.raises(ConfigError, match=r"task.curriculum\[1\].rules"):
        LifeTask(curriculum=[{"rules": "B3/S23", "steps": 1}, {"rules": "B3/S99", "steps": 1}])


# ----- the evaluation breakdown on a hand-made board -----------------------------------------------
class Fixed(torch.nn.Module):
    """Predicts next(prev board [B, H, W], rule bits [B, 18]) at the one-step query slot."""

    def __init__(self, next_board):
        super().__init__()
        self.next_board = next_board

    def forward(self, inputs, cond=None):
        B, T = inputs.shape
        side = int(round(((T - 20) / 2) ** 0.5))
        lay = SeqLayout(side, side, 1)
        logits = torch.zeros(B, T, VOCAB_SIZE)
        nxt = self.next_board(lay.cells(inputs, lay.board(0)), lay.rule_bits(inputs))
        logits[:, lay.query(1), DEAD] = (nxt.reshape(B, -1) == 0).float()
        logits[:, lay.query(1), ALIVE] = (nxt.reshape(B, -1) == 1).float()
        return logits


ALL_DEAD = Fixed(lambda prev, rule: torch.zeros_like(prev))
EXACT = Fixed(lambda prev, rule: step(prev, rule))


def blinker(row: int) -> torch.Tensor:
    board = torch.zeros(1, 5, 5, dtype=torch.long)
    board[0, row, 1:4] = 1
    return board


def test_state_count_breakdown_equals_a_hand_count():
    # A horizontal blinker on the middle row of a 5x5 torus, counted by hand: rows 0 and 4 see no live cell
    # (B0: 10 cells); (1,0) (1,4) (3,0) (3,4) (2,0) (2,4) see one (B1: 6); (1,1) (1,3) (3,1) (3,3) two (B2: 4);
    # (1,2) (3,2) three (B3: 2); the blinker's ends see one (S1: 2) and its middle two (S2: 1).
    conway = R.parse("B3/S23")[None]
    out = E.summarize(E.add(None, E.tally(ALL_DEAD, blinker(2), conway, 1, 1)), 5, 5)
    share = {k: v * 25 for k, v in out["state_count_share"].items() if v}
    assert share == pytest.approx({"B0": 10, "B1": 6, "B2": 4, "B3": 2, "S1": 2, "S2": 1})
    # Conway turns it vertical: (1,2) (2,2) (3,2) alive. All-dead is wrong on exactly those: B3 (2 cells), S2 (1).
    acc = out["by_state_count"]
    assert acc["B3"] == 0.0 and acc["S2"] == 0.0
    assert acc["B0"] == acc["B1"] == acc["B2"] == acc["S1"] == 1.0
    assert acc["B4"] is None and acc["S0"] is None  # no such cell
    assert out["cell_accuracy"] == pytest.approx(22 / 25) and out["board_accuracy"] == 0.0
    assert out["border_cell_accuracy"] == 1.0 and out["interior_cell_accuracy"] == pytest.approx(6 / 9)
    assert out["rollout_divergence_k1"] == pytest.approx(3 / 25)
    # On the top row the blinker's new cells (4,2) and (0,2) sit on the border, (1,2) inside.
    top = E.summarize(E.tally(ALL_DEAD, blinker(0), conway, 1, 1), 5, 5)
    assert top["border_cell_accuracy"] == pytest.approx(14 / 16) and top["interior_cell_accuracy"] == pytest.approx(8 / 9)


def test_breakdown_of_a_known_model_on_random_boards():
    """All-dead is right exactly where the rule says dead: accuracy of entry e is 1 - rule bit e."""
    task = LifeTask(board=[6, 6], rules="B36/S23")
    out = task.evaluate(ALL_DEAD, n_samples=300, seed=3, rollout_steps=2)  # two chunks
    bits = R.parse("B36/S23").tolist()
    for i, name in enumerate(E.ENTRIES):
        if out["by_state_count"][name] is not None:
            assert out["by_state_count"][name] == 1 - bits[i], name
    assert sum(out["state_count_share"].values()) == pytest.approx(1.0)
    assert out["rollout_samples"] == 200 and out["n_samples"] == 300


def test_log_metrics_histogram_equals_a_direct_count():
    task = LifeTask(board=[5, 5], rules="random")
    b = task.train_batch(0, 16)
    lay = task.seq
    board = lay.cells(b.inputs, lay.board(0))
    m = task.log_metrics(EXACT(b.inputs, **b.model_kwargs), b)
    from interfere.tasks.life.simulate import neighbours

    entry = 9 * board + neighbours(board)
    for i, name in enumerate(E.ENTRIES):
        assert m[f"stream_share_{name}"] == pytest.approx((entry == i).float().mean().item())
        assert m[f"acc_{name}"] == 1.0 or ((entry == i).sum() == 0 and m[f"acc_{name}"] != m[f"acc_{name}"])


# ----- rule-general evaluation --------------------------------------------------------------------------
def test_rule_general_evaluation_reports_heldout_and_named_rules_with_their_split():
    task = LifeTask(board=[4, 4], rules="random", eval={"rule_samples": 8, "rollout_samples": 4})
    out = task.evaluate(EXACT, n_samples=20, seed=0, rollout_steps=2)
    assert out["cell_accuracy"] == out["heldout"]["cell_accuracy"] == 1.0
    assert out["in_training_share"] == 1.0 and out["heldout"]["in_training_share"] == 0.0
    assert out["heldout"]["rollout_samples"] == 4 and out["heldout"]["rule"] == "heldout"
    assert set(out["per_rule"]) == {R.format(R.parse(r)) for r in R.NAMED.values()}
    assert out["per_rule"]["B3/S23"]["in_training"] and not out["per_rule"]["B234/S"]["in_training"]
    # the same held-out boards however they are asked for
    again = task.evaluate(ALL_DEAD, n_samples=20, seed=0, rules="heldout")
    assert again["cell_accuracy"] == task.evaluate(ALL_DEAD, n_samples=20, seed=0)["heldout"]["cell_accuracy"]


def test_evaluating_on_given_rules_says_whether_training_saw_them():
    general, conway = LifeTask(board=[4, 4], rules="random"), LifeTask(board=[4, 4], rules="B3/S23")
    assert general.evaluate(EXACT, 8, 0, rules="B36/S23")["in_training"] is True
    assert general.evaluate(EXACT, 8, 0, rules="B234/S")["in_training"] is False
    assert conway.evaluate(EXACT, 8, 0, rules="B36/S23")["in_training"] is False
    assert conway.evaluate(EXACT, 8, 0, rules="conway")["in_training"] is True
    listed = conway.evaluate(EXACT, 8, 0, rules=["B3/S23", "B36/S23"])
    assert listed["in_training_share"] == 0.5 and listed["rule"] == "B3/S23,B36/S23"
    with pytest.raises(ConfigError, match="rules: "):
        conway.evaluate(EXACT, 8, 0, rules="B3/S2/3")


# ----- FiLM trains --------------------------------------------------------------------------------------
def test_every_parameter_of_a_film_model_gets_a_gradient_and_is_in_the_optimizer():
    from interfere.model import HookedGPT, ModelConfig
    from interfere.train.loop import default_loss
    from interfere.train.config import TrainConfig
    from interfere.train.optim import build_optimizer

    task = LifeTask(board=[4, 4], rules="random")
    torch.manual_seed(0)
    model = HookedGPT(ModelConfig(d_model=32, n_layers=2, n_heads=2, d_head=16, n_ctx=task.seq_len,
                                  d_vocab=task.vocab_size, positional_embedding_type="rope2d", rope_period=4,
                                  n_segments=4, n_cond=18)).set_layout(task.layout())
    films = {n for n in dict(model.named_parameters()) if ".film" in n}
    assert len(films) == 2 * 2 * 2  # 2 blocks x (before attention, before the MLP) x (weight, bias)
    optimizer = build_optimizer(model, TrainConfig.defaults(lr=1e-2, weight_decay=0.1, betas=[0.9, 0.95], steps=1))
    in_optimizer = {id(p) for g in optimizer.param_groups for p in g["params"]}
    assert in_optimizer == {id(p) for p in model.parameters()}
    before = {n: p.detach().clone() for n, p in model.named_parameters()}
    batch = task.train_batch(0, 8)
    default_loss(model, batch)[0].backward()
    no_grad = [n for n, p in model.named_parameters() if p.grad is None or not p.grad.abs().sum() > 0]
    assert no_grad == []
    optimizer.step()
    unchanged = [n for n, p in model.named_parameters() if torch.equal(p, before[n])]
    assert unchanged == []
    # FiLM starts as the identity and the rule now changes the model's output
    other = batch.model_kwargs["cond"].flip(0)
    assert not torch.allclose(model(batch.inputs, cond=other), model(batch.inputs, **batch.model_kwargs))


def test_the_rule_general_preset_trains_on_training_rules_with_film_and_no_aids():
    from interfere.config import compose
    from interfere.model import build_model
    from interfere.tasks import build_task

    cfg = compose(["exp=life16_rules"])
    task = build_task(cfg.task, "cpu")
    model = build_model(cfg.model, task.vocab_size, task.seq_len)
    assert model.cfg.n_cond == 18 and model.cfg.act_fn == "swiglu" and task.varies
    held = set(R.split_ids("heldout").tolist())
    for end, stream in task.curriculum:  # every phase, Conway's and the 16 rules', draws training rules only
        assert not set(stream.rule_ids.tolist()) & held
    # locality and counting are the model's to learn: each target sees all of board t, not a 3x3 stencil
    assert (task.layout().attn_mask[-task.height * task.width:].sum(-1) >= task.height * task.width).all()
