"""One writer per run directory: an exclusive OS file lock (``flock``) on DIR/writer.lock.

The lock belongs to the open file, so it dies with its process, SIGKILL included: nothing is
left to clean up. The file stays (removing it could let two writers lock two different files);
it holds the holder's PID, which a refused writer names.
"""

from __future__ import annotations

import contextlib
import fcntl
import os
from collections.abc import Iterator
from pathlib import Path

from wiseale.errors import WisealeError

LOCK = "writer.lock"


@contextlib.contextmanager
def exclusive(directory: Path, what: str = "a run") -> Iterator[None]:
    """Hold the lock of ``directory`` (which must exist) for the ``with`` block, or raise a
    one-line WisealeError naming the process that holds it."""
    path = Path(directory) / LOCK
    try:
        fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o666)
    except OSError as exc:
        raise WisealeError(f"cannot lock {directory}: {exc.strerror}; check its "
                           "permissions") from None
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            holder = os.pread(fd, 32, 0).decode(errors="replace").strip() or "unknown"
            raise WisealeError(f"{directory} is being written by another wiseale process (PID "
                               f"{holder}); wait for it to end, stop it, or choose another "
                               "--out") from None
        os.ftruncate(fd, 0)
        os.pwrite(fd, f"{os.getpid()}\n".encode(), 0)
        yield
    finally:
        os.close(fd)  # releases the lock
