"""Ctrl-C and SIGTERM during training: stop after the current step, so the saved state lies between steps."""
from __future__ import annotations

import signal
import threading

__all__ = ["StopSignals"]


class StopSignals:
    """While active, Ctrl-C (SIGINT) and SIGTERM ask the loop to stop after the current step, so the
    checkpoint it saves lies between two steps. A second Ctrl-C in a single process quits at once,
    without saving. ``requested`` holds the signal's name ("SIGINT", "SIGTERM") or None."""
    REASONS = (None, "KeyboardInterrupt", "SIGINT", "SIGTERM")

    def __init__(self, ctx, say=print):
        self.ctx, self.say, self.requested, self._old = ctx, say, None, {}

    def __enter__(self):
        if threading.current_thread() is threading.main_thread():
            self._old = {s: signal.signal(s, self._handle) for s in (signal.SIGINT, signal.SIGTERM)}
        return self

    def _handle(self, signum, frame):
        if self.requested and signum == signal.SIGINT and not self.ctx.distributed:
            raise KeyboardInterrupt          # the second Ctrl-C: quit now
        if not self.requested and self.ctx.is_main:
            self.say(f"\n{signal.Signals(signum).name}: stopping after this step and saving "
                     "interrupted.pth" + ("" if self.ctx.distributed else " (Ctrl-C again quits without saving)"))
        self.requested = self.requested or signal.Signals(signum).name

    def agreed(self, ctx) -> bool:
        """Whether any rank was asked to stop; every rank then takes the strongest reason
        (SIGTERM > SIGINT > a KeyboardInterrupt from a callback) as its own ``requested``."""
        code = ctx.max_int(self.REASONS.index(self.requested))
        self.requested = self.REASONS[code]
        return code > 0

    def __exit__(self, *exc):
        for s, handler in self._old.items():
            signal.signal(s, handler)
        return False
