"""Training throughput of wiseale's loop against a minimal hand-written PyTorch loop.

Both train AEVB (and WiSE-ALE) on the 001 App. D.1 sine network, batch 64, Adam 5e-4, on the
same in-memory waves, with the same torch thread count (each of ``--threads``; wiseale's
through ``RunConfig.threads``, which it would otherwise choose itself). Runs alternate (hand,
wiseale, hand, wiseale, ...) so that the noise of the machine hits both; every pair's ratio
is printed, then the median.

    .venv/bin/python benchmarks/train_loop_overhead.py [--n-train 8192] [--repeats 5]
        [--threads 1 2]
"""

from __future__ import annotations

import argparse
import json
import statistics
import tempfile
import time
from pathlib import Path

import torch

from wiseale import RunConfig, train
from wiseale.build import load_split, model_from_config, resolve
from wiseale.functional import aggregate_kl_upper_bound, gaussian_kl


def hand_written(config: RunConfig, x: torch.Tensor) -> float:
    """The loop a user would write: shuffle, slice, encode, decode, loss, step. Samples/s."""
    model = model_from_config(config)
    optimizer = torch.optim.Adam(model.parameters(), lr=config.lr)
    batch = config.batch_size
    n_batches = len(x) // batch
    torch.manual_seed(0)
    started = time.perf_counter()
    x_epoch = x[torch.randperm(len(x))]
    for step in range(n_batches):
        xb = x_epoch[step * batch:(step + 1) * batch]
        h = model.encoder(xb)
        mu = model.noise.mu_head(h)
        sigma = torch.nn.functional.softplus(model.noise.sigma_head(h)) + 1e-3
        z = mu + sigma * torch.randn_like(mu)
        x_hat = model.decoder(z)
        logvar = 2 * sigma.log()
        prior = (gaussian_kl(mu, logvar).mean() if config.method == "aevb"
                 else aggregate_kl_upper_bound(mu, logvar) / batch)
        loss = (xb - x_hat).square().flatten(1).sum(1).mean() + prior
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
    return n_batches * batch / (time.perf_counter() - started)


def library(config: RunConfig, train_data, test_data) -> float:
    with tempfile.TemporaryDirectory() as tmp:
        train(config, Path(tmp) / "run", progress=False, train_data=train_data,
              test_data=test_data)
        row = json.loads((Path(tmp) / "run/metrics.jsonl").read_text().splitlines()[0])
    return row["samples_per_s"]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n-train", type=int, default=8192)
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--threads", type=int, nargs="+", default=[1, 2])
    args = parser.parse_args()
    print(f"torch {torch.__version__}, {args.n_train} waves, batch 64, 1 epoch per "
          "measurement, the same threads for both")
    for threads in args.threads:
        torch.set_num_threads(threads)
        for method in ("aevb", "wise-ale"):
            config = RunConfig(method=method, data="sine", n_train=args.n_train, n_test=256,
                               epochs=1, eval_size=256, threads=threads)
            train_data, test_data = load_split(config, "train"), load_split(config, "test")
            resolved = resolve(config, train_data)
            pairs = [(hand_written(resolved, train_data.floats()),
                      library(config, train_data, test_data)) for _ in range(args.repeats)]
            ratios = ", ".join(f"{w / h:.3f}" for h, w in pairs)
            median = statistics.median(w / h for h, w in pairs)
            print(f"{threads} threads {method:9s} hand-written / wiseale samples/s "
                  f"{', '.join(f'{h:.0f}/{w:.0f}' for h, w in pairs)} | wiseale / hand "
                  f"{ratios} | median {median:.3f}", flush=True)


if __name__ == "__main__":
    main()
