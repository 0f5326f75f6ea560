"""Learning-rate schedule, optimizer decay groups, run-length arithmetic, device choice."""

import math
import re

import pytest
import torch

from interfere.device import pick_device
from interfere.errors import ConfigError
from interfere.model.modes import unwrap
from interfere.train.distributed import Dist, all_reduce_sum, init, wrap
from interfere.train.config import TrainConfig, parse_tokens
from interfere.train.optim import build_optimizer, decay_split
from interfere.train.schedule import lr_at

BASE = dict(lr=2.0, warmup_steps=10, hold_steps=5, min_lr_ratio=0.1, steps=115)
TOTAL = 115  # decay runs over steps 15..115


def test_warmup_is_linear_from_zero():
    cfg = TrainConfig.defaults(**BASE, schedule="cosine")
    assert lr_at(0, TOTAL, cfg) == 0.0
    assert lr_at(1, TOTAL, cfg) == pytest.approx(0.2)
    assert lr_at(5, TOTAL, cfg) == pytest.approx(1.0)
    assert lr_at(10, TOTAL, cfg) == pytest.approx(2.0)


def test_hold_keeps_the_peak():
    cfg = TrainConfig.defaults(**BASE, schedule="cosine")
    assert [lr_at(s, TOTAL, cfg) for s in range(10, 16)] == [2.0] * 6


def test_cosine_endpoints_and_midpoint():
    cfg = TrainConfig.defaults(**BASE, schedule="cosine")
    lo = 2.0 * 0.1
    assert lr_at(TOTAL, TOTAL, cfg) == pytest.approx(lo)
    assert lr_at(65, TOTAL, cfg) == pytest.approx((2.0 + lo) / 2)  # halfway through the decay
    s = 40
    expected = lo + (2.0 - lo) * 0.5 * (1 + math.cos(math.pi * (s - 15) / 100))
    assert lr_at(s, TOTAL, cfg) == pytest.approx(expected)
    assert lr_at(TOTAL + 50, TOTAL, cfg) == pytest.approx(lo)  # never below min after the end
    lrs = [lr_at(s, TOTAL, cfg) for s in range(15, TOTAL + 1)]
    assert all(a >= b for a, b in zip(lrs, lrs[1:]))


def test_linear_decay():
    cfg = TrainConfig.defaults(**BASE, schedule="linear")
    assert lr_at(65, TOTAL, cfg) == pytest.approx(1.1)
    assert lr_at(40, TOTAL, cfg) == pytest.approx(2.0 - 1.8 * 0.25)
    assert lr_at(TOTAL, TOTAL, cfg) == pytest.approx(0.2)


def test_constant_after_warmup():
    cfg = TrainConfig.defaults(**BASE, schedule="constant")
    assert lr_at(5, TOTAL, cfg) == pytest.approx(1.0)
    assert {lr_at(s, TOTAL, cfg) for s in range(10, TOTAL + 1)} == {2.0}


def test_no_warmup_and_unknown_schedule():
    cfg = TrainConfig.defaults(lr=1.0, schedule="linear", min_lr_ratio=0.0, warmup_steps=0, steps=10)
    assert lr_at(1, 10, cfg) == pytest.approx(0.9)
    with pytest.raises(ConfigError, match="train.schedule='exponential'; choose one of cosine, linear, constant"):
        TrainConfig.defaults(lr=1.0, schedule="exponential", steps=10)


# ----- optimizer groups ---------------------------------------------------------------------------
def _model(**kw):
    from interfere.model import build_model

    cfg = dict(d_model=16, n_layers=1, n_heads=2, d_mlp=32, n_segments=2, n_cond=3)
    cfg.update(kw)
    return build_model(cfg, vocab_size=11, seq_len=8)


def test_decay_groups_by_name():
    decay, no_decay = decay_split(_model())
    for name in ["blocks.0.attn.qkv.weight", "blocks.0.attn.out.weight", "blocks.0.mlp.fc_in.weight",
                 "blocks.0.mlp.fc_out.weight", "unembed.weight"]:
        assert name in decay, name
    for name in ["embed.weight", "pos_embed.W_pos", "segment_embed.W_seg", "blocks.0.ln1.w", "blocks.0.ln1.b",
                 "ln_final.w", "blocks.0.attn.qkv.bias", "blocks.0.mlp.fc_out.bias"]:
        assert name in no_decay, name
    assert any("film" in n and n.endswith("weight") for n in decay)  # FiLM projections are matrices
    assert set(decay).isdisjoint(no_decay)


def test_optimizer_groups_carry_the_decay():
    model = _model(tie_embeddings=True)
    opt = build_optimizer(model, TrainConfig.defaults(lr=1e-3, weight_decay=0.1, betas=[0.9, 0.95], steps=1))
    decay_group, plain_group = opt.param_groups
    assert decay_group["weight_decay"] == 0.1 and plain_group["weight_decay"] == 0.0
    assert decay_group["betas"] == (0.9, 0.95)
    in_decay = {id(p) for p in decay_group["params"]}
    assert id(model.embed.weight) not in in_decay  # tied: the embedding is the unembedding, not decayed
    n_all = len({id(p) for p in model.parameters()})
    assert len(decay_group["params"]) + len(plain_group["params"]) == n_all
    assert opt.defaults["fused"]  # torch has a fused AdamW for CPU (>= 2.4): one kernel per update


def test_the_fused_update_is_the_plain_per_parameter_update():
    cfg = TrainConfig.defaults(lr=1e-2, weight_decay=0.1, steps=1)
    models = [_model(), _model()]
    models[1].load_state_dict(models[0].state_dict())
    start = {k: v.clone() for k, v in models[0].state_dict().items()}
    groups = [{"params": g["params"], "weight_decay": g["weight_decay"]}
              for g in build_optimizer(models[1], cfg).param_groups]
    per_param = torch.optim.AdamW(groups, lr=cfg.lr, betas=tuple(cfg.betas), foreach=False)
    opts = [build_optimizer(models[0], cfg), per_param]
    g = torch.Generator().manual_seed(0)
    for _ in range(3):
        grads = [torch.randn(p.shape, generator=g) for p in models[0].parameters()]
        for model, opt in zip(models, opts):
            for p, grad in zip(model.parameters(), grads):
                p.grad = grad.clone()
            opt.step()
    fused, plain = models[0].state_dict(), models[1].state_dict()
    assert all((fused[k] - start[k]).abs().max() > 1e-3 for k in fused)  # every weight moved
    for k in fused:
        torch.testing.assert_close(fused[k], plain[k], rtol=1e-5, atol=1e-6)


# ----- run length ---------------------------------------------------------------------------------
def test_token_budget_to_steps():
    def plan(seq_len, world_size, **kw):
        return TrainConfig.defaults(**{"steps": None, "tokens": 1000, "batch_size": 8, "grad_accum": 2, **kw}).plan(
            seq_len, world_size)

    # 2 processes x 8 samples x 2 micro-batches x 7 tokens = 224 tokens/step; ceil(1000 / 224) = 5
    assert plan(7, 2) == (5, 224)
    assert plan(7, 2, tokens=896) == (4, 224)
    assert plan(7, 1, tokens=1000) == (9, 112)
    assert plan(7, 4, tokens=None, steps=3) == (3, 448)


def test_token_counts_parse():
    assert parse_tokens(2_000_000) == parse_tokens("2M") == parse_tokens("2e6") == parse_tokens(2e6) == 2_000_000
    assert parse_tokens("2.5k") == 2500
    with pytest.raises(ConfigError, match="train.tokens"):
        parse_tokens("lots")


@pytest.mark.parametrize("steps,tokens,match", [(10, 1000, "both"), (None, None, "neither")])
def test_exactly_one_of_steps_and_tokens(steps, tokens, match):
    with pytest.raises(ConfigError, match=f"train.steps and train.tokens.*{match}"):
        TrainConfig.defaults(steps=steps, tokens=tokens, batch_size=2, grad_accum=1)


@pytest.mark.parametrize("override,message", [
    (dict(lr=-1), "train.lr=-1 must be a positive learning rate"),
    (dict(betas=[2, 3]), "train.betas=[2, 3] must be two numbers in [0, 1)"),
    (dict(steps=10**12), "train.steps=1000000000000 is more steps than a run can take"),
    (dict(batch_size=0), "train.batch_size=0 must be an integer >= 1"),
    (dict(loggers=["foo"]), "train.loggers has 'foo'; known loggers: wandb, tensorboard"),
    (dict(dtype="fp16"), "train.dtype='fp16'; choose one of auto, fp32, bf16"),
    (dict(deterministic="yes"), "train.deterministic='yes'; choose true, false or auto"),
])
def test_bad_values_are_refused_naming_the_key(override, message):
    with pytest.raises(ConfigError, match=re.escape(message)):
        TrainConfig.defaults(**{"steps": 10, **override})


def test_a_token_budget_of_more_steps_than_a_run_can_take_is_refused():
    cfg = TrainConfig.defaults(steps=None, tokens=1e20, batch_size=8)
    with pytest.raises(ConfigError, match="train.tokens=1e\\+20 is 1.25e\\+17 steps of 800 tokens"):
        cfg.plan(seq_len=100)


def test_every_default_is_in_the_yaml_and_nowhere_else():
    import dataclasses

    from interfere.train.config import default_node

    assert [f.name for f in dataclasses.fields(TrainConfig)] == list(default_node())  # the same keys, in order
    assert all(f.default is dataclasses.MISSING for f in dataclasses.fields(TrainConfig))  # no second default


# ----- device and single-process distributed ------------------------------------------------------
def test_pick_device():
    assert pick_device("cpu") == torch.device("cpu")
    if not torch.cuda.is_available():
        assert pick_device("auto").type in ("cpu", "mps")
        with pytest.raises(ConfigError, match="CUDA is not available"):
            pick_device("cuda")
    with pytest.raises(ConfigError, match="not a device"):
        pick_device("gpu please")


def test_single_process_needs_no_process_group(monkeypatch):
    for var in ("WORLD_SIZE", "RANK", "LOCAL_RANK"):
        monkeypatch.delenv(var, raising=False)
    dist = init("cpu")
    assert (dist.rank, dist.world_size, dist.is_main, dist.enabled) == (0, 1, True, False)
    model = torch.nn.Linear(2, 2)
    assert wrap(model, dist) is model and unwrap(model) is model
    t = torch.tensor(3.0)
    assert all_reduce_sum(t, Dist()).item() == 3.0
