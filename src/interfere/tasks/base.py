"""The contract between a task (what to learn) and the trainer (how to learn).

The trainer knows nothing about Life or text: it asks the task for batches, computes the masked
cross-entropy of `model(batch.inputs, **batch.model_kwargs)` against `batch.targets` (or the task's own
`training_loss`), and hands the model back to the task to evaluate and render itself.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Mapping, Protocol, Sequence, runtime_checkable

import torch

from interfere.model.layout import Layout  # noqa: F401 (tasks build one; the model owns the type)


def plain(x):
    """Hydra/OmegaConf containers -> dicts and lists (they duck-type, but tensors and == want the real thing)."""
    if isinstance(x, Mapping):
        return {k: plain(v) for k, v in x.items()}
    if isinstance(x, Sequence) and not isinstance(x, (str, bytes)):
        return [plain(v) for v in x]
    return x


def step_generator(seed: int, step: int, device: torch.device | str = "cpu") -> torch.Generator:
    """The generator of global batch `step` of a stream seeded `seed`: batches depend on (seed, step) only."""
    return torch.Generator(device=device).manual_seed((seed * 1_000_003 + step) % (2**63 - 1))


@dataclass
class Batch:
    """One micro-batch, already on the device.

    inputs:       [B, T] token ids fed to the model.
    targets:      [B, T] token ids the logits at each position should predict.
    loss_mask:    [B, T] bool, True where the loss counts (targets elsewhere are ignored).
    model_kwargs: extra data the model's forward takes (e.g. `cond` for FiLM).
    """

    inputs: torch.Tensor
    targets: torch.Tensor
    loss_mask: torch.Tensor
    model_kwargs: dict[str, Any] = field(default_factory=dict)

    @property
    def n_tokens(self) -> int:
        """Tokens the model processes in this batch (what throughput counts)."""
        return self.inputs.numel()


@runtime_checkable
class Task(Protocol):
    """What the trainer, the evaluator and the CLI need from a task."""

    vocab_size: int
    seq_len: int
    headline: str  # the key of evaluate()'s dict that sums a run up (what `interfere runs` shows)

    def layout(self) -> Layout:
        """Positions, segments and attention mask to install on the model (see HookedGPT.set_layout)."""

    def train_batch(self, step: int, batch_size: int, rank: int = 0, world_size: int = 1,
                    model: torch.nn.Module | None = None) -> Batch:
        """The rank's share of global batch `step`.

        The global batch depends only on (seed, step), never on world size or history, so that resume is
        exact and any number of processes sees the same data. `model` is given for tasks that feed the
        model's own predictions back (scheduled sampling); it is called under no_grad.
        """

    def log_metrics(self, logits: torch.Tensor, batch: Batch) -> dict[str, float]:
        """Extra numbers to log for a training batch: per-horizon losses, stream statistics, ..."""

    def allowed_inputs(self) -> torch.Tensor:
        """[T, T] bool: may the prediction at position i depend on input position j?

        Derived from the task's meaning, independently of the attention mask, so the leakage audit
        can check one against the other.
        """

    @torch.no_grad()
    def evaluate(self, model: torch.nn.Module, n_samples: int, seed: int) -> dict[str, Any]:
        """Held-out metrics as a flat JSON-able dict."""

    def artifacts(self, model: torch.nn.Module, step: int, out_dir: Path) -> list[Path]:
        """Write visualisations (videos, images) for this step under out_dir; return their paths."""

    # Optional: `training_loss(model, batch) -> (loss, output)`: the loss summed over the batch's
    # loss_mask units and the output `log_metrics` receives; without it the trainer uses the masked
    # cross-entropy of model(batch.inputs, **batch.model_kwargs) against batch.targets (the model's `targets=`).
    # Optional: `token_analyses = False` says that the model only ever sees sequences laid out by the task
    # (a Game of Life board), so analyses on made-up token ids (induction on random repeats, a logit lens of
    # random ids) mean nothing for it; the CLI then refuses them. Tasks without it read free tokens.
    # Optional: `build_model() -> nn.Module`: the module to train in place of a HookedGPT built from the
    # `model` config (its checkpoints hold its safetensors; it is used with the task's `training_loss`).
    # Optional: `save(run_dir)` writes what the task needs to be rebuilt exactly (e.g. a trained
    # tokenizer); the trainer calls it once the run directory exists, and `build_task(..., run_dir=)`
    # hands the directory back to a task whose constructor takes `run_dir`.
