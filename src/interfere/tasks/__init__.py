"""Tasks: what a model learns. `build_task(cfg, device)` turns the Hydra `task` group into a Task."""

from __future__ import annotations

import inspect
from typing import Callable, Mapping

from interfere.errors import ConfigError
from interfere.tasks.base import Batch, Layout, Task


def _life():
    from interfere.tasks.life import LifeTask

    return LifeTask


def _text():
    from interfere.tasks.text import TextTask

    return TextTask


def _repeat():
    from interfere.tasks.repeat import RepeatTask

    return RepeatTask


# name -> a function returning the task class; imported lazily so `interfere --help` stays instant.
REGISTRY: dict[str, Callable[[], type]] = {"life": _life, "text": _text, "repeat": _repeat}


def register(name: str, loader: Callable[[], type]) -> None:
    """Add a task: `loader()` returns a class whose keyword arguments are the keys of conf/task/<name>.yaml."""
    REGISTRY[name] = loader


def headline_metric(name: str | None) -> str | None:
    """The evaluate() key that sums up a run of task `name` (its class's `headline`), or None if unknown."""
    loader = REGISTRY.get(name) if isinstance(name, str) else None
    return getattr(loader(), "headline", None) if loader else None


def build_task(task_cfg: Mapping, device, run_dir=None) -> Task:
    """The task named by task_cfg["name"], built from the rest of the config on `device`.

    `run_dir`: the run the task belongs to, for a task that saved state there (`Task.save`, e.g. the
    text task's trained tokenizer); passed only to tasks whose constructor takes it.
    """
    name = task_cfg.get("name")
    if name not in REGISTRY:
        raise ConfigError(f"unknown task.name {name!r}; known tasks: {', '.join(sorted(REGISTRY))}")
    cls = REGISTRY[name]()
    params = inspect.signature(cls).parameters
    unknown = [k for k in task_cfg if k not in params or k in ("device", "run_dir")]
    if unknown:
        known = [k for k in params if k not in ("device", "run_dir")]
        raise ConfigError(f"task {name!r} has no key(s) {unknown}; its keys are {known}")
    extra = {"run_dir": run_dir} if run_dir is not None and "run_dir" in params else {}
    return cls(**dict(task_cfg), device=device, **extra)


__all__ = ["Batch", "Layout", "Task", "REGISTRY", "register", "build_task", "headline_metric"]
