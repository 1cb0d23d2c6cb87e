"""The optimiser's step: torch.optim.Adam(fused=True) against wiseale's LeanAdam, side by side.

Two copies of a network's parameters (the 001 App. D.1 sine network by default, channels-last
convolution weights as a CPU run has them) take the same gradients; the two optimisers step
in alternating order, each step timed alone, after a warm-up. Prints the mean microseconds of
``step()`` and of ``zero_grad()`` for each and their ratios, and whether the parameters and the
optimiser states are equal bit for bit at the end (they must be: the same kernel on the same
tensors).

    .venv/bin/python benchmarks/optimizer_step.py [--steps 2000] [--threads 1] [--data sine]
"""

from __future__ import annotations

import argparse
import copy
import time

import torch

from wiseale import RunConfig
from wiseale.build import load_split, model_from_config, resolve
from wiseale.optim import LeanAdam

WARM_UP = 100


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=2000)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--data", default="sine")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    config = RunConfig(method="aevb", data=args.data, n_train=256, n_test=64)
    config = resolve(config, load_split(config, "train"))
    models = [model_from_config(config)]
    models.append(copy.deepcopy(models[0]))
    optimizers = [torch.optim.Adam(models[0].parameters(), lr=config.lr, fused=True),
                  LeanAdam(models[1].parameters(), lr=config.lr, fused=True)]
    params = [list(model.parameters()) for model in models]
    generator = torch.Generator().manual_seed(0)
    step_s, zero_s = [0.0, 0.0], [0.0, 0.0]
    for step in range(args.steps + WARM_UP):
        grads = [torch.randn(p.shape, generator=generator) for p in params[0]]
        for index in (step % 2, 1 - step % 2):
            for param, grad in zip(params[index], grads, strict=True):
                param.grad = torch.empty_like(param).copy_(grad)  # the parameter's layout
            started = time.perf_counter()
            optimizers[index].step()
            stepped = time.perf_counter()
            optimizers[index].zero_grad()
            if step >= WARM_UP:
                step_s[index] += stepped - started
                zero_s[index] += time.perf_counter() - stepped
    same = all(torch.equal(a, b) for a, b in zip(*params, strict=True)) and all(
        torch.equal(optimizers[0].state[a][key], optimizers[1].state[b][key])
        for a, b in zip(*params, strict=True) for key in ("step", "exp_avg", "exp_avg_sq"))
    us = [1e6 * s / args.steps for s in step_s]
    zero_us = [1e6 * s / args.steps for s in zero_s]
    print(f"torch {torch.__version__}, {config.net}, {len(params[0])} parameter tensors, "
          f"{sum(p.numel() for p in params[0])} values, {args.threads} thread(s), "
          f"{args.steps} steps each after {WARM_UP}")
    print(f"step():      torch Adam(fused) {us[0]:.1f} us, LeanAdam {us[1]:.1f} us, "
          f"LeanAdam / torch {us[1] / us[0]:.3f}")
    print(f"zero_grad(): torch Adam(fused) {zero_us[0]:.1f} us, LeanAdam {zero_us[1]:.1f} us, "
          f"LeanAdam / torch {zero_us[1] / zero_us[0]:.3f}")
    print(f"parameters and states equal bit for bit: {same}")


if __name__ == "__main__":
    main()
