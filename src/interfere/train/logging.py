"""Where training numbers go: metrics.jsonl (always), a progress bar or plain lines, optional wandb / tensorboard.

Only rank 0 builds a real logger; the others get one that does nothing.
"""

from __future__ import annotations

import json
import math
import os
import sys
import time
from pathlib import Path
from typing import Any, Iterable

from interfere.errors import ConfigError


def _jsonable(v: Any) -> Any:
    if hasattr(v, "item") and getattr(v, "numel", lambda: 1)() == 1:
        v = v.item()  # 0-d tensors / numpy scalars
    if isinstance(v, float) and not math.isfinite(v):
        return None  # strict JSON has no nan/inf
    return v


class MetricsFile:
    """metrics.jsonl: one JSON object per logged step, flushed at once so a crash loses nothing."""

    def __init__(self, path: Path):
        self.path = Path(path)
        self._f = open(self.path, "a", encoding="utf-8")

    def write(self, record: dict[str, Any]) -> None:
        self._f.write(json.dumps({k: _jsonable(v) for k, v in record.items()}) + "\n")
        self._f.flush()

    def close(self) -> None:
        self._f.close()


def _fmt_duration(s: float) -> str:
    s = int(max(0, s))
    return f"{s // 3600}:{s % 3600 // 60:02d}:{s % 60:02d}" if s >= 3600 else f"{s // 60}:{s % 60:02d}"


class Progress:
    """A tqdm bar on a terminal; otherwise (or with train.progress=false) one plain line per log step."""

    def __init__(self, total_steps: int, start_step: int, enabled: bool = True, stream=None):
        self.stream = stream or sys.stderr
        self.total = total_steps
        self.bar = None
        if enabled and getattr(self.stream, "isatty", lambda: False)():
            from tqdm import tqdm

            self.bar = tqdm(total=total_steps, initial=start_step, unit="step", file=self.stream,
                            dynamic_ncols=True, smoothing=0.1)

    def advance(self, n: int = 1) -> None:
        if self.bar is not None:
            self.bar.update(n)

    def show(self, step: int, loss: float, lr: float, tokens_per_s: float, s_per_step: float) -> None:
        eta = (self.total - step) * s_per_step
        if self.bar is not None:  # tqdm itself shows the ETA from its own rate
            self.bar.set_postfix(loss=f"{loss:.4f}", lr=f"{lr:.2e}", tok_s=f"{tokens_per_s:,.0f}", refresh=False)
        else:
            print(f"step {step}/{self.total}  loss {loss:.4f}  lr {lr:.2e}  tok/s {tokens_per_s:,.0f}  "
                  f"eta {_fmt_duration(eta)}", flush=True)

    def write(self, line: str) -> None:
        """A message that does not break the bar."""
        if self.bar is not None:
            self.bar.write(line)
        else:
            print(line, flush=True)

    def close(self) -> None:
        if self.bar is not None:
            self.bar.close()


def _wandb(run_dir: Path, run_id: str, config: dict):
    try:
        import wandb
    except ImportError:
        raise ConfigError("train.loggers lists wandb but it is not installed: pip install wandb "
                          "(or pip install 'interfere[wandb]'), or drop it from train.loggers") from None
    mode = os.environ.get("WANDB_MODE")
    if not mode:
        # No explicit mode: online only with an API key and a reachable server, else offline (sync later).
        mode = "online" if os.environ.get("WANDB_API_KEY") and _reachable("api.wandb.ai", 443) else "offline"
    run = wandb.init(project=os.environ.get("WANDB_PROJECT", "interfere"), name=run_id, id=run_id,
                     dir=str(run_dir), config=config, mode=mode, resume="allow")
    return lambda step, rec: run.log(rec, step=step), run.finish


def _reachable(host: str, port: int) -> bool:
    import socket

    try:
        socket.create_connection((host, port), timeout=1.0).close()
        return True
    except OSError:
        return False


def _tensorboard(run_dir: Path):
    try:
        from torch.utils.tensorboard import SummaryWriter
    except ImportError:
        raise ConfigError("train.loggers lists tensorboard but it is not installed: pip install tensorboard "
                          "(or pip install 'interfere[tensorboard]'), or drop it from train.loggers") from None
    writer = SummaryWriter(log_dir=str(run_dir / "tensorboard"))

    def log(step, rec):
        for k, v in rec.items():
            if isinstance(v, (int, float)) and k != "step":
                writer.add_scalar(k, v, step)
        writer.flush()

    return log, writer.close


class TrainLogger:
    """All outputs of the loop in one object: `log(step, record)`, `message(line)`, `close()`."""

    def __init__(self, run_dir: Path, run_id: str, total_steps: int, start_step: int, *, is_main: bool = True,
                 progress: bool = True, loggers: Iterable[str] = (), config: dict | None = None):
        self.is_main = is_main
        self.metrics = MetricsFile(Path(run_dir) / "metrics.jsonl") if is_main else None
        self.progress = Progress(total_steps, start_step, enabled=progress) if is_main else None
        self.sinks = []
        for name in (loggers if is_main else ()):
            if name == "wandb":
                self.sinks.append(_wandb(Path(run_dir), run_id, config or {}))
            elif name == "tensorboard":
                self.sinks.append(_tensorboard(Path(run_dir)))
            else:
                raise ConfigError(f"train.loggers has {name!r}; known loggers: wandb, tensorboard")
        self.t0 = time.time()

    def step_done(self) -> None:
        if self.progress:
            self.progress.advance()

    def log(self, step: int, record: dict[str, Any], show: bool = True) -> None:
        """Append a record to metrics.jsonl and the extra loggers; show training records on the bar/line."""
        if not self.is_main:
            return
        record = {"step": step, **{k: _jsonable(v) for k, v in record.items()}}
        self.metrics.write(record)
        for log, _ in self.sinks:
            log(step, record)
        if show and "loss" in record:
            self.progress.show(step, record["loss"], record.get("lr", 0.0), record.get("tokens_per_s", 0.0),
                               record.get("s_per_step", 0.0))

    def message(self, line: str) -> None:
        if self.is_main:
            self.progress.write(line)

    def close(self) -> None:
        if not self.is_main:
            return
        self.progress.close()
        self.metrics.close()
        for _, finish in self.sinks:
            finish()
