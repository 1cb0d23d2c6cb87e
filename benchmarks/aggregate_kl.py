"""Forward + backward time and extra peak memory of the aggregate KL bound (001 Eq. 21):
wiseale's blockwise form with its hand-written backward, with the native (C++ built with the
package; up to M^2 = pairwise.KEPT_PAIRS_MAX), eager and compiled (torch.compile) kernels of
``wiseale.pairwise``, against the naive formula, which
materialises M x M x d tensors and lets autograd keep them (as the public third-party
WiSE-ALE code does; here `functional.aggregate_kl_upper_bound_reference`).

Every measurement runs in a fresh subprocess; its extra peak memory is the resident peak of
the timed calls (VmHWM, reset after the warm-up) minus the resident memory before them.
Implementations alternate for each (M, d) so the machine's noise hits them all; the median of
``--repeats`` timed calls is reported, after a warm-up call (where the compiled kernel
compiles: the figure in brackets). The naive form is skipped where its tensors would
not fit (estimated need above ``--naive-limit-gb``), the eager kernel above ``--eager-limit``
pairwise elements M^2 d (minutes per call).

The last column is the fraction of the machine's float32 matmul rate (measured here with a
2048^3 torch.mm, a practical peak) that the compiled kernel reaches, counting 20 flops per
(i, j, k) element for forward + backward (those of the row-block kernel that this column was
made for: sub, add, reciprocal, 2 mul, log and sum forward; recomputing those, 2 exp per
pair, t^2 - 1/s and two weighted sums backward; a log counted as one flop). Since the symmetric
tiles with one log per pair the kernel does about half of that work, so the column reads as
a rate of equivalent work.

    .venv/bin/python benchmarks/aggregate_kl.py [--repeats 3] [--threads 2]
"""

from __future__ import annotations

import argparse
import json
import re
import statistics
import subprocess
import sys
import time
from pathlib import Path

import torch

from wiseale.functional import aggregate_kl_upper_bound, aggregate_kl_upper_bound_reference
from wiseale.pairwise import KEPT_PAIRS_MAX

IMPLEMENTATIONS = {
    "native": lambda mu, logvar: aggregate_kl_upper_bound(mu, logvar, kernel="native"),
    "eager": lambda mu, logvar: aggregate_kl_upper_bound(mu, logvar, kernel="eager"),
    "compiled": lambda mu, logvar: aggregate_kl_upper_bound(mu, logvar, kernel="compiled"),
    "naive": aggregate_kl_upper_bound_reference,
}
FLOPS_PER_ELEMENT = 20
NAIVE_TENSORS = 6  # M x M x d float32 tensors alive at the naive form's peak (estimate)


def _status_mb(key: str) -> float:
    """VmRSS (resident now) or VmHWM (peak since the last reset) of this process, in MB."""
    return int(re.search(key + r":\s+(\d+)", Path("/proc/self/status").read_text())[1]) / 1024


def worker(impl: str, m: int, d: int, repeats: int, threads: int) -> dict:
    """Time ``repeats`` forward+backward calls of ``impl``; report time and extra peak RSS.

    A warm-up call first: the compiled kernel's at full size (it compiles there, for this
    shape), the others' on an 8 x d input (so that no big freed block is kept for the timed
    calls); then the peak is reset (/proc/self/clear_refs) and the extra peak is the resident
    peak of the timed calls minus the resident memory before them.
    """
    torch.set_num_threads(threads)
    g = torch.Generator().manual_seed(0)
    mu = torch.randn(m, d, generator=g).requires_grad_()
    logvar = (0.5 * torch.randn(m, d, generator=g) - 1).requires_grad_()
    fn = IMPLEMENTATIONS[impl]
    warm = (mu, logvar) if impl == "compiled" else (t[:8].detach().requires_grad_()
                                                    for t in (mu, logvar))
    started = time.perf_counter()
    fn(*warm).backward()
    warm_up = time.perf_counter() - started
    mu.grad = logvar.grad = None
    Path("/proc/self/clear_refs").write_text("5")
    baseline = _status_mb("VmRSS")
    times = []
    for _ in range(repeats + 1):
        started = time.perf_counter()
        fn(mu, logvar).backward()
        times.append(time.perf_counter() - started)
        mu.grad = logvar.grad = None
    return {"seconds": statistics.median(times[1:]), "first_seconds": times[0],
            "warm_up_seconds": warm_up, "extra_peak_mb": _status_mb("VmHWM") - baseline}


def matmul_flops(threads: int, n: int = 2048) -> float:
    torch.set_num_threads(threads)
    a, b = torch.randn(n, n), torch.randn(n, n)
    torch.mm(a, b)
    started = time.perf_counter()
    for _ in range(3):
        torch.mm(a, b)
    return 3 * 2 * n**3 / (time.perf_counter() - started)


def _measure(impl: str, m: int, d: int, repeats: int, threads: int) -> dict:
    out = subprocess.run([sys.executable, __file__, "--worker", impl, str(m), str(d),
                          "--repeats", str(repeats), "--threads", str(threads)],
                         capture_output=True, text=True, check=True)
    return json.loads(out.stdout)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--sizes", type=int, nargs="+", default=[256, 1024, 2048, 4096, 16384])
    parser.add_argument("--dims", type=int, nargs="+", default=[4, 16, 64])
    parser.add_argument("--naive-limit-gb", type=float, default=12.0)
    parser.add_argument("--eager-limit", type=int, default=2**31,
                        help="skip the eager kernel above this many pairwise elements M^2 d")
    parser.add_argument("--worker", nargs=3, metavar=("IMPL", "M", "D"))
    args = parser.parse_args()
    if args.worker:
        impl, m, d = args.worker
        print(json.dumps(worker(impl, int(m), int(d), args.repeats, args.threads)))
        return
    peak = matmul_flops(args.threads)
    print(f"torch {torch.__version__}, {args.threads} threads, matmul {peak / 1e9:.1f} GFLOP/s")
    print("| M | d | native s | compiled s (compile s) | eager s | naive s | native speed-up | "
          "compiled speed-up | eager speed-up | native / compiled / eager / naive extra MB | "
          "memory ratio | compiled / matmul rate |")
    print("|---|---|---|---|---|---|---|---|---|---|---|---|")
    for m in args.sizes:
        for d in args.dims:
            native = (_measure("native", m, d, args.repeats, args.threads)
                      if m * m <= KEPT_PAIRS_MAX else None)
            ours = _measure("compiled", m, d, args.repeats, args.threads)
            eager = (_measure("eager", m, d, args.repeats, args.threads)
                     if m * m * d <= args.eager_limit else None)
            naive_gb = NAIVE_TENSORS * m * m * d * 4 / 2**30
            naive = (_measure("naive", m, d, args.repeats, args.threads)
                     if naive_gb <= args.naive_limit_gb else None)
            print(f"| {m} | {d} | "
                  + " | ".join(_cells(native, ours, eager, naive, naive_gb, m, d, peak))
                  + " |", flush=True)


def _cells(native: dict | None, ours: dict, eager: dict | None, naive: dict | None,
           naive_gb: float, m: int, d: int, peak: float) -> list[str]:
    def seconds(r: dict | None) -> str:
        return "skipped" if r is None else f"{r['seconds']:.4f}"

    def speed_up(r: dict | None) -> str:
        return "-" if r is None or naive is None else f"{naive['seconds'] / r['seconds']:.1f}x"

    def megabytes(r: dict | None) -> str:
        return "-" if r is None else f"{r['extra_peak_mb']:.0f}"

    naive_mb = f"> {naive_gb * 1024:.0f} (est.)" if naive is None else megabytes(naive)
    ratio = ("-" if naive is None
             else f"{ours['extra_peak_mb'] / max(naive['extra_peak_mb'], 1):.3f}")
    rate = FLOPS_PER_ELEMENT * m * m * d / ours["seconds"] / peak
    return [seconds(native), f"{ours['seconds']:.4f} ({ours['warm_up_seconds']:.1f})",
            seconds(eager), seconds(naive), speed_up(native), speed_up(ours), speed_up(eager),
            f"{megabytes(native)} / {megabytes(ours)} / {megabytes(eager)} / {naive_mb}", ratio,
            f"{rate:.1%}"]


if __name__ == "__main__":
    main()
