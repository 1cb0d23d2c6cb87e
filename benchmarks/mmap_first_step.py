"""Time to the first training step on a large memory-mapped .npy file, and the file pages the
process holds then (RssFile), with ``--n-train`` small (issue 25, point 3: the checks read a
bounded sample, not the whole file).

    PYTHONPATH=src .venv/bin/python benchmarks/mmap_first_step.py [--gb 4] [--dtype float32|uint8]
        [--path /tmp/wiseale-big.npy]   (run it with the page cache dropped: echo 1 >
        /proc/sys/vm/drop_caches, as root; the file is made once and kept)
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

import numpy as np

from wiseale import RunConfig, train
from wiseale.training import Callback


def rss_file_mb() -> float:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("RssFile:"):
            return int(line.split()[1]) / 1024
    return float("nan")


class FirstStep(Callback):
    def __init__(self, started: float) -> None:
        self.started, self.seen = started, None

    def on_step_end(self, step, parts) -> None:
        if self.seen is None:
            self.seen = (time.perf_counter() - self.started, rss_file_mb())
            raise KeyboardInterrupt  # measured: stop here


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--gb", type=float, default=4.0)
    parser.add_argument("--path", type=Path, default=Path("/tmp/wiseale-big.npy"))
    parser.add_argument("--n-train", type=int, default=12_800)
    parser.add_argument("--dtype", choices=("float32", "uint8"), default="float32",
                        help="float32: the non-finite check reads values (uint8 needs none)")
    args = parser.parse_args()
    dtype = np.dtype(args.dtype)
    n = int(args.gb * 1e9 / (3 * 32 * 32 * dtype.itemsize))
    if not args.path.exists():
        array = np.lib.format.open_memmap(args.path, "w+", dtype, (n, 3, 32, 32))
        rng = np.random.default_rng(0)
        for start in range(0, n, 100_000):
            shape = array[start:start + 100_000].shape
            array[start:start + 100_000] = rng.random(shape, dtype=np.float32) \
                if dtype == np.float32 else rng.integers(0, 256, shape, dtype=np.uint8)
        array.flush()
        del array
    size = args.path.stat().st_size / 1e9
    config = RunConfig(method="vae", data=str(args.path), net="mlp", storage="mmap",
                       n_train=args.n_train, n_test=1000, epochs=1, batch_size=64,
                       final_eval="none", threads=1)
    started = time.perf_counter()
    probe = FirstStep(started)
    with tempfile.TemporaryDirectory() as out:
        try:
            train(config, Path(out) / "run", progress=False, callbacks=[probe])
        except KeyboardInterrupt:
            pass
    seconds, rss = probe.seen
    print(f"{size:.2f} GB memory-mapped {args.dtype} file, --n-train {args.n_train:,}: first step "
          f"after {seconds:.1f} s, file pages held then {rss:,.0f} MB")


if __name__ == "__main__":
    main()
