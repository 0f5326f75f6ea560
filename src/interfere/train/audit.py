"""The leakage audit: can any prediction depend on an input the task says it must not see?

The task states, from its meaning, which inputs each position may depend on (`allowed_inputs()`); the
model's attention mask and the tokenization decide what it actually can see. The audit perturbs the
forbidden inputs with random tokens and checks that the logits at the target positions do not move.
It needs no training: a randomly initialised transformer mixes every input it can reach into every output.
"""

from __future__ import annotations

import torch


class LeakageError(RuntimeError):
    """A prediction depends on an input position that task.allowed_inputs() forbids."""


def _take(x, n: int, batch: int):
    """The first n samples of a batched tensor; anything else unchanged."""
    return x[:n] if isinstance(x, torch.Tensor) and x.dim() > 0 and x.shape[0] == batch else x


def _spread(items: list, n: int) -> list:
    """Up to n items evenly spread over the list (early, middle and late positions alike)."""
    if len(items) <= n:
        return items
    idx = torch.linspace(0, len(items) - 1, n).round().long().unique().tolist()
    return [items[i] for i in idx]


@torch.no_grad()
def audit_leakage(model: torch.nn.Module, task, batch, n_rows: int = 8, atol: float = 1e-5,
                  n_samples: int = 2, seed: int = 0) -> dict:
    """Raise LeakageError if the logits at a target position depend on an input it may not see.

    Target positions (loss_mask True in any sample) are grouped by their row of task.allowed_inputs();
    for up to n_rows groups every forbidden input is replaced by a different random token and the group's
    logits must stay within atol. Returns {"groups": checked, "max_diff": largest movement seen}.
    """
    was_training = model.training
    model.eval()
    try:
        B = batch.inputs.shape[0]
        n = min(n_samples, B)
        inputs = batch.inputs[:n]
        kwargs = {k: _take(v, n, B) for k, v in batch.model_kwargs.items()}
        device_type = inputs.device.type
        gen = torch.Generator(device="cpu").manual_seed(seed)
        vocab = int(task.vocab_size)

        def run(x):
            with torch.autocast(device_type, enabled=False):  # fp32: bf16 noise would hide or fake a leak
                return model(x, **kwargs).float()

        base = run(inputs)
        allowed = task.allowed_inputs().to("cpu", torch.bool)
        targets = batch.loss_mask[:n].any(0).nonzero()[:, 0].tolist()
        groups: dict[bytes, list[int]] = {}
        for i in targets:
            groups.setdefault(bytes(allowed[i].tolist()), []).append(i)
        # Random replacements, each guaranteed to differ from the original token.
        shift = torch.randint(1, vocab, inputs.shape, generator=gen).to(inputs.device)
        replaced = (inputs + shift) % vocab

        def moved(positions: list[int], forbidden: list[int]) -> float:
            x = inputs.clone()
            x[:, forbidden] = replaced[:, forbidden]
            return (run(x) - base)[:, positions].abs().max().item()

        _check_own_slot(inputs, batch.targets[:n], batch.loss_mask[:n])
        checked, worst = 0, 0.0
        for positions in _spread(list(groups.values()), n_rows):
            forbidden = (~allowed[positions[0]]).nonzero()[:, 0].tolist()
            if not forbidden:
                continue
            checked += 1
            diff = moved(positions, forbidden)
            worst = max(worst, diff)
            if diff > atol:
                raise LeakageError(_explain(positions, forbidden, diff, atol, moved))
        return {"groups": checked, "max_diff": worst}
    finally:
        model.train(was_training)


MIN_COPY_EVIDENCE = 32  # loss positions needed before "every target equals its own input" counts as a leak


def _check_own_slot(inputs, targets, loss_mask) -> None:
    """The one leak perturbation cannot see: the answer written into the input at its own position.

    A transformer's output at i always depends on input i (the residual stream), so tasks must allow it
    and a perturbation never flags it. If the target equals the input at every loss position (and the
    targets vary), the tokenization has put the answers where placeholders belong.
    """
    same = (inputs == targets)[loss_mask]
    if same.numel() >= MIN_COPY_EVIDENCE and bool(same.all()) and targets[loss_mask].unique().numel() > 1:
        first = int(loss_mask.any(0).nonzero()[0, 0])
        raise LeakageError(
            f"leakage: at all {same.numel()} loss positions (e.g. position {first}) the input already holds the "
            f"target token, and a prediction always sees its own input position. Fix the tokenization: "
            f"put a placeholder (e.g. <MASK>) or the previous token at target positions, not the answer.")


def _explain(positions, forbidden, diff, atol, moved) -> str:
    """Bisect the forbidden inputs down to (ideally) one position that changes these predictions."""
    culprits = forbidden
    while len(culprits) > 1:
        half = culprits[: len(culprits) // 2]
        rest = culprits[len(culprits) // 2:]
        if moved(positions, half) > atol:
            culprits = half
        elif moved(positions, rest) > atol:
            culprits = rest
        else:
            break  # only a combination matters; report the set
    where = ", ".join(map(str, positions[:8])) + (", ..." if len(positions) > 8 else "")
    what = f"input position {culprits[0]}" if len(culprits) == 1 else \
        f"input positions {', '.join(map(str, culprits[:8]))}{', ...' if len(culprits) > 8 else ''}"
    return (f"leakage: the prediction at position(s) {where} changes (by {diff:.3g} > atol {atol:g}) when "
            f"{what} changes, which task.allowed_inputs() says it must not see. Fix the attention mask "
            f"(the task's Layout.attn_mask installed by model.set_layout) or the tokenization so that no "
            f"forbidden input can reach these predictions.")
