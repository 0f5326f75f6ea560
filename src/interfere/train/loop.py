"""The training loop, the same for every task: the task hands out batches, the loop minimises the masked
cross-entropy of the model's logits against the batch's targets.

Each step trains on one global batch that depends only on the step: every (process, micro-batch) pair
takes its own slice of it, as a "virtual rank". So 2 processes x b, 1 x 2b and 1 x b with 2 accumulation
steps see the same data and compute the same gradient, and since the learning rate too depends only on
the step, a run resumed from a checkpoint continues exactly as if it had never stopped.
"""

from __future__ import annotations

import json
import math
import random
import re
import time
from pathlib import Path
from typing import Any, Mapping

import numpy as np
import torch
import torch.nn.functional as F

from interfere.errors import ConfigError
from interfere.model.modes import eval_mode
from interfere.train import distributed
from interfere.train.audit import audit_leakage
from interfere.train.checkpoint import load_checkpoint, save_checkpoint, set_rng_state
from interfere.train.logging import TrainLogger
from interfere.train.optim import build_optimizer
from interfere.train.runs import create_run, resolve_checkpoint, run_dir_of
from interfere.train.schedule import SCHEDULES, lr_at

CALIBRATION_WARMUP = 3  # steps excluded from the throughput measurement (allocator, compile, caches)


# ----- the run length ------------------------------------------------------------------------------
_SUFFIX = {"": 1, "k": 10**3, "m": 10**6, "b": 10**9, "g": 10**9, "t": 10**12}


def parse_tokens(value: Any) -> int:
    """A token count: 2000000, 2e6, "2M", "2.5k", "1_000_000"."""
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        n = value
    else:
        m = re.fullmatch(r"\s*([0-9_.eE+]+)\s*([kKmMbBgGtT]?)\s*", str(value))
        if not m:
            raise ConfigError(f"train.tokens={value!r} is not a token count (e.g. 2000000, 2e6 or 2M)")
        try:
            n = float(m.group(1).replace("_", "")) * _SUFFIX[m.group(2).lower()]
        except ValueError:
            raise ConfigError(f"train.tokens={value!r} is not a token count (e.g. 2000000, 2e6 or 2M)") from None
    if not n > 0:
        raise ConfigError(f"train.tokens={value!r} must be positive")
    return int(math.ceil(n))


def plan_steps(tcfg: Mapping, seq_len: int, world_size: int = 1) -> tuple[int, int]:
    """(optimizer steps, tokens per step) from exactly one of train.steps and train.tokens."""
    steps, budget = tcfg.get("steps"), tcfg.get("tokens")
    batch_size, grad_accum = int(tcfg.get("batch_size", 1)), int(tcfg.get("grad_accum", 1))
    if batch_size < 1 or grad_accum < 1:
        raise ConfigError(f"train.batch_size={batch_size} and train.grad_accum={grad_accum} must be >= 1")
    tokens_per_step = world_size * batch_size * grad_accum * int(seq_len)
    if (steps is None) == (budget is None):
        got = f"both are set (steps={steps}, tokens={budget})" if steps is not None else "neither is set"
        raise ConfigError(f"set exactly one of train.steps and train.tokens; {got}")
    if steps is not None:
        if int(steps) < 1:
            raise ConfigError(f"train.steps={steps} must be >= 1")
        return int(steps), tokens_per_step
    return math.ceil(parse_tokens(budget) / tokens_per_step), tokens_per_step


# ----- small pieces -------------------------------------------------------------------------------
def seed_everything(seed: int) -> None:
    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)  # every device's generator


def masked_loss_sum(logits: torch.Tensor, batch) -> torch.Tensor:
    """Summed cross-entropy (fp32) over the batch's loss positions; the caller divides by the global count."""
    mask = batch.loss_mask
    return F.cross_entropy(logits[mask].float(), batch.targets[mask], reduction="sum")


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def _write_json(path: Path, obj: dict) -> None:
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(json.dumps(obj, indent=1))
    tmp.replace(path)


def _select(cfg, key: str, default):
    from omegaconf import OmegaConf

    value = OmegaConf.select(cfg, key, default=default)
    return default if value is None else value


def _check(tcfg) -> None:
    if tcfg.get("dtype", "fp32") not in ("fp32", "bf16"):
        raise ConfigError(f"train.dtype={tcfg.dtype!r}; choose fp32 or bf16")
    if tcfg.get("schedule", "cosine") not in SCHEDULES:
        raise ConfigError(f"train.schedule={tcfg.schedule!r}; choose one of {', '.join(SCHEDULES)}")
    if int(tcfg.get("log_every", 1)) < 1:
        raise ConfigError(f"train.log_every={tcfg.log_every} must be >= 1")


# ----- the loop -----------------------------------------------------------------------------------
def train(cfg) -> Path:
    """Train the model described by cfg (model / task / train groups) and return the run directory."""
    dist = distributed.init(cfg.get("device", "auto"))
    try:
        return _train(cfg, dist)
    finally:
        distributed.cleanup(dist)


def _train(cfg, dist: distributed.Dist) -> Path:
    from interfere.model import build_model
    from interfere.tasks import build_task

    tcfg, device = cfg.train, dist.device
    _check(tcfg)
    seed_everything(int(cfg.get("seed", 0)))

    task = build_task(cfg.task, device)
    model = build_model(cfg.model, vocab_size=task.vocab_size, seq_len=task.seq_len)
    model.set_layout(task.layout())
    model.to(device)
    if tcfg.get("activation_checkpointing"):
        model.set_activation_checkpointing(True)
    total_steps, tokens_per_step = plan_steps(tcfg, task.seq_len, dist.world_size)
    optimizer = build_optimizer(model, tcfg)

    # Before anything is written: a leaky task or mask should not leave a run directory behind.
    if tcfg.get("audit", True):
        audit_leakage(model, task, task.train_batch(0, 2))

    step = tokens = 0
    if cfg.get("resume"):
        ckpt = resolve_checkpoint(cfg.resume, cfg.get("runs_dir", "runs"))
        run_dir = run_dir_of(ckpt)
        state = load_checkpoint(ckpt, model, optimizer)
        set_rng_state(state["rng"])
        step, tokens = state["step"], state.get("tokens", state["step"] * tokens_per_step)
    else:
        run_dir = create_run(cfg) if dist.is_main else None
        run_dir = Path(distributed.broadcast_object(str(run_dir) if run_dir else None, dist))
    start_step, run_id = step, run_dir.name

    raw = model  # what checkpoints, tasks and evaluation see
    if tcfg.get("compile"):
        model = torch.compile(model)
    model = distributed.wrap(model, dist)
    model.train()

    batch_size, grad_accum = int(tcfg.batch_size), int(tcfg.grad_accum)
    bf16 = tcfg.get("dtype", "fp32") == "bf16"
    grad_clip = float(tcfg.get("grad_clip", 0) or 0)
    log_every = int(tcfg.get("log_every", 10))
    ckpt_every = int(tcfg.get("ckpt_every", 0) or 0)
    eval_every = int(tcfg.get("eval_every", 0) or 0)
    artifacts_every = int(tcfg.get("artifacts_every", 0) or 0)
    eval_samples = int(tcfg.get("eval_samples") or _select(cfg, "task.eval.samples", 256))
    eval_seed = int(_select(cfg, "task.eval.seed", 0))
    n_params = sum(p.numel() for p in raw.parameters())

    plan = (f"{total_steps} steps x {tokens_per_step:,} tokens/step = {total_steps * tokens_per_step:,} tokens"
            + (f" (budget train.tokens={tcfg.tokens})" if tcfg.get("tokens") is not None else ""))
    calibration = {
        "total_steps": total_steps, "tokens_per_step": tokens_per_step, "tokens_per_s": None, "s_per_step": None,
        "device": str(device), "dtype": tcfg.get("dtype", "fp32"), "world_size": dist.world_size,
        "batch_size": batch_size, "grad_accum": grad_accum, "seq_len": task.seq_len, "n_params": n_params,
        "compile": bool(tcfg.get("compile")), "measured_steps": 0,
    }
    logger = TrainLogger(run_dir, run_id, total_steps, start_step, is_main=dist.is_main,
                         progress=bool(tcfg.get("progress", True)), loggers=list(tcfg.get("loggers") or []),
                         config=_plain(cfg))
    logger.message(f"run {run_dir}" + (f" (resumed at step {start_step})" if start_step else ""))
    logger.message(plan)
    if dist.is_main:
        _write_json(run_dir / "calibration.json", calibration)

    def calibrate(final: bool) -> None:
        """Throughput over the steps after the warm-up (or every step, for a run too short to warm up)."""
        if not dist.is_main or step == start_step:
            return
        first, t_first = mark if mark is not None else (start_step, 0.0)
        n = step - first
        seconds = train_time - t_first
        if n > 0 and seconds > 0:
            calibration.update(tokens_per_s=n * tokens_per_step / seconds, s_per_step=seconds / n, measured_steps=n)
        calibration["final"] = final
        _write_json(run_dir / "calibration.json", calibration)

    def checkpoint() -> None:
        nonlocal last_ckpt
        if dist.is_main:
            save_checkpoint(run_dir, raw, optimizer, {
                "step": step, "tokens": tokens, "run_id": run_id, "total_steps": total_steps,
                "tokens_per_step": tokens_per_step, "world_size": dist.world_size, "batch_size": batch_size,
                "grad_accum": grad_accum,
            }, keep_last=tcfg.get("keep_last"))
        last_ckpt = step

    def evaluate() -> dict:
        with eval_mode(raw):
            metrics = task.evaluate(raw, eval_samples, seed=eval_seed)
        logger.log(step, {f"eval/{k}": v for k, v in metrics.items()}, show=False)
        return metrics

    def artifacts() -> None:
        nonlocal last_artifacts
        with eval_mode(raw):
            paths = task.artifacts(raw, step, run_dir / "assets")
        last_artifacts = step
        if paths:
            logger.message(f"step {step}: wrote {', '.join(str(p) for p in paths)}")

    train_time = 0.0  # seconds spent in training steps (not evaluation, checkpoints or rendering)
    mark = None  # (step, train_time) once the calibration warm-up is over
    last_ckpt, last_artifacts = start_step, None
    last_log = (step, train_time)
    try:
        while step < total_steps:
            t0 = time.perf_counter()
            logging_now = (step + 1) % log_every == 0 or step + 1 == total_steps
            lr = lr_at(step + 1, total_steps, tcfg)
            for group in optimizer.param_groups:
                group["lr"] = lr

            slices = grad_accum * dist.world_size
            micro = [task.train_batch(step, batch_size, dist.rank * grad_accum + m, slices, model=raw)
                     for m in range(grad_accum)]
            # Normalise by the loss tokens of the whole global batch, so that any split of it into
            # processes and micro-batches gives the same gradient. DDP averages over ranks: undo that.
            n_loss = torch.stack([b.loss_mask.sum() for b in micro]).sum()
            n_loss = distributed.all_reduce_sum(n_loss, dist).clamp(min=1).float()
            scale = dist.world_size / n_loss
            loss_sum = torch.zeros((), device=device)
            for m, batch in enumerate(micro):
                with distributed.maybe_no_sync(model, sync=m == grad_accum - 1):
                    with torch.autocast(device.type, dtype=torch.bfloat16, enabled=bf16):
                        logits = model(batch.inputs, **batch.model_kwargs)
                        part = masked_loss_sum(logits, batch)
                    (part * scale).backward()
                loss_sum += part.detach()
            last_logits = logits.detach() if logging_now else None  # for task.log_metrics
            del logits, part
            grad_norm = torch.nn.utils.clip_grad_norm_(raw.parameters(), grad_clip) if grad_clip > 0 else None
            optimizer.step()
            optimizer.zero_grad(set_to_none=True)
            step += 1
            tokens += tokens_per_step

            if logging_now:
                loss = (distributed.all_reduce_sum(loss_sum, dist) / n_loss).item()  # also syncs the device
                train_time += time.perf_counter() - t0
                dt, dsteps = train_time - last_log[1], step - last_log[0]
                record = {"loss": loss, "lr": lr, "tokens": tokens,
                          "tokens_per_s": dsteps * tokens_per_step / dt if dt > 0 else 0.0,
                          "s_per_step": dt / dsteps if dsteps else 0.0,
                          "elapsed": time.time() - logger.t0}
                if grad_norm is not None:
                    record["grad_norm"] = grad_norm.item()
                with torch.no_grad():
                    record.update(task.log_metrics(last_logits.float(), micro[-1]))
                logger.log(step, record)
                last_log = (step, train_time)
            else:
                train_time += time.perf_counter() - t0
            logger.step_done()

            if step == start_step + CALIBRATION_WARMUP:
                _sync(device)
                mark = (step, train_time)
            elif mark is not None and step == mark[0] + 10:
                calibrate(final=False)
            if ckpt_every and step % ckpt_every == 0:
                checkpoint()
            if eval_every and step % eval_every == 0 and step < total_steps and dist.is_main:
                evaluate()
            if dist.is_main and artifacts_every and (step == 1 or step % artifacts_every == 0):
                artifacts()

        # The end: final checkpoint, evaluation, artifacts and throughput.
        if last_ckpt != step:
            checkpoint()
        if dist.is_main:
            metrics = evaluate()
            _write_json(run_dir / "eval.json", {"step": step, "tokens": tokens, **metrics})
            if artifacts_every and last_artifacts != step:
                artifacts()
            calibrate(final=True)
        distributed.barrier(dist)  # every process returns only once rank 0's files are complete
    finally:
        logger.close()
    return run_dir


def _plain(cfg) -> dict:
    from omegaconf import DictConfig, OmegaConf

    return OmegaConf.to_container(cfg, resolve=True) if isinstance(cfg, DictConfig) else dict(cfg)
