"""GPU figures (issue 15): training samples/s of AEVB and WiSE-ALE on the sine and
Fashion-MNIST networks at batch 64 and 1024 (fp32 and bf16), and the aggregate KL's
forward + backward time at M = 2048, 16384, 65536 (d = 64) with the eager and compiled
kernels. Times are CUDA-synchronised medians of ``--steps`` calls after a warm-up.

    python benchmarks/gpu_figures.py [--steps 20]
"""

from __future__ import annotations

import argparse
import statistics
import time

import torch

from wiseale.build import load_split, model_from_config, resolve
from wiseale.config import RunConfig
from wiseale.functional import aggregate_kl_upper_bound

NETWORKS = (("sine", 4, "sine-conv"), ("fashion-mnist", 2, "mnist-conv"))  # data, d_z, net


def _median_seconds(call, steps: int, warmup: int = 3) -> float:
    for _ in range(warmup):
        call()
    torch.cuda.synchronize()
    times = []
    for _ in range(steps):
        started = time.perf_counter()
        call()
        torch.cuda.synchronize()
        times.append(time.perf_counter() - started)
    return statistics.median(times)


def training_rate(method: str, data: str, latent_dim: int, net: str, batch: int,
                  precision: str, steps: int) -> float:
    config = RunConfig(method=method, data=data, likelihood="gaussian", latent_dim=latent_dim,
                       net=net, batch_size=batch, n_train=max(batch, 2048), n_test=64,
                       device="cuda", precision=precision)
    train = load_split(config, "train")
    model = model_from_config(resolve(config, train)).cuda()
    optimizer = torch.optim.Adam(model.parameters(), lr=5e-4)
    x = train.floats(slice(0, batch), "cuda")

    def step() -> None:
        with torch.autocast("cuda", torch.bfloat16, enabled=precision == "bf16"):
            loss = model(x).loss
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()

    return batch / _median_seconds(step, steps)


def aggregate_kl_seconds(m: int, d: int, kernel: str, steps: int) -> float:
    gen = torch.Generator(device="cuda").manual_seed(0)
    mu = torch.randn(m, d, device="cuda", generator=gen).requires_grad_()
    logvar = (0.1 * torch.randn(m, d, device="cuda", generator=gen)).requires_grad_()

    def call() -> None:
        aggregate_kl_upper_bound(mu, logvar, kernel=kernel).backward()

    return _median_seconds(call, steps, warmup=2)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=20)
    args = parser.parse_args()
    print(f"torch {torch.__version__}, {torch.cuda.get_device_name()}")
    print("| data | method | batch | fp32 samples/s | bf16 samples/s |\n|---|---|---|---|---|")
    for data, latent_dim, net in NETWORKS:
        for method in ("aevb", "wise-ale"):
            for batch in (64, 1024):
                rates = [training_rate(method, data, latent_dim, net, batch, precision,
                                       args.steps) for precision in ("fp32", "bf16")]
                print(f"| {data} | {method} | {batch} | {rates[0]:,.0f} | {rates[1]:,.0f} |",
                      flush=True)
    print("\n| M | d | eager s | compiled s |\n|---|---|---|---|")
    for m in (2048, 16384, 65536):
        eager = aggregate_kl_seconds(m, 64, "eager", 3 if m > 16384 else args.steps)
        compiled = aggregate_kl_seconds(m, 64, "compiled", 3 if m > 16384 else args.steps)
        print(f"| {m} | 64 | {eager:.4f} | {compiled:.4f} |", flush=True)


if __name__ == "__main__":
    main()
