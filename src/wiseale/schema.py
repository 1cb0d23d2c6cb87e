"""A part's constructor signature is its schema (docs/methods.md): an argument annotated with a
``typing.Literal`` takes one of its values. :func:`checked` makes a class check its arguments
against it (:func:`check_arguments`) whenever it is constructed, whether they came from a
method's options (``-o scaling=per-sample``), a saved config.json, ``RunConfig(parts=...)`` or
a direct call; every class a Registry holds is checked so.
"""

from __future__ import annotations

import functools
import inspect
import sys
import typing
from collections.abc import Callable, Mapping
from typing import Any, Literal, TypeVar

from wiseale.errors import WisealeError

__all__ = ["check_arguments", "checked", "literal_choices"]


def literal_choices(part: Callable[..., Any]) -> dict[str, tuple[Any, ...]]:
    """argument -> its choices, for every argument of ``part``'s constructor (or of the
    function ``part``) annotated with a ``typing.Literal``."""
    init = part.__init__ if isinstance(part, type) else part  # type: ignore[misc]
    module = sys.modules.get(getattr(init, "__module__", None) or "")
    names = vars(module) if module is not None else {}  # object.__init__ has no module
    choices = {}
    for name, parameter in inspect.signature(init).parameters.items():
        hint = parameter.annotation
        if isinstance(hint, str):  # postponed (from __future__ import annotations)
            try:
                hint = eval(hint, names)  # noqa: S307 -- our own modules' annotations
            except NameError:  # a type imported for type checkers only: not a choice
                continue
        if typing.get_origin(hint) is Literal:
            choices[name] = typing.get_args(hint)
    return choices


def check_arguments(part: Callable[..., Any], args: Mapping[str, Any], what: str) -> None:
    """A one-line WisealeError when an argument in ``args`` is not one of the choices its
    annotation allows; ``what`` names the part ("the aggregate_kl regulariser")."""
    for name, choices in literal_choices(part).items():
        if name in args and args[name] not in choices:
            raise WisealeError(f"{name} must be one of {', '.join(map(str, choices))} "
                               f"({what}); got {args[name]!r}")


T = TypeVar("T", bound=type)


def checked(cls: T, what: str | None = None) -> T:
    """Class decorator: ``cls(...)`` first checks its Literal-annotated arguments, naming it
    ``what`` in the error (default: its class name); a class without any is left as it is."""
    init = cls.__init__  # type: ignore[misc]
    if getattr(init, "_checks_choices", False) or not literal_choices(cls):
        return cls

    @functools.wraps(init)
    def checking_init(self: Any, *args: Any, **kwargs: Any) -> None:
        bound = inspect.signature(init).bind(self, *args, **kwargs)
        check_arguments(cls, bound.arguments, what or cls.__name__)
        init(self, *args, **kwargs)

    checking_init._checks_choices = True  # type: ignore[attr-defined]
    cls.__init__ = checking_init  # type: ignore[misc]
    return cls
