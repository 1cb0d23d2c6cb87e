"""Stopping training on SIGINT or SIGTERM (docs/reliability.md, "Resume, interrupts and exit
status"): the first signal asks for a checkpoint at the next step, a second stops at once."""

from __future__ import annotations

import signal
import threading
from pathlib import Path
from types import FrameType


class Interrupted(KeyboardInterrupt):
    """SIGINT or SIGTERM stopped training once a checkpoint was saved; ``signum`` gives the
    conventional exit status 128 + signum (130 for SIGINT, 143 for SIGTERM)."""

    def __init__(self, signum: int, message: str) -> None:
        super().__init__(message)
        self.signum = signum


class StopSignals:
    """While training: the first SIGINT or SIGTERM only sets ``signum``, and the loop then
    saves a checkpoint at the next step boundary and raises :class:`Interrupted`; a second
    one interrupts at once (KeyboardInterrupt). Installed only in the main thread of a
    single-process run (torchrun's processes keep the default handlers)."""

    SIGNALS = (signal.SIGINT, signal.SIGTERM)

    def __init__(self, enabled: bool = True) -> None:
        self.enabled = enabled and threading.current_thread() is threading.main_thread()
        self.signum: int | None = None
        self._previous: dict[int, object] = {}

    def __enter__(self) -> StopSignals:
        if self.enabled:
            self._previous = {sig: signal.signal(sig, self._handle) for sig in self.SIGNALS}
        return self

    def __exit__(self, *exc: object) -> None:
        for sig, handler in self._previous.items():
            signal.signal(sig, signal.SIG_DFL if handler is None else handler)

    def _handle(self, signum: int, frame: FrameType | None) -> None:
        if self.signum is not None:
            raise KeyboardInterrupt
        self.signum = signum

    def check(self, out: Path, where: str) -> None:
        """Raise :class:`Interrupted` if a signal came; the checkpoint ``where`` is saved."""
        if self.signum is not None:
            name = signal.Signals(self.signum).name
            raise Interrupted(self.signum, f"{name}: stopped with the checkpoint {where} saved "
                              f"in {out}; continue with `wiseale train ... --resume`")
