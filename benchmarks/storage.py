"""Data larger than memory (issue 15): memory and speed of training from a memory-mapped file.

1. **speed**: Fashion-MNIST training samples/s, in memory (the named set: uint8) against the
   same images streamed from a memory-mapped float32 .npy; runs alternate, the median of
   ``--repeats`` each is compared.
2. **memory**: peak private memory (RssAnon) and peak mapped-file pages (RssFile, page cache
   the kernel can drop) while training one epoch on a memory-mapped uint8 .npy of
   ``--big-gb`` GB, against the same run on a 2,048-sample file (the model's own memory).
3. **CelebA 128**: a generated stand-in of 162,770 uint8 3 x 128 x 128 images (8 GB) trains
   ``--celeba-steps`` steps with 004's lv-celeba network; its peak memory is printed.

Each training runs in its own process (``wiseale train``), polled every 0.1 s.

    .venv/bin/python benchmarks/storage.py --dir /tmp/storage-bench [--repeats 2]
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import signal
import statistics
import subprocess
import sys
import time
from pathlib import Path

import numpy as np

from wiseale.data import load

GB = 1e9
CELEBA_TRAIN = 162_770  # the official training partition


def _write_uint8(path: Path, shape: tuple[int, ...], seed: int = 0) -> Path:
    """A .npy of random bytes with this shape, written a chunk at a time."""
    if path.exists() and np.load(path, mmap_mode="r").shape == shape:
        return path
    array = np.lib.format.open_memmap(path, mode="w+", dtype=np.uint8, shape=shape)
    rng = np.random.default_rng(seed)
    for start in range(0, shape[0], 8192):
        stop = min(start + 8192, shape[0])
        array[start:stop] = rng.integers(0, 256, (stop - start, *shape[1:]), dtype=np.uint8)
    array.flush()
    return path


def _memory(pid: int) -> tuple[int, int]:
    """(RssAnon, RssFile) of process ``pid`` in bytes (0, 0 once it has ended)."""
    try:
        fields = dict(line.split(":", 1) for line in Path(f"/proc/{pid}/status").open())
    except (OSError, ValueError):
        return 0, 0
    kib = [int(fields.get(key, "0 kB").split()[0]) for key in ("RssAnon", "RssFile")]
    return kib[0] * 1024, kib[1] * 1024


def _train(args: list[str], out: Path, stop_after_s: float | None = None) -> dict:
    """Run `wiseale train` and return its peak memory and last metrics row."""
    shutil.rmtree(out, ignore_errors=True)  # a fresh run each time
    command = [sys.executable, "-m", "wiseale", "train", "--out", str(out), "--no-progress",
               "--epochs", "1", *args]
    env = {**os.environ, "OMP_NUM_THREADS": os.environ.get("OMP_NUM_THREADS", "2")}
    proc = subprocess.Popen(command, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
                            text=True)
    started, peak_anon, peak_file = time.perf_counter(), 0, 0
    while proc.poll() is None:
        anon, file = _memory(proc.pid)
        peak_anon, peak_file = max(peak_anon, anon), max(peak_file, file)
        if stop_after_s is not None and time.perf_counter() - started > stop_after_s:
            proc.send_signal(signal.SIGTERM)  # saves a checkpoint at the next batch
            stop_after_s = None
        time.sleep(0.1)
    err = proc.stderr.read()
    if proc.returncode not in (0, 143):
        raise SystemExit(f"{' '.join(command)} failed: {err.strip()}")
    rows = (out / "metrics.jsonl").read_text().splitlines() if (out / "metrics.jsonl").exists() \
        else []
    return {"anon": peak_anon, "file": peak_file, "row": json.loads(rows[-1]) if rows else {},
            "seconds": time.perf_counter() - started, "stderr": err.strip()}


def speed(root: Path, repeats: int, n_train: int) -> None:
    data = load("fashion-mnist", "train")
    path = root / "fashion-float32.npy"
    np.save(path, data.floats(slice(0, n_train)).numpy())  # the same values, 4x the bytes
    common = ["--method", "aevb", "--likelihood", "gaussian", "--net", "mnist-conv",
              "--batch-size", "64", "--eval-size", "256", "--n-test", "256"]
    rates: dict[str, list[float]] = {"memory": [], "mmap": []}
    for repeat in range(repeats):
        for kind in rates:
            out = root / f"speed-{kind}-{repeat}"
            source = ["--data", "fashion-mnist", "--n-train", str(n_train)] if kind == "memory" \
                else ["--data", str(path), "--storage", "mmap"]
            result = _train([*common, *source], out)
            rates[kind].append(result["row"]["samples_per_s"])
    held, streamed = (statistics.median(rates[k]) for k in ("memory", "mmap"))
    print(f"speed: Fashion-MNIST, {n_train} images, aevb, batch 64: in memory (uint8) "
          f"{held:.0f} samples/s, streamed (memory-mapped float32 .npy) {streamed:.0f} "
          f"samples/s: streamed / in memory = {streamed / held:.3f} (medians of {repeats}; "
          f"each: {rates})")


def memory(root: Path, big_gb: float) -> None:
    side = 64
    n = int(big_gb * GB / (3 * side * side)) + 1
    big = _write_uint8(root / "big.npy", (n, 3, side, side))
    small = _write_uint8(root / "small.npy", (2048, 3, side, side), seed=1)
    common = ["--method", "wise-ale", "--net", "mlp", "--likelihood", "gaussian",
              "--batch-size", "256", "--eval-size", "256", "--storage", "mmap"]
    base = _train([*common, "--data", str(small)], root / "mem-small")
    result = _train([*common, "--data", str(big)], root / "mem-big")
    print(f"memory: one epoch of wise-ale (mlp) on a memory-mapped uint8 .npy of "
          f"{big.stat().st_size / GB:.2f} GB ({n} x 3 x 64 x 64): peak private memory "
          f"{result['anon'] / GB:.2f} GB against {base['anon'] / GB:.2f} GB on 2,048 samples "
          f"(+{(result['anon'] - base['anon']) / GB:.2f} GB); peak mapped file pages "
          f"{result['file'] / GB:.2f} GB (page cache); {result['seconds']:.0f} s, "
          f"{result['row'].get('samples_per_s', 0):.0f} samples/s")


def celeba(root: Path, seconds: float) -> None:
    path = _write_uint8(root / "celeba128.npy", (CELEBA_TRAIN, 3, 128, 128), seed=2)
    result = _train(["--method", "lv-vae", "--net", "lv-celeba", "--latent-dim", "128",
                     "--batch-size", "64", "--data", str(path), "--eval-size", "64"],
                    root / "celeba128", stop_after_s=seconds)
    check = json.loads((root / "celeba128" / "config.json").read_text())
    print(f"celeba 128: {CELEBA_TRAIN} generated images of 3 x 128 x 128 "
          f"({path.stat().st_size / GB:.2f} GB uint8, storage {check['storage']}), lv-vae on "
          f"lv-celeba, batch 64, stopped by SIGTERM after {result['seconds']:.0f} s: "
          f"{result['stderr'].splitlines()[-1] if result['stderr'] else 'no message'}; peak "
          f"private memory {result['anon'] / GB:.2f} GB, mapped file pages "
          f"{result['file'] / GB:.2f} GB")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--dir", type=Path, required=True, help="where the files are written")
    parser.add_argument("--repeats", type=int, default=2)
    parser.add_argument("--n-train", type=int, default=16_384)
    parser.add_argument("--big-gb", type=float, default=4.2)
    parser.add_argument("--celeba-seconds", type=float, default=240.0)
    parser.add_argument("--only", choices=("speed", "memory", "celeba"), nargs="+",
                        default=["speed", "memory", "celeba"])
    args = parser.parse_args()
    args.dir.mkdir(parents=True, exist_ok=True)
    print(f"OMP_NUM_THREADS={os.environ.get('OMP_NUM_THREADS', '2')}, {os.cpu_count()} CPUs")
    if "speed" in args.only:
        speed(args.dir, args.repeats, args.n_train)
    if "memory" in args.only:
        memory(args.dir, args.big_gb)
    if "celeba" in args.only:
        celeba(args.dir, args.celeba_seconds)


if __name__ == "__main__":
    main()
