"""`wiseale prepare celeba` (issue 23, point 8): whole, fsynced files; a stopped or killed
prepare leaves no worker process behind, and no partial file once it (or the next prepare)
has cleaned up."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from wiseale import storage
from wiseale.cli import main
from wiseale.data import load

TEMPORARY = f"*{storage.TEMPORARY}"


def _fake_celeba(root: Path, n: int, side: tuple[int, int] = (218, 178),
                 noise: bool = True) -> Path:
    """``n`` images in ``root/celeba/img_align_celeba``: random (distinct) ones, or copies of
    one large image that takes a while to decode (for catching a prepare mid-way)."""
    folder = root / "celeba" / "img_align_celeba"
    folder.mkdir(parents=True)
    rng = np.random.default_rng(0)
    if noise:
        for i in range(n):
            Image.fromarray(rng.integers(0, 256, (*side, 3), dtype=np.uint8)).save(
                folder / f"{i + 1:06d}.png")
        return root
    pixels = np.zeros((*side, 3), np.uint8)
    pixels[::7] = 200
    Image.fromarray(pixels).save(folder / "000001.png")
    data = (folder / "000001.png").read_bytes()
    for i in range(1, n):
        (folder / f"{i + 1:06d}.png").write_bytes(data)
    return root


def test_prepare_writes_whole_fsynced_files_and_removes_stale_partial_ones(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
        capsys: pytest.CaptureFixture[str]) -> None:
    """The outputs hold every image; each is fsynced under its temporary name before the
    rename, and the folder after it; a killed prepare's partial file goes, a stranger's
    hidden file stays."""
    root = _fake_celeba(tmp_path, 10)
    out = tmp_path / "prepared"
    out.mkdir()
    stale = out / ".celeba-178-16-train.npy.x1y2z3.tmp"  # as a SIGKILL leaves it
    stale.write_bytes(b"partial")
    (out / ".celeba-178-16-test.npy.tmp").write_bytes(b"an older version's partial file")
    (out / ".notes.tmp").write_text("not wiseale's")
    synced: list[str] = []
    real_fsync = os.fsync

    def fsync(fd: int) -> None:
        synced.append(os.readlink(f"/proc/self/fd/{fd}"))
        real_fsync(fd)

    monkeypatch.setattr(storage.os, "fsync", fsync)
    assert main(["prepare", "celeba", "--data-dir", str(root), "--out", str(out), "--size",
                 "16", "--workers", "2", "--no-progress"]) == 0
    assert capsys.readouterr().out.count("prepared:") == 2
    assert sorted(p.name for p in out.iterdir()) == [
        ".notes.tmp", "celeba-178-16-test.npy", "celeba-178-16-train.npy", "writer.lock"]
    for split, n in (("train", 9), ("test", 1)):
        name = f"celeba-178-16-{split}.npy"
        written = np.load(out / name)
        assert written.shape == (n, 3, 16, 16) and written.dtype == np.uint8
        decoded = load("celeba", split, data_dir=root, size=16)
        assert torch.equal(torch.from_numpy(written), decoded.x)
        file_synced = [i for i, p in enumerate(synced) if Path(p).name.startswith(f".{name}.")]
        folder_synced = [i for i, p in enumerate(synced) if p == str(out.resolve())]
        assert file_synced and folder_synced and file_synced[0] < max(folder_synced), synced


def test_a_refused_prepare_leaves_no_folder(tmp_path: Path,
                                            capsys: pytest.CaptureFixture[str]) -> None:
    root = _fake_celeba(tmp_path, 10)
    (root / "celeba" / "img_align_celeba" / "000004.png").write_bytes(b"not a png")
    out = tmp_path / "new" / "prepared"
    code = main(["prepare", "celeba", "--data-dir", str(root), "--out", str(out), "--size",
                 "16", "--workers", "2", "--no-progress"])
    err = capsys.readouterr().err
    assert code == 1 and "cannot read image" in err and "000004.png" in err, err
    assert len(err.strip().splitlines()) == 1, err
    assert not (tmp_path / "new").exists()


def _stat(pid: int) -> tuple[str, int, str] | None:
    """(state, parent PID, start time) of a process, None once it is gone."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except (OSError, IndexError):
        return None
    return fields[0], int(fields[1]), fields[19]


def _descendants(pid: int) -> dict[int, str]:
    """The live descendants of ``pid``: PID -> start time (a reused PID is another one)."""
    found: dict[int, str] = {}
    parents = {pid}
    for _ in range(4):  # workers, and whatever a start method puts between
        for entry in Path("/proc").iterdir():
            if entry.name.isdigit() and int(entry.name) not in found:
                stat = _stat(int(entry.name))
                if stat is not None and stat[0] != "Z" and stat[1] in parents:
                    found[int(entry.name)] = stat[2]
        parents |= set(found)
    return found


def _alive(processes: dict[int, str]) -> list[int]:
    """The processes still running (a zombie, not yet reaped by init, has ended)."""
    return [pid for pid, start in processes.items()
            if (stat := _stat(pid)) is not None and stat[0] != "Z" and stat[2] == start]


def _wait(condition, what: str, child: subprocess.Popen | None, err: Path,
          timeout: float = 180.0) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        if child is not None and child.poll() is not None:
            pytest.fail(f"prepare ended (exit {child.returncode}) before {what}; its stderr:\n"
                        f"{err.read_text()}")
        if time.monotonic() > deadline:
            pytest.fail(f"timed out waiting for {what}; prepare's stderr:\n{err.read_text()}")
        time.sleep(0.02)


@pytest.mark.skipif(not Path("/proc/self/stat").exists(), reason="reads /proc (Linux)")
@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGINT, signal.SIGKILL],
                         ids=["SIGTERM", "SIGINT", "SIGKILL"])
def test_a_stopped_or_killed_prepare_leaves_no_worker_and_no_partial_file(
        tmp_path: Path, sig: signal.Signals, capsys: pytest.CaptureFixture[str]) -> None:
    """A prepare with 2 workers signalled mid-way: SIGTERM / SIGINT stop it (exit 143 / 130,
    one line), the workers end and the partial file goes; after SIGKILL the workers end too
    and the next prepare into the folder removes the partial file."""
    root = _fake_celeba(tmp_path / "big", 400, side=(2000, 2000), noise=False)
    out = tmp_path / "prepared"
    err = tmp_path / "stderr.txt"
    with err.open("w") as stderr:
        child = subprocess.Popen([sys.executable, "-m", "wiseale", "prepare", "celeba",
                                  "--data-dir", str(root), "--out", str(out), "--workers",
                                  "2", "--no-progress"], stderr=stderr, text=True)
    try:
        workers: dict[int, str] = {}

        def mid_way() -> bool:
            workers.update(_descendants(child.pid))
            return len(workers) >= 2 and bool(list(out.glob(f".{TEMPORARY}")))

        _wait(mid_way, "its 2 workers and its partial file", child, err)
        child.send_signal(sig)
        code = child.wait(timeout=180)
    finally:
        if child.poll() is None:
            child.kill()
            child.wait()
    _wait(lambda: not _alive(workers), f"the workers {sorted(workers)} to end", None, err)
    message = err.read_text()
    if sig == signal.SIGKILL:
        assert code == -signal.SIGKILL, message
        assert list(out.glob(f".{TEMPORARY}"))  # what the next prepare removes
        small = _fake_celeba(tmp_path / "small", 10)
        assert main(["prepare", "celeba", "--data-dir", str(small), "--out", str(out),
                     "--size", "16", "--workers", "2", "--no-progress"]) == 0, \
            capsys.readouterr().err
        assert np.load(out / "celeba-178-16-train.npy").shape == (9, 3, 16, 16)
    else:
        assert code == 128 + sig, message
        assert message.strip() == f"wiseale: {sig.name}: prepare stopped; no partial file " \
            "is left (files finished before are kept); run it again to finish", message
        assert not out.exists() or not list(out.glob(f".{TEMPORARY}")), message
    assert not list(out.glob(f".{TEMPORARY}"))
