"""The one exception type users see: a bad input or state, with what to do about it."""


class WisealeError(Exception):
    """A user-facing error; the CLI prints its message on one line and exits non-zero."""
