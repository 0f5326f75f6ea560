"""The pieces that make CPU training independent of the thread count, each against torch's own version."""

import pytest
import torch

from interfere import device as device_module
from interfere.device import resolve_dtype
from interfere.model import ModelConfig, HookedGPT
from interfere.model.transformer import keys_seen
from interfere.tasks.life.tokens import SeqLayout
from interfere.tasks import Layout
from interfere.train import determinism


def at_threads(n, fn):
    before = torch.get_num_threads()
    torch.set_num_threads(n)
    try:
        return fn()
    finally:
        torch.set_num_threads(before)


def test_grad_norm_is_torchs_norm_and_the_same_at_any_thread_count():
    g = torch.Generator().manual_seed(0)
    grads = [torch.randn(300, 700, generator=g), torch.randn(5, generator=g), torch.randn(70_001, generator=g)]
    reference = torch.linalg.vector_norm(torch.cat([t.flatten() for t in grads]).double())
    one, two = (at_threads(n, lambda: determinism.grad_norm(grads)) for n in (1, 2))
    assert one.item() == pytest.approx(reference.item(), rel=1e-6)
    assert one.item() == two.item()  # bit for bit


def test_clip_grad_norm_scales_as_torch_does():
    g = torch.Generator().manual_seed(1)
    ours, theirs = [torch.nn.Parameter(torch.zeros(40, 30)) for _ in range(2)]
    ours.grad = torch.randn(40, 30, generator=g) * 10
    theirs.grad = ours.grad.clone()
    n_ours = determinism.clip_grad_norm([ours], 1.0)
    n_theirs = torch.nn.utils.clip_grad_norm_([theirs], 1.0)
    assert n_ours.item() == pytest.approx(n_theirs.item(), rel=1e-6)
    torch.testing.assert_close(ours.grad, theirs.grad)
    assert ours.grad.norm().item() == pytest.approx(1.0, rel=1e-4)


@pytest.mark.parametrize("norm", ["LN", "RMS"])
def test_model_gradients_are_the_same_at_one_and_two_threads_in_deterministic_mode(norm):
    torch.manual_seed(0)
    model = HookedGPT(ModelConfig(d_model=64, n_layers=2, n_heads=2, d_head=32, d_mlp=128, n_ctx=256, d_vocab=16,
                                  normalization_type=norm, n_segments=3))
    model.set_layout(Layout(segment_ids=torch.arange(256) % 3))
    tokens = torch.randint(0, 16, (16, 256))

    def grads():
        model.zero_grad()
        model(tokens).logsumexp(-1).sum().backward()
        return {n: p.grad.clone() for n, p in model.named_parameters()}

    with determinism.deterministic_mode(True, torch.device("cpu")):
        one, two = at_threads(1, grads), at_threads(2, grads)
    assert all(one[n].equal(two[n]) for n in one), [n for n in one if not one[n].equal(two[n])]
    assert not torch.are_deterministic_algorithms_enabled()  # the mode ends with the block


@pytest.mark.parametrize("dropout", [0.0, 0.1])
def test_a_life_layout_trains_the_same_at_one_and_two_threads_with_the_keys_it_needs(dropout):
    seq = SeqLayout(8, 8, 1)  # the Life task's own layout: the targets see the rule and board t, not themselves
    layout = Layout(positions=seq.positions(), segment_ids=seq.segment_ids(), attn_mask=seq.attention_mask())
    torch.manual_seed(0)
    model = HookedGPT(ModelConfig(d_model=64, n_layers=2, n_heads=2, d_head=32, d_mlp=128, n_ctx=seq.seq_len,
                                  d_vocab=40, positional_embedding_type="rope2d", rope_period=8, n_segments=4,
                                  dropout=dropout)).set_layout(layout).train()
    tokens = torch.randint(0, 40, (8, seq.seq_len))

    def grads():
        torch.manual_seed(1)  # the same dropout masks
        model.zero_grad()
        model(tokens).logsumexp(-1).sum().backward()
        return {n: p.grad.clone() for n, p in model.named_parameters()}

    with determinism.deterministic_mode(True, torch.device("cpu")):
        keys = model._keys_needed(slice(0, seq.seq_len))
        one, two = at_threads(1, grads), at_threads(2, grads)
    # without dropout the fused attention leaves out the keys no query sees; with it, all of them are kept
    needed = max(keys_seen(seq.attention_mask()))
    assert needed < seq.seq_len and keys == (seq.seq_len if dropout else needed)
    assert all(one[n].equal(two[n]) for n in one), [n for n in one if not one[n].equal(two[n])]


def test_auto_dtype_follows_the_hardware(monkeypatch):
    cpu = torch.device("cpu")
    monkeypatch.setattr(device_module, "_cpu_flags", lambda: {"avx512f", "avx512_bf16"})
    assert resolve_dtype("auto", cpu) == "bf16"
    monkeypatch.setattr(device_module, "_cpu_flags", lambda: {"avx512f", "amx_bf16"})
    assert resolve_dtype("auto", cpu) == "bf16"
    monkeypatch.setattr(device_module, "_cpu_flags", lambda: {"avx2", "avx512f"})
    assert resolve_dtype("auto", cpu) == "fp32"
    assert resolve_dtype("bf16", cpu) == "bf16" and resolve_dtype("fp32", cpu) == "fp32"  # explicit wins
    assert resolve_dtype("auto", torch.device("mps")) == "fp32"


def test_this_process_asked_mkl_for_reproducible_results():
    assert determinism.mkl_reproducible()  # `import interfere` set MKL_CBWR before the first matmul
