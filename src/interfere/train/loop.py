"""The training loop, the same for every task: the task hands out batches, the loop minimises the masked
cross-entropy of the model's logits against the batch's targets.

Each step trains on one global batch that depends only on the step: every (process, micro-batch) pair
takes its own slice of it, as a "virtual rank". So 2 processes x b, 1 x 2b and 1 x b with 2 accumulation
steps see the same data and compute the same gradient, and since the learning rate too depends only on
the step, a run resumed from a checkpoint continues exactly as if it had never stopped.
"""

from __future__ import annotations

import contextlib
import json
import math
import os
import random
import re
import signal
import sys
import threading
import time
from pathlib import Path
from typing import Any, Mapping

import numpy as np
import torch
import torch.nn.functional as F

from interfere.errors import CheckpointError, ConfigError
from interfere.model.modes import eval_mode
from interfere.train import distributed
from interfere.train.audit import audit_leakage
from interfere.train.checkpoint import (atomic_symlink, load_checkpoint, rng_state, save_checkpoint,
                                        set_rng_state, update_state)
from interfere.train.errors import CheckpointMismatchError, NonFiniteLossError, UnsafeCheckpointError
from interfere.train.logging import TrainLogger
from interfere.train.optim import build_optimizer
from interfere.train.runs import create_run, resume_candidates, resume_checkpoint, run_dir_of
from interfere.train.schedule import SCHEDULES, lr_at

CALIBRATION_WARMUP = 3
IGNORE = -100  # target id that the loss skips (positions outside the batch's loss_mask)  # steps excluded from the throughput measurement (allocator, compile, caches)


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
    # ignore_index instead of logits[mask]: no copy of the [B, T, V] logits (and none of its gradient).
    # Under bf16 autocast cross_entropy runs in fp32 by itself.
    targets = batch.targets.masked_fill(~batch.loss_mask, IGNORE)
    return F.cross_entropy(logits.flatten(0, 1), targets.flatten(), reduction="sum", ignore_index=IGNORE)


@contextlib.contextmanager
def _rng_untouched():
    """Evaluation and rendering must not move the training RNGs (a resumed run restores them as checkpointed,
    which is before the evaluation at the same step), whatever generators the task uses."""
    saved = rng_state()
    try:
        yield
    finally:
        set_rng_state(saved)


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
    skip = tcfg.get("skip_nonfinite", 0)
    if skip is None or isinstance(skip, bool) or not isinstance(skip, int) or skip < 0:
        raise ConfigError(f"train.skip_nonfinite={skip!r} must be an integer >= 0 (bad steps to skip before stopping)")
    minutes = tcfg.get("max_minutes")
    if minutes is not None and (isinstance(minutes, bool) or not isinstance(minutes, (int, float)) or minutes <= 0):
        raise ConfigError(f"train.max_minutes={minutes!r} must be a positive number of minutes, or null for no limit")


class StopRequest:
    """SIGTERM / SIGINT while training: remember the request; the loop finishes the step, checkpoints and returns.

    A second signal more than GRACE seconds after the first quits at once (the previous handler runs:
    KeyboardInterrupt for SIGINT, termination for SIGTERM). One that comes sooner is the same request
    delivered twice (Ctrl-C under torchrun reaches a worker from the terminal and again from torchrun).
    Handlers exist only between install() and restore(), and only in the main thread.
    """

    GRACE = 2.0

    def __init__(self):
        self.signum: int | None = None
        self._first = 0.0
        self._previous: dict[int, Any] = {}

    def install(self) -> "StopRequest":
        if threading.current_thread() is threading.main_thread():
            for sig in (signal.SIGTERM, signal.SIGINT):
                self._previous[sig] = signal.getsignal(sig)
                signal.signal(sig, self._handle)
        return self

    def restore(self) -> None:
        for sig, handler in self._previous.items():
            signal.signal(sig, handler if handler is not None else signal.SIG_DFL)
        self._previous.clear()

    @property
    def name(self) -> str:
        return signal.Signals(self.signum).name if self.signum is not None else ""

    def _handle(self, signum, frame) -> None:
        # No printing here: the signal may have interrupted a print to the same stream.
        now = time.monotonic()
        if self.signum is None:
            self.signum, self._first = signum, now
        elif now - self._first > self.GRACE:
            self.restore()
            signal.raise_signal(signum)


# ----- the loop -----------------------------------------------------------------------------------
def train(cfg) -> Path:
    """Train the model described by cfg (model / task / train groups) and return the run directory.

    Stops early, cleanly, on SIGTERM / SIGINT (checkpoint at the current step, resume command printed) or
    when train.max_minutes is used up (checkpoint, final evaluation, artifacts); state.json and eval.json
    say why in `stopped` ("done", "budget" or "signal"). A non-finite loss raises NonFiniteLossError
    (after train.skip_nonfinite skipped steps) and writes nothing for the bad step.
    """
    dist = distributed.init(cfg.get("device", "auto"))
    try:
        return _train(cfg, dist)
    finally:
        distributed.cleanup(dist)


def _resume(cfg, dist: distributed.Dist, model, optimizer, named_optim: dict | None):
    """(checkpoint dir, state) of the newest valid checkpoint, loaded into model and optimizer on every rank.

    Rank 0 chooses (warning about each checkpoint it skips) and tells the others, so that all load the same one.
    """
    runs_dir = cfg.get("runs_dir", "runs")
    warn = (lambda line: print(line, file=sys.stderr, flush=True)) if dist.is_main else None
    ckpt = state = error = None
    if dist.is_main:
        try:
            ckpt, state = resume_checkpoint(cfg.resume, runs_dir, model, optimizer, warn=warn,
                                            optim_state_out=named_optim)
        except CheckpointError as e:
            error = e
    if dist.enabled:
        verdict = distributed.broadcast_object(
            (None, str(ckpt)) if error is None else (type(error).__name__, str(error)), dist)
        if not dist.is_main:
            if verdict[0] is not None:
                kinds = {c.__name__: c for c in (CheckpointError, UnsafeCheckpointError, CheckpointMismatchError)}
                raise kinds.get(verdict[0], CheckpointError)(verdict[1])
            ckpt = Path(verdict[1])
            state = load_checkpoint(ckpt, model, optimizer, optim_state_out=named_optim)
    if error is not None:
        raise error
    return Path(ckpt), state


# Keys of the model and task groups that may change when a run is resumed without a warning.
_RESUME_FREE = ("task.eval", "task.render")


def _resume_differences(cfg, run_dir: Path) -> list[str]:
    """Model and task keys whose value differs from the run's own config.yaml (a resumed run should keep them).

    Not an error: a checkpoint that does not fit the model is refused anyway (CheckpointMismatchError), and
    a deliberate change (e.g. dropout for the rest of a run) is the user's call; but it is said out loud.
    """
    from omegaconf import OmegaConf

    saved_file = run_dir / "config.yaml"
    if not saved_file.is_file():
        return []
    saved = OmegaConf.to_container(OmegaConf.load(saved_file), resolve=True)
    given = _plain(cfg)
    found: list[str] = []

    def walk(a, b, prefix):
        if prefix in _RESUME_FREE:
            return
        if isinstance(a, dict) and isinstance(b, dict):
            for k in sorted(set(a) | set(b), key=str):
                walk(a.get(k), b.get(k), f"{prefix}.{k}")
        elif a != b and not (isinstance(a, (list, tuple)) and isinstance(b, (list, tuple)) and list(a) == list(b)):
            found.append(f"{prefix}={b!r} (the run had {a!r})")

    for group in ("model", "task"):
        walk(saved.get(group), given.get(group), group)
    return found


def _trim_metrics(path: Path, step: int) -> None:
    """Drop records after `step` (logged by the attempt that died after its last checkpoint) and any torn line."""
    if not path.is_file():
        return
    kept = []
    for line in path.read_text(encoding="utf-8", errors="replace").splitlines():
        try:
            rec = json.loads(line)
        except ValueError:
            continue
        if isinstance(rec, dict) and isinstance(rec.get("step"), int) and rec["step"] > step:
            continue
        kept.append(line)
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text("".join(line + "\n" for line in kept), encoding="utf-8")
    tmp.replace(path)


def _train(cfg, dist: distributed.Dist) -> Path:
    from interfere.model import build_model
    from interfere.tasks import build_task

    tcfg, device = cfg.train, dist.device
    _check(tcfg)
    parallel = distributed.check_parallel(tcfg.get("parallel", "ddp"), dist)
    fsdp = parallel == "fsdp" and dist.enabled
    seed_everything(int(cfg.get("seed", 0)))

    # A resumed run rebuilds its task from the run itself (e.g. the tokenizer it was trained with).
    resume_dir = resume_candidates(cfg.resume, cfg.get("runs_dir", "runs"))[0] if cfg.get("resume") else None
    task = build_task(cfg.task, device, run_dir=resume_dir)
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
    state: dict[str, Any] = {}
    named_optim: dict | None = {} if fsdp else None
    resumed_from = None
    if resume_dir is not None:
        run_dir = resume_dir
        differences = _resume_differences(cfg, run_dir) if dist.is_main else []
        if differences:
            print(f"warning: resuming {run_dir.name} with a different model/task config: {', '.join(differences)}",
                  file=sys.stderr, flush=True)
        resumed_from, state = _resume(cfg, dist, model, optimizer, named_optim)
        run_dir = run_dir_of(resumed_from)
        set_rng_state(state["rng"])
        step, tokens = state["step"], state.get("tokens", state["step"] * tokens_per_step)
        if dist.is_main:
            _trim_metrics(run_dir / "metrics.jsonl", step)
            latest = run_dir / "checkpoints" / "latest"
            if not latest.is_symlink() or os.readlink(latest) != resumed_from.name:
                atomic_symlink(latest, resumed_from.name)  # e.g. a newer, broken one was skipped
    else:
        run_dir = create_run(cfg) if dist.is_main else None
        if run_dir is not None and hasattr(task, "save"):
            task.save(run_dir)  # what `interfere.load` needs to rebuild the task exactly
        run_dir = Path(distributed.broadcast_object(str(run_dir) if run_dir else None, dist))
    start_step, run_id = step, run_dir.name

    raw = model  # what checkpoints, tasks and evaluation see (under FSDP: sharded in place)
    if fsdp:
        distributed.wrap(raw, dist, "fsdp")
        optimizer = build_optimizer(raw, tcfg)  # over the sharded parameters
        if named_optim:
            distributed.load_full_optimizer_state(raw, optimizer, named_optim)
        named_optim = None
        model = torch.compile(raw) if tcfg.get("compile") else raw
    else:
        if tcfg.get("compile"):
            model = torch.compile(model)
        model = distributed.wrap(model, dist, "ddp")
    model.train()
    shell = None  # under FSDP, rank 0's unsharded copy for saving, evaluation and rendering
    if fsdp and dist.is_main:
        with torch.random.fork_rng(devices=[]):  # building it must not move the training RNG
            shell = build_model(cfg.model, vocab_size=task.vocab_size, seq_len=task.seq_len)
        shell.set_layout(task.layout())
        shell.to(device)

    batch_size, grad_accum = int(tcfg.batch_size), int(tcfg.grad_accum)
    bf16 = tcfg.get("dtype", "fp32") == "bf16"
    grad_clip = float(tcfg.get("grad_clip", 0) or 0)
    log_every = int(tcfg.get("log_every", 10))
    ckpt_every = int(tcfg.get("ckpt_every", 0) or 0)
    eval_every = int(tcfg.get("eval_every", 0) or 0)
    artifacts_every = int(tcfg.get("artifacts_every", 0) or 0)
    eval_samples = int(tcfg.get("eval_samples") or _select(cfg, "task.eval.samples", 256))
    eval_seed = int(_select(cfg, "task.eval.seed", 0))
    skip_nonfinite = int(tcfg.get("skip_nonfinite", 0) or 0)
    budget_s = float(tcfg.max_minutes) * 60 if tcfg.get("max_minutes") is not None else None
    n_params = sum(p.numel() for p in (shell if shell is not None else raw).parameters())
    skipped = int(state.get("skipped_nonfinite", 0))  # bad steps skipped so far (over resumes)
    seconds_before = float(state.get("train_seconds", 0.0))  # loop time of earlier attempts (for the budget)

    plan = (f"{total_steps} steps x {tokens_per_step:,} tokens/step = {total_steps * tokens_per_step:,} tokens"
            + (f" (budget train.tokens={tcfg.tokens})" if tcfg.get("tokens") is not None else "")
            + (f", at most {tcfg.max_minutes:g} min of training" if budget_s is not None else ""))
    calibration = {
        "total_steps": total_steps, "tokens_per_step": tokens_per_step, "tokens_per_s": None, "s_per_step": None,
        "device": str(device), "dtype": tcfg.get("dtype", "fp32"), "world_size": dist.world_size,
        "parallel": parallel if dist.enabled else None,
        "batch_size": batch_size, "grad_accum": grad_accum, "seq_len": task.seq_len, "n_params": n_params,
        "compile": bool(tcfg.get("compile")), "measured_steps": 0,
    }
    logger = TrainLogger(run_dir, run_id, total_steps, start_step, is_main=dist.is_main,
                         progress=bool(tcfg.get("progress", True)), loggers=list(tcfg.get("loggers") or []),
                         config=_plain(cfg))
    logger.message(f"run {run_dir}" + (f" (resumed from {resumed_from})" if resumed_from else ""))
    logger.message(plan)
    if resumed_from and state.get("tokens_per_step") not in (None, tokens_per_step):
        logger.message(f"warning: the run was trained with {state['tokens_per_step']:,} tokens/step, now "
                       f"{tokens_per_step:,}: it will not continue exactly as it would have")
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

    def loop_seconds() -> float:
        return seconds_before + time.perf_counter() - loop_t0

    def full_model():
        """The unsharded model rank 0 saves, evaluates and renders (None on other ranks). Every rank calls."""
        if not fsdp:
            return raw if dist.is_main else None
        full = distributed.full_model_state(raw, dist)
        if shell is not None:
            shell.load_state_dict(full)
        return shell

    def checkpoint(stopped: str | None = None) -> None:
        """Every rank calls (FSDP gathers); rank 0 writes. `stopped` marks the run's last checkpoint."""
        nonlocal last_ckpt, last_ckpt_path
        extra = {"stopped": stopped} if stopped else {}
        path = run_dir / "checkpoints" / f"step_{step}"
        if last_ckpt == step and last_ckpt_path is not None:  # already written at this step: just say why it ended
            if dist.is_main and extra:
                update_state(last_ckpt_path, train_seconds=loop_seconds(), **extra)
            return
        full = full_model()
        optim_state = distributed.full_optimizer_state(raw, optimizer, dist) if fsdp else None
        if dist.is_main:
            save_checkpoint(run_dir, full, optimizer, {
                "step": step, "tokens": tokens, "run_id": run_id, "total_steps": total_steps,
                "tokens_per_step": tokens_per_step, "world_size": dist.world_size, "batch_size": batch_size,
                "grad_accum": grad_accum, "parallel": parallel if dist.enabled else None,
                "train_seconds": loop_seconds(),
                "skipped_nonfinite": skipped, **extra,
            }, keep_last=tcfg.get("keep_last"), optim_state=optim_state)
        last_ckpt, last_ckpt_path = step, path

    def evaluate(m) -> dict:
        with eval_mode(m), _rng_untouched():
            metrics = task.evaluate(m, eval_samples, seed=eval_seed)
        logger.log(step, {f"eval/{k}": v for k, v in metrics.items()}, show=False)
        return metrics

    def artifacts(m) -> None:
        nonlocal last_artifacts
        with eval_mode(m), _rng_untouched():
            paths = task.artifacts(m, step, run_dir / "assets")
        last_artifacts = step
        if paths:
            logger.message(f"step {step}: wrote {', '.join(str(p) for p in paths)}")

    def nonfinite(what: str) -> NonFiniteLossError:
        if last_ckpt_path is not None:
            where = (f"the last good checkpoint, {last_ckpt_path} (step {last_ckpt}), is intact and still `latest`; "
                     f"resume from it with `interfere train resume={run_id}` (e.g. with a lower train.lr)")
        else:
            where = "no checkpoint had been written yet (train.ckpt_every)"
        hint = (f"; train.skip_nonfinite={skip_nonfinite} bad steps were skipped first" if skip_nonfinite
                else "; train.skip_nonfinite=k skips up to k such steps instead")
        return NonFiniteLossError(f"step {step + 1}: {what}: training stopped without saving this step; {where}{hint}",
                                  step + 1, last_ckpt_path)

    train_time = 0.0  # seconds spent in training steps (not evaluation, checkpoints or rendering)
    mark = None  # (step, train_time) once the calibration warm-up is over
    last_ckpt, last_artifacts = start_step, None
    last_ckpt_path = resumed_from
    last_log = (step, train_time)
    stopped = "done"
    stop = StopRequest()
    loop_t0 = time.perf_counter()
    try:
        stop.install()
        if budget_s is not None and seconds_before >= budget_s and step < total_steps:
            stopped = "budget"  # a resumed run whose budget was already used up
        while step < total_steps and stopped == "done":
            t0 = time.perf_counter()
            logging_now = (step + 1) % log_every == 0 or step + 1 == total_steps
            lr = lr_at(step + 1, total_steps, tcfg)
            for group in optimizer.param_groups:
                group["lr"] = lr

            slices = grad_accum * dist.world_size
            micro = [task.train_batch(step, batch_size, dist.rank * grad_accum + m, slices, model=raw)
                     for m in range(grad_accum)]
            # Normalise by the loss tokens of the whole global batch, so that any split of it into
            # processes and micro-batches gives the same gradient. DDP/FSDP average over ranks: undo that.
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
            grad_norm = None
            if grad_clip > 0:
                grad_norm = distributed.local_value(torch.nn.utils.clip_grad_norm_(raw.parameters(), grad_clip))

            # One small all-reduce and one host sync per step: the global loss, the grad norm, and whether
            # any rank got a signal or rank 0's clock ran out, so that every rank stops at the same step.
            budget_hit = dist.is_main and budget_s is not None and loop_seconds() >= budget_s
            flags = torch.tensor([float(stop.signum is not None), float(budget_hit)], device=device)
            gn = grad_norm.detach().float() / dist.world_size if grad_norm is not None else torch.zeros((), device=device)
            synced = distributed.all_reduce_sum(torch.cat([torch.stack([loss_sum, gn, n_loss / dist.world_size]), flags]),
                                                dist).tolist()
            loss, gn_value, n_value, any_signal, any_budget = synced
            loss /= n_value
            bad = None if math.isfinite(loss) else f"the loss is {loss}"
            if bad is None and grad_norm is not None and not math.isfinite(gn_value):
                bad = f"the gradient norm is {gn_value} (loss {loss:.4g})"

            if bad is None:
                optimizer.step()
            optimizer.zero_grad(set_to_none=True)
            if bad is not None:
                logger.log(step + 1, {"loss": loss, "lr": lr, "nonfinite": True,
                                      **({"grad_norm": gn_value} if grad_norm is not None else {})}, show=False)
                if skipped >= skip_nonfinite:
                    raise nonfinite(bad)
                skipped += 1
                logger.message(f"step {step + 1}: {bad}: step skipped (optimizer not stepped; {skipped} of "
                               f"train.skip_nonfinite={skip_nonfinite})")
            step += 1
            tokens += tokens_per_step

            if logging_now and bad is None:
                train_time += time.perf_counter() - t0
                dt, dsteps = train_time - last_log[1], step - last_log[0]
                record = {"loss": loss, "lr": lr, "tokens": tokens,
                          "tokens_per_s": dsteps * tokens_per_step / dt if dt > 0 else 0.0,
                          "s_per_step": dt / dsteps if dsteps else 0.0,
                          "elapsed": time.time() - logger.t0}
                if grad_norm is not None:
                    record["grad_norm"] = gn_value
                if skipped:
                    record["skipped_nonfinite"] = skipped
                with torch.no_grad():
                    record.update(task.log_metrics(last_logits.float(), micro[-1]))
                logger.log(step, record)
                last_log = (step, train_time)
            else:
                train_time += time.perf_counter() - t0
            last_logits = None
            logger.step_done()

            if step == start_step + CALIBRATION_WARMUP:
                _sync(device)
                mark = (step, train_time)
            elif mark is not None and step == mark[0] + 10:
                calibrate(final=False)
            if any_signal:
                stopped = "signal"
            elif any_budget and step < total_steps:
                stopped = "budget"
            if stopped != "done":
                break
            if ckpt_every and step % ckpt_every == 0:
                checkpoint()
            if eval_every and step % eval_every == 0 and step < total_steps:
                m = full_model()
                if dist.is_main:
                    evaluate(m)
            if artifacts_every and (step == 1 or step % artifacts_every == 0):
                m = full_model()
                if dist.is_main:
                    artifacts(m)

        # The end: final checkpoint; then (unless a signal asked to stop) evaluation, artifacts and throughput.
        checkpoint(stopped)
        stop.restore()  # from here on, signals act as usual: the checkpoint is safe
        if stopped == "signal":
            logger.message(f"{stop.name or 'a signal to another process'}: stopped after step {step}; checkpoint {last_ckpt_path}. "
                           f"Resume with: interfere train resume={run_id}")
        else:
            m = full_model()
            if dist.is_main:
                if stopped == "budget":
                    logger.message(f"train.max_minutes={tcfg.max_minutes:g} used up: stopped after step {step} of "
                                   f"{total_steps}")
                metrics = evaluate(m)
                _write_json(run_dir / "eval.json", {"step": step, "tokens": tokens, "stopped": stopped,
                                                    "train_seconds": loop_seconds(), **metrics})
                if artifacts_every and last_artifacts != step:
                    artifacts(m)
        calibrate(final=True)
        distributed.barrier(dist)  # every process returns only once rank 0's files are complete
    finally:
        stop.restore()
        logger.close()
    return run_dir


def _plain(cfg) -> dict:
    from omegaconf import DictConfig, OmegaConf

    return OmegaConf.to_container(cfg, resolve=True) if isinstance(cfg, DictConfig) else dict(cfg)
