"""One way to register a part by name. Every kind of part is a :class:`Registry` that its
entries join with ``@REGISTRY.register`` (a class) or ``REGISTRY.register(entry)`` (an
object): the encoder noises, likelihoods, regularisers (a subclass of Regularizer joins when it
is defined) and latent samplers are classes; the networks (``nets.NETWORKS``), data sets
(``dataset_index.DATASETS``) and experiments (``experiments.index.INDEX``) are entries with a
``name``. The data sets' and experiments' registries answer without importing torch.
"""

from __future__ import annotations

from typing import Generic, TypeVar

from wiseale.errors import WisealeError
from wiseale.schema import checked

__all__ = ["Registry"]

T = TypeVar("T")


class Registry(dict[str, T], Generic[T]):
    """name -> entry, for parts of one ``kind`` ("noise", "network", ...), in the order they
    joined. An entry joins under its ``name`` attribute; a name taken by another entry is
    refused (a class defined again, as a notebook cell run twice does, replaces itself).
    Looking up a name that is not there is a one-line WisealeError that lists the names."""

    def __init__(self, kind: str):
        super().__init__()
        self.kind = kind

    def register(self, entry: T) -> T:
        """Add ``entry`` under ``entry.name`` and return it (so it decorates a class); a class
    checks its Literal-annotated arguments when constructed (wiseale.schema.checked)."""
        name = getattr(entry, "name", None)
        taken = self.get(name, entry) if isinstance(name, str) else None
        if taken is None or _identity(taken) != _identity(entry):
            label = getattr(entry, "__name__", type(entry).__name__)
            raise WisealeError(f"cannot register {label}: its name {name!r} is not a new "
                               f"{self.kind} name")
        self[name] = checked(entry, f"the {name} {self.kind}") if isinstance(entry, type) \
            else entry
        return self[name]

    def __missing__(self, name: str) -> T:
        raise WisealeError(f"unknown {self.kind} {name!r}; use one of {', '.join(self)}")


def _identity(entry: object) -> object:
    """A class by where it is defined (one defined again is the same class); an entry by
    equality."""
    if isinstance(entry, type):
        return entry.__module__, entry.__qualname__
    return entry
