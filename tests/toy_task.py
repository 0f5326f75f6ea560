"""A tiny sequence task implementing the Task protocol, for the training tests.

Each sample is a row of n random symbols; the model learns to copy it. Sample k of the stream depends
only on (seed, k), and global batch `step` of size batch_size * world_size holds samples
step * size .. (step + 1) * size - 1, so any split into processes and micro-batches sees the same data.

variant="copy":  causal LM on [x, x] (inputs = seq[:-1], targets = seq[1:]); loss on the second half.
variant="block": inputs [x, MASK * n], targets x at the MASK slots; a target query sees the source and
                 its own (MASK) slot only.
leak="earlier":  (block) the tokenization writes the answers into the slots and the attention mask lets
                 each query also see the earlier slots: the perturbation audit must catch it.
leak="own":      (block) the answers are written into each query's own slot (which a transformer always
                 sees through the residual stream): the audit's verbatim-copy check must catch it.
cond=k:          batches carry a FiLM conditioning vector of k zeros (for a model with n_cond=k), and
nan_at=[steps]:  NaNs instead at those steps, so the loss of exactly those steps is not finite.
signal_at=step:  the process sends itself `signal` (SIGTERM by default) when that step's batch is drawn.
"""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from interfere.tasks import register
from interfere.tasks.base import Batch, Layout


class SimulatedCrash(RuntimeError):
    pass


class ToyTask:
    headline = "acc"  # the evaluate() key `interfere runs` shows

    def __init__(self, name: str = "toy", n: int = 4, symbols: int = 6, seed: int = 0, variant: str = "copy",
                 leak: str | None = None, crash_at: int | None = None, eval: dict | None = None, cond: int = 0,
                 nan_at: list | None = None, signal_at: int | None = None, signal: str = "SIGTERM", device="cpu"):
        assert variant in ("copy", "block") and leak in (None, "earlier", "own")
        assert leak is None or variant == "block"
        self.n, self.symbols, self.seed, self.variant, self.device = n, symbols, seed, variant, torch.device(device)
        self.leak = leak
        self.crash_at = crash_at  # raise SimulatedCrash when this micro-batch is asked for (a killed run)
        self.cond, self.nan_at = int(cond), set(nan_at or ())
        self.signal_at, self.signal = signal_at, signal
        self.mask_token = symbols  # only used by the block variants
        self.vocab_size = symbols + 1
        self.seq_len = 2 * n - 1 if variant == "copy" else 2 * n
        self.batches_drawn: list[tuple[int, int, int, int]] = []  # (step, batch_size, rank, world_size)
        self.artifact_steps: list[int] = []

    # -- data ------------------------------------------------------------------------------------
    def _samples(self, first: int, count: int, seed: int) -> torch.Tensor:
        rows = [torch.randint(0, self.symbols, (self.n,), generator=torch.Generator().manual_seed(seed * 1_000_003 + k))
                for k in range(first, first + count)]
        return torch.stack(rows)

    def _batch(self, x: torch.Tensor, poisoned: bool = False) -> Batch:
        B, n = x.shape
        if self.variant == "copy":
            seq = torch.cat([x, x], 1)
            inputs, targets = seq[:, :-1], seq[:, 1:]
            loss_mask = torch.zeros_like(inputs, dtype=torch.bool)
            loss_mask[:, n - 1:] = True
        else:
            slots = x if self.leak else torch.full_like(x, self.mask_token)
            inputs = torch.cat([x, slots], 1)
            targets = torch.cat([torch.zeros_like(x), x], 1)
            loss_mask = torch.zeros_like(inputs, dtype=torch.bool)
            loss_mask[:, n:] = True
        d = self.device
        kwargs = {}
        if self.cond:
            kwargs["cond"] = torch.full((B, self.cond), float("nan") if poisoned else 0.0, device=d)
        return Batch(inputs.to(d), targets.to(d), loss_mask.to(d), kwargs)

    def train_batch(self, step, batch_size, rank=0, world_size=1, model=None) -> Batch:
        if step == self.crash_at:
            raise SimulatedCrash(f"simulated crash at micro-batch {step}")
        self.batches_drawn.append((step, batch_size, rank, world_size))
        if step == self.signal_at and rank == 0:
            import signal

            signal.raise_signal(getattr(signal, self.signal))  # handled before this returns, unlike os.kill
        first = step * batch_size * world_size + rank * batch_size
        return self._batch(self._samples(first, batch_size, self.seed), poisoned=step in self.nan_at)

    # -- structure -------------------------------------------------------------------------------
    def allowed_inputs(self) -> torch.Tensor:
        T, n = self.seq_len, self.n
        if self.variant == "copy":
            return torch.ones(T, T).tril().bool()
        allowed = torch.zeros(T, T, dtype=torch.bool)
        allowed[:n, :n] = torch.ones(n, n).tril().bool()
        allowed[n:, :n] = True  # the answer depends on the source,
        allowed[range(n, 2 * n), range(n, 2 * n)] = True  # and on its own placeholder slot
        return allowed

    def layout(self) -> Layout:
        if self.variant == "copy":
            return Layout()  # causal
        mask = self.allowed_inputs().clone()
        if self.leak == "earlier":
            n = self.n
            mask[n:, n:] |= torch.ones(n, n).tril().bool()  # "teacher forcing" over slots meant to be MASK
        return Layout(attn_mask=mask)

    # -- evaluation ------------------------------------------------------------------------------
    def log_metrics(self, logits, batch) -> dict:
        hit = (logits.argmax(-1) == batch.targets)[batch.loss_mask]
        return {"acc": hit.float().mean().item()}

    @torch.no_grad()
    def evaluate(self, model, n_samples, seed) -> dict:
        batch = self._batch(self._samples(0, n_samples, seed))
        logits = model(batch.inputs, **batch.model_kwargs)
        loss = torch.nn.functional.cross_entropy(logits[batch.loss_mask], batch.targets[batch.loss_mask])
        return {"loss": loss.item(), **self.log_metrics(logits, batch)}

    def artifacts(self, model, step, out_dir: Path) -> list[Path]:
        self.artifact_steps.append(step)
        out_dir.mkdir(parents=True, exist_ok=True)
        path = out_dir / f"step_{step}.txt"
        path.write_text(f"training={model.training} grad={torch.is_grad_enabled()}\n")
        return [path]


register("toy", lambda: ToyTask)


@pytest.fixture(autouse=True, scope="module")
def one_thread():
    """Tiny models run fastest on one thread, and the test machine's cores are shared (oversubscribed
    threads made these tests 20x slower). Import this into a test module to apply it there."""
    n = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(n)


CONF = Path(__file__).resolve().parents[1] / "src" / "interfere" / "conf"


def make_cfg(runs_dir, task: dict | None = None, model: dict | None = None, **train):
    """A full config (model / task / train groups, as Hydra would compose it) for a tiny toy run."""
    from omegaconf import OmegaConf

    model_cfg = OmegaConf.load(CONF / "model" / "small.yaml")
    model_cfg = OmegaConf.merge(model_cfg, dict(d_model=32, n_layers=2, n_heads=4, d_mlp=64), model or {})
    train_cfg = OmegaConf.merge(OmegaConf.load(CONF / "train" / "default.yaml"),
                                dict(steps=20, batch_size=8, lr=1e-2, warmup_steps=2, log_every=5,
                                     ckpt_every=0, artifacts_every=0, progress=False,
                                     dtype="fp32"),  # the same arithmetic on every machine (auto follows the CPU)
                                train)
    return OmegaConf.create({
        "name": "toy", "runs_dir": str(runs_dir), "device": "cpu", "seed": 0,
        "model": model_cfg, "task": {"name": "toy", "eval": {"samples": 32, "seed": 99}, **(task or {})},
        "train": train_cfg,
    })
