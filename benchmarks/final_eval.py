"""The end-of-run evaluation at each ``--final-eval`` (issue 25, point 4): seconds of the
``full`` evaluation (every test sample and as many training ones: IWAE K = 20, Monte Carlo
KL, kNN) and of ``fast`` (the per-epoch metrics on ``--eval-size`` samples of each split), on
one trained model, interleaved ``--repeats`` times, with their ratio.

    PYTHONPATH=src .venv/bin/python benchmarks/final_eval.py [--n 10000] [--threads 1]
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
import time

import torch

from wiseale import RunConfig, train
from wiseale.metrics import evaluate, evaluate_full


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", default="fashion-mnist")
    parser.add_argument("--method", default="vae")
    parser.add_argument("--n", type=int, default=10_000, help="test and training samples")
    parser.add_argument("--eval-size", type=int, default=4096)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--threads", type=int, default=1)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    config = RunConfig(method=args.method, data=args.data, n_train=args.n, n_test=args.n,
                       epochs=1, eval_size=args.eval_size, final_eval="none",
                       threads=args.threads)
    from wiseale.build import load_split

    train_data, test_data = load_split(config, "train"), load_split(config, "test")
    with tempfile.TemporaryDirectory() as out:
        model = train(config, out, progress=False)
    seconds: dict[str, list[float]] = {"full": [], "fast": []}
    head = slice(0, args.eval_size)
    for _ in range(args.repeats):
        start = time.perf_counter()
        for data in (train_data.head(len(test_data)), test_data):
            evaluate_full(model, data, data.y)
        seconds["full"].append(time.perf_counter() - start)
        start = time.perf_counter()
        for data in (train_data, test_data):
            evaluate(model, data.floats(head))
        seconds["fast"].append(time.perf_counter() - start)
    full, fast = (statistics.median(seconds[k]) for k in ("full", "fast"))
    print(f"{args.method} on {args.data}, {args.n:,} test and training samples, "
          f"{args.threads} thread(s), median of {args.repeats}:")
    print(f"  full: {full:.1f} s   fast ({args.eval_size:,} of each split): {fast:.2f} s   "
          f"full / fast: {full / fast:.0f}x")


if __name__ == "__main__":
    main()
