"""The one exception type users see: a bad input or state, with what to do about it, in the
caller's words: its messages name command-line flags, and the functions Python callers call
(:func:`in_python_terms`) name their arguments instead."""

import functools
import re
from collections.abc import Callable
from typing import Any, TypeVar


class WisealeError(Exception):
    """A user-facing error; the CLI prints its message on one line and exits non-zero."""


def positive_int(value: object, what: str) -> int:
    """``value`` if it is a positive int (not a bool), else a WisealeError naming ``what``."""
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise WisealeError(f"{what} must be a positive integer, got {value!r}")
    return value


def seed_int(value: object, what: str) -> int:
    """``value`` if it is a non-negative int (not a bool), else a WisealeError naming ``what``."""
    if isinstance(value, bool) or not isinstance(value, int) or value < 0:
        raise WisealeError(f"{what} must be an integer of at least 0, got {value!r}")
    return value


def one_line(exc: BaseException | str) -> str:
    """``exc``'s message with its whitespace (newlines too) collapsed; its type if empty."""
    return " ".join(str(exc).split()) or type(exc).__name__


# flags whose Python argument is not the flag's name with "_" for "-"
PYTHON_ARGUMENTS = {"--resume": "resume=True", "--allow-changed-data": "changed_ok=True",
                    "--no-progress": "progress=False", "--data-option": "data_options",
                    "--option": "options"}
F = TypeVar("F", bound=Callable[..., Any])


def python_terms(message: str) -> str:
    """``message`` with each command-line flag named as the Python argument it stands for
    (``--resume`` -> ``resume=True``, ``--batch-size`` -> ``batch_size``), but in a command
    quoted in backticks."""
    parts = message.split("`")
    parts[::2] = [re.sub(r"(?<![\w-])--([a-z][a-z0-9-]*)",
                         lambda m: PYTHON_ARGUMENTS.get(m.group(0),
                                                        m.group(1).replace("-", "_")), part)
                  for part in parts[::2]]
    return "`".join(parts)


def in_python_terms(function: F) -> F:
    """``function`` for Python callers: its WisealeErrors name Python arguments, not flags
    (:func:`python_terms`); the command line calls ``function.__wrapped__``."""

    @functools.wraps(function)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        try:
            return function(*args, **kwargs)
        except WisealeError as exc:
            raise WisealeError(python_terms(str(exc))) from None

    return wrapper  # type: ignore[return-value]
