"""Forward + backward time and extra peak memory of the aggregate KL bound (001 Eq. 21):
wiseale's blockwise form with its hand-written backward against the naive formula, which
materialises M x M x d tensors and lets autograd keep them (as the public third-party
WiSE-ALE code does; here `functional.aggregate_kl_upper_bound_reference`).

Every measurement runs in a fresh subprocess, so its peak resident memory (ru_maxrss) minus
the memory after creating the inputs is that implementation's extra peak. Implementations
alternate for each (M, d) so the machine's noise hits both; the median of ``--repeats``
timed calls (after one warm-up) is reported. The naive form is skipped where its tensors
would not fit (estimated need above ``--naive-limit-gb``).

The last column is the fraction of the machine's float32 matmul rate (measured here with a
2048^3 torch.mm, a practical peak) that the blockwise kernel reaches, counting 20 flops per
(i, j, k) element for forward + backward (sub, add, reciprocal, 2 mul, log and sum forward;
recomputing those, 2 exp per pair, t^2 - 1/s and two weighted sums backward; a log counted
as one flop, so this flatters a kernel dominated by transcendental functions).

    .venv/bin/python benchmarks/aggregate_kl.py [--repeats 3] [--threads 2]
"""

from __future__ import annotations

import argparse
import json
import resource
import statistics
import subprocess
import sys
import time

import torch

from wiseale.functional import aggregate_kl_upper_bound, aggregate_kl_upper_bound_reference

IMPLEMENTATIONS = {"blockwise": aggregate_kl_upper_bound,
                   "naive": aggregate_kl_upper_bound_reference}
FLOPS_PER_ELEMENT = 20
NAIVE_TENSORS = 6  # M x M x d float32 tensors alive at the naive form's peak (estimate)


def _rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # KiB on Linux


def worker(impl: str, m: int, d: int, repeats: int, threads: int) -> dict:
    """Time ``repeats`` forward+backward calls of ``impl``; report time and extra peak RSS."""
    torch.set_num_threads(threads)
    g = torch.Generator().manual_seed(0)
    mu = torch.randn(m, d, generator=g).requires_grad_()
    logvar = (0.5 * torch.randn(m, d, generator=g) - 1).requires_grad_()
    baseline = _rss_mb()
    fn = IMPLEMENTATIONS[impl]
    times = []
    for _ in range(repeats + 1):  # the first call warms up
        started = time.perf_counter()
        fn(mu, logvar).backward()
        times.append(time.perf_counter() - started)
        mu.grad = logvar.grad = None
    return {"seconds": statistics.median(times[1:]), "extra_peak_mb": _rss_mb() - baseline}


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
    parser.add_argument("--worker", nargs=3, metavar=("IMPL", "M", "D"))
    args = parser.parse_args()
    if args.worker:
        impl, m, d = args.worker
        print(json.dumps(worker(impl, int(m), int(d), args.repeats, args.threads)))
        return
    peak = matmul_flops(args.threads)
    print(f"torch {torch.__version__}, {args.threads} threads, matmul {peak / 1e9:.1f} GFLOP/s")
    print("| M | d | blockwise s | naive s | speed-up | blockwise extra MB | naive extra MB "
          "| memory ratio | blockwise / matmul rate |")
    print("|---|---|---|---|---|---|---|---|---|")
    for m in args.sizes:
        for d in args.dims:
            ours = _measure("blockwise", m, d, args.repeats, args.threads)
            naive_gb = NAIVE_TENSORS * m * m * d * 4 / 2**30
            naive = (_measure("naive", m, d, args.repeats, args.threads)
                     if naive_gb <= args.naive_limit_gb else None)
            rate = FLOPS_PER_ELEMENT * m * m * d / ours["seconds"] / peak
            cells = [f"{ours['seconds']:.4f}",
                     "skipped" if naive is None else f"{naive['seconds']:.4f}",
                     "-" if naive is None else f"{naive['seconds'] / ours['seconds']:.1f}x",
                     f"{ours['extra_peak_mb']:.0f}",
                     f"> {naive_gb * 1024:.0f} (est.)" if naive is None
                     else f"{naive['extra_peak_mb']:.0f}",
                     "-" if naive is None else
                     f"{ours['extra_peak_mb'] / max(naive['extra_peak_mb'], 1):.3f}",
                     f"{rate:.1%}"]
            print(f"| {m} | {d} | " + " | ".join(cells) + " |", flush=True)


if __name__ == "__main__":
    main()
