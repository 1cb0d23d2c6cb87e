"""The one exception type users see: a bad input or state, with what to do about it."""


class WisealeError(Exception):
    """A user-facing error; the CLI prints its message on one line and exits non-zero."""


def positive_int(value: object, what: str) -> int:
    """``value`` if it is a positive int (not a bool), else a WisealeError naming ``what``."""
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise WisealeError(f"{what} must be a positive integer, got {value!r}")
    return value


def one_line(exc: BaseException | str) -> str:
    """``exc``'s message with its whitespace (newlines too) collapsed; its type if empty."""
    return " ".join(str(exc).split()) or type(exc).__name__
