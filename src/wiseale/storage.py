"""Files of a run: atomic writes, weights and checkpoints in safetensors, configs in JSON.

Nothing here unpickles: loading a file can never execute code. Every file is written to a
temporary file beside it, fsynced and renamed over it, so a crash (even SIGKILL or a power
cut) leaves the old file or the new one; a SHA-256 of the tensors and meta in each
safetensors header refuses a file whose bytes changed after it was written.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import math
import os
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import torch
from safetensors import SafetensorError
from safetensors.torch import load, save

from wiseale.errors import WisealeError, one_line
from wiseale.optim import lay_like_params

FORMAT_VERSION = 1
META_KEY, DIGEST_KEY = "wiseale", "sha256"
TEMPORARY = ".tmp"  # suffix of the files atomic_write_bytes writes before renaming them
_UMASK = os.umask(0)
os.umask(_UMASK)


def atomic_write_bytes(path: Path, data: bytes) -> None:
    """Write ``data`` to a temporary file beside ``path``, fsync it and rename it over
    ``path``: readers see the old file or the new one, never a truncated one. A failure
    (full disk, no permission) raises a one-line WisealeError and leaves ``path`` as it was."""
    try:
        with atomic_path(path) as tmp, open(tmp, "wb") as handle:
            handle.write(data)
    except OSError as exc:
        raise WisealeError(f"cannot write {path}: {exc.strerror or exc}; check the directory's "
                           "permissions and free space") from None


@contextlib.contextmanager
def atomic_path(path: Path) -> Iterator[Path]:
    """A temporary file beside ``path`` (``.NAME.XXXX.tmp``) for the block to write, e.g. as
    a memory map too large for :func:`atomic_write_bytes`. When the block ends, the file is
    fsynced, renamed over ``path`` and the rename fsynced; when it raises (or is
    interrupted), the file is removed and ``path`` is left as it was."""
    path = Path(path)
    fd, name = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=TEMPORARY)
    tmp = Path(name)
    try:
        try:
            os.fchmod(fd, 0o666 & ~_UMASK)  # mkstemp makes 0600; give the usual mode
        finally:
            os.close(fd)
        yield tmp
        fd = os.open(tmp, os.O_RDWR)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    _fsync_directory(path.parent)


def _fsync_directory(directory: Path) -> None:
    """Make a rename in ``directory`` durable (best effort: not every file system can)."""
    with contextlib.suppress(OSError):
        fd = os.open(directory, os.O_RDONLY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)


def check_writable(directory: Path) -> None:
    """Raise a one-line WisealeError now if files cannot be created in ``directory``."""
    try:
        fd, tmp = tempfile.mkstemp(dir=directory, prefix=".write-test.", suffix=TEMPORARY)
        os.close(fd)
        os.unlink(tmp)
    except OSError as exc:
        raise WisealeError(f"cannot write in {directory}: {exc.strerror or exc}; check its "
                           "permissions and free space or choose another --out") from None


def remove_temporaries(directory: Path) -> None:
    """Delete the temporary files that writes killed before their rename left behind."""
    for path in Path(directory).glob(f".*{TEMPORARY}"):
        path.unlink(missing_ok=True)


def atomic_write_text(path: Path, text: str) -> None:
    atomic_write_bytes(path, text.encode())


def _finite_or_null(data: Any) -> Any:
    """``data`` with every NaN or infinite float replaced by None (JSON null)."""
    if isinstance(data, float):
        return data if math.isfinite(data) else None
    if isinstance(data, dict):
        return {key: _finite_or_null(value) for key, value in data.items()}
    if isinstance(data, (list, tuple)):
        return [_finite_or_null(value) for value in data]
    return data


def strict_json(data: Any, **kwargs: Any) -> str:
    """Strict JSON (RFC 8259) of ``data``: non-finite numbers become null, since NaN and
    Infinity are not JSON and other tools' parsers refuse them. Files written by earlier
    versions, which may hold NaN, are still read (Python's parser accepts it)."""
    return json.dumps(_finite_or_null(data), allow_nan=False, **kwargs)


def write_json(path: Path, data: Any) -> None:
    atomic_write_text(path, strict_json(data, indent=2) + "\n")


def read_json(path: Path) -> Any:
    try:
        return json.loads(Path(path).read_text())
    except FileNotFoundError:
        raise WisealeError(f"{path} does not exist; is this a wiseale run directory?") from None
    except (json.JSONDecodeError, UnicodeDecodeError, RecursionError) as exc:
        raise WisealeError(f"{path} is not valid JSON ({one_line(exc)}); the file is "
                           "corrupt") from None


def _digest(tensors: dict[str, torch.Tensor], meta: str) -> str:
    """SHA-256 of ``meta`` and every tensor's name, dtype, shape and bytes."""
    sha = hashlib.sha256(meta.encode())
    for key in sorted(tensors):
        tensor = tensors[key].contiguous()
        sha.update(f"{key}:{tensor.dtype}:{tuple(tensor.shape)};".encode())
        sha.update(tensor.reshape(-1).view(torch.uint8).numpy())
    return sha.hexdigest()


def save_tensors(path: Path, tensors: dict[str, torch.Tensor], meta: dict[str, Any]) -> None:
    """Tensors with a JSON ``meta`` block and their SHA-256, as one safetensors file,
    written atomically."""
    payload = {key: value.detach().cpu().contiguous() for key, value in tensors.items()}
    header = json.dumps({"format": FORMAT_VERSION, **meta})
    atomic_write_bytes(path, save(payload, metadata={META_KEY: header,
                                                     DIGEST_KEY: _digest(payload, header)}))


def _header(data: bytes) -> dict[str, str]:
    """The ``__metadata__`` of a safetensors file's bytes."""
    size = int.from_bytes(data[:8], "little")
    return json.loads(data[8:8 + size]).get("__metadata__") or {}


def read_header(path: Path) -> dict[str, str]:
    """The ``__metadata__`` of the safetensors file ``path`` (its meta block and digest),
    read without its tensors and unchecked (:func:`load_tensors` checks); a one-line
    WisealeError for a file that is not one."""
    try:
        with open(path, "rb") as handle:
            prefix = handle.read(8)
            header = _header(prefix + handle.read(int.from_bytes(prefix, "little")))
        if not isinstance(header, dict):
            raise ValueError("no metadata block")
        return header
    except (OSError, ValueError, AttributeError, RecursionError) as exc:
        raise WisealeError(f"{path} is not a readable safetensors file ({exc}); it is corrupt "
                           "or truncated") from None


def read_meta(path: Path) -> dict[str, Any]:
    """The meta of a file written by :func:`save_tensors`, from its header alone: the
    tensors are neither read nor checked (:func:`load_tensors` does both)."""
    if not Path(path).exists():
        raise WisealeError(f"{path} does not exist")
    try:
        meta = json.loads(read_header(path)[META_KEY])
    except (KeyError, ValueError, TypeError, RecursionError) as exc:
        raise WisealeError(f"{path} is not a readable wiseale safetensors file (its meta: "
                           f"{exc}); it is corrupt or truncated") from None
    if not isinstance(meta, dict):
        raise WisealeError(f"{path} is not a readable wiseale safetensors file; it is corrupt")
    return meta


def load_tensors(path: Path) -> tuple[dict[str, torch.Tensor], dict[str, Any]]:
    """(tensors, meta) of a file written by :func:`save_tensors`; refuses anything else:
    a truncated or corrupt file, a file without its digest, a changed byte of the tensors or
    of the meta block (the digest covers both), another format version."""
    path = Path(path)
    if not path.exists():
        raise WisealeError(f"{path} does not exist")
    try:
        data = path.read_bytes()
        tensors, header = load(data), _header(data)
        meta = json.loads(header[META_KEY])
    except (SafetensorError, OSError, KeyError, ValueError, AttributeError) as exc:
        raise WisealeError(f"{path} is not a readable wiseale safetensors file ({exc}); it is "
                           "corrupt or truncated") from None
    if DIGEST_KEY not in header:
        raise WisealeError(f"{path} carries no SHA-256 digest, so it cannot be checked (not "
                           "written by wiseale, or by a version before digests); delete it and "
                           "train, fit or cache it again")
    if header[DIGEST_KEY] != _digest(tensors, header[META_KEY]):
        raise WisealeError(f"{path} fails its SHA-256 check; the file is corrupt")
    if not isinstance(meta, dict) or meta.get("format") != FORMAT_VERSION:
        found = meta.get("format") if isinstance(meta, dict) else None
        raise WisealeError(f"{path} has format {found}, this wiseale reads {FORMAT_VERSION}")
    return tensors, meta


def optimizer_tensors(optimizer: torch.optim.Optimizer,
                      prefix: str = "optim") -> tuple[dict[str, torch.Tensor], list]:
    """An optimiser's state as flat tensors ``<prefix>/<param>/<key>`` plus its param groups."""
    state = optimizer.state_dict()
    tensors = {f"{prefix}/{index}/{key}": torch.as_tensor(value)
               for index, entries in state["state"].items() for key, value in entries.items()}
    return tensors, state["param_groups"]


def restore_optimizer(optimizer: torch.optim.Optimizer, tensors: dict[str, torch.Tensor],
                      param_groups: list, prefix: str = "optim") -> None:
    """Load the state :func:`optimizer_tensors` saved; a one-line WisealeError if it belongs
    to other parameters."""
    state: dict[int, dict[str, torch.Tensor]] = {}
    for key, value in tensors.items():
        if key.startswith(f"{prefix}/"):
            _, index, name = key.split("/", 2)
            state.setdefault(int(index), {})[name] = value
    try:
        optimizer.load_state_dict({"state": state, "param_groups": param_groups})
        lay_like_params(optimizer)
    except (ValueError, KeyError, TypeError) as exc:
        raise WisealeError(f"the saved {prefix} state does not fit this model's optimiser "
                           f"({exc}); the file belongs to another run") from None
