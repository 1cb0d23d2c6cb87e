"""MNIST and Fashion-MNIST from IDX files (LeCun's format; gzipped or not).

The paper trains on MNIST (001 Sec. 5, App. D.2) and treats it as binary (Bernoulli
likelihood); ``binarize=True`` gives that. Each loader returns the published split: 60,000
training and 10,000 test images, uint8 read as [0, 1], N x 1 x 28 x 28, with int64 labels.

Where the files are looked for, in order: ``data_dir`` (and its ``mnist`` or ``fashion-mnist``
subfolder), ``$WISEALE_DATA`` (same rule), then for Fashion-MNIST the Debian package
``dataset-fashion-mnist`` (``/usr/share/datasets/fashion-mnist``) and for MNIST
``~/.cache/wiseale/mnist``. MNIST that is found nowhere is downloaded into
``$WISEALE_DATA/mnist`` (or ``~/.cache/wiseale/mnist``) and each file's SHA-256 is checked;
nothing else is ever written to disk.
"""

from __future__ import annotations

import gzip
import hashlib
import math
import os
import urllib.request
import zlib
from collections.abc import Callable
from pathlib import Path

import numpy as np
import torch

from wiseale.data.dataset import Dataset
from wiseale.errors import WisealeError, one_line
from wiseale.storage import atomic_write_bytes

# IDX type codes (third byte of the magic number) and their big-endian NumPy dtypes
IDX_DTYPES = {0x08: np.dtype("u1"), 0x09: np.dtype("i1"), 0x0B: np.dtype(">i2"),
              0x0C: np.dtype(">i4"), 0x0D: np.dtype(">f4"), 0x0E: np.dtype(">f8")}

FILES = {"train": ("train-images-idx3-ubyte", "train-labels-idx1-ubyte"),
         "test": ("t10k-images-idx3-ubyte", "t10k-labels-idx1-ubyte")}
FASHION_SYSTEM_DIR = Path("/usr/share/datasets/fashion-mnist")  # Debian dataset-fashion-mnist

MNIST_MIRRORS = ("https://ossci-datasets.s3.amazonaws.com/mnist/",
                 "https://storage.googleapis.com/cvdf-datasets/mnist/")
# SHA-256 of the published MNIST archives (the same sums torchvision's mirror and TensorFlow's
# mirror serve; checked against several independent public copies of these constants).
MNIST_SHA256 = {
    "train-images-idx3-ubyte.gz":
        "440fcabf73cc546fa21475e81ea370265605f56be210a4024d2ca8f203523609",
    "train-labels-idx1-ubyte.gz":
        "3552534a0a558bbed6aed32b30c495cca23d567ec52cac8be1a0730e8010255c",
    "t10k-images-idx3-ubyte.gz":
        "8d422c7b0a1c1c79245a5bcf07fe86e33eeafee792b84584aec276f5a2dbc4e6",
    "t10k-labels-idx1-ubyte.gz":
        "f7ae60f92e00ec6debd23a6088c31dbd2371eca3ffa0defaefb259924204aec6",
}
DOWNLOAD_TIMEOUT = 20.0  # seconds per connection attempt
BINARY_THRESHOLD = 0.5


def read_idx(path: str | Path) -> np.ndarray:
    """The array in an IDX file (gzipped files are decompressed), in its stored dtype.

    The magic number, the type code and the byte count implied by the header are checked; a
    corrupt or truncated file raises a one-line :class:`WisealeError` naming the file.
    """
    path = Path(path)
    bad = f"{path} is not a valid IDX file"
    try:
        data = path.read_bytes()
        if data[:2] == b"\x1f\x8b" or path.suffix == ".gz":  # gzip's magic bytes
            data = gzip.decompress(data)
    except FileNotFoundError:
        raise WisealeError(f"IDX file {path} does not exist; check the path") from None
    except (OSError, EOFError, zlib.error) as exc:
        raise WisealeError(f"{bad} ({one_line(exc)}); download it again") from None
    if len(data) < 4 or data[0] != 0 or data[1] != 0:
        raise WisealeError(f"{bad} (bad magic number); download it again")
    code, ndim = data[2], data[3]
    if code not in IDX_DTYPES:
        raise WisealeError(f"{bad} (unknown type code 0x{code:02x}); download it again")
    if ndim == 0 or len(data) < 4 + 4 * ndim:
        raise WisealeError(f"{bad} (truncated header); download it again")
    shape = tuple(int(d) for d in np.frombuffer(data, ">u4", count=ndim, offset=4))
    dtype = IDX_DTYPES[code]
    expected = math.prod(shape) * dtype.itemsize  # Python ints: no overflow
    found = len(data) - 4 - 4 * ndim
    if found != expected:
        what = "truncated" if found < expected else "has trailing bytes"
        raise WisealeError(f"{bad} ({what}: header says {expected} bytes of data for shape "
                           f"{shape}, found {found}); download it again")
    array = np.frombuffer(data, dtype, offset=4 + 4 * ndim).reshape(shape)
    return array.astype(dtype.newbyteorder("="))  # a writable, native-order copy


def binarise(x: torch.Tensor) -> torch.Tensor:
    """Deterministic threshold binarisation: pixels >= 0.5 become 1, the others 0 (the paper's
    binary MNIST, 001 Sec. 5 / App. D.2: a Bernoulli likelihood needs 0/1 data)."""
    return (x >= BINARY_THRESHOLD).to(torch.float32)


def _find_file(directory: Path, base: str) -> Path | None:
    for name in (base, base + ".gz"):
        if (directory / name).is_file():
            return directory / name
    return None


def _has_split(directory: Path, split: str) -> bool:
    return all(_find_file(directory, base) is not None for base in FILES[split])


def _candidates(name: str, data_dir: str | Path | None) -> list[Path]:
    dirs = []
    for root in (data_dir, os.environ.get("WISEALE_DATA") or None):
        if root is not None:
            dirs += [Path(root).expanduser() / name, Path(root).expanduser()]
    return dirs


def mnist_cache_dir() -> Path:
    """Where a downloaded MNIST goes: ``$WISEALE_DATA/mnist`` or ``~/.cache/wiseale/mnist``."""
    root = os.environ.get("WISEALE_DATA")
    return Path(root).expanduser() / "mnist" if root else Path.home() / ".cache/wiseale/mnist"


def fetch_url(url: str, timeout: float = DOWNLOAD_TIMEOUT) -> bytes:
    """The bytes at ``url`` (urllib, ``timeout`` seconds); tests replace this function."""
    with urllib.request.urlopen(url, timeout=timeout) as response:
        return response.read()


def download_mnist(directory: Path, fetch: Callable[[str], bytes] | None = None) -> None:
    """Download the four MNIST archives into ``directory``, checking each SHA-256 against
    :data:`MNIST_SHA256`; raises ``OSError``/``ValueError`` on failure (nothing is left half
    written). ``fetch`` defaults to :func:`fetch_url`, looked up when called."""
    fetch = fetch or fetch_url
    directory.mkdir(parents=True, exist_ok=True)
    for file_name, digest in MNIST_SHA256.items():
        target = directory / file_name
        if target.is_file() and hashlib.sha256(target.read_bytes()).hexdigest() == digest:
            continue
        errors = []
        for mirror in MNIST_MIRRORS:
            try:
                data = fetch(mirror + file_name)
            except Exception as exc:  # any failure: try the next mirror
                errors.append(f"{mirror}: {one_line(exc)}")
                continue
            if hashlib.sha256(data).hexdigest() != digest:
                errors.append(f"{mirror}: SHA-256 mismatch")
                continue
            atomic_write_bytes(target, data)  # a temporary file, fsynced, then renamed
            break
        else:
            raise OSError(f"cannot download {file_name} ({'; '.join(errors)})")


def _not_found(title: str, searched: list[Path], where: str) -> str:
    files = ", ".join(base + ".gz" for pair in FILES.values() for base in pair)
    places = ", ".join(str(p) for p in searched) or "nowhere (no --data-dir, no $WISEALE_DATA)"
    return f"{title} not found (looked in {places}): put {files} in {where}"


def _find_dir(name: str, split: str, data_dir: str | Path | None) -> tuple[Path | None,
                                                                           list[Path]]:
    searched = _candidates(name, data_dir)
    if name == "fashion-mnist":
        searched.append(FASHION_SYSTEM_DIR)
    else:
        searched.append(Path.home() / ".cache/wiseale/mnist")
    for directory in searched:
        if _has_split(directory, split):
            return directory, searched
    return None, searched


def bool_option(name: str, value: object) -> bool:
    """``value`` if it is a bool; otherwise a one-line error for the loader option ``name``."""
    if not isinstance(value, bool):
        raise WisealeError(f"option {name} must be true or false, got {value!r}")
    return value


def load_idx_split(directory: Path, split: str, name: str,
                   binarize: bool = False) -> Dataset:
    """The ``split`` of the IDX images and labels in ``directory``: x uint8 [N, 1, H, W] read as
    [0, 1] (0/1 binarised), y int64 [N]."""
    image_path, label_path = (_find_file(directory, base) for base in FILES[split])
    if image_path is None or label_path is None:
        raise WisealeError(f"{directory} lacks the {split} files {FILES[split][0]}[.gz] and "
                           f"{FILES[split][1]}[.gz]; put them there")
    images, labels = read_idx(image_path), read_idx(label_path)
    if images.ndim != 3 or images.dtype != np.uint8:
        raise WisealeError(f"{image_path} holds {images.dtype} of shape {images.shape}, not "
                           "N x H x W unsigned bytes; is it an images file?")
    if labels.ndim != 1 or len(labels) != len(images):
        raise WisealeError(f"{label_path} holds shape {labels.shape}, not one label for each of "
                           f"the {len(images)} images in {image_path.name}; use matching files")
    x = torch.from_numpy(images).unsqueeze(1)
    y = torch.from_numpy(labels.astype(np.int64))
    if binarize:
        return Dataset(f"{name}-{split}", binarise(x.float() / 255.0).to(torch.uint8), y)
    return Dataset(f"{name}-{split}", x, y, divide_by=255.0)


def load_mnist(split: str = "train", data_dir: str | Path | None = None,
               binarize: bool = False) -> Dataset:
    """MNIST's published ``split`` (60,000 / 10,000), as used in 001 Sec. 5 and App. D.2.

    ``binarize``: deterministic threshold binarisation (pixel >= 0.5 -> 1, else 0) for the
    paper's binary MNIST. Not found locally, MNIST is downloaded once (see the module
    docstring); without a network the error says where to put the four files.
    """
    binarize = bool_option("binarize", binarize)
    directory, searched = _find_dir("mnist", split, data_dir)
    if directory is None:
        target = mnist_cache_dir()
        try:
            download_mnist(target)
        except (OSError, ValueError) as exc:
            if target.is_dir() and not any(target.iterdir()):
                target.rmdir()  # leave no empty folder behind
            raise WisealeError(_not_found("MNIST", searched, f"{target} or pass --data-dir DIR")
                               + f" (download failed: {one_line(exc)})") from None
        directory = target
    return load_idx_split(directory, split, "mnist", binarize)


def load_fashion_mnist(split: str = "train", data_dir: str | Path | None = None,
                       binarize: bool = False) -> Dataset:
    """Fashion-MNIST's published ``split`` (60,000 / 10,000): MNIST's format and sizes, for the
    2-D embeddings of 001 Fig. 1 on a harder set. Never downloaded: the Debian package
    ``dataset-fashion-mnist`` installs it. ``binarize`` as for :func:`load_mnist`."""
    binarize = bool_option("binarize", binarize)
    directory, searched = _find_dir("fashion-mnist", split, data_dir)
    if directory is None:
        raise WisealeError(_not_found("Fashion-MNIST", searched, "DIR and pass --data-dir DIR, "
                                      "or install the Debian package dataset-fashion-mnist"))
    return load_idx_split(directory, split, "fashion-mnist", binarize)
