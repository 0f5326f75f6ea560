"""Learning-rate schedule: warmup, optional hold at the peak, then cosine / linear decay, or constant.

A pure function of the step, so a resumed run continues on exactly the same curve.
"""

from __future__ import annotations

import math

from interfere.train.config import TrainConfig


def lr_at(step: int, total_steps: int, cfg: TrainConfig) -> float:
    """The learning rate for optimizer step `step`, counted from 1 (the first step) to total_steps.

    Warmup rises linearly from 0 (step 0) to lr at step warmup_steps; the peak holds for hold_steps;
    the decay then reaches lr * min_lr_ratio exactly at step total_steps (and stays there after).
    """
    lr, warmup = cfg.lr, cfg.warmup_steps
    if step < warmup:
        return lr * step / warmup
    if cfg.schedule == "constant":
        return lr
    decay_start = warmup + cfg.hold_steps
    decay_steps = total_steps - decay_start
    if step <= decay_start or decay_steps <= 0:
        return lr
    min_lr = lr * cfg.min_lr_ratio
    progress = min(1.0, (step - decay_start) / decay_steps)
    if cfg.schedule == "linear":
        return lr - (lr - min_lr) * progress
    return min_lr + (lr - min_lr) * 0.5 * (1.0 + math.cos(math.pi * progress))
