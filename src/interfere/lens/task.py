"""LensTask: the consistency lens as a task of the project's trainer (interfere.train.loop).

The task hands the trainer batches of dumped activations (with their windows and positions), builds the
module to train (`build_model`: a Lens whose decoder and encoder are copies of the subject) and computes
its loss (`training_loss`): the patched KL, plus alpha x fluency, minus the entropy term, plus the
normalised MSE, each weighted from `task.loss` and logged; the Gumbel temperature and alpha follow Ramps
of the step. Checkpoints, exact resume, schedules, metrics.jsonl and progress are the trainer's.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any, Mapping

import numpy as np
import torch

from interfere.errors import ConfigError
from interfere.lens import losses as L
from interfere.lens.dump import load_split, read_manifest
from interfere.lens.models import Decoder, Encoder, Lens, Ramp
from interfere.lens.subject import load_subject
from interfere.tasks.base import Batch, Layout


@dataclass
class LensBatch(Batch):
    """A Batch (inputs: the windows; loss_mask [B, 1]: one loss unit per activation) plus the lens's data."""

    acts: torch.Tensor | None = None  # [B, d]
    positions: torch.Tensor | None = None  # [B]
    tau: float = 1.0  # Gumbel temperature at this step
    alpha: float = 0.0  # fluency weight at this step


def _plain(x):
    return {k: _plain(v) for k, v in x.items()} if isinstance(x, Mapping) else x


class LensTask:
    headline = "lens_fve"  # the evaluate() key `interfere runs` shows

    def __init__(self, *, name: str = "lens", data: str | None = None, seed: int = 0, length: int = 8,
                 decoder=None, encoder=None, loss=None, temperature=None, eval=None, device="cpu"):  # noqa: A002
        from interfere.device import pick_device

        if not data:
            raise ConfigError("task.data is not set: give data=<dump dir> (made by `interfere lens dump`)")
        self.name, self.data, self.seed, self.length = name, str(Path(data).expanduser().resolve()), int(seed), int(length)
        self.device = pick_device(device)
        self.dec_cfg, self.enc_cfg = _plain(decoder or {}), _plain(encoder or {})
        self.loss_cfg, self.eval_cfg = _plain(loss or {}), _plain(eval or {})
        self.tau = Ramp(**_plain(temperature or {"start": 1.0, "end": 1.0, "steps": 0}))
        self.alpha = Ramp(**self.loss_cfg.get("fluency", {"start": 0.0, "end": 0.0, "steps": 0}))
        self.manifest = read_manifest(self.data)
        self.layer = int(self.manifest["layer"])
        self.subject = load_subject(self.manifest["subject"], self.device)
        self.train_set = load_split(self.data, "train", self.device)
        self.val_set = load_split(self.data, "val", self.device)
        self.mean_act = self.train_set.acts.mean(0)
        self.total_var = float(self.train_set.acts.var(0).sum())
        self.vocab_size, self.seq_len = self.subject.d_vocab, int(self.manifest["ctx"])
        prefix = self.subject.tokenizer.encode(str(self.loss_cfg.get("fluency_prefix", "\n")))
        if not prefix:
            raise ConfigError("task.loss.fluency_prefix tokenises to nothing: give it some text")
        self.prefix = torch.tensor(prefix, device=self.device)

    # ----- the module the trainer trains -------------------------------------------------------------
    def build_model(self) -> Lens:
        d, e = self.dec_cfg, self.enc_cfg
        decoder = Decoder(self.subject.trainable_copy(), int(d.get("n_prompt", 4)), self.length,
                          bool(d.get("trainable", True)))
        encoder = Encoder(self.subject.trainable_copy(), int(e.get("n_prompt", 4)), self.layer,
                          bool(e.get("trainable", True)))
        return Lens(decoder, encoder).to(self.device)

    # ----- the Task protocol -------------------------------------------------------------------------
    def layout(self) -> Layout:
        return Layout()

    def allowed_inputs(self) -> torch.Tensor:
        return torch.ones(self.seq_len, self.seq_len, dtype=torch.bool, device=self.device).tril()

    def train_batch(self, step: int, batch_size: int, rank: int = 0, world_size: int = 1, model=None) -> LensBatch:
        rng = np.random.default_rng([self.seed, int(step)])
        idx = rng.integers(0, len(self.train_set), size=batch_size * world_size)[rank * batch_size:(rank + 1) * batch_size]
        rows = self.train_set.rows(torch.from_numpy(idx).to(self.device))
        ones = torch.ones(len(idx), 1, dtype=torch.bool, device=self.device)
        return LensBatch(rows.tokens, rows.tokens, ones, acts=rows.acts, positions=rows.positions,
                         tau=self.tau.at(step), alpha=self.alpha.at(step))

    def training_loss(self, model, batch: LensBatch) -> tuple[torch.Tensor, dict[str, float]]:
        """(the loss summed over the batch's activations, each term's batch mean for the log)."""
        w = self.loss_cfg
        one_hot, dec_logits, a_hat = model(batch.acts, tau=batch.tau)
        terms = {"kl": L.patched_kl(self.subject, batch.inputs, batch.positions, self.layer, a_hat),
                 "mse": L.normalised_mse(batch.acts, a_hat, self.total_var),
                 "entropy": L.decoder_entropy(dec_logits), "usage": L.usage_entropy(dec_logits)}
        terms["fluency"] = (L.fluency_kl(self.subject, self.prefix, one_hot, dec_logits) if batch.alpha > 0
                            else torch.zeros_like(terms["kl"]))
        loss = (float(w.get("kl", 1.0)) * terms["kl"] + batch.alpha * terms["fluency"]
                - float(w.get("entropy", 0.0)) * terms["entropy"] - float(w.get("usage", 0.0)) * terms["usage"]
                + float(w.get("mse", 0.0)) * terms["mse"])
        ids = one_hot.detach().argmax(-1)
        output = {f"{k}": float(v.detach().mean()) for k, v in terms.items()}
        output.update(tau=batch.tau, alpha=batch.alpha, top_token_freq=top_token_frequency(ids))
        return loss.sum(), output

    def log_metrics(self, output: dict[str, float], batch) -> dict[str, float]:
        return dict(output)

    def evaluate(self, model, n_samples: int | None = None, seed: int | None = None) -> dict[str, Any]:
        from interfere.lens.evaluate import evaluate_lens

        return evaluate_lens(self, model, n_samples, seed).metrics

    def artifacts(self, model, step: int, out_dir: Path) -> list[Path]:
        return []


def top_token_frequency(ids: torch.Tensor) -> float:
    """Share of all explanation tokens taken by the commonest one (1.0: the lens says one word only)."""
    return float(torch.bincount(ids.flatten()).max()) / ids.numel()
