"""One way to register a part by name: the encoder noises, likelihoods, regularisers and
latent samplers are each a :class:`Registry` that their classes join with
``@REGISTRY.register`` (a subclass of Regularizer joins when it is defined). The data sets and
experiments are listed in ``dataset_index`` and ``experiments.index``, which answer without
importing torch.
"""

from __future__ import annotations

from typing import TypeVar

from wiseale.errors import WisealeError

__all__ = ["Registry"]

T = TypeVar("T", bound=type)


class Registry(dict[str, type]):
    """name -> class, for parts of one ``kind`` ("noise", "likelihood", ...). A class joins
    under its ``name`` attribute; a name taken by another class is refused (a class defined
    again, as a notebook cell run twice does, replaces itself). Looking up a name that is not
    there is a one-line WisealeError that lists the names."""

    def __init__(self, kind: str):
        super().__init__()
        self.kind = kind

    def register(self, cls: T) -> T:
        """Class decorator: add ``cls`` under ``cls.name``."""
        name = getattr(cls, "name", None)
        taken = self.get(name, cls)
        if not isinstance(name, str) or _identity(taken) != _identity(cls):
            raise WisealeError(f"cannot register {cls.__name__}: its name {name!r} is not a new "
                               f"{self.kind} name")
        self[name] = cls
        return cls

    def __missing__(self, name: str) -> type:
        raise WisealeError(f"unknown {self.kind} {name!r}; use one of {', '.join(self)}")


def _identity(cls: type) -> tuple[str, str]:
    return cls.__module__, cls.__qualname__

