"""How many CPU threads torch uses. Loads no torch until :func:`using_threads` runs.

Two threads on a 2-core machine that is busy with other work ran a training 20x slower than
one (docs/performance.md), and the thread count changes a run's last digits, so the default
is fixed rather than guessed from the load: half the CPUs this process may use (at least 1).
``--threads N``, then ``$WISEALE_THREADS``, then ``$OMP_NUM_THREADS`` override it.
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import Iterator

from wiseale.config import KINDS
from wiseale.errors import WisealeError

ENV = "WISEALE_THREADS"


def cpus() -> int:
    """The CPUs this process may run on."""
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # not Linux
        return os.cpu_count() or 1


def choose_threads(asked: int | None = None) -> int:
    """``asked``, else $WISEALE_THREADS, else $OMP_NUM_THREADS, else half the CPUs."""
    if asked is not None:
        return asked
    for name in (ENV, "OMP_NUM_THREADS"):
        text = os.environ.get(name)
        if text:
            try:
                threads: object = int(text)
            except ValueError:
                threads = None
            problem = KINDS["threads"].problem(threads)  # the check of --threads
            if problem is not None:
                raise WisealeError(f"${name}={text!r} {problem}; fix or unset it")
            return int(text)
    return max(1, cpus() // 2)


@contextlib.contextmanager
def using_threads(threads: int) -> Iterator[None]:
    """torch's intra-op threads set to ``threads`` inside the block, restored after it."""
    import torch

    before = torch.get_num_threads()
    torch.set_num_threads(threads)
    try:
        yield
    finally:
        torch.set_num_threads(before)
