"""The one exception type users see: a bad input or state, with what to do about it."""


class WisealeError(Exception):
    """A user-facing error; the CLI prints its message on one line and exits non-zero."""


def one_line(exc: BaseException | str) -> str:
    """``exc``'s message with its whitespace (newlines too) collapsed; its type if empty."""
    return " ".join(str(exc).split()) or type(exc).__name__
