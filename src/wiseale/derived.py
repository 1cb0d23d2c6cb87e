"""What a run directory derives from its weights, its fitted samplers and its figures, records
the weights it was made from: the SHA-256 that storage.save_tensors keeps in the header of
model.safetensors (read, not computed again). A sampler fitted to other weights is refused
(samplers.io), and when training writes new weights, whatever was made from the former ones
is removed (:func:`remove_stale`), so nothing stale looks current (docs/sampling.md)."""

from __future__ import annotations

import json
import logging
from pathlib import Path
from typing import Any

from wiseale.errors import WisealeError
from wiseale.storage import DIGEST_KEY, META_KEY, read_header

WEIGHTS_DIGEST = "weights_sha256"  # a sampler file's meta entry, a figure's PNG text entry
RUN_FIGURES = ("curves.png", "reconstructions.png", "latents.png")  # run_figures draws them

log = logging.getLogger(__name__)  # the files removed (the CLI shows INFO)


def run_weights(run_dir: str | Path) -> Path | None:
    """``run_dir/model.safetensors``, or None while the run has not finished."""
    from wiseale.training.run import WEIGHTS  # not at the top: wiseale.training imports samplers

    path = Path(run_dir) / WEIGHTS
    return path if path.is_file() else None


def weights_digest(weights: str | Path) -> str:
    """The SHA-256 recorded in the header of the weights file ``weights``, read without its
    tensors (loading the model checks it against them)."""
    digest = read_header(Path(weights)).get(DIGEST_KEY)
    if not isinstance(digest, str):
        raise WisealeError(f"{weights} carries no SHA-256 digest (not written by wiseale, or by "
                           "a version before digests); train it again")
    return digest


def sampler_meta(path: Path) -> dict[str, Any] | None:
    """The meta block of ``path`` when it is a sampler file, else None (also when unreadable:
    loading it refuses it then)."""
    try:
        meta = json.loads(read_header(path).get(META_KEY, "null"))
    except (WisealeError, ValueError, TypeError):
        return None
    return meta if isinstance(meta, dict) and "sampler" in meta else None


def figure_digest(path: Path) -> str | None:
    """The weights digest a PNG figure records (None: none, or not a readable PNG)."""
    from PIL import Image

    try:
        with Image.open(path) as image:
            return getattr(image, "text", {}).get(WEIGHTS_DIGEST)
    except (OSError, ValueError, SyntaxError):
        return None


def remove_stale(run_dir: str | Path) -> list[Path]:
    """Delete the figures (RUN_FIGURES) and the fitted samplers (each ``*.safetensors`` whose
    meta names a sampler) of ``run_dir`` that record other weights than its
    model.safetensors, or none. Training calls it once it has written new weights: a figure
    drawn from the former ones would look current, and such a sampler is refused anyway.
    Returns (and logs) the files removed."""
    run_dir = Path(run_dir)
    weights = run_weights(run_dir)
    current = None if weights is None else weights_digest(weights)
    stale = {path: "drawn from" for path in (run_dir / name for name in RUN_FIGURES)
             if path.is_file() and figure_digest(path) != current}
    for path in sorted(run_dir.glob("*.safetensors")):
        meta = sampler_meta(path)
        if meta is not None and meta.get(WEIGHTS_DIGEST) != current:
            stale[path] = "fitted to"
    for path, made in stale.items():
        path.unlink(missing_ok=True)
        log.info("removed %s: %s other weights than the new %s", path, made,
                 getattr(weights, "name", None))
    return list(stale)
