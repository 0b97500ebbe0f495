"""The one exception type users see: a clear, one-line message."""


class SadError(Exception):
    """A user-facing failure (bad input, bad file, bad argument).

    The CLI prints ``sad: error: <message>`` and exits non-zero; the message must be
    one line and must say what is wrong and, where it helps, what to do.
    """


class SadFormatError(SadError):
    """A .sad file that is truncated, corrupt, of an unknown version or out of limits."""


class SadTypeError(SadError, TypeError):
    """An argument of the wrong type (``decode(None)``, ``encode(image, bpp="1")``).

    Also a ``TypeError``, so code that catches either sees it; like every SadError its
    message is one line that names the argument and what it accepts.
    """


class RegionError(SadError):
    """A decode region (``region=``, ``--region``) that is empty or not inside the output:
    the CLI reports it as a usage error (exit 2)."""
