"""The training loop, the same for every task: the task hands out batches, the loop minimises their loss
(the masked cross-entropy of the model's logits, fused with its unembedding, or the task's own `training_loss`).

Where things happen: `train(cfg)` builds a `Trainer` and calls `fit()`. `Trainer.__init__` builds the task,
model and optimizer, then either resumes (`_resume`) or creates the run directory; `fit()` is the loop;
`train_step()` is one optimizer step; `checkpoint()`, `evaluate()` and `render()` are called by
`_after_step()` on their cadence and by `_finish()` at the end. `TrainState` is what state.json saves.

Each step trains on one global batch that depends only on the step: every (process, micro-batch) pair
takes its own slice of it, as a "virtual rank". So 2 processes x b, 1 x 2b and 1 x b with 2 accumulation
steps see the same data and compute the same gradient, and since the learning rate too depends only on
the step, a run resumed from a checkpoint continues exactly as if it had never stopped.
"""

from __future__ import annotations

import contextlib
import dataclasses
import json
import math
import os
import random
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch

from interfere.device import resolve_dtype
from interfere.files import atomic_symlink, atomic_write_text
from interfere.model import build_model
from interfere.model.cross_entropy import IGNORE
from interfere.model.modes import eval_mode
from interfere.tasks import build_task
from interfere.train import determinism, distributed
from interfere.train.audit import audit_leakage
from interfere.train.checkpoint import rng_state, save_checkpoint, set_rng_state, update_state
from interfere.train.config import TrainConfig
from interfere.train.errors import NonFiniteLossError
from interfere.train.logging import TrainLogger
from interfere.train.optim import build_optimizer
from interfere.train.resume import resume_differences, resume_from, trim_metrics
from interfere.train.runs import create_run, resume_candidates
from interfere.train.schedule import lr_at
from interfere.train.signals import StopRequest

CALIBRATION_WARMUP = 3  # steps excluded from the throughput measurement (allocator, compile, caches)


def train(cfg) -> Path:
    """Train the model described by cfg (model / task / train groups) and return the run directory.

    Stops early, cleanly, on SIGTERM / SIGINT (checkpoint at the current step, resume command printed) or
    when train.max_minutes is used up (checkpoint, final evaluation, artifacts); state.json and eval.json
    say why in `stopped` ("done", "budget" or "signal"). A non-finite loss raises NonFiniteLossError
    (after train.skip_nonfinite skipped steps) and writes nothing for the bad step.
    """
    dist = distributed.init(cfg.get("device", "auto"))
    try:
        return Trainer(cfg, dist).fit()
    finally:
        distributed.cleanup(dist)


@dataclass
class TrainState:
    """What state.json restores besides the RNGs; the data position is the step (batches depend on it only)."""

    step: int = 0
    tokens: int = 0
    train_seconds: float = 0.0  # training-loop time of the attempts before this one (Trainer.seconds adds it)
    skipped_nonfinite: int = 0  # bad steps skipped so far, over resumes

    @classmethod
    def from_checkpoint(cls, saved: dict, tokens_per_step: int) -> "TrainState":
        return cls(step=saved["step"], tokens=saved.get("tokens", saved["step"] * tokens_per_step),
                   train_seconds=float(saved.get("train_seconds", 0.0)),
                   skipped_nonfinite=int(saved.get("skipped_nonfinite", 0)))


@dataclass
class StepResult:
    loss: float
    lr: float
    grad_norm: float | None
    bad: str | None  # why the update was not applied: a non-finite loss or gradient norm
    output: Any  # the last micro-batch's model output for task.log_metrics (None when not logging)
    batch: Any  # that micro-batch
    signal: bool  # some rank got SIGTERM / SIGINT
    out_of_time: bool  # rank 0's train.max_minutes ran out


def seed_everything(seed: int) -> None:
    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)  # every device's generator


def default_loss(model, batch, keep_logits: bool = True) -> tuple[torch.Tensor, torch.Tensor | None]:
    """(cross-entropy summed over the batch's loss_mask, the logits task.log_metrics reads, or None); a task may
    supply its own `training_loss(model, batch)` of this shape (e.g. a lens whose loss is a KL).

    The model unembeds and takes the cross-entropy a block of positions at a time (`targets=`): the [B, T, V]
    logits exist only when kept for logging. Under bf16 autocast the softmax runs in fp32.
    """
    targets = batch.targets.masked_fill(~batch.loss_mask, IGNORE)
    out = model(batch.inputs, return_type="both" if keep_logits else "loss", targets=targets, **batch.model_kwargs)
    logits, mean = out if keep_logits else (None, out)
    return mean * batch.loss_mask.sum(), logits


@contextlib.contextmanager
def rng_untouched():
    """Evaluation and rendering must not move the training RNGs (a resumed run restores them as checkpointed,
    which is before the evaluation at the same step), whatever generators the task uses."""
    saved = rng_state()
    try:
        yield
    finally:
        set_rng_state(saved)


def write_json(path: Path, obj: dict) -> None:
    atomic_write_text(path, json.dumps(obj, indent=1))


class Trainer:
    """One training run: built in __init__ (nothing is written before every check has passed), run by fit()."""

    def __init__(self, cfg, dist: distributed.Dist):
        self.cfg, self.dist, self.device = cfg, dist, dist.device
        self.tc = tc = TrainConfig.from_node(cfg.train)
        self.parallel = distributed.check_parallel(tc.parallel, dist)
        self.fsdp = self.parallel == "fsdp" and dist.enabled
        self.dtype = resolve_dtype(tc.dtype, self.device)
        self.deterministic = determinism.resolve(tc.deterministic, self.device)
        seed_everything(int(cfg.get("seed", 0)))

        # A resumed run rebuilds its task from the run itself (e.g. the tokenizer it was trained with).
        resume_dir = resume_candidates(cfg.resume, cfg.get("runs_dir", "runs"))[0] if cfg.get("resume") else None
        differences = resume_differences(cfg, resume_dir) if resume_dir is not None and dist.is_main else []
        if differences:  # resume_config refuses these on the command line; from Python they are the caller's call
            print(f"warning: resuming {resume_dir.name} with a different model/task config: {', '.join(differences)}",
                  file=sys.stderr, flush=True)
        self.task = build_task(cfg.task, self.device, run_dir=resume_dir)
        self.raw = self._new_model()  # what checkpoints, tasks and evaluation see (under FSDP: sharded in place)
        if tc.activation_checkpointing:
            self.raw.set_activation_checkpointing(True)
        self.total_steps, self.tokens_per_step = tc.plan(self.task.seq_len, dist.world_size)
        self.optimizer = build_optimizer(self.raw, tc)
        self.task_loss = getattr(self.task, "training_loss", None)  # else default_loss
        if tc.audit:  # before anything is written: a leaky task or mask leaves no run directory behind
            audit_leakage(self.raw, self.task, self.task.train_batch(0, 2))

        self.state, self.resumed_from, named_optim = TrainState(), None, {} if self.fsdp else None
        self.new_run, self.last_ckpt_path = None, None
        if resume_dir is not None:
            self._resume(named_optim)
        else:
            self._create_run()
        with self._nothing_left_on_failure():
            self._start(named_optim)

    def _start(self, named_optim: dict | None) -> None:
        """What needs the run directory: the parallel model, the logger, the first lines and calibration.json."""
        tc, dist = self.tc, self.dist
        self.run_id = self.run_dir.name
        self.last_ckpt, self.last_ckpt_path, self.last_artifacts = self.state.step, self.resumed_from, None
        self.start_step = self.state.step
        self.model, self.shell = self._parallelise(named_optim)
        self.logger = TrainLogger(self.run_dir, self.run_id, self.total_steps, self.start_step,
                                  is_main=dist.is_main, progress=tc.progress, loggers=tc.loggers, config=_plain(self.cfg))
        self.calibration = self._calibration_base()
        self.stop = StopRequest()
        self.stopped = "done"
        self._announce()

    # ----- building ------------------------------------------------------------------------------------
    def _new_model(self):
        custom = getattr(self.task, "build_model", None)
        if custom is not None:  # a task that trains its own module (e.g. the consistency lens), not a HookedGPT
            return custom().to(self.device)
        return build_model(self.cfg.model, self.task.vocab_size, self.task.seq_len, self.task.layout()).to(self.device)

    def _create_run(self) -> None:
        self.new_run = create_run(self.cfg) if self.dist.is_main else None
        run_dir = self.new_run.path if self.new_run else None
        if run_dir is not None and hasattr(self.task, "save"):
            with self._nothing_left_on_failure():
                self.task.save(run_dir)  # what `interfere.load` needs to rebuild the task exactly
        self.run_dir = Path(distributed.broadcast_object(str(run_dir) if run_dir else None, self.dist))

    @contextlib.contextmanager
    def _nothing_left_on_failure(self):
        """A new run that fails before its first checkpoint (a full disk, a bad logger, a non-finite loss, Ctrl-C
        before the loop) leaves no run directory behind and runs/latest where it was."""
        try:
            yield
        except BaseException:
            if self.new_run is not None and self.last_ckpt_path is None:
                self.new_run.discard()
            raise

    def _resume(self, named_optim: dict | None) -> None:
        """Load the newest valid checkpoint into model and optimizer (every rank) and restore the state."""
        self.resumed_from, saved, self.run_dir = resume_from(self.cfg, self.dist, self.raw, self.optimizer, named_optim)
        set_rng_state(saved["rng"])
        self.state = TrainState.from_checkpoint(saved, self.tokens_per_step)
        self.saved_state = saved
        if self.dist.is_main:
            trim_metrics(self.run_dir / "metrics.jsonl", self.state.step)
            latest = self.run_dir / "checkpoints" / "latest"
            if not latest.is_symlink() or os.readlink(latest) != self.resumed_from.name:
                atomic_symlink(latest, self.resumed_from.name)  # e.g. a newer, broken one was skipped

    def _parallelise(self, named_optim: dict | None):
        """(the model the loop calls: DDP/FSDP-wrapped and maybe compiled, rank 0's unsharded copy under FSDP)."""
        raw, tc, dist = self.raw, self.tc, self.dist
        if not self.fsdp:
            model = torch.compile(raw) if tc.compile else raw
            return distributed.wrap(model, dist, "ddp"), None
        distributed.wrap(raw, dist, "fsdp")
        self.optimizer = build_optimizer(raw, tc)  # over the sharded parameters
        if named_optim:
            distributed.load_full_optimizer_state(raw, self.optimizer, named_optim)
        shell = None
        if dist.is_main:
            with torch.random.fork_rng(devices=[]):  # building it must not move the training RNG
                shell = self._new_model()
        return (torch.compile(raw) if tc.compile else raw), shell

    def _calibration_base(self) -> dict:
        tc = self.tc
        n_params = sum(p.numel() for p in (self.shell if self.shell is not None else self.raw).parameters())
        return {"total_steps": self.total_steps, "tokens_per_step": self.tokens_per_step, "tokens_per_s": None,
                "s_per_step": None, "device": str(self.device), "dtype": self.dtype, "dtype_setting": tc.dtype,
                "deterministic": self.deterministic, "threads": torch.get_num_threads(),
                "world_size": self.dist.world_size, "parallel": self.parallel if self.dist.enabled else None,
                "batch_size": tc.batch_size, "grad_accum": tc.grad_accum, "seq_len": self.task.seq_len,
                "n_params": n_params, "compile": tc.compile, "measured_steps": 0}

    def _announce(self) -> None:
        tc, say = self.tc, self.logger.message
        say(f"run {self.run_dir}" + (f" (resumed from {self.resumed_from})" if self.resumed_from else ""))
        say(f"{self.total_steps} steps x {self.tokens_per_step:,} tokens/step = {self.total_steps * self.tokens_per_step:,} tokens"
            + (f" (budget train.tokens={tc.tokens})" if tc.tokens is not None else "")
            + (f", at most {tc.max_minutes:g} min of training" if tc.max_minutes is not None else ""))
        how = "bf16 autocast" if self.dtype == "bf16" else "fp32"
        why = f" (train.dtype=auto on {self.device.type})" if tc.dtype == "auto" else ""
        exact = "deterministic" if self.deterministic else f"not deterministic (train.deterministic={tc.deterministic})"
        threads = torch.get_num_threads()
        say(f"precision {how}{why}; {exact}; {threads} thread{'s' * (threads != 1)}")
        if self.deterministic and self.device.type == "cpu" and not determinism.mkl_reproducible():
            say("warning: MKL_CBWR is not AUTO,STRICT: results may depend on the thread count")
        for warning in self._resume_warnings():
            say(warning)
        if self.dist.is_main:
            write_json(self.run_dir / "calibration.json", self.calibration)

    def _resume_warnings(self) -> list[str]:
        if self.resumed_from is None:
            return []
        saved, out = self.saved_state, []
        if saved.get("tokens_per_step") not in (None, self.tokens_per_step):
            out.append(f"warning: the run was trained with {saved['tokens_per_step']:,} tokens/step, now "
                       f"{self.tokens_per_step:,}: it will not continue exactly as it would have")
        if self.dtype == "bf16" and saved.get("threads") not in (None, torch.get_num_threads()):
            out.append(f"warning: the run used {saved['threads']} threads, now {torch.get_num_threads()}: under bf16 "
                       "the results depend on the thread count, so it will not continue bit for bit")
        return out

    # ----- the loop ------------------------------------------------------------------------------------
    def fit(self) -> Path:
        """Train to the end, a signal or the time budget; then checkpoint, evaluate, render. Returns the run dir."""
        self.loop_t0 = time.perf_counter()
        self.train_time, self.mark, self.last_log = 0.0, None, (self.state.step, 0.0)
        try:
            self.stop.install()
            with self._nothing_left_on_failure(), determinism.deterministic_mode(self.deterministic, self.device):
                if self._out_of_time(self.state.train_seconds) and self.state.step < self.total_steps:
                    self.stopped = "budget"  # a resumed run whose budget was already used up
                while self.state.step < self.total_steps and self.stopped == "done":
                    t0 = time.perf_counter()
                    result = self.train_step()
                    self.train_time += time.perf_counter() - t0  # steps only: not evaluation, checkpoints, renders
                    self._record(result)
                    self._after_step(result)
                self._finish()
        finally:
            self.stop.restore()
            self.logger.close()
        return self.run_dir

    def train_step(self) -> StepResult:
        """One optimizer step on global batch `step` (counted from 0): forward/backward, clip, update."""
        step, tc = self.state.step, self.tc
        logging_now = (step + 1) % tc.log_every == 0 or step + 1 == self.total_steps
        lr = lr_at(step + 1, self.total_steps, tc)
        for group in self.optimizer.param_groups:
            group["lr"] = lr
        micro = [self.task.train_batch(step, tc.batch_size, self.dist.rank * tc.grad_accum + m,
                                       tc.grad_accum * self.dist.world_size, model=self.raw)
                 for m in range(tc.grad_accum)]
        loss_sum, n_loss, output = self._forward_backward(micro, logging_now)
        grad_norm = self._clip()
        loss, gn, signal, out_of_time = self._sync_step(loss_sum, grad_norm, n_loss)
        bad = None if math.isfinite(loss) else f"the loss is {loss}"
        if bad is None and grad_norm is not None and not math.isfinite(gn):
            bad = f"the gradient norm is {gn} (loss {loss:.4g})"
        if bad is None:
            self.optimizer.step()
        self.optimizer.zero_grad(set_to_none=True)
        return StepResult(loss, lr, gn if grad_norm is not None else None, bad, output if logging_now else None,
                          micro[-1], signal, out_of_time)

    def _forward_backward(self, micro: list, logging_now: bool) -> tuple[torch.Tensor, torch.Tensor, Any]:
        # Normalise by the loss units of the whole global batch, so that any split of it into processes and
        # micro-batches gives the same gradient. DDP/FSDP average over ranks: undo that.
        n_loss = torch.stack([b.loss_mask.sum() for b in micro]).sum()
        n_loss = distributed.all_reduce_sum(n_loss, self.dist).clamp(min=1).float()
        scale = self.dist.world_size / n_loss
        loss_sum = torch.zeros((), device=self.device)
        for m, batch in enumerate(micro):
            with distributed.maybe_no_sync(self.model, sync=m == len(micro) - 1):
                with torch.autocast(self.device.type, dtype=torch.bfloat16, enabled=self.dtype == "bf16"):
                    part, output = (self.task_loss(self.model, batch) if self.task_loss else
                                    default_loss(self.model, batch, keep_logits=logging_now and m == len(micro) - 1))
                (part * scale).backward()
            loss_sum += part.detach()
        return loss_sum, n_loss, output.detach() if isinstance(output, torch.Tensor) else output

    def _clip(self) -> torch.Tensor | None:
        if self.tc.grad_clip <= 0:
            return None
        if self.deterministic and not self.fsdp:
            return determinism.clip_grad_norm(self.raw.parameters(), self.tc.grad_clip)
        return distributed.local_value(torch.nn.utils.clip_grad_norm_(self.raw.parameters(), self.tc.grad_clip))

    def _sync_step(self, loss_sum, grad_norm, n_loss) -> tuple[float, float, bool, bool]:
        """One small all-reduce and one host sync per step: the global loss, the grad norm, and whether any rank
        got a signal or rank 0's clock ran out, so that every rank stops at the same step."""
        ws = self.dist.world_size
        flags = torch.tensor([float(self.stop.signum is not None), float(self.dist.is_main and self._out_of_time())],
                             device=self.device)
        gn = grad_norm.detach().float() / ws if grad_norm is not None else torch.zeros((), device=self.device)
        loss, gn, n, signal, out_of_time = distributed.all_reduce_sum(
            torch.cat([torch.stack([loss_sum, gn, n_loss / ws]), flags]), self.dist).tolist()
        return loss / n, gn, bool(signal), bool(out_of_time)

    def seconds(self) -> float:
        """Training-loop time over every attempt of this run (what train.max_minutes counts)."""
        return self.state.train_seconds + time.perf_counter() - self.loop_t0

    def _out_of_time(self, seconds: float | None = None) -> bool:
        seconds = self.seconds() if seconds is None else seconds
        return self.tc.max_minutes is not None and seconds >= self.tc.max_minutes * 60

    def _record(self, r: StepResult) -> None:
        """Advance the state by one step; log it, or handle a non-finite one (skip it, or stop the run)."""
        if r.bad is not None:
            self.logger.log(self.state.step + 1, {"loss": r.loss, "lr": r.lr, "nonfinite": True,
                                                  **({"grad_norm": r.grad_norm} if r.grad_norm is not None else {})},
                            show=False)
            if self.state.skipped_nonfinite >= self.tc.skip_nonfinite:
                raise self._nonfinite(r.bad)
            self.state.skipped_nonfinite += 1
            self.logger.message(f"step {self.state.step + 1}: {r.bad}: step skipped (optimizer not stepped; "
                                f"{self.state.skipped_nonfinite} of train.skip_nonfinite={self.tc.skip_nonfinite})")
        self.state.step += 1
        self.state.tokens += self.tokens_per_step
        if r.output is not None and r.bad is None:
            self._log(r)
        self.logger.step_done()

    def _log(self, r: StepResult) -> None:
        dt, dsteps = self.train_time - self.last_log[1], self.state.step - self.last_log[0]
        record = {"loss": r.loss, "lr": r.lr, "tokens": self.state.tokens,
                  "tokens_per_s": dsteps * self.tokens_per_step / dt if dt > 0 else 0.0,
                  "s_per_step": dt / dsteps if dsteps else 0.0, "elapsed": time.time() - self.logger.t0}
        if r.grad_norm is not None:
            record["grad_norm"] = r.grad_norm
        if self.state.skipped_nonfinite:
            record["skipped_nonfinite"] = self.state.skipped_nonfinite
        with torch.no_grad():
            output = r.output.float() if isinstance(r.output, torch.Tensor) else r.output
            record.update(self.task.log_metrics(output, r.batch))
        self.logger.log(self.state.step, record)
        self.last_log = (self.state.step, self.train_time)

    def _after_step(self, r: StepResult) -> None:
        """Throughput, the reasons to stop, then checkpoints, evaluation and rendering on their cadence."""
        step, tc = self.state.step, self.tc
        if step == self.start_step + CALIBRATION_WARMUP:
            if self.device.type == "cuda":
                torch.cuda.synchronize(self.device)
            self.mark = (step, self.train_time)
        elif self.mark is not None and step == self.mark[0] + 10:
            self._calibrate(final=False)
        if r.signal:
            self.stopped = "signal"
        elif r.out_of_time and step < self.total_steps:
            self.stopped = "budget"
        if self.stopped != "done":
            return
        if tc.ckpt_every and step % tc.ckpt_every == 0:
            self.checkpoint()
        if tc.eval_every and step % tc.eval_every == 0 and step < self.total_steps:
            self.evaluate(self.full_model())
        if tc.artifacts_every and (step == 1 or step % tc.artifacts_every == 0):
            self.render(self.full_model())

    def _finish(self) -> None:
        """The last checkpoint; then (unless a signal asked to stop) the final evaluation, artifacts, throughput."""
        step = self.state.step
        self.checkpoint(self.stopped)
        self.stop.restore()  # from here on, signals act as usual: the checkpoint is safe
        if self.stopped == "signal":
            self.logger.message(f"{self.stop.name or 'a signal to another process'}: stopped after step {step}; "
                                f"checkpoint {self.last_ckpt_path}. Resume with: interfere train resume={self.run_id}")
        else:
            m = self.full_model()
            if self.stopped == "budget":
                self.logger.message(f"train.max_minutes={self.tc.max_minutes:g} used up: stopped after step {step} "
                                    f"of {self.total_steps}")
            metrics = self.evaluate(m)
            if self.dist.is_main:
                write_json(self.run_dir / "eval.json", {"step": step, "tokens": self.state.tokens,
                                                        "stopped": self.stopped, "train_seconds": self.seconds(),
                                                        **metrics})
            if self.tc.artifacts_every and self.last_artifacts != step:
                self.render(m)
        self._calibrate(final=True)
        distributed.barrier(self.dist)  # every process returns only once rank 0's files are complete

    # ----- what the loop calls on its cadence ------------------------------------------------------------
    def full_model(self):
        """The unsharded model rank 0 saves, evaluates and renders (None on other ranks). Every rank calls."""
        if not self.fsdp:
            return self.raw if self.dist.is_main else None
        full = distributed.full_model_state(self.raw, self.dist)
        if self.shell is not None:
            self.shell.load_state_dict(full)
        return self.shell

    def checkpoint(self, stopped: str | None = None) -> None:
        """Every rank calls (FSDP gathers); rank 0 writes. `stopped` marks the run's last checkpoint."""
        step, extra = self.state.step, {"stopped": stopped} if stopped else {}
        if self.last_ckpt == step and self.last_ckpt_path is not None:  # written at this step: say why it ended
            if self.dist.is_main and extra:
                update_state(self.last_ckpt_path, train_seconds=self.seconds(), **extra)
            return
        full = self.full_model()
        optim_state = distributed.full_optimizer_state(self.raw, self.optimizer, self.dist) if self.fsdp else None
        path = self.run_dir / "checkpoints" / f"step_{step}"
        if self.dist.is_main:
            tc = self.tc
            save_checkpoint(self.run_dir, full, self.optimizer, {
                **dataclasses.asdict(self.state), "train_seconds": self.seconds(), "run_id": self.run_id,
                "total_steps": self.total_steps, "tokens_per_step": self.tokens_per_step,
                "world_size": self.dist.world_size, "batch_size": tc.batch_size, "grad_accum": tc.grad_accum,
                "parallel": self.parallel if self.dist.enabled else None, "dtype": self.dtype,
                "threads": torch.get_num_threads(), **extra,
            }, keep_last=tc.keep_last, optim_state=optim_state)
        self.last_ckpt, self.last_ckpt_path = step, path

    def evaluate(self, m) -> dict:
        """Held-out metrics of the task (rank 0; other ranks get {})."""
        if not self.dist.is_main:
            return {}
        samples = self.tc.eval_samples or int(_select(self.cfg, "task.eval.samples", 256))
        with eval_mode(m), rng_untouched():
            metrics = self.task.evaluate(m, samples, seed=int(_select(self.cfg, "task.eval.seed", 0)))
        self.logger.log(self.state.step, {f"eval/{k}": v for k, v in metrics.items()}, show=False)
        return metrics

    def render(self, m) -> None:
        """The task's artifacts (rollout videos, plots) for this step (rank 0)."""
        if not self.dist.is_main:
            return
        with eval_mode(m), rng_untouched():
            paths = self.task.artifacts(m, self.state.step, self.run_dir / "assets")
        self.last_artifacts = self.state.step
        if paths:
            self.logger.message(f"step {self.state.step}: wrote {', '.join(str(p) for p in paths)}")

    def _calibrate(self, final: bool) -> None:
        """Throughput over the steps after the warm-up (or every step, for a run too short to warm up)."""
        if not self.dist.is_main or self.state.step == self.start_step:
            return
        first, t_first = self.mark if self.mark is not None else (self.start_step, 0.0)
        n, seconds = self.state.step - first, self.train_time - t_first
        if n > 0 and seconds > 0:
            self.calibration.update(tokens_per_s=n * self.tokens_per_step / seconds, s_per_step=seconds / n,
                                    measured_steps=n)
        self.calibration["final"] = final
        write_json(self.run_dir / "calibration.json", self.calibration)

    def _nonfinite(self, what: str) -> NonFiniteLossError:
        step, skip = self.state.step, self.tc.skip_nonfinite
        if self.last_ckpt_path is not None:
            where = (f"the last good checkpoint, {self.last_ckpt_path} (step {self.last_ckpt}), is intact and still "
                     f"`latest`; resume from it with `interfere train resume={self.run_id}` (e.g. with a lower train.lr)")
        else:
            where = ("no checkpoint had been written yet (train.ckpt_every), so the run directory was removed"
                     if self.new_run is not None else "no checkpoint had been written yet (train.ckpt_every)")
        hint = (f"; train.skip_nonfinite={skip} bad steps were skipped first" if skip
                else "; train.skip_nonfinite=k skips up to k such steps instead")
        return NonFiniteLossError(f"step {step + 1}: {what}: training stopped without saving this step; {where}{hint}",
                                  step + 1, self.last_ckpt_path)


def _select(cfg, key: str, default):
    from omegaconf import OmegaConf

    value = OmegaConf.select(cfg, key, default=default)
    return default if value is None else value


def _plain(cfg) -> dict:
    from omegaconf import DictConfig, OmegaConf

    return OmegaConf.to_container(cfg, resolve=True) if isinstance(cfg, DictConfig) else dict(cfg)
