"""The fused unembedding + cross-entropy against torch's own: F.linear then F.cross_entropy, differentiated by
autograd."""

import pytest
import torch
import torch.nn.functional as F

from interfere.model import cross_entropy
from interfere.model.cross_entropy import IGNORE, linear_cross_entropy
from model_helpers import tiny


def _problem(n=50, d=16, vocab=37, ignored=0.3, seed=0):
    g = torch.Generator().manual_seed(seed)
    hidden = torch.randn(n, d, generator=g, requires_grad=True)
    weight = (torch.randn(vocab, d, generator=g) / d**0.5).requires_grad_()
    targets = torch.randint(0, vocab, (n,), generator=g)
    targets[torch.rand(n, generator=g) < ignored] = IGNORE
    return hidden, weight, targets


def _grads(loss, *tensors):
    return torch.autograd.grad(loss, tensors)


@pytest.mark.parametrize("block_elements", [37 * 128, 37 * 7])  # one block; 7-row blocks with a remainder
def test_loss_gradients_and_logits_equal_torch_cross_entropy_of_the_linear_map(monkeypatch, block_elements):
    monkeypatch.setattr(cross_entropy, "BLOCK_ELEMENTS", block_elements)
    monkeypatch.setattr(cross_entropy, "MIN_BLOCK_ROWS", 1)
    hidden, weight, targets = _problem()
    logits_ref = F.linear(hidden, weight)
    ref = F.cross_entropy(logits_ref, targets, reduction="sum", ignore_index=IGNORE)
    loss, logits = linear_cross_entropy(hidden, weight, targets, keep_logits=True)
    torch.testing.assert_close(loss, ref)
    for ours, theirs in zip(_grads(loss * 3.0, hidden, weight), _grads(ref * 3.0, hidden, weight)):
        torch.testing.assert_close(ours, theirs)
    kept = targets != IGNORE
    torch.testing.assert_close(logits[kept], logits_ref[kept].detach())
    assert logits[~kept].isnan().all() and not logits.requires_grad


def test_batched_targets_and_what_needs_no_gradient():
    hidden, weight, targets = _problem(n=24)
    weight.requires_grad_(False)
    loss, logits = linear_cross_entropy(hidden.view(4, 6, -1), weight, targets.view(4, 6))
    ref = F.cross_entropy(F.linear(hidden, weight), targets, reduction="sum", ignore_index=IGNORE)
    torch.testing.assert_close(loss, ref)
    torch.testing.assert_close(_grads(loss, hidden)[0], _grads(ref, hidden)[0])
    assert logits is None
    with torch.no_grad():
        torch.testing.assert_close(linear_cross_entropy(hidden, weight, targets)[0], ref.detach())


def test_targets_of_the_wrong_shape_are_refused():
    hidden, weight, targets = _problem(n=12)
    with pytest.raises(ValueError, match="one target per position"):
        linear_cross_entropy(hidden, weight, targets[:-1])


@pytest.mark.parametrize("tie", [False, True])
def test_hooked_gpt_with_targets_gives_its_logits_mean_loss_and_the_same_gradients(tie):
    model = tiny(tie_embeddings=tie).train()
    tokens = torch.randint(0, 20, (3, 24), generator=torch.Generator().manual_seed(1))
    targets = tokens.roll(-1, 1)
    targets[:, -1] = IGNORE
    logits = model(tokens)
    ref = F.cross_entropy(logits.flatten(0, 1), targets.flatten(), ignore_index=IGNORE)
    ref_grads = torch.autograd.grad(ref, list(model.parameters()))
    kept_logits, loss = model(tokens, return_type="both", targets=targets)
    torch.testing.assert_close(loss, ref)
    torch.testing.assert_close(kept_logits[:, :-1], logits[:, :-1].detach())
    for ours, theirs in zip(torch.autograd.grad(loss, list(model.parameters())), ref_grads):
        torch.testing.assert_close(ours, theirs)
    with pytest.raises(ValueError, match='return_type="loss" or "both"'):
        model(tokens, targets=targets)


def test_under_bf16_autocast_it_follows_autocasts_unfused_computation():
    model = tiny().train()
    tokens = torch.randint(0, 20, (3, 24), generator=torch.Generator().manual_seed(2))
    with torch.autocast("cpu", dtype=torch.bfloat16):
        ref = F.cross_entropy(model(tokens).float().flatten(0, 1), tokens.flatten())
        loss = model(tokens, return_type="loss", targets=tokens)
    assert loss.dtype == torch.float32
    torch.testing.assert_close(loss, ref, rtol=1e-2, atol=0)
    ref_grad, grad = (torch.autograd.grad(x, model.unembed.weight)[0] for x in (ref, loss))
    torch.testing.assert_close(grad, ref_grad, rtol=0.05, atol=2e-3)


def test_the_loss_of_many_positions_does_not_depend_on_the_thread_count():
    # 40,000 positions of a 5-token vocabulary: one unbounded block would sum them in per-thread parts
    hidden, weight, targets = _problem(n=40_000, d=4, vocab=5, ignored=0.0)
    threads = torch.get_num_threads()
    try:
        losses = []
        for n in (1, 2):
            torch.set_num_threads(n)
            losses.append(linear_cross_entropy(hidden.detach(), weight.detach(), targets)[0])
    finally:
        torch.set_num_threads(threads)
    assert torch.equal(losses[0], losses[1])
