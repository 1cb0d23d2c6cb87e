"""FID's small-sample bias: the FID between two disjoint random sets of n real test images
(whose true FID is 0) at several n, in the features ``wiseale`` measures FIDs in
(``metrics.sample_features``: Inception when ``$WISEALE_INCEPTION`` is set, else the cached
classifier). Evidence for docs/deviations.md's quick-scale FID row (003 Table 2 uses 10,000
images; ``--quick`` runs 2,000).

    PYTHONPATH=src .venv/bin/python benchmarks/fid_sample_size.py [--data fashion-mnist]
"""

from __future__ import annotations

import argparse
import statistics

import torch

from wiseale.data import load
from wiseale.metrics import sample_features
from wiseale.metrics.fid import image_fid


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", default="fashion-mnist")
    parser.add_argument("--sizes", type=int, nargs="+", default=[1000, 2000, 5000])
    parser.add_argument("--splits", type=int, default=5)
    args = parser.parse_args()
    features = sample_features(load(args.data, "train"))
    test = load(args.data, "test").floats()
    print(f"{args.data}, {features.name}: FID of two disjoint sets of n test images "
          f"(mean ± sd over {args.splits} random splits)")
    for n in args.sizes:
        values = []
        for seed in range(args.splits):
            x = test[torch.randperm(len(test), generator=torch.Generator().manual_seed(seed))]
            values.append(image_fid(features, x[:n], x[n:2 * n]))
        print(f"n = {n:,}: {statistics.mean(values):.2f} ± {statistics.stdev(values):.2f}")


if __name__ == "__main__":
    main()
