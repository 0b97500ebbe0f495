"""sadcodec: an image codec built on Soft Anisotropic Diagrams.

>>> data = sadcodec.encode(image, bpp=1.0)      # uint8 (H, W[, C]) -> .sad bytes
>>> image = sadcodec.decode(data)               # .sad bytes -> uint8 (H, W[, C])
>>> sadcodec.read_info(data)["sites"]
"""

import os

# Taichi prints a banner to stdout on import unless told not to; keep stdout clean.
os.environ.setdefault("ENABLE_TAICHI_HEADER_PRINT", "False")

from .api import decode, encode, encode_settings, read_info, read_metadata  # noqa: E402
from .backend import init_backend  # noqa: E402
from .errors import SadError, SadFormatError  # noqa: E402

__version__ = "0.1.0"
__all__ = [
    "encode",
    "decode",
    "encode_settings",
    "read_info",
    "read_metadata",
    "init_backend",
    "SadError",
    "SadFormatError",
]
