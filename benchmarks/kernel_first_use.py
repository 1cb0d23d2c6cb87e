"""The aggregate KL's kernel as a user meets it (issue 15, point 5): with the default
``kernel="auto"``, one call at M = 64, d = 64 (eager: below the compile threshold), then three
at M = 2048, d = 64 (the first compiles), then three with ``kernel="compiled"``; each figure is
one forward + backward in seconds. Run it in a fresh process: the first compile is the point.

    .venv/bin/python benchmarks/kernel_first_use.py
"""

from __future__ import annotations

import time

import torch

from wiseale.functional import aggregate_kl_upper_bound


def timed(m: int, d: int, kernel: str = "auto", calls: int = 3) -> list[float]:
    mu = torch.randn(m, d, requires_grad=True)
    logvar = (0.1 * torch.randn(m, d)).requires_grad_()
    seconds = []
    for _ in range(calls):
        started = time.perf_counter()
        aggregate_kl_upper_bound(mu, logvar, kernel=kernel).backward()
        seconds.append(round(time.perf_counter() - started, 3))
    return seconds


def main() -> None:
    torch.manual_seed(0)
    print("warm M=64 auto", timed(64, 64, calls=1))
    print("M=2048 auto", timed(2048, 64))
    print("M=2048 compiled", timed(2048, 64, "compiled"))


if __name__ == "__main__":
    main()
