"""LifeTask: the data stream, scheduled sampling, metrics, evaluation, rendering and the real model."""

from pathlib import Path

import imageio
import numpy as np
import pytest
import torch
import torch.nn.functional as F
import yaml

from interfere.tasks import build_task
from interfere.tasks.base import Task
from interfere.tasks.life import LifeTask
from interfere.tasks.life import rules as R
from interfere.tasks.life.rollout import model_rollout, predict_next
from interfere.tasks.life.simulate import rollout, step
from interfere.tasks.life.tokens import ALIVE, DEAD, MASK, VOCAB_SIZE, SeqLayout

LIFE_YAML = Path(__file__).parents[1] / "src/interfere/conf/task/life.yaml"


# ----- stand-in models: read board B_{k-1} straight from the tokens, answer at Q_k ------------------
class StandIn(torch.nn.Module):
    """Answers every query slot in the input from the board before it, as a masked model must.

    next_board(prev [B,H,W], rule_bits [B,18]) -> [B,H,W] decides what it predicts. Records how it was called.
    """

    def __init__(self, H, W, K, next_board):
        super().__init__()
        self.lay, self.K, self.next_board = SeqLayout(H, W, K), K, next_board
        self.calls, self.grad_enabled, self.modes = 0, [], []

    def forward(self, inputs, cond=None):
        self.calls += 1
        self.grad_enabled.append(torch.is_grad_enabled())
        self.modes.append(self.training)
        B, T = inputs.shape
        logits = torch.zeros(B, T, VOCAB_SIZE)
        logits[..., MASK] = 5.0  # a distractor outside DEAD/ALIVE, which predictions must ignore
        rule_bits = self.lay.rule_bits(inputs)
        assert cond is not None and torch.equal(cond.long(), rule_bits)
        for k in range(1, self.K + 1):
            q = self.lay.query(k)
            if q.stop > T:
                break
            prev = self.lay.cells(inputs, self.lay.board(k - 1))
            nxt = self.next_board(prev, rule_bits)
            logits[:, q, :2] = 20.0 * F.one_hot(nxt.reshape(B, -1), 2).float() - 5.0
        return logits


def oracle(H, W, K=1):
    return StandIn(H, W, K, lambda prev, rule: step(prev, rule))


def all_dead(H, W, K=1):
    return StandIn(H, W, K, lambda prev, rule: torch.zeros_like(prev))


def identity(H, W, K=1):
    return StandIn(H, W, K, lambda prev, rule: prev)


# ----- construction -------------------------------------------------------------------------------
def test_build_from_the_shipped_config():
    cfg = yaml.safe_load(LIFE_YAML.read_text())
    task = build_task(cfg, "cpu")
    assert isinstance(task, LifeTask) and isinstance(task, Task)
    assert task.seq_len == 532 and task.vocab_size == 40
    assert task.rule_label == "B3/S23"


def test_build_errors_are_clear():
    with pytest.raises(ValueError, match="known tasks: .*life"):
        build_task({"name": "chess"}, "cpu")
    with pytest.raises(ValueError, match="boardd"):
        build_task({"name": "life", "boardd": [4, 4]}, "cpu")
    with pytest.raises(ValueError, match="'B9/S23'"):
        build_task({"name": "life", "rules": "B9/S23"}, "cpu")
    with pytest.raises(ValueError, match="density"):
        LifeTask(density=[0.8, 0.2])


# ----- the stream ---------------------------------------------------------------------------------
def test_same_step_same_batch_and_steps_differ():
    task = LifeTask(board=[5, 5], rules="random", patterns=0.5, horizons=2, seed=1)
    a, b = task.train_batch(3, 6), task.train_batch(3, 6)
    assert torch.equal(a.inputs, b.inputs) and torch.equal(a.targets, b.targets)
    assert not torch.equal(a.inputs, task.train_batch(4, 6).inputs)
    other = LifeTask(board=[5, 5], rules="random", patterns=0.5, horizons=2, seed=2)
    assert not torch.equal(a.inputs, other.train_batch(3, 6).inputs)


def test_world_size_slices_concatenate_to_the_global_batch():
    task = LifeTask(board=[4, 6], rules=["B3/S23", "B36/S23"], patterns=0.3, horizons=2,
                    scheduled_sampling={"max_prob": 0.5, "anneal_steps": 1})
    model = all_dead(4, 6, 2)
    whole = task.train_batch(5, 8, model=model)
    parts = [task.train_batch(5, 4, rank=r, world_size=2, model=model) for r in (0, 1)]
    for field in ("inputs", "targets", "loss_mask"):
        assert torch.equal(torch.cat([getattr(p, field) for p in parts]), getattr(whole, field))
    assert torch.equal(torch.cat([p.model_kwargs["cond"] for p in parts]), whole.model_kwargs["cond"])


def initial_boards(task, batch):
    return task.seq.cells(batch.inputs, task.seq.board(0)).float()


def test_density_follows_the_configured_range():
    task = LifeTask(board=[16, 16], density=[0.2, 0.4])
    d = initial_boards(task, task.train_batch(0, 256)).mean((1, 2))
    assert abs(d.mean().item() - 0.3) < 0.015
    assert d.min() > 0.1 and d.max() < 0.5
    assert d.std() > 0.04  # per-board densities vary across the range, not all at 0.3
    dense = LifeTask(board=[16, 16], density=[0.9, 0.9])
    assert abs(initial_boards(dense, dense.train_batch(0, 64)).mean().item() - 0.9) < 0.02


def test_rules_fixed_list_and_random():
    fixed = LifeTask(board=[4, 4], rules="B36/S23").train_batch(0, 16).model_kwargs["cond"]
    assert (fixed == R.parse("B36/S23").float()).all()
    two = LifeTask(board=[4, 4], rules=["B3/S23", "b2s"]).train_batch(0, 64).model_kwargs["cond"]
    seen = {R.format(r.long()) for r in two}
    assert seen == {"B3/S23", "B2/S"}
    rnd = LifeTask(board=[4, 4], rules="random").train_batch(0, 256).model_kwargs["cond"]
    assert len({tuple(r.tolist()) for r in rnd}) > 250 and abs(rnd.mean().item() - 0.5) < 0.05


def test_patterns_are_stamped():
    task = LifeTask(board=[12, 12], density=[0.0, 0.0], patterns=1.0)
    alive = initial_boards(task, task.train_batch(0, 32)).sum((1, 2))
    assert (alive >= 3).all()  # the smallest pattern (blinker) has 3 cells
    none = LifeTask(board=[12, 12], density=[0.0, 0.0], patterns=0.0)
    assert initial_boards(none, none.train_batch(0, 32)).sum() == 0
    tiny = LifeTask(board=[4, 4], density=[0.0, 0.0], patterns=1.0)  # only the block and blinker fit
    assert initial_boards(tiny, tiny.train_batch(0, 8)).sum((1, 2)).min() >= 3


# ----- scheduled sampling -------------------------------------------------------------------------
def test_schedule():
    task = LifeTask(board=[4, 4], horizons=2, scheduled_sampling={"max_prob": 0.5, "anneal_steps": 100})
    assert task.ss_prob(0) == 0.0 and task.ss_prob(50) == 0.25 and task.ss_prob(100) == task.ss_prob(10**6) == 0.5


def test_probability_zero_is_teacher_forcing():
    task = LifeTask(board=[5, 5], horizons=3, scheduled_sampling={"max_prob": 0.0})
    model = all_dead(5, 5, 3)
    with_model, without = task.train_batch(9, 8, model=model), task.train_batch(9, 8)
    assert torch.equal(with_model.inputs, without.inputs) and model.calls == 0
    lay = task.seq
    assert torch.equal(lay.cells(without.inputs, lay.board(1)), lay.cells(without.targets, lay.query(1)))
    assert torch.equal(lay.cells(without.inputs, lay.board(2)), lay.cells(without.targets, lay.query(2)))


def test_probability_one_feeds_the_models_boards():
    task = LifeTask(board=[5, 5], horizons=3, density=[0.4, 0.6],
                    scheduled_sampling={"max_prob": 1.0, "anneal_steps": 1})
    model = all_dead(5, 5, 3)
    model.train()
    fed, forced = task.train_batch(4, 8, model=model), task.train_batch(4, 8)
    lay = task.seq
    assert (lay.cells(fed.inputs, lay.board(1)) == DEAD).all()
    assert (lay.cells(fed.inputs, lay.board(2)) == DEAD).all()
    assert torch.equal(lay.cells(fed.inputs, lay.board(0)), lay.cells(forced.inputs, lay.board(0)))
    assert torch.equal(fed.targets, forced.targets)  # targets stay the truth
    assert lay.cells(forced.inputs, lay.board(1)).sum() > 0  # so the test means something
    assert model.calls == 2 and not any(model.grad_enabled) and not any(model.modes)
    assert model.training  # put back in training mode
    assert fed.ss_prob == 1.0
    # an exact model fed back is the same as teacher forcing
    assert torch.equal(task.train_batch(4, 8, model=oracle(5, 5, 3)).inputs, forced.inputs)


def test_partial_probability_mixes_samples():
    task = LifeTask(board=[5, 5], horizons=2, density=[0.4, 0.6],
                    scheduled_sampling={"max_prob": 0.5, "anneal_steps": 1})
    b = task.train_batch(2, 64, model=all_dead(5, 5, 2))
    lay = task.seq
    dead_b1 = (lay.cells(b.inputs, lay.board(1)) == DEAD).flatten(1).all(1)
    really_dead = (lay.cells(b.targets, lay.query(1)) == DEAD).flatten(1).all(1)
    frac = (dead_b1 & ~really_dead).float().mean().item()
    assert 0.25 < frac < 0.75
    assert abs(task.log_metrics(torch.zeros(64, task.seq_len, VOCAB_SIZE), b)["ss_fed"] - dead_b1.float().mean().item()) < 0.2


# ----- log_metrics ---------------------------------------------------------------------------------
def test_log_metrics_per_horizon_and_stream_stats():
    task = LifeTask(board=[5, 5], horizons=2)
    b = task.train_batch(0, 16)
    m = task.log_metrics(oracle(5, 5, 2)(b.inputs, **b.model_kwargs), b)
    assert m["acc_t1"] == m["acc_t2"] == 1.0 and m["loss_t1"] < 1e-3 and m["loss_t2"] < 1e-3
    lay = task.seq
    assert m["stream_density_t0"] == pytest.approx(initial_boards(task, b).mean().item())
    assert m["stream_alive_t1"] == pytest.approx(lay.cells(b.targets, lay.query(1)).float().mean().item())
    assert m["ss_prob"] == 0.0 and all(isinstance(v, float) for v in m.values())
    wrong = task.log_metrics(all_dead(5, 5, 2)(b.inputs, **b.model_kwargs), b)
    assert wrong["acc_t1"] == pytest.approx(1 - m["stream_alive_t1"])
    frozen = LifeTask(board=[5, 5], rules="B/S012345678")  # nothing is born, everything survives
    fb = frozen.train_batch(0, 8)
    assert frozen.log_metrics(torch.zeros(8, frozen.seq_len, VOCAB_SIZE), fb)["stream_unchanged"] == 1.0


# ----- rollouts and evaluation ---------------------------------------------------------------------
def test_predict_next_and_model_rollout():
    g = torch.Generator().manual_seed(0)
    boards = torch.randint(0, 2, (5, 6, 7), generator=g)
    rule_bits = R.random_rules(5, g)
    model = oracle(6, 7, K=3)  # a model with a longer layout answers the one-step prefix
    assert torch.equal(predict_next(model, boards, rule_bits), step(boards, rule_bits))
    assert torch.equal(model_rollout(model, boards, rule_bits, 4), rollout(boards, rule_bits, 4))
    assert predict_next(model, boards.float(), R.parse("B3/S23")).dtype == torch.float32


def test_oracle_evaluates_perfectly():
    task = LifeTask(board=[6, 6], eval={"rollout_steps": 3})
    model = oracle(6, 6)
    model.train()
    out = task.evaluate(model, n_samples=40, seed=5)
    assert out["cell_accuracy"] == out["board_accuracy"] == 1.0
    assert [out[f"rollout_divergence_k{k}"] for k in (1, 2, 3)] == [0.0, 0.0, 0.0]
    assert out["n_samples"] == 40 and out["rule"] == "B3/S23" and "per_rule" not in out
    assert model.training and not any(model.modes) and not any(model.grad_enabled)


def test_evaluate_numbers_against_a_direct_count():
    task = LifeTask(board=[6, 6], rules="B36/S23", eval={"rollout_steps": 2})
    out = task.evaluate(identity(6, 6), n_samples=50, seed=11)
    rule_bits, truth = task.stream.sample(0, 50, seed=11)  # the same held-out boards (one chunk)
    true = rollout(truth[:, 0], rule_bits, 2)
    still = true[:, 1] == true[:, 0]
    assert out["cell_accuracy"] == pytest.approx(still.float().mean().item())
    assert out["board_accuracy"] == pytest.approx(still.flatten(1).all(1).float().mean().item())
    assert out["rollout_divergence_k2"] == pytest.approx((true[:, 2] != true[:, 0]).float().mean().item())
    dead = task.evaluate(all_dead(6, 6), n_samples=50, seed=11)
    assert dead["cell_accuracy"] == pytest.approx(1 - true[:, 1].float().mean().item())


def test_evaluate_is_chunked_and_reports_per_rule():
    task = LifeTask(board=[4, 4], rules="random", eval={"rollout_steps": 1})
    out = task.evaluate(oracle(4, 4), n_samples=300, seed=0)  # 256 + 44 boards
    assert out["n_samples"] == 300 and out["rule"] == "random" and out["cell_accuracy"] == 1.0
    assert {"B3/S23", "B36/S23", "B3678/S34678", "B2/S"} <= set(out["per_rule"])
    assert all(r["cell_accuracy"] == r["board_accuracy"] == 1.0 for r in out["per_rule"].values())
    listed = LifeTask(board=[4, 4], rules=["B3/S23", "B2/S"]).evaluate(identity(4, 4), n_samples=20, seed=0)
    assert set(listed["per_rule"]) == {"B3/S23", "B2/S"}
    assert listed["per_rule"]["B2/S"]["cell_accuracy"] != listed["per_rule"]["B3/S23"]["cell_accuracy"]


# ----- rendering ------------------------------------------------------------------------------------
def test_artifacts_write_mp4_and_gif(tmp_path):
    task = LifeTask(board=[6, 7], rules="random", render={"boards": 2, "steps": 5})
    paths = task.artifacts(identity(6, 7), step=7, out_dir=tmp_path)
    mp4, gif = tmp_path / "rollouts/step_000007.mp4", tmp_path / "rollouts/step_000007.gif"
    assert paths == [mp4, gif]
    assert mp4.stat().st_size > 0 and mp4.read_bytes()[4:8] == b"ftyp"
    frames = imageio.mimread(gif)
    assert len(frames) == 6  # initial board + 5 steps
    h, w = frames[0].shape[:2]
    assert h % 16 == 0 and w % 16 == 0
    assert sorted(p.name for p in (tmp_path / "rollouts").iterdir()) == [gif.name, mp4.name]  # no temp files left
    # successive videos show the same boards
    a, _ = task.render_rollouts(identity(6, 7))
    b, _ = task.render_rollouts(identity(6, 7))
    assert torch.equal(a, b)


def test_frames_mark_differences_in_red():
    from interfere.tasks.life import render

    true = torch.zeros(1, 2, 4, 4, dtype=torch.long)
    pred = true.clone()
    pred[0, 1, 2, 3] = 1
    frames = render.frames(pred, true, cell=5)
    red = (frames[1][..., 0] > 200) & (frames[1][..., 1] < 80)
    assert red.sum() == 4 * 4 and not ((frames[0][..., 0] > 200) & (frames[0][..., 1] < 80)).any()
    assert frames[0].shape[0] % 16 == 0 and frames[0].shape[1] % 16 == 0 and frames[0].dtype.name == "uint8"
    header = frames[0][:render.LABEL].astype(int)
    assert (header - np.array(render.BACKGROUND)).any(-1).sum() > 20  # the column titles are drawn


# ----- the real model ---------------------------------------------------------------------------------
def tiny_model(task):
    import interfere.model as model_mod

    cfg = model_mod.ModelConfig(d_model=32, n_layers=1, n_heads=2, d_head=16, n_ctx=task.seq_len, d_vocab=task.vocab_size,
                                positional_embedding_type="rope2d", rotary_dim=8, n_segments=4)
    return model_mod.HookedGPT(cfg).set_layout(task.layout())


def test_real_model_evaluate_and_artifacts(tmp_path):
    torch.manual_seed(0)
    task = LifeTask(board=[6, 6], horizons=2, eval={"rollout_steps": 2}, render={"boards": 2, "steps": 3})
    model = tiny_model(task)
    b = task.train_batch(0, 4)
    logits = model(b.inputs, **b.model_kwargs)
    assert logits.shape == (4, task.seq_len, task.vocab_size)
    assert {"loss_t1", "loss_t2", "acc_t1", "acc_t2"} <= set(task.log_metrics(logits, b))
    out = task.evaluate(model, n_samples=16, seed=0)
    assert 0.0 <= out["cell_accuracy"] <= 1.0 and "rollout_divergence_k2" in out
    assert model.training
    paths = task.artifacts(model, 0, tmp_path)
    assert all(p.stat().st_size > 0 for p in paths)


def test_leakage_audit_with_the_real_model():
    torch.manual_seed(0)
    task = LifeTask(board=[4, 4], horizons=2)
    lay = task.seq
    model = tiny_model(task).eval()
    b = task.train_batch(0, 2)

    def q_logits(inputs):
        with torch.no_grad():
            return model(inputs, **b.model_kwargs)

    base = q_logits(b.inputs)
    allowed = task.allowed_inputs()
    for k in (1, 2):
        q = lay.query(k)
        forbidden = ~allowed[q].any(0)  # inputs no cell of Q_k may depend on
        poked = b.inputs.clone()
        poked[:, forbidden] = torch.where(poked[:, forbidden] == ALIVE, DEAD, ALIVE)
        assert torch.allclose(q_logits(poked)[:, q], base[:, q], atol=1e-5), k
    poked = b.inputs.clone()
    poked[:, lay.board(0)] = 1 - poked[:, lay.board(0)]
    assert not torch.allclose(q_logits(poked)[:, lay.query(1)], base[:, lay.query(1)])  # the audit can see
    # a mask that lets Q_1 see board t+1 fails the same audit
    from interfere.tasks.base import Layout

    leaky = lay.attention_mask().clone()
    leaky[lay.query(1), lay.board(1)] = True
    model.set_layout(Layout(task.layout().positions, task.layout().segment_ids, leaky))
    base = q_logits(b.inputs)
    poked = b.inputs.clone()
    poked[:, lay.board(1)] = 1 - poked[:, lay.board(1)]
    assert not torch.allclose(q_logits(poked)[:, lay.query(1)], base[:, lay.query(1)], atol=1e-5)
