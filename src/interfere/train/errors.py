"""Errors of the training package that a user (or the CLI) should see as one line, not a traceback.

`UnsafeCheckpointError` is a `CheckpointError`, so the CLI already prints it as one line (exit status 2).
`NonFiniteLossError` is neither a config nor a checkpoint problem: the CLI should print it as one line too
(it carries `step` and `last_checkpoint` for scripts).
"""

from __future__ import annotations

from pathlib import Path

from interfere.errors import CheckpointError


class UnsafeCheckpointError(CheckpointError):
    """A checkpoint file that would import or call something when loaded (a pickled callable): refused.

    Unlike a truncated file this cannot come from a crash, so resume does not fall back past it.
    """


class CheckpointMismatchError(CheckpointError):
    """A readable checkpoint that does not fit the configured model or optimizer (a config problem, not a
    broken file: every checkpoint of the run would fail the same way, so resume does not fall back)."""


class NonFiniteLossError(RuntimeError):
    """Training produced a non-finite loss (or gradient norm) and train.skip_nonfinite was used up.

    Nothing was written for the bad step: the last good checkpoint is intact and still `latest`.
    """

    def __init__(self, message: str, step: int, last_checkpoint: Path | None):
        super().__init__(message)
        self.step = step
        self.last_checkpoint = last_checkpoint


__all__ = ["CheckpointError", "UnsafeCheckpointError", "CheckpointMismatchError", "NonFiniteLossError"]
