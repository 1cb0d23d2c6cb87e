"""Folders made for a command's output, and taken back when the command fails before it
has written anything worth keeping: a refused command leaves no folder behind, and never
removes one that was there before it. Loads no torch."""

from __future__ import annotations

import contextlib
import shutil
from pathlib import Path


def make_dirs(path: Path) -> list[Path]:
    """Create ``path`` and its missing parents (an OSError if one cannot be); the folders
    this call created, deepest first."""
    made: list[Path] = []
    try:
        for folder in [*reversed(path.parents), path]:
            if folder.is_dir():
                continue
            try:
                folder.mkdir()
            except FileExistsError:  # a file, or a folder made meanwhile: not ours
                if not folder.is_dir():
                    raise
                continue
            made.insert(0, folder)
    except BaseException:
        remove_empty(made)
        raise
    return made


def remove_empty(folders: list[Path]) -> None:
    """Remove each of ``folders`` (deepest first) that is empty; leave the others."""
    for folder in folders:
        with contextlib.suppress(OSError):  # not empty: something else was put there
            folder.rmdir()


def unmake(made: list[Path], keep: bool) -> None:
    """Take back what :func:`make_dirs` made: the deepest folder with everything in it (it
    was made by this command, so nothing in it is anyone else's) unless ``keep``, and the
    parents it made that are empty then."""
    if made and not keep:
        shutil.rmtree(made[0], ignore_errors=True)
    remove_empty(made)
