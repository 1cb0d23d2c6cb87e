"""Training-step time of WiSE-ALE over AEVB on the same network (issue 6: at most 1.15x at
batch 1024 on the sine network).

One step = forward, backward and Adam update of the full model on one batch (the two
methods differ only in the prior term: per-sample KL vs the Eq. 21 bound over the batch).
Steps of the two methods alternate and each figure is the median of ``--steps`` timed
steps after ``--warmup`` untimed ones.

    .venv/bin/python benchmarks/step_time.py [--steps 20] [--threads 2]
"""

from __future__ import annotations

import argparse
import statistics
import time

import torch

from wiseale.build import load_split, model_from_config, resolve
from wiseale.config import RunConfig

SETTINGS = (("sine", 4, "sine-conv"), ("fashion-mnist", 2, "mnist-conv"))  # data, d_z, net


def _stepper(method: str, data: str, latent_dim: int, net: str, batch: int):
    config = RunConfig(method=method, data=data, likelihood="gaussian", latent_dim=latent_dim,
                       net=net, batch_size=batch, n_train=max(batch, 2048), n_test=64)
    train = load_split(config, "train")
    model = model_from_config(resolve(config, train))
    optimizer = torch.optim.Adam(model.parameters(), lr=5e-4)
    x = train.floats(slice(0, batch))

    def step() -> float:
        started = time.perf_counter()
        loss = model(x).loss
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
        return time.perf_counter() - started

    return step


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=20)
    parser.add_argument("--warmup", type=int, default=3)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--batches", type=int, nargs="+", default=[64, 256, 1024])
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    print(f"torch {torch.__version__}, {args.threads} threads")
    print("| network | batch | AEVB ms/step | WiSE-ALE ms/step | ratio |")
    print("|---|---|---|---|---|")
    for data, latent_dim, net in SETTINGS:
        for batch in args.batches:
            steps = {m: _stepper(m, data, latent_dim, net, batch) for m in ("aevb", "wise-ale")}
            times: dict[str, list[float]] = {m: [] for m in steps}
            for i in range(args.warmup + args.steps):
                for method, step in steps.items():
                    elapsed = step()
                    if i >= args.warmup:
                        times[method].append(elapsed)
            aevb, wise = (statistics.median(times[m]) * 1e3 for m in ("aevb", "wise-ale"))
            print(f"| {net} | {batch} | {aevb:.2f} | {wise:.2f} | {wise / aevb:.3f} |",
                  flush=True)


if __name__ == "__main__":
    main()
