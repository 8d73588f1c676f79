"""Ctrl-C without losing the run: the first Ctrl-C (SIGINT) or a polite kill (SIGTERM) asks the
training loop to stop after the current step, so that it saves last.pt and says how to resume.

    with StopRequests() as stop:
        while ...:
            if stop.requested(): save and leave

    with signals_deferred():   # a Ctrl-C that lands inside a save waits for the save to finish
        torch.save(...)
"""

from __future__ import annotations

import signal
import threading
from contextlib import contextmanager


class StopRequests:
    """Records a SIGINT or SIGTERM instead of dying of it; a second one stops at once
    (KeyboardInterrupt). Outside the main thread (a notebook's worker, a test runner's thread)
    signals cannot be caught, and nothing is installed. SIGTERM is POSIX's: on Windows only
    Ctrl-C (SIGINT) arrives."""

    SIGNALS = tuple(getattr(signal, name) for name in ("SIGINT", "SIGTERM") if hasattr(signal, name))

    def __init__(self):
        self.seen, self.previous = False, {}

    def __enter__(self) -> StopRequests:
        if threading.current_thread() is threading.main_thread():
            self.previous = {s: signal.signal(s, self._handle) for s in self.SIGNALS}
        return self

    def __exit__(self, *exc) -> None:
        for sig, handler in self.previous.items():
            signal.signal(sig, handler)

    def _handle(self, signum, frame):
        if self.seen:
            raise KeyboardInterrupt
        self.seen = True

    def requested(self) -> bool:
        """True once a stop signal arrived in this process."""
        return self.seen


@contextmanager
def signals_deferred():
    """Hold SIGINT and SIGTERM while the block runs (a save), then deliver any that arrived to the
    handler that was there before (StopRequests', or Python's KeyboardInterrupt)."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    arrived = []
    previous = {s: signal.signal(s, lambda signum, frame: arrived.append(signum))
                for s in StopRequests.SIGNALS}
    try:
        yield
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)
        for sig in dict.fromkeys(arrived):  # each signal once, in the order it came
            signal.raise_signal(sig)
