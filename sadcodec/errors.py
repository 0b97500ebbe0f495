"""The one exception type users see: a clear, one-line message."""


class SadError(Exception):
    """A user-facing failure (bad input, bad file, bad argument).

    The CLI prints ``sad: error: <message>`` and exits non-zero; the message must be
    one line and must say what is wrong and, where it helps, what to do.
    """


class SadFormatError(SadError):
    """A .sad file that is truncated, corrupt, of an unknown version or out of limits."""
