"""Learning-rate schedule: warmup, optional hold at the peak, then cosine / linear decay, or constant.

A pure function of the step, so a resumed run continues on exactly the same curve.
"""

from __future__ import annotations

import math
from typing import Mapping

SCHEDULES = ("cosine", "linear", "constant")


def lr_at(step: int, total_steps: int, cfg: Mapping) -> float:
    """The learning rate for optimizer step `step`, counted from 1 (the first step) to total_steps.

    Warmup rises linearly from 0 (step 0) to lr at step warmup_steps; the peak holds for hold_steps;
    the decay then reaches lr * min_lr_ratio exactly at step total_steps (and stays there after).
    """
    lr = float(cfg["lr"])
    warmup = int(cfg.get("warmup_steps", 0) or 0)
    hold = int(cfg.get("hold_steps", 0) or 0)
    kind = cfg.get("schedule", "cosine")
    if kind not in SCHEDULES:
        from interfere.errors import ConfigError

        raise ConfigError(f"train.schedule={kind!r}; choose one of {', '.join(SCHEDULES)}")
    if step < warmup:
        return lr * step / warmup
    if kind == "constant":
        return lr
    decay_start = warmup + hold
    decay_steps = total_steps - decay_start
    if step <= decay_start or decay_steps <= 0:
        return lr
    min_lr = lr * float(cfg.get("min_lr_ratio", 0.0))
    progress = min(1.0, (step - decay_start) / decay_steps)
    if kind == "linear":
        return lr - (lr - min_lr) * progress
    return min_lr + (lr - min_lr) * 0.5 * (1.0 + math.cos(math.pi * progress))
