"""sadcodec: an image codec built on Soft Anisotropic Diagrams.

>>> data = sadcodec.encode(image, bpp=1.0)      # uint8 (H, W[, C]) -> .sad bytes
>>> image = sadcodec.decode(data)               # .sad bytes -> uint8 (H, W, C)
>>> sadcodec.read_info(data)["sites"]
"""

from .api import decode, encode, read_info
from .backend import init_backend
from .errors import SadError, SadFormatError

__version__ = "0.1.0"
__all__ = ["encode", "decode", "read_info", "init_backend", "SadError", "SadFormatError"]
