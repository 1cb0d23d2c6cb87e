"""One writer per run directory: an exclusive OS file lock (``flock``) on DIR/writer.lock.

The lock belongs to the open file, so it dies with its process, SIGKILL included: nothing is
left to clean up. The file stays (removing it could let two writers lock two different files);
it holds the holder's PID, which a refused writer names. It is opened without following a
link and written only when it is a plain file of its own, so a link planted in its place
(symbolic or hard) or a FIFO can never make a writer truncate or block on another file.
"""

from __future__ import annotations

import contextlib
import fcntl
import os
import stat
from collections.abc import Iterator
from pathlib import Path

from wiseale.errors import WisealeError

LOCK = "writer.lock"


@contextlib.contextmanager
def exclusive(directory: Path, what: str = "a run") -> Iterator[None]:
    """Hold the lock of ``directory`` (which must exist) for the ``with`` block, or raise a
    one-line WisealeError naming the process that holds it."""
    path = Path(directory) / LOCK
    flags = os.O_RDWR | os.O_CREAT | os.O_NOFOLLOW | os.O_NONBLOCK | os.O_CLOEXEC
    try:
        fd = os.open(path, flags, 0o666)
    except OSError as exc:
        if path.is_symlink():
            raise WisealeError(f"{path} is a link, not wiseale's lock file; remove it (the "
                               "file it points to is left alone)") from None
        raise WisealeError(f"cannot lock {directory}: {exc.strerror}; check its "
                           "permissions") from None
    try:
        info = os.fstat(fd)
        if not stat.S_ISREG(info.st_mode) or info.st_nlink != 1:
            raise WisealeError(f"{path} is not a plain file of its own (a hard link or a "
                               "special file), not wiseale's lock file; remove it")
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
