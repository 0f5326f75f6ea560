"""Induction scores (interfere.analysis.induction), the repeat task, and the induction toy (slow)."""

import json
import time
from types import SimpleNamespace

import pytest
import torch

from model_helpers import tiny
from toy_task import one_thread  # noqa: F401 (autouse fixture)

from interfere.analysis.induction import induction_analysis, repeated_segments, repeated_tokens, seen_before
from interfere.tasks import build_task


def test_repeated_tokens():
    t = repeated_tokens(3, 7, (5, 9), bos=0, seed=1)
    assert t.shape == (3, 15) and (t[:, 0] == 0).all()
    assert torch.equal(t[:, 1:8], t[:, 8:]) and t[:, 1:].min() >= 5 and t[:, 1:].max() < 9
    assert torch.equal(t, repeated_tokens(3, 7, (5, 9), bos=0, seed=1))


def test_repeated_segments_and_seen_before():
    tokens, in_repeat = repeated_segments(16, 40, (1, 1000), bos=0, seed=3)
    assert tokens.shape == in_repeat.shape == (16, 40)
    for b in range(16):
        idx = in_repeat[b].nonzero()[:, 0]
        assert len(idx) >= 1
        n = int(idx[-1] - idx[0] + 2)  # the segment length: the copy minus its first token
        assert torch.equal(tokens[b, idx], tokens[b, idx - n])
    seen = seen_before(torch.tensor([[4, 5, 4, 6, 5]]))
    assert seen.tolist() == [[False, False, True, False, True]]


class PatternModel(torch.nn.Module):
    """A stand-in 'model' whose attention patterns are given: head (0, 0) attends to the previous token,
    head (1, 1) does induction (to t - L + 1), the rest attend to position 0."""

    def __init__(self, L: int, T: int):
        super().__init__()
        self.cfg = SimpleNamespace(n_layers=2, n_heads=2, d_vocab=50, n_ctx=100)
        self.L, self.T = L, T
        self.p = torch.nn.Parameter(torch.zeros(1))

    def run_with_cache(self, tokens, names_filter=None):
        B, T = tokens.shape
        base = torch.zeros(T, T)
        base[:, 0] = 1
        prev = torch.zeros(T, T)
        prev[0, 0] = 1
        prev[torch.arange(1, T), torch.arange(T - 1)] = 1
        ind = base.clone()
        q = torch.arange(1 + self.L, T)  # offset 1 (BOS)
        ind[q] = 0
        ind[q, q - self.L + 1] = 1
        cache = {"blocks.0.attn.hook_pattern": torch.stack([prev, base])[None].expand(B, -1, -1, -1),
                 "blocks.1.attn.hook_pattern": torch.stack([base, ind])[None].expand(B, -1, -1, -1)}
        logits = torch.zeros(B, T, 50)
        return logits, cache


def test_scores_on_known_patterns():
    L = 10
    model = PatternModel(L, 1 + 2 * L)
    r = induction_analysis(model, seq_len=L, batch=4, bos=0, vocab=(1, 50))
    assert r.induction_head == (1, 1) and r.previous_token_head == (0, 0)
    assert r.scores["induction"][1, 1] == pytest.approx(1.0)
    assert r.scores["prefix_matching"][1, 1] == pytest.approx(1.0)
    assert r.scores["previous_token"][0, 0] == pytest.approx(1.0)
    assert r.scores["induction"][0].max() == 0 and r.scores["duplicate_token"].max() == 0
    assert r.loss_first == pytest.approx(r.loss_second)  # uniform logits: ln(50) everywhere
    out = r.to_json(3)
    assert out["induction_head"]["name"] == "L1H1" and len(out["top_heads"]) == 3


def test_on_a_real_model():
    model = tiny(n_ctx=32)
    r = induction_analysis(model, seq_len=12, batch=2, bos=None)
    assert r.scores["induction"].shape == (2, 4) and r.offset == 0
    assert r.loss_per_position.shape == (23,)
    with pytest.raises(ValueError, match="n_ctx"):
        induction_analysis(model, seq_len=20, batch=2, bos=None)


# ----- the repeat task -------------------------------------------------------------------------------------
def repeat(**kw):
    return build_task({"name": "repeat", "vocab_size": 16, "seq_len": 24, "segment": [3, 8], **kw}, "cpu")


def test_repeat_task_batches():
    task = repeat(loss="second")
    b = task.train_batch(5, 6)
    assert b.inputs.shape == b.targets.shape == b.loss_mask.shape == (6, 24)
    assert torch.equal(b.inputs[:, 1:], b.targets[:, :-1]) and (b.inputs[:, 0] == 0).all()
    assert torch.equal(b.loss_mask, b.second) and b.second.any(1).all() and b.first.any(1).all()
    for i in range(6):  # the targets of the second copy repeat those of the first
        assert torch.equal(b.targets[i][b.second[i]], b.targets[i][b.first[i]])
    # step-indexed and split by rank: two ranks of 3 see the global batch of 6
    assert torch.equal(torch.cat([task.train_batch(5, 3, r, 2).inputs for r in range(2)]), b.inputs)
    assert not torch.equal(task.train_batch(6, 6).inputs, b.inputs)
    assert repeat().train_batch(0, 2).loss_mask.all()
    assert torch.equal(task.allowed_inputs(), torch.ones(24, 24, dtype=torch.bool).tril())


def test_repeat_task_config_errors():
    from interfere.errors import ConfigError

    with pytest.raises(ConfigError, match="does not fit"):
        repeat(segment=[3, 20])
    with pytest.raises(ConfigError, match="task.loss"):
        repeat(loss="half")


def test_repeat_task_evaluate():
    from interfere.model import ModelConfig, HookedGPT

    task = repeat()
    model = HookedGPT(ModelConfig(d_model=16, n_layers=1, n_heads=2, d_head=8, n_ctx=24, d_vocab=16, attn_only=True))
    out = task.evaluate(model, 20, seed=3)
    assert set(out) >= {"loss_first", "loss_second", "acc_first", "acc_second", "loss"}
    assert out["loss_first"] == pytest.approx(out["loss_second"], rel=0.2)  # an untrained model: chance on both
    assert out == task.evaluate(model, 20, seed=3)


# ----- the induction toy ----------------------------------------------------------------------------------
@pytest.mark.slow
def test_induction_toy_learns_an_induction_head(tmp_path, capsys):
    from interfere.config import compose
    from interfere.cli.interpret import run
    from interfere.train import train

    torch.set_num_threads(2)
    cfg = compose(["exp=induction_toy", f"runs_dir={tmp_path}", "train.progress=false"])
    t0 = time.time()
    run_dir = train(cfg)
    seconds = time.time() - t0
    capsys.readouterr()
    assert run([ "induction", f"run={run_dir}", f"runs_dir={tmp_path}", "--json"]) == 0
    out = json.loads(capsys.readouterr().out)
    r = out["result"]
    print(f"trained in {seconds:.0f} s; induction head {r['induction_head']}; previous-token head "
          f"{r['previous_token_head']}; loss {r['loss_first_repeat']:.2f} -> {r['loss_second_repeat']:.2f}")
    assert seconds < 180
    assert r["induction_head"]["layer"] == 1 and r["induction_head"]["induction"] > 0.5
    assert r["previous_token_head"]["layer"] == 0 and r["previous_token_head"]["previous_token"] > 0.5
    assert r["loss_second_repeat"] < 0.25 * r["loss_first_repeat"]
    assert all(p.endswith(".png") and (run_dir / "assets" / "plots" / "induction").is_dir() for p in out["plots"])
