"""Stopping training on SIGINT or SIGTERM (docs/reliability.md, "Resume, interrupts and exit
status"): the first signal asks for a checkpoint at the next step, a second stops at once.
Under torchrun the processes agree after every step, so all stop at the same one."""

from __future__ import annotations

import signal
import threading
from pathlib import Path
from types import FrameType

from wiseale.training.distributed import World, largest_over_ranks


class Interrupted(KeyboardInterrupt):
    """SIGINT or SIGTERM stopped training once a checkpoint was saved; ``signum`` gives the
    conventional exit status 128 + signum (130 for SIGINT, 143 for SIGTERM)."""

    def __init__(self, signum: int, message: str) -> None:
        super().__init__(message)
        self.signum = signum


class StopSignals:
    """While training: the first SIGINT or SIGTERM only sets ``signum``, and the loop then
    saves a checkpoint at the next step boundary and raises :class:`Interrupted`; a second
    one interrupts at once (KeyboardInterrupt). Installed only in the main thread. Under
    torchrun each process asks :meth:`agreed` after every step, so that all stop together
    when any received a signal (torchrun passes its SIGTERM or SIGINT on to each), and a
    second signal is ignored: a scheduler may signal every process and torchrun then again,
    and torchrun's own SIGKILL (after ``--shutdown-timeout``, 30 s) is the stop at once."""

    SIGNALS = (signal.SIGINT, signal.SIGTERM)

    def __init__(self, world: World | None = None) -> None:
        self.enabled = threading.current_thread() is threading.main_thread()
        self.world = world or World()
        self.signum: int | None = None  # the first signal this process received
        self._previous: dict[int, object] = {}

    def __enter__(self) -> StopSignals:
        if self.enabled:
            self._previous = {sig: signal.signal(sig, self._handle) for sig in self.SIGNALS}
        return self

    def __exit__(self, *exc: object) -> None:
        for sig, handler in self._previous.items():
            signal.signal(sig, signal.SIG_DFL if handler is None else handler)

    def _handle(self, signum: int, frame: FrameType | None) -> None:
        if self.signum is None:
            self.signum = signum
        elif not self.world.distributed:  # under torchrun the same stop often comes twice
            raise KeyboardInterrupt         # (a scheduler's, then torchrun's): one checkpoint

    def agreed(self) -> int | None:
        """The signal on which every process stops now: this one's or, under torchrun, any
        process's (one all-reduce, which every process must make at the same step)."""
        return largest_over_ranks(self.world, self.signum or 0) or None

    def check(self, out: Path, where: str) -> None:
        """Raise :class:`Interrupted` if :meth:`agreed` gives a signal; the checkpoint
        ``where`` is saved."""
        stop = self.agreed()
        if stop is not None:
            raise interrupted(stop, out, where)


def interrupted(signum: int, out: Path, where: str) -> Interrupted:
    """The :class:`Interrupted` of ``signum`` once the checkpoint ``where`` is saved."""
    name = signal.Signals(signum).name
    return Interrupted(signum, f"{name}: stopped with the checkpoint {where} saved in {out}; "
                       "continue with `wiseale train ... --resume`")
