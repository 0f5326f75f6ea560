"""The leakage audit: silent on honest masks, loud (and specific) on masks or tokenizations that leak."""

import re

import pytest
import torch

from interfere.model import build_model
from interfere.tasks.base import Layout
from interfere.train.audit import LeakageError, audit_leakage
from toy_task import ToyTask, make_cfg, one_thread  # noqa: F401 (autouse fixture)


def _setup(variant="copy", n=4, leak=None):
    task = ToyTask(variant=variant, n=n, leak=leak)
    torch.manual_seed(0)
    model = build_model(dict(d_model=32, n_layers=2, n_heads=4, d_mlp=64), task.vocab_size, task.seq_len)
    model.set_layout(task.layout()).train()
    return model, task, task.train_batch(0, 2)


def _named(msg):
    """(target positions, forbidden input position) named by a LeakageError."""
    targets = [int(p) for p in re.search(r"prediction at position\(s\) ([\d, ]+)", msg).group(1).split(",")]
    return targets, int(re.search(r"input position (\d+)", msg).group(1))


@pytest.mark.parametrize("variant", ["copy", "block"])
def test_passes_on_honest_masks(variant):
    model, task, batch = _setup(variant)
    report = audit_leakage(model, task, batch)
    assert report["groups"] > 0 and report["max_diff"] <= 1e-5
    assert model.training  # mode restored


def test_catches_a_non_causal_mask():
    model, task, batch = _setup("copy")
    T = task.seq_len
    model.set_layout(Layout(attn_mask=torch.ones(T, T, dtype=torch.bool)))
    with pytest.raises(LeakageError) as e:
        audit_leakage(model, task, batch)
    targets, culprit = _named(str(e.value))
    allowed = task.allowed_inputs()
    assert all(not allowed[t, culprit] for t in targets)  # the named input is really forbidden for them
    assert model.training
    # and it really matters: changing that single input moves those predictions
    model.eval()
    x = batch.inputs[:2].clone()
    x[:, culprit] = (x[:, culprit] + 1) % task.vocab_size
    assert (model(x) - model(batch.inputs[:2]))[:, targets].abs().max() > 1e-5
    assert "attention mask" in str(e.value) and "tokenization" in str(e.value)


def test_catches_a_task_that_leaks_targets_through_the_mask():
    model, task, batch = _setup("block", leak="earlier")
    with pytest.raises(LeakageError) as e:
        audit_leakage(model, task, batch)
    targets, culprit = _named(str(e.value))
    n = task.n
    # The named input is an answer slot (holding a target token) that the named queries must not see.
    assert n <= culprit < max(targets) and culprit not in targets
    assert torch.equal(batch.inputs[:, culprit], batch.targets[:, culprit])


def test_catches_the_answer_written_into_its_own_slot():
    model, task, batch = _setup("block", n=16, leak="own")
    with pytest.raises(LeakageError, match=r"tokenization.*placeholder") as e:
        audit_leakage(model, task, batch)
    assert "position 16" in str(e.value)  # the first target slot
    assert model.training
    # The same tokenization with placeholders passes.
    model, task, batch = _setup("block", n=16)
    audit_leakage(model, task, batch)


def test_training_stops_before_writing_anything_on_a_leak(tmp_path):
    from interfere.train import train

    with pytest.raises(LeakageError):
        train(make_cfg(tmp_path / "runs", task={"variant": "block", "leak": "earlier"}, steps=2))
    assert not (tmp_path / "runs").exists()
