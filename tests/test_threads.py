"""Threads (issue 16): --threads, then $WISEALE_THREADS, then $OMP_NUM_THREADS, then half the
CPUs; a run records its count, says it in its start line and gives torch's back after."""

import dataclasses
import json

import pytest
import torch

from wiseale import threads
from wiseale.errors import WisealeError
from wiseale.training import train


def test_the_thread_count_comes_from_the_flag_then_the_environment_then_the_cpus(monkeypatch):
    monkeypatch.setattr(threads, "cpus", lambda: 8)
    monkeypatch.delenv("WISEALE_THREADS", raising=False)
    monkeypatch.delenv("OMP_NUM_THREADS", raising=False)
    assert threads.choose_threads() == 4
    monkeypatch.setattr(threads, "cpus", lambda: 1)
    assert threads.choose_threads() == 1
    monkeypatch.setenv("OMP_NUM_THREADS", "3")
    assert threads.choose_threads() == 3
    monkeypatch.setenv("WISEALE_THREADS", "2")
    assert threads.choose_threads() == 2 and threads.choose_threads(5) == 5
    monkeypatch.setenv("WISEALE_THREADS", "two")
    with pytest.raises(WisealeError, match=r"\$WISEALE_THREADS='two' must be a positive"):
        threads.choose_threads()


def test_a_run_records_its_threads_says_them_and_restores_torchs(tmp_path, tiny_sine, capsys):
    before = torch.get_num_threads()
    config = dataclasses.replace(tiny_sine, epochs=1, threads=2)
    train(config, tmp_path / "run", progress=True)
    assert torch.get_num_threads() == before
    assert json.loads((tmp_path / "run/config.json").read_text())["threads"] == 2
    start = capsys.readouterr().err.splitlines()[0]
    assert start.startswith("wiseale: wise-ale on sine: 256 training samples (in memory, "
                            "values as stored), likelihood gaussian, net sine-conv, d_z 4") \
        and "2 threads" in start
