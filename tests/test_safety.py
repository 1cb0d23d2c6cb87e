"""Crash-safe files, safe loading and numerical guards (docs/reliability.md)."""

import ast
import dataclasses
import errno
import json
import math
import os
import shutil
import tempfile
from pathlib import Path

import pytest
import torch

from wiseale.build import load_split
from wiseale.cli import main
from wiseale.config import RunConfig
from wiseale.data import Dataset
from wiseale.errors import WisealeError
from wiseale.hooks import Callback
from wiseale.model import Autoencoder
from wiseale.noises import LOGVAR_MAX, SIGMA_MAX, SIGMA_MIN, GaussianNoise
from wiseale.storage import load_tensors, save_tensors
from wiseale.training import train

CLI = ["train", "--data", "sine", "--n-train", "256", "--n-test", "32", "--epochs", "3",
       "--batch-size", "32", "--no-progress"]


def _cli(capsys, *argv):
    code = main(list(argv))
    return code, capsys.readouterr().err.strip()


def _one_line_error(code, err, message):
    assert code == 1 and err.startswith("wiseale: error: ") and "\n" not in err, err
    assert "error: unexpected" not in err and "Traceback" not in err, err
    assert message in err, err


# -- crash-safe files -----------------------------------------------------------------------

@pytest.mark.skipif(not Path("/proc/self/fd").is_dir(), reason="needs /proc")
def test_full_disk_keeps_the_last_checkpoint(tmp_path, tiny_sine, monkeypatch):
    run = tmp_path / "run"
    train(dataclasses.replace(tiny_sine, epochs=1), run, progress=False)
    good = (run / "checkpoint.safetensors").read_bytes()
    real_fsync = os.fsync

    def fsync(fd):
        if ".checkpoint.safetensors." in os.readlink(f"/proc/self/fd/{fd}"):
            raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))
        real_fsync(fd)

    monkeypatch.setattr(os, "fsync", fsync)
    with pytest.raises(WisealeError, match="cannot write .*checkpoint.safetensors: No space "
                       "left on device") as info:
        train(tiny_sine, run, resume=True, progress=False)
    assert "\n" not in str(info.value)
    assert (run / "checkpoint.safetensors").read_bytes() == good
    assert not list(run.glob(".*"))  # the temporary file is gone
    monkeypatch.undo()
    train(tiny_sine, run, resume=True, progress=False)  # metrics had epoch 2 already
    rows = (run / "metrics.jsonl").read_text().splitlines()
    assert [json.loads(r)["epoch"] for r in rows] == [1, 2]


def test_a_directory_that_turns_unwritable_keeps_the_checkpoint(tmp_path, tiny_sine,
                                                               monkeypatch):
    run = tmp_path / "run"
    train(dataclasses.replace(tiny_sine, epochs=1), run, progress=False)
    good = (run / "checkpoint.safetensors").read_bytes()

    def refuse(*args, **kwargs):
        raise PermissionError(errno.EACCES, os.strerror(errno.EACCES))

    monkeypatch.setattr(tempfile, "mkstemp", refuse)
    with pytest.raises(WisealeError, match="cannot write in .*: Permission denied"):
        train(tiny_sine, run, resume=True, progress=False)
    assert (run / "checkpoint.safetensors").read_bytes() == good


@pytest.mark.skipif(os.geteuid() == 0, reason="root can write anywhere")
def test_read_only_run_directory(tmp_path, tiny_sine):
    run = tmp_path / "run"
    train(dataclasses.replace(tiny_sine, epochs=1), run, progress=False)
    run.chmod(0o500)
    try:
        with pytest.raises(WisealeError, match="Permission denied"):
            train(tiny_sine, run, resume=True, progress=False)
    finally:
        run.chmod(0o700)
    assert load_tensors(run / "checkpoint.safetensors")[1]["epoch"] == 1


def test_resume_removes_the_temporary_files_of_killed_writes(tmp_path, tiny_sine):
    run = tmp_path / "run"
    train(tiny_sine, run, progress=False)
    (run / ".checkpoint.safetensors.x1y2.tmp").write_bytes(b"half a checkpoint")
    train(tiny_sine, run, resume=True, progress=False)
    assert not list(run.glob(".*"))


# -- safe loading ---------------------------------------------------------------------------

@pytest.fixture(scope="module")
def runs(tmp_path_factory):
    """A finished wise-ale run and an aevb run's checkpoint, trained by the CLI."""
    torch.set_num_threads(1)
    base = tmp_path_factory.mktemp("runs")
    for method in ("wise-ale", "aevb"):
        assert main([*CLI, "--method", method, "--epochs", "1", "--out",
                     str(base / method)]) == 0
    return base


def _resave(path, change):
    tensors, meta = load_tensors(path)
    tensors, meta = change(dict(tensors), dict(meta))
    save_tensors(path, tensors, meta)


def _header_of(path):
    """(tensors, the safetensors ``__metadata__``) of a file, as stored."""
    from safetensors.torch import load

    data = path.read_bytes()
    return load(data), json.loads(data[8:8 + int.from_bytes(data[:8], "little")])["__metadata__"]


def _strip_digest(path):
    """The file as a writer without digests left it: the same tensors and meta, no sha256."""
    from safetensors.torch import save

    tensors, header = _header_of(path)
    path.write_bytes(save(tensors, metadata={"wiseale": header["wiseale"]}))


def _edit_meta(path):
    """One meta value changed (the epoch, 1 -> 9), tensors and the stored digest kept."""
    from safetensors.torch import save

    tensors, header = _header_of(path)
    edited = header["wiseale"].replace('"epoch": 1', '"epoch": 9')
    assert edited != header["wiseale"]
    path.write_bytes(save(tensors, metadata={**header, "wiseale": edited}))


def _flip_last_byte(path):
    data = bytearray(path.read_bytes())
    data[-1] ^= 0xFF
    path.write_bytes(bytes(data))


def _rename(tensors, meta):
    tensors["model/extra"] = tensors.pop("model/noise.mu_head.bias")
    return tensors, meta


def _reshape(tensors, meta):
    tensors["model/noise.mu_head.bias"] = torch.zeros(7)
    return tensors, meta


BAD_CHECKPOINTS = {
    "truncated": (lambda p: p.write_bytes(p.read_bytes()[:len(p.read_bytes()) // 2]),
                  "corrupt or truncated"),
    "empty": (lambda p: p.write_bytes(b""), "corrupt or truncated"),
    "not safetensors": (lambda p: p.write_bytes(b"\x00" * 8 + b"{pickle}"),
                        "corrupt or truncated"),
    "a changed byte": (_flip_last_byte, "fails its SHA-256 check"),
    "no digest": (_strip_digest, "carries no SHA-256 digest"),
    "a changed meta value": (_edit_meta, "fails its SHA-256 check"),
    "another format version": (lambda p: _resave(p, lambda t, m: (t, {**m, "format": 2})),
                               "has format 2, this wiseale reads 1"),
    "no position": (lambda p: _resave(p, lambda t, m: (t, {k: v for k, v in m.items()
                                                          if k != "epoch"})),
                    "is not a training checkpoint"),
    "a config that is no object": (lambda p: _resave(p, lambda t, m: (t, {**m, "config": [1]})),
                                   "a config must be a JSON object"),
    "a missing tensor": (lambda p: _resave(p, _rename), "does not match this model"),
    "other shapes": (lambda p: _resave(p, _reshape), "has shape (7,), the model needs (4,)"),
    "another optimiser": (lambda p: _resave(p, lambda t, m: (
        t, {**m, "param_groups": {"optim": []}})), "does not fit this model's optimiser"),
}


@pytest.mark.parametrize("case", sorted(BAD_CHECKPOINTS))
def test_bad_checkpoints_are_refused_in_one_line(capsys, tmp_path, runs, case):
    damage, message = BAD_CHECKPOINTS[case]
    run = shutil.copytree(runs / "wise-ale", tmp_path / "run")
    damage(run / "checkpoint.safetensors")
    bad = (run / "checkpoint.safetensors").read_bytes()
    code, err = _cli(capsys, *CLI, "--method", "wise-ale", "--epochs", "2", "--out", str(run),
                     "--resume")
    _one_line_error(code, err, message)
    assert (run / "checkpoint.safetensors").read_bytes() == bad  # left as it was


def test_a_checkpoint_of_another_method_is_refused(capsys, tmp_path, runs):
    run = shutil.copytree(runs / "wise-ale", tmp_path / "run")
    shutil.copy(runs / "aevb/checkpoint.safetensors", run / "checkpoint.safetensors")
    code, err = _cli(capsys, *CLI, "--method", "wise-ale", "--epochs", "2", "--out", str(run),
                     "--resume")
    _one_line_error(code, err, "was trained with other settings (method aevb)")


@pytest.mark.parametrize("damage", [_flip_last_byte, _strip_digest])
def test_corrupt_weights_are_refused_by_evaluate(capsys, tmp_path, runs, damage):
    run = shutil.copytree(runs / "wise-ale", tmp_path / "run")
    damage(run / "model.safetensors")
    _one_line_error(*_cli(capsys, "evaluate", str(run)), "SHA-256")


def test_a_sampler_without_its_digest_is_refused(capsys, tmp_path, runs):
    """Issue 12, point 9, for the samplers a run directory keeps."""
    run = shutil.copytree(runs / "wise-ale", tmp_path / "run")
    sample = ["sample", str(run), "--sampler", "mixture", "--n", "3", "--out"]
    assert main([*sample, str(tmp_path / "a.npy")]) == 0
    assert "fitting a 32-component Gaussian mixture" in capsys.readouterr().err  # progress
    _strip_digest(run / "mixture.safetensors")
    _one_line_error(*_cli(capsys, *sample, str(tmp_path / "b.npy")), "carries no SHA-256 digest")


def test_bad_configs_are_refused():
    for data, message in [([], "must be a JSON object"), ({"method": "aevb"}, "lacks the "
                          "fields ['data']"), ({"method": "a", "data": "b", "x": 1}, "unknown")]:
        with pytest.raises(WisealeError, match=message.replace("[", r"\[")):
            RunConfig.from_dict(data)


UNSAFE_CALLS = {("torch", "load"), ("pickle", "load"), ("pickle", "loads"),
                ("joblib", "load"), ("dill", "load")}


def _unsafe(node: ast.AST) -> bool:
    """A call of torch.load / pickle.load..., an unpickling import or allow_pickle=True."""
    if isinstance(node, (ast.Import, ast.ImportFrom)):
        names = [a.name for a in node.names] + [getattr(node, "module", None) or ""]
        return any(n.split(".")[0] in ("pickle", "dill", "joblib", "cloudpickle")
                   for n in names)
    if not isinstance(node, ast.Call):
        return False
    func = node.func
    if isinstance(func, ast.Attribute) and isinstance(func.value, ast.Name) and \
            (func.value.id, func.attr) in UNSAFE_CALLS:
        return True
    return any(k.arg in ("allow_pickle", "weights_only") and
               isinstance(k.value, ast.Constant) and k.value.value is (k.arg == "allow_pickle")
               for k in node.keywords)


def test_nothing_in_src_unpickles():
    src = Path(__file__).resolve().parents[1] / "src" / "wiseale"
    found = [f"{path.name}:{node.lineno}" for path in sorted(src.rglob("*.py"))
             for node in ast.walk(ast.parse(path.read_text())) if _unsafe(node)]
    assert found == []
    assert _unsafe(ast.parse("torch.load(f)").body[0].value)  # the check itself works
    assert _unsafe(ast.parse("np.load(f, allow_pickle=True)").body[0].value)


# -- numerical guards -----------------------------------------------------------------------

@pytest.mark.parametrize("bf16", [False, True])
def test_sigma_stays_within_its_bounds_on_extreme_features(bf16):
    torch.manual_seed(0)
    noise = GaussianNoise(3, 2)
    h = torch.tensor([[1e30, 0.0, 0.0], [-1e30, 0.0, 0.0], [0.0, 0.0, 0.0]])
    with torch.autocast("cpu", torch.bfloat16, enabled=bf16):
        noise.sigma_head.weight.data.fill_(1.0)
        post = noise(h)
    sigma = (0.5 * post.logvar).exp()
    assert torch.isfinite(post.logvar).all() and torch.isfinite(post.z[2]).all()
    assert post.logvar.max() <= LOGVAR_MAX + 1e-5
    assert sigma.min() >= SIGMA_MIN * (1 - 1e-5) and sigma.max() <= SIGMA_MAX * (1 + 1e-5)
    eps = (post.z - post.mu) / sigma  # the sample uses the same clamped sigma
    assert (eps[torch.isfinite(eps)].abs() < 10).all()


def _scaled(config, scale):
    return [Dataset(d.name, d.floats() * scale, d.y, d.factors)
            for d in (load_split(config, "train"), load_split(config, "test"))]


def test_bf16_on_extreme_inputs_trains_finite_or_stops_cleanly(tmp_path, tiny_sine):
    config = dataclasses.replace(tiny_sine, precision="bf16", epochs=1)
    big, huge = _scaled(config, 1e12), _scaled(config, 1e20)
    train(config, tmp_path / "big", progress=False, train_data=big[0], test_data=big[1])
    row = json.loads((tmp_path / "big/metrics.jsonl").read_text())
    assert all(v is None or math.isfinite(v) for v in row.values())
    with pytest.raises(WisealeError, match="non-finite loss at epoch 1, batch 0; nothing was "
                       "saved"):  # |x|^2 overflows float32: stopped, not trained on
        train(config, tmp_path / "huge", progress=False, train_data=huge[0], test_data=huge[1])


def _poison(monkeypatch, calls):
    """The loss of the training forward passes numbered in ``calls`` becomes NaN."""
    real_forward, count = Autoencoder.forward, {"n": 0}

    def forward(self, x, *args):
        count["n"] += 1
        out = real_forward(self, x, *args)
        if count["n"] in calls:
            out.loss = out.loss * float("nan")
        return out

    monkeypatch.setattr(Autoencoder, "forward", forward)


def test_stop_then_resume_skipping_the_nonfinite_batch(capsys, tmp_path, monkeypatch):
    run = str(tmp_path / "run")
    _poison(monkeypatch, {12})  # epoch 2 (8 batches each), batch 3
    code, err = _cli(capsys, *CLI, "--method", "wise-ale", "--out", run)
    _one_line_error(code, err, "non-finite loss at epoch 2, batch 3; the last checkpoint is "
                    "kept")
    _poison(monkeypatch, {4})  # the same batch once epoch 2 starts again
    code, err = _cli(capsys, *CLI, "--method", "wise-ale", "--out", run, "--resume",
                     "--on-nonfinite", "skip")
    assert code == 0 and "epoch 2: skipped 1 batches with a non-finite loss (3)" in err
    rows = [json.loads(r) for r in Path(run, "metrics.jsonl").read_text().splitlines()]
    assert [(r["epoch"], r.get("skipped_steps")) for r in rows] == [(1, None), (2, 1), (3, 0)]
    tensors, meta = load_tensors(Path(run, "checkpoint.safetensors"))
    assert meta["config"]["on_nonfinite"] == "skip"
    assert int(tensors["optim/0/step"]) == 3 * 8 - 1  # the skipped step was not applied
    assert all(torch.isfinite(t).all() for t in tensors.values() if t.is_floating_point())


def test_epoch_means_are_over_the_applied_batches(tmp_path, tiny_sine, monkeypatch):
    """A logged part that is 1 at every step has the epoch mean 1 when a batch is skipped
    (the mean is over the 7 applied batches, not the 8 of the epoch)."""
    real_forward, count = Autoencoder.forward, {"n": 0}

    def forward(self, x, *args):
        count["n"] += 1
        out = real_forward(self, x, *args)
        out.parts["probe"] = torch.ones(())
        if count["n"] == 3:
            out.loss = out.loss * float("nan")
        return out

    monkeypatch.setattr(Autoencoder, "forward", forward)
    train(dataclasses.replace(tiny_sine, on_nonfinite="skip", epochs=1), tmp_path / "run",
          progress=False)
    row = json.loads((tmp_path / "run/metrics.jsonl").read_text().splitlines()[0])
    assert row["skipped_steps"] == 1 and row["probe"] == 1.0


def test_skipping_every_batch_stops(tmp_path, tiny_sine, monkeypatch):
    _poison(monkeypatch, set(range(1, 100)))
    with pytest.raises(WisealeError, match="every batch of epoch 1 had a non-finite loss; "
                       "nothing was saved"):
        train(dataclasses.replace(tiny_sine, on_nonfinite="skip"), tmp_path / "run",
              progress=False)


def test_nonfinite_weights_are_never_checkpointed(tmp_path, tiny_sine, monkeypatch):
    real_hooks = Autoencoder.hooks

    class Poison(Callback):  # a finite loss whose step made a weight infinite, at epoch 2
        def on_epoch_end(self, epoch, row, model, x_eval):
            if epoch == 2:
                with torch.no_grad():
                    model.noise.mu_head.bias[0] = float("inf")

    monkeypatch.setattr(Autoencoder, "hooks", lambda self: [*real_hooks(self), Poison()])
    with pytest.raises(WisealeError, match=r"non-finite weights \(noise.mu_head.bias\) before "
                       "the checkpoint of epoch 2; the last checkpoint is kept"):
        train(dataclasses.replace(tiny_sine, epochs=3), tmp_path / "run", progress=False)
    assert load_tensors(tmp_path / "run/checkpoint.safetensors")[1]["epoch"] == 1


def _strict_loads(text: str):
    """json.loads that refuses NaN and Infinity, as strict parsers (jq, JavaScript) do."""
    def refuse(constant):
        raise ValueError(f"not JSON: {constant}")
    return json.loads(text, parse_constant=refuse)


def test_every_json_file_is_strict_with_non_finite_values_as_null(tmp_path, tiny_sine,
                                                                   monkeypatch):
    """Issue 17, point 3: NaN / Infinity are written as null (metrics.jsonl, evaluation.json),
    and files of earlier versions that hold NaN are still read."""
    from wiseale.storage import write_json
    from wiseale.training import loop as train_module
    from wiseale.training.run import read_metrics

    real_evaluate = train_module.evaluate
    monkeypatch.setattr(train_module, "evaluate", lambda *a, **k: {
        **real_evaluate(*a, **k), "elbo": float("nan"), "kl_prior": float("inf")})
    train(dataclasses.replace(tiny_sine, epochs=1), tmp_path / "run", progress=False)
    rows = [_strict_loads(line) for line in
            (tmp_path / "run/metrics.jsonl").read_text().splitlines()]
    assert rows[0]["test_elbo"] is None and rows[0]["test_kl_prior"] is None
    assert isinstance(rows[0]["test_recon_error"], float)
    write_json(tmp_path / "x.json", {"a": [float("-inf"), 1.5], "b": {"c": float("nan")}})
    assert _strict_loads((tmp_path / "x.json").read_text()) == {"a": [None, 1.5],
                                                                 "b": {"c": None}}
    old = tmp_path / "old.jsonl"  # as wiseale wrote it before
    old.write_text('{"epoch": 1, "loss": NaN}\n{"epoch": 2, "loss": 1.0}\n')
    assert [r["epoch"] for r in read_metrics(old)] == [1, 2]


def test_a_file_without_its_digest_or_with_changed_meta_is_refused(tmp_path):
    """Issue 12, point 9: the SHA-256 must be present and must cover the meta block too."""
    from safetensors.torch import load, save

    path = tmp_path / "w.safetensors"
    save_tensors(path, {"a": torch.arange(4.0)}, {"epoch": 9})
    data = path.read_bytes()
    header = json.loads(data[8:8 + int.from_bytes(data[:8], "little")])["__metadata__"]
    tensors = load(data)
    edited = header["wiseale"].replace('"epoch": 9', '"epoch": 1')
    assert edited != header["wiseale"]
    path.write_bytes(save(tensors, metadata={**header, "wiseale": edited}))
    with pytest.raises(WisealeError, match="fails its SHA-256 check"):
        load_tensors(path)
    path.write_bytes(save(tensors, metadata={"wiseale": header["wiseale"]}))  # no digest
    with pytest.raises(WisealeError, match="carries no SHA-256 digest"):
        load_tensors(path)
    path.write_bytes(save(tensors, metadata=header))  # as written: loads
    assert load_tensors(path)[1]["epoch"] == 9


def test_a_header_is_read_without_the_tensors(tmp_path):
    """storage.read_header: what a sampler or figure compares against model.safetensors."""
    from wiseale.storage import read_header

    path = tmp_path / "w.safetensors"
    save_tensors(path, {"a": torch.arange(4.0)}, {"epoch": 9})
    data = path.read_bytes()
    size = int.from_bytes(data[:8], "little")
    assert read_header(path) == json.loads(data[8:8 + size])["__metadata__"]
    path.write_bytes(data[:8 + size // 2])  # truncated inside the header
    with pytest.raises(WisealeError, match="is not a readable safetensors file .*; it is corrupt"):
        read_header(path)
