"""Training steps of the papers' networks with their convolution weights in torch's default
layout against channels-last (2-D weights by ``Module.to``, the sine network's 1-D ones by
``wiseale.nets.layout``), side by side (issue 28; docs/performance.md,
"Channels-last weights"). ``Network.channels_last`` (wiseale/nets) marks the networks that
this benchmark found faster on a CPU, and wiseale builds those so.

Each network gets two copies of the same initial weights (encoder backbone, a linear head to
d_z = 16, decoder), one in each layout, and the same random batch; a round times ``--steps``
Adam steps of a squared-error reconstruction loss of each, alternating, after one warm-up step
each. Printed per (network, batch, threads): each round's speed-up (default time over
channels-last time) and their median.

    .venv/bin/python benchmarks/channels_last.py [--nets sine-conv mnist-conv shapes-conv ...]
        [--batch 64 256] [--threads 1 2] [--rounds 5] [--steps 4]
"""

from __future__ import annotations

import argparse
import statistics
import time

import torch

from wiseale.nets import NETWORKS, build_nets
from wiseale.nets.layout import to_channels_last

SHAPES = {"sine-conv": (1, 256), "mnist-conv": (1, 28, 28), "lv-mnist": (1, 28, 28),
          "mnist-vcae": (1, 28, 28), "shapes-conv": (1, 64, 64), "celeba-conv": (3, 64, 64),
          "celeba-vcae": (3, 64, 64), "lv-celeba": (3, 128, 128)}


def _model(net: str, shape: tuple[int, ...], channels_last: bool) -> torch.nn.Module:
    torch.manual_seed(0)
    encoder, features, decoder = build_nets(net, shape, 16)
    return to_channels_last(torch.nn.Sequential(encoder, torch.nn.Linear(features, 16), decoder),
                            channels_last)


def _seconds_per_step(model: torch.nn.Module, optimizer: torch.optim.Optimizer,
                      x: torch.Tensor, steps: int) -> float:
    started = time.perf_counter()
    for _ in range(steps):
        optimizer.zero_grad()
        ((model(x).reshape(x.shape) - x) ** 2).mean().backward()
        optimizer.step()
    return (time.perf_counter() - started) / steps


def speed_ups(net: str, batch: int, threads: int, rounds: int, steps: int) -> list[float]:
    """Each round's time per step in the default layout over that in channels-last."""
    torch.set_num_threads(threads)
    shape = SHAPES[net]
    x = torch.rand(batch, *shape, generator=torch.Generator().manual_seed(0))
    pairs = []
    for channels_last in (False, True):
        model = _model(net, shape, channels_last)
        optimizer = torch.optim.Adam(model.parameters(), 5e-4)
        _seconds_per_step(model, optimizer, x, 1)
        pairs.append((model, optimizer))
    times: list[list[float]] = [[], []]
    for _ in range(rounds):
        for k, (model, optimizer) in enumerate(pairs):
            times[k].append(_seconds_per_step(model, optimizer, x, steps))
    return [plain / last for plain, last in zip(*times, strict=True)]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--nets", nargs="+", choices=sorted(SHAPES),
                        default=["sine-conv", "mnist-conv", "shapes-conv", "lv-mnist"])
    parser.add_argument("--batch", nargs="+", type=int, default=[64, 256])
    parser.add_argument("--threads", nargs="+", type=int, default=[1, 2])
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--steps", type=int, default=4)
    args = parser.parse_args()
    print(f"torch {torch.__version__}; {args.rounds} alternating rounds of {args.steps} steps; "
          "speed-up = default-layout time / channels-last time")
    print("| network | marked channels_last | batch | threads | each round | median |")
    print("|---|---|---|---|---|---|")
    for net in args.nets:
        for batch in args.batch:
            for threads in args.threads:
                ups = speed_ups(net, batch, threads, args.rounds, args.steps)
                print(f"| {net} | {NETWORKS[net].channels_last} | {batch} | {threads} | "
                      f"{', '.join(f'{u:.2f}' for u in ups)} | {statistics.median(ups):.2f}x |",
                      flush=True)


if __name__ == "__main__":
    main()
