"""SIGTERM / SIGINT while training: a request to stop after the current step, with a checkpoint."""

from __future__ import annotations

import signal
import threading
import time
from typing import Any


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
