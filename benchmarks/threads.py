"""Threads under a competing load (issue 16): training samples/s of `wiseale train` with each
``--threads`` setting (and the default), on an idle machine and beside a competing job (a
torch matrix-multiply loop with as many threads as there are CPUs, started for the
measurement and stopped after it). Every run is a fresh process; the figure is the median of
the epochs' samples/s.

    .venv/bin/python benchmarks/threads.py [--settings 1 2 default] [--epochs 3]
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path

COMPETITOR = ("import torch\ntorch.set_num_threads({n})\na = torch.randn(1024, 1024)\n"
              "while True:\n    a @ a\n")


def samples_per_s(threads: str, epochs: int) -> float:
    env = {k: v for k, v in os.environ.items() if k not in ("OMP_NUM_THREADS",
                                                            "WISEALE_THREADS")}
    flag = [] if threads == "default" else ["--threads", threads]
    with tempfile.TemporaryDirectory() as tmp:
        subprocess.run([sys.executable, "-m", "wiseale", "train", "--method", "wise-ale",
                        "--data", "sine", "--n-train", "2048", "--n-test", "256",
                        "--eval-size", "256", "--epochs", str(epochs), "--no-progress", *flag,
                        "--out", f"{tmp}/run"], check=True, capture_output=True, env=env)
        rows = Path(f"{tmp}/run/metrics.jsonl").read_text().splitlines()
        used = json.loads(Path(f"{tmp}/run/config.json").read_text())["threads"]
    return statistics.median(json.loads(row)["samples_per_s"] for row in rows), used


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--settings", nargs="+", default=["1", "2", "default"])
    parser.add_argument("--epochs", type=int, default=3)
    args = parser.parse_args()
    cpus = len(os.sched_getaffinity(0))
    print(f"{cpus} CPUs; wise-ale on 2,048 sine waves, batch 64, {args.epochs} epochs per run")
    print("| threads | idle samples/s | beside a competing job samples/s | busy / idle |")
    print("|---|---|---|---|")
    for setting in args.settings:
        idle, used = samples_per_s(setting, args.epochs)
        competitor = subprocess.Popen([sys.executable, "-c", COMPETITOR.format(n=cpus)])
        try:
            busy, _ = samples_per_s(setting, args.epochs)
        finally:
            competitor.kill()
            competitor.wait()
        label = f"default ({used})" if setting == "default" else setting
        print(f"| {label} | {idle:.0f} | {busy:.0f} | {busy / idle:.2f} |", flush=True)


if __name__ == "__main__":
    main()
