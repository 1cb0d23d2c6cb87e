"""Fuzz tests (hypothesis): malformed data files give a one-line WisealeError, and random
command lines give exit code 0 or a clean error of at most three lines, never a traceback.

Kept cheap: small files, few examples (derandomized; $WISEALE_FUZZ_EXAMPLES=2000 for a deeper,
random run), and the CLI's training loop replaced by a stub (all the checks before it run for
real)."""

from __future__ import annotations

import argparse
import gzip
import io
import os
import tempfile
import zipfile
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest
from hypothesis import HealthCheck, event, given, settings
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp
from PIL import Image

from wiseale import cli
from wiseale.cli import build_parser
from wiseale.config import RunConfig
from wiseale.data import idx as idx_module
from wiseale.data import load
from wiseale.data.dataset import Dataset
from wiseale.data.shapes import DSPRITES_FILE, SHAPES3D_FILE
from wiseale.errors import WisealeError
from wiseale.training import loop as training

DEEP = int(os.environ.get("WISEALE_FUZZ_EXAMPLES", "0"))
FUZZ = settings(max_examples=DEEP or 60, deadline=None, derandomize=not DEEP,
                suppress_health_check=[HealthCheck.function_scoped_fixture,
                                       HealthCheck.too_slow])


@pytest.fixture(autouse=True)
def _offline(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    """No $WISEALE_DATA of the user's, no network, nothing written to the home directory."""
    monkeypatch.delenv("WISEALE_DATA", raising=False)
    monkeypatch.setenv("HOME", str(tmp_path / "home"))

    def no_network(url: str, timeout: float = 0.0) -> bytes:
        raise OSError("network is unreachable (test)")

    monkeypatch.setattr(idx_module, "fetch_url", no_network)


# ------------------------------------------------------------------------ malformed data files


@st.composite
def corrupted(draw: st.DrawFn, valid: bytes) -> bytes:
    """``valid`` truncated, overwritten in places (mostly in its header), extended, or
    replaced by garbage."""
    kind = draw(st.sampled_from(["truncate", "overwrite", "append", "garbage"]))
    if kind == "truncate":
        return valid[:draw(st.integers(0, len(valid) - 1))]
    if kind == "append":
        return valid + draw(st.binary(min_size=1, max_size=32))
    if kind == "garbage":
        return draw(st.binary(max_size=300))
    data = bytearray(valid)
    for _ in range(draw(st.integers(1, 4))):
        at = draw(st.integers(0, min(len(data), 160) - 1) | st.integers(0, len(data) - 1))
        patch = draw(st.binary(min_size=1, max_size=8))
        data[at:at + len(patch)] = patch
    return bytes(data[:len(valid)]) if draw(st.booleans()) else bytes(data)


def loads_or_fails_cleanly(read: Callable[[], Dataset]) -> None:
    """``read()`` returns a Dataset or raises a one-line WisealeError; anything else fails."""
    try:
        data = read()
    except WisealeError as exc:
        assert "\n" not in str(exc) and str(exc), repr(exc)
    else:
        assert isinstance(data, Dataset)


def idx_bytes(array: np.ndarray) -> bytes:
    header = bytes([0, 0, 0x08, array.ndim]) + b"".join(d.to_bytes(4, "big") for d in array.shape)
    return header + array.astype(np.uint8).tobytes()


VALID_IDX = {"images": idx_bytes(np.arange(3 * 5 * 4).reshape(3, 5, 4) % 256),
             "labels": idx_bytes(np.array([1, 2, 3]))}


@FUZZ
@given(which=st.sampled_from(["images", "labels"]), data=st.data(),
       gz_before=st.booleans(), gz_after=st.booleans())
def test_fuzz_idx_files(which: str, data: st.DataObject, gz_before: bool,
                        gz_after: bool) -> None:
    """MNIST's IDX files (gzipped or not), corrupted before or after compression."""
    files = dict(VALID_IDX)
    raw = gzip.compress(files[which], mtime=0) if gz_before else files[which]
    files[which] = data.draw(corrupted(raw))
    with tempfile.TemporaryDirectory() as tmp:
        for kind, name in zip(("images", "labels"), idx_module.FILES["train"], strict=True):
            content = files[kind]
            if gz_after and not content.startswith(b"\x1f\x8b"):
                content = gzip.compress(content, mtime=0)
            (Path(tmp) / (name + ".gz")).write_bytes(content)
        loads_or_fails_cleanly(lambda: load("mnist", "train", data_dir=tmp))


def _npy(array: np.ndarray) -> bytes:
    buffer = io.BytesIO()
    np.save(buffer, array)
    return buffer.getvalue()


def _npz(compressed: bool = False, **arrays: np.ndarray) -> bytes:
    buffer = io.BytesIO()
    (np.savez_compressed if compressed else np.savez)(buffer, **arrays)
    return buffer.getvalue()


ARRAYS = hnp.arrays(
    dtype=st.sampled_from([np.float32, np.float64, np.float16, np.int8, np.uint8, np.int64,
                           np.bool_, np.complex64, np.dtype("U3"), np.dtype("S2"),
                           np.dtype([("a", "<f4")])]),
    shape=hnp.array_shapes(min_dims=0, max_dims=5, min_side=0, max_side=5))
VALID_X = np.random.default_rng(0).normal(size=(20, 3)).astype(np.float32)


@FUZZ
@given(x=ARRAYS, archive=st.booleans(), x_test=st.none() | ARRAYS,
       y=st.none() | ARRAYS)
def test_fuzz_array_files_of_any_shape_and_dtype(x: np.ndarray, archive: bool,
                                                 x_test: np.ndarray | None,
                                                 y: np.ndarray | None) -> None:
    """Well-formed .npy/.npz files whose arrays have any shape, dtype or values (NaN, Inf)."""
    extra = {key: value for key, value in (("x_test", x_test), ("y", y)) if value is not None}
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / ("data.npz" if archive else "data.npy")
        path.write_bytes(_npz(x=x, **extra) if archive else _npy(x))
        for split in ("train", "test"):
            loads_or_fails_cleanly(lambda split=split: load(str(path), split))


@FUZZ
@given(data=st.data(), kind=st.sampled_from(["npy", "npz", "npz-compressed"]))
def test_fuzz_corrupted_array_files(data: st.DataObject, kind: str) -> None:
    """Truncated, overwritten or garbage .npy/.npz files."""
    valid = _npy(VALID_X) if kind == "npy" else _npz(kind == "npz-compressed", x=VALID_X,
                                                     y=np.arange(20))
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / ("data.npy" if kind == "npy" else "data.npz")
        path.write_bytes(data.draw(corrupted(valid)))
        loads_or_fails_cleanly(lambda: load(str(path)))


def test_npz_entries_that_are_not_npy_arrays(tmp_path: Path) -> None:
    with zipfile.ZipFile(tmp_path / "raw.npz", "w") as archive:
        archive.writestr("x", b"raw bytes, not a .npy member")
    with pytest.raises(WisealeError, match="entries x are not .npy arrays"):
        load(str(tmp_path / "raw.npz"))


@FUZZ
@given(images=ARRAYS, values=ARRAYS)
def test_fuzz_dsprites_arrays(images: np.ndarray, values: np.ndarray) -> None:
    with tempfile.TemporaryDirectory() as tmp:
        (Path(tmp) / DSPRITES_FILE).write_bytes(_npz(imgs=images, latents_values=values))
        loads_or_fails_cleanly(lambda: load("dsprites", "train", data_dir=tmp))


VALID_DSPRITES = _npz(True, imgs=np.zeros((4, 64, 64), np.uint8), latents_values=np.zeros((4, 6)))


@FUZZ
@given(content=corrupted(VALID_DSPRITES))
def test_fuzz_corrupted_dsprites_file(content: bytes) -> None:
    with tempfile.TemporaryDirectory() as tmp:
        (Path(tmp) / DSPRITES_FILE).write_bytes(content)
        loads_or_fails_cleanly(lambda: load("dsprites", "train", data_dir=tmp))


def _h5(path: Path, images: np.ndarray | None, labels: np.ndarray | None,
        group: str | None) -> None:
    h5py = pytest.importorskip("h5py")
    with h5py.File(path, "w") as h5:
        for key, value in (("images", images), ("labels", labels)):
            if key == group:
                h5.create_group(key)
            elif value is not None:
                h5.create_dataset(key, data=value, compression="gzip")


H5_ARRAYS = hnp.arrays(dtype=st.sampled_from([np.uint8, np.float64, np.int32, np.dtype("S2")]),
                       shape=hnp.array_shapes(min_dims=1, max_dims=4, min_side=1, max_side=4))


@FUZZ
@given(images=st.none() | H5_ARRAYS | st.just(np.zeros((3, 64, 64, 3), np.uint8)),
       labels=st.none() | H5_ARRAYS | st.just(np.zeros((3, 6))),
       group=st.sampled_from([None, "images", "labels"]))
def test_fuzz_3dshapes_h5_contents(images: np.ndarray | None, labels: np.ndarray | None,
                                   group: str | None) -> None:
    """3dshapes.h5 with missing, mis-shaped or mistyped data sets (or groups instead)."""
    with tempfile.TemporaryDirectory() as tmp:
        _h5(Path(tmp) / SHAPES3D_FILE, images, labels, group)
        loads_or_fails_cleanly(lambda: load("3dshapes", "train", data_dir=tmp))


def _valid_h5() -> bytes:
    with tempfile.TemporaryDirectory() as tmp:
        _h5(Path(tmp) / "a.h5", np.zeros((3, 64, 64, 3), np.uint8), np.zeros((3, 6)), None)
        return (Path(tmp) / "a.h5").read_bytes()


@FUZZ
@given(data=st.data())
def test_fuzz_corrupted_3dshapes_file(data: st.DataObject) -> None:
    content = data.draw(corrupted(_valid_h5()))
    with tempfile.TemporaryDirectory() as tmp:
        (Path(tmp) / SHAPES3D_FILE).write_bytes(content)
        loads_or_fails_cleanly(lambda: load("3dshapes", "train", data_dir=tmp))


def _image_bytes(form: str, width: int = 20, height: int = 24) -> bytes:
    buffer = io.BytesIO()
    Image.fromarray(np.full((height, width, 3), 128, np.uint8)).save(buffer, form)
    return buffer.getvalue()


@FUZZ
@given(data=st.data(), form=st.sampled_from(["JPEG", "PNG", "GIF", "BMP"]),
       suffix=st.sampled_from([".jpg", ".png"]),
       partition=st.none() | st.binary(max_size=64) | st.just(b"000000.jpg 0\n000001.jpg 2\n"))
def test_fuzz_celeba_folder(data: st.DataObject, form: str, suffix: str,
                            partition: bytes | None) -> None:
    """A CelebA folder with a corrupted image (any format under an image suffix) and a
    garbage or valid partition file."""
    content = data.draw(corrupted(_image_bytes(form)) | st.just(_image_bytes(form)))
    with tempfile.TemporaryDirectory() as tmp:
        (Path(tmp) / f"000000{suffix}").write_bytes(content)
        (Path(tmp) / f"000001{suffix}").write_bytes(_image_bytes("PNG"))
        if partition is not None:
            (Path(tmp) / "list_eval_partition.txt").write_bytes(partition)
        for split in ("train", "test"):
            loads_or_fails_cleanly(lambda split=split: load("celeba", split, data_dir=tmp,
                                                            crop=16, size=8))


# ----------------------------------------------------------------------- random command lines

EDGE_VALUES = ("0", "-1", "1", "2", "3", "8", "-0", "0.5", "1e-9", "-2.5", "nan", "NaN", "inf",
               "-inf", "1e308", "1e999", "2147483648", "99999999999999999999", "", " ", "abc",
               "-", "--", "=", "x=1", "true", "null", "[1]", "{}", '"s"', "ü", "0x10",
               "x" * 300 + ".npy", "[" * 5000)
TEXT = st.text(st.characters(blacklist_categories=("Cs",), blacklist_characters="\x00"),
               max_size=12)
OPTION_KEYS = ("beta", "gamma", "scaling", "sigma_eps", "kernel", "steps", "n_train", "n_test",
               "seed", "std", "noise_std", "binarize", "limit", "crop", "size", "split")
# named data sets that load (or fail) in well under a second; sine and fashion-mnist load
# 180,000 / 60,000 samples unless limited
FAST_DATA = ("mog", "toy-shapes", "digits", "mnist", "celeba", "dsprites", "3dshapes", "nope")


def _commands() -> dict[str, list[argparse.Action]]:
    """The real subcommands of ``wiseale`` and their arguments (without -h)."""
    parser = build_parser()
    sub = next(a for a in parser._actions if isinstance(a, argparse._SubParsersAction))
    return {name: [a for a in p._actions if not isinstance(a, argparse._HelpAction)]
            for name, p in sub.choices.items()}


COMMANDS = _commands()


@pytest.fixture(scope="module")
def paths(tmp_path_factory: pytest.TempPathFactory) -> dict[str, str]:
    """Files and folders for path arguments: good, broken and missing ones."""
    root = tmp_path_factory.mktemp("fuzz-paths")
    np.save(root / "tiny.npy", np.random.default_rng(0).normal(size=(40, 3)))
    np.savez(root / "tiny.npz", x=np.random.default_rng(1).random((30, 2, 4)))
    np.save(root / "nan.npy", np.full((20, 2), np.nan))
    (root / "garbage.npy").write_bytes(b"\x93NUMPY garbage")
    (root / "file").write_text("not a directory")
    (root / "empty-dir").mkdir()
    for name, content in (("run", "{not json"), ("experiment", '["a list"]')):
        (root / name).mkdir()
        (root / name / ("config.json" if name == "run" else "results.json")).write_text(content)
        (root / name / "model.safetensors").write_bytes(b"\x00" * 9)
    (root / "history").mkdir()
    (root / "history/metrics.jsonl").write_text('{"epoch": 1, "loss": 2.0}\n[1, 2]\n{oops\n')
    names = ("tiny.npy", "tiny.npz", "nan.npy", "garbage.npy", "file", "empty-dir", "run",
             "experiment", "history", "missing.npy", "new-run", "file/below")
    return {name: str(root / name) for name in names}


PLAUSIBLE = {"_positive_int": st.integers(1, 64).map(str), "_seed": st.integers(0, 9).map(str),
             "_positive_float": st.sampled_from(["1e-4", "0.001", "0.5", "2"])}


def _plausible(action: argparse.Action, paths: dict[str, str]) -> st.SearchStrategy[str]:
    """Values an argument could well be given."""
    files = [paths[n] for n in ("tiny.npy", "tiny.npz", "nan.npy", "garbage.npy", "missing.npy")]
    if action.choices:
        return st.sampled_from(sorted(action.choices))
    if action.dest in ("option", "data_option"):
        return st.builds("{}={}".format, st.sampled_from(OPTION_KEYS),
                         st.sampled_from(EDGE_VALUES) | st.integers(-2, 300).map(str))
    if action.dest == "method":
        return st.sampled_from(["wise-ale", "aevb", "wae", "vcae", "nope"])
    if action.dest == "data":
        return st.sampled_from([*FAST_DATA, *files])
    if action.type is Path or action.dest in ("out", "run_dir", "directory", "data_dir"):
        return st.sampled_from(sorted(paths.values()))
    return PLAUSIBLE.get(getattr(action.type, "__name__", ""), TEXT)


def _value(action: argparse.Action, paths: dict[str, str]) -> st.SearchStrategy[str]:
    """Mostly plausible values; else edge cases (negative, nan/inf, huge, empty) or garbage."""
    return st.one_of(*[_plausible(action, paths)] * 6, st.sampled_from(EDGE_VALUES), TEXT)


@st.composite
def command_lines(draw: st.DrawFn, paths: dict[str, str]) -> list[str]:
    """``[--debug] COMMAND positionals... [--flag value]...`` from the real parser; train gets
    its required arguments most of the time so that the checks after parsing run too."""
    argv = draw(st.sampled_from([[], [], [], ["--debug"]]))
    real = st.sampled_from(sorted(COMMANDS))
    name = draw(st.one_of(real, real, real, TEXT))
    argv.append(name)
    actions = COMMANDS.get(name, [])
    for action in (a for a in actions if a.required or not a.option_strings):
        if draw(st.integers(0, 9)) > 0:  # leave one out now and then
            argv += [*action.option_strings[-1:], draw(_value(action, paths))]
    optional = [a for a in actions if a.option_strings]
    for action in draw(st.lists(st.sampled_from(optional), max_size=4)) if optional else []:
        argv.append(draw(st.sampled_from(action.option_strings)))
        if action.nargs != 0:
            argv += draw(st.lists(_value(action, paths), min_size=1,
                                  max_size=1 if action.nargs is None else 3))
    stray = st.sampled_from(["--frobnicate", "-x", "extra"]) | TEXT
    nothing = st.just([])
    return argv + draw(st.one_of(nothing, nothing, nothing, st.lists(stray, max_size=1)))


@pytest.fixture
def stubbed(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> list[RunConfig]:
    """No training loop and no experiment runs: every check before them still runs."""
    configs: list[RunConfig] = []
    monkeypatch.setattr(training, "_train", lambda config, *args: configs.append(config))
    monkeypatch.setattr(cli, "_reproduce", lambda args: None)
    monkeypatch.chdir(tmp_path)
    return configs


def _run_cli(argv: list[str], capsys: pytest.CaptureFixture[str]) -> tuple[int, str]:
    """(exit code, stderr) of ``wiseale argv`` in this process. With --debug an error is
    raised by design: then the same command without --debug is run."""
    try:
        code = cli.main(argv)
    except SystemExit as exc:
        code = exc.code
    except Exception:
        if argv[0] != "--debug":
            raise
        capsys.readouterr()
        return _run_cli(argv[1:], capsys)
    return code, capsys.readouterr().err


@settings(FUZZ, max_examples=DEEP or 500)
@given(data=st.data())
def test_fuzz_command_lines(data: st.DataObject, paths: dict[str, str], stubbed: list,
                            capsys: pytest.CaptureFixture[str]) -> None:
    """Random command lines: exit 0, or a clean error of at most three lines that is not
    an unexpected exception; never a traceback."""
    argv = data.draw(command_lines(paths))
    code, err = _run_cli(argv, capsys)
    event(f"{argv[argv[0] == '--debug']} exit {code}")  # --hypothesis-show-statistics
    assert code in (0, 1, 2), (argv, code, err)
    assert "Traceback (most recent" not in err and "error: unexpected" not in err, (argv, err)
    if code != 0:
        assert 1 <= len(err.strip().splitlines()) <= 3, (argv, err)
