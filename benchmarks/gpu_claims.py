"""The full-scale experiments whose claims need a GPU, in priority order, within a time budget:
each `wiseale reproduce NAME --scale full --seeds 3 --redraw-data --device cuda` into
OUT/NAME, stopped when the budget is spent (a stopped experiment resumes where it stopped
when this runs again with the same OUT), then `wiseale claims OUT --out OUT/claims.md`, whose
rows docs/claims.md takes in with `wiseale claims DIR... OUT`.

    python benchmarks/gpu_claims.py --budget 300 --out runs/gpu [--data-dir PATH]

benchmarks/gpu_check.sh calls it after its checks. Priority: the claims whose regime no CPU
scale reaches first (vcae-overfit: overfitting on 003's Table 4 network), then the papers'
full data and epochs for the experiments whose medium scale is smaller than the paper's.
"""

from __future__ import annotations

import argparse
import signal
import subprocess
import sys
import time
from pathlib import Path

PRIORITY = ("vcae-overfit", "lv-components", "lv-fid", "vcae-table2", "vcae-mnist2d",
            "lv-iwae", "vcae-shapes", "sine", "mnist-embedding", "lv-sweep", "lv-latent2d")
OFFLINE_DATA = {"vcae-overfit": "reduced-fashion-mnist", "vcae-shapes": "toy-shapes"}
MNIST_LIKE = {"vcae-table2", "vcae-mnist2d", "lv-components", "lv-fid", "lv-iwae", "lv-sweep",
              "lv-latent2d", "mnist-embedding"}
LEAST = 60  # seconds: an experiment is not started with less left


def command(name: str, out: Path, data_dir: str | None) -> list[str]:
    data = OFFLINE_DATA.get(name, "fashion-mnist" if name in MNIST_LIKE else None)
    args = [sys.executable, "-m", "wiseale", "reproduce", name, "--scale", "full", "--seeds",
            "3", "--redraw-data", "--device", "cuda", "--no-progress", "--out", str(out / name)]
    args += ["--data", data] if data else []
    return args + (["--data-dir", data_dir] if data_dir else [])


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--budget", type=float, required=True, help="seconds in all")
    parser.add_argument("--out", type=Path, required=True)
    parser.add_argument("--data-dir", help="where the Fashion-MNIST files are")
    args = parser.parse_args()
    end = time.monotonic() + args.budget
    for name in PRIORITY:
        left = end - time.monotonic()
        if left < LEAST:
            print(f"{name}: not started, {left:.0f} s of the budget left")
            continue
        start = time.monotonic()
        child = subprocess.Popen(command(name, args.out, args.data_dir))
        try:
            code = child.wait(timeout=left)
            print(f"{name}: exit {code} after {time.monotonic() - start:.0f} s")
        except subprocess.TimeoutExpired:  # SIGINT: the run keeps its last checkpoint
            child.send_signal(signal.SIGINT)
            child.wait()
            print(f"{name}: stopped by the budget after {time.monotonic() - start:.0f} s "
                  "(runs again from where it stopped)")
    if args.out.is_dir():
        subprocess.run([sys.executable, "-m", "wiseale", "claims", str(args.out), "--out",
                        str(args.out / "claims.md")], check=False)
    return 0


if __name__ == "__main__":
    sys.exit(main())
