"""Files of a run: atomic writes, weights and checkpoints in safetensors, configs in JSON.

Nothing here unpickles: loading a file can never execute code.
"""

from __future__ import annotations

import json
import os
import tempfile
from pathlib import Path
from typing import Any

import torch
from safetensors import SafetensorError
from safetensors.torch import load_file, save

from wiseale.errors import WisealeError

FORMAT_VERSION = 1
META_KEY = "wiseale"
_UMASK = os.umask(0)
os.umask(_UMASK)


def atomic_write_bytes(path: Path, data: bytes) -> None:
    """Write ``data`` to a temporary file beside ``path``, fsync it and rename it over
    ``path``: readers see the old file or the new one, never a truncated one."""
    path = Path(path)
    try:
        fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
        try:
            os.fchmod(fd, 0o666 & ~_UMASK)  # mkstemp makes 0600; give the usual mode
            with os.fdopen(fd, "wb") as handle:
                handle.write(data)
                handle.flush()
                os.fsync(handle.fileno())
            os.replace(tmp, path)
        except BaseException:
            Path(tmp).unlink(missing_ok=True)
            raise
    except OSError as exc:
        raise WisealeError(f"cannot write {path}: {exc.strerror or exc}; check the directory's "
                           "permissions and free space") from None


def atomic_write_text(path: Path, text: str) -> None:
    atomic_write_bytes(path, text.encode())


def write_json(path: Path, data: Any) -> None:
    atomic_write_text(path, json.dumps(data, indent=2) + "\n")


def read_json(path: Path) -> Any:
    try:
        return json.loads(Path(path).read_text())
    except FileNotFoundError:
        raise WisealeError(f"{path} does not exist; is this a wiseale run directory?") from None
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise WisealeError(f"{path} is not valid JSON ({exc}); the file is corrupt") from None


def save_tensors(path: Path, tensors: dict[str, torch.Tensor], meta: dict[str, Any]) -> None:
    """Tensors with a JSON ``meta`` block, as one safetensors file, written atomically."""
    payload = {key: value.detach().cpu().contiguous() for key, value in tensors.items()}
    header = {META_KEY: json.dumps({"format": FORMAT_VERSION, **meta})}
    atomic_write_bytes(path, save(payload, metadata=header))


def load_tensors(path: Path) -> tuple[dict[str, torch.Tensor], dict[str, Any]]:
    """(tensors, meta) of a file written by :func:`save_tensors`; refuses anything else."""
    path = Path(path)
    if not path.exists():
        raise WisealeError(f"{path} does not exist")
    try:
        from safetensors import safe_open

        with safe_open(str(path), framework="pt") as handle:
            header = handle.metadata() or {}
        tensors = load_file(str(path))
        meta = json.loads(header[META_KEY])
    except (SafetensorError, OSError, KeyError, ValueError) as exc:
        raise WisealeError(f"{path} is not a readable wiseale safetensors file ({exc}); it is "
                           "corrupt or truncated") from None
    if meta.get("format") != FORMAT_VERSION:
        raise WisealeError(f"{path} has format {meta.get('format')}, this wiseale reads "
                           f"{FORMAT_VERSION}")
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
    state: dict[int, dict[str, torch.Tensor]] = {}
    for key, value in tensors.items():
        if key.startswith(f"{prefix}/"):
            _, index, name = key.split("/", 2)
            state.setdefault(int(index), {})[name] = value
    optimizer.load_state_dict({"state": state, "param_groups": param_groups})
