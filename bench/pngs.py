"""Hand-built PNG files that Pillow cannot write: zero-size or lying headers, 16-bit colour.

Used by bench/bad_inputs.py to make its odd inputs.
"""

from __future__ import annotations

import struct
import zlib

import numpy as np


def chunk(kind: bytes, data: bytes) -> bytes:
    crc = zlib.crc32(kind + data) & 0xFFFFFFFF
    return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", crc)


def png(width: int, height: int, depth: int, color_type: int, raw_rows: bytes) -> bytes:
    """A PNG with the given IHDR and raw (filtered) scanlines, compressed as one IDAT."""
    ihdr = struct.pack(">IIBBBBB", width, height, depth, color_type, 0, 0, 0)
    return (
        b"\x89PNG\r\n\x1a\n"
        + chunk(b"IHDR", ihdr)
        + chunk(b"IDAT", zlib.compress(raw_rows))
        + chunk(b"IEND", b"")
    )


def png16(values: np.ndarray) -> bytes:
    """A 16-bit PNG (gray, gray+alpha, RGB or RGBA by channel count), filter type 0."""
    a = np.asarray(values, dtype=">u2")
    if a.ndim == 2:
        a = a[:, :, None]
    h, w, c = a.shape
    color_type = {1: 0, 2: 4, 3: 2, 4: 6}[c]
    rows = b"".join(b"\x00" + a[y].tobytes() for y in range(h))
    return png(w, h, 16, color_type, rows)


def header_only_png(width: int, height: int) -> bytes:
    """Declares any size but carries almost no data: decoding it would be the bug."""
    return png(width, height, 8, 2, b"\x00" * 16)
