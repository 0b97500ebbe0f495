"""Site fields <-> the uncompressed payload: spatial order, deltas and byte planes.

Sites are sorted along a Z-order (Morton) curve of their quantized positions and the
positions stored as gaps between consecutive Morton codes, split into byte planes: nearby
sites become small numbers and each plane gets its own statistics, which zstd's entropy
stage exploits. The other fields are one byte per site each, stored plane by plane; a
colour plane may be stored as differences to the previous site (mod 2**bits) when that
compresses better. The layout is specified in docs/FORMAT.md.
"""

from __future__ import annotations

import numpy as np

from .errors import SadFormatError

GAP_BYTES = 4
FIELDS = ("theta", "a", "r", "t")


def _spread(v: np.ndarray) -> np.ndarray:
    """Insert a zero bit between the bits of 16-bit integers."""
    v = v.astype(np.uint64) & 0xFFFF
    v = (v | (v << 8)) & 0x00FF00FF
    v = (v | (v << 4)) & 0x0F0F0F0F
    v = (v | (v << 2)) & 0x33333333
    v = (v | (v << 1)) & 0x55555555
    return v


def _compact(v: np.ndarray) -> np.ndarray:
    v = v.astype(np.uint64) & 0x55555555
    v = (v | (v >> 1)) & 0x33333333
    v = (v | (v >> 2)) & 0x0F0F0F0F
    v = (v | (v >> 4)) & 0x00FF00FF
    v = (v | (v >> 8)) & 0x0000FFFF
    return v.astype(np.int64)


def morton(x: np.ndarray, y: np.ndarray) -> np.ndarray:
    return (_spread(x) | (_spread(y) << np.uint64(1))).astype(np.int64)


def spatial_order(q: dict) -> np.ndarray:
    """A deterministic order of sites: Morton code, ties broken by the other fields."""
    keys = [q["col"][:, c] for c in range(q["col"].shape[1] - 1, -1, -1)]
    keys += [q[f] for f in reversed(FIELDS)]
    keys.append(morton(q["x"], q["y"]))
    return np.lexsort(keys)


def pack(q: dict, col_bits: int) -> bytes:
    """Serialise quantized fields (any order) to the uncompressed payload."""
    order = spatial_order(q)
    codes = morton(q["x"][order], q["y"][order])
    gaps = np.diff(codes, prepend=0).astype(np.uint32)
    planes = [((gaps >> (8 * b)) & 0xFF).astype(np.uint8) for b in range(GAP_BYTES - 1, -1, -1)]
    planes += [q[f][order].astype(np.uint8) for f in FIELDS]
    mask = (1 << col_bits) - 1
    flags = 0
    col = q["col"][order]
    for c in range(col.shape[1]):
        raw = col[:, c].astype(np.uint8)
        delta = (np.diff(col[:, c], prepend=0) & mask).astype(np.uint8)
        # Pick the cheaper plane by a zeroth-order entropy estimate (zstd's literal coder
        # is close to it), so the choice costs no extra compression runs.
        if _entropy(delta) < _entropy(raw):
            flags |= 1 << c
            planes.append(delta)
        else:
            planes.append(raw)
    return bytes([flags]) + b"".join(p.tobytes() for p in planes)


def _entropy(v: np.ndarray) -> float:
    counts = np.bincount(v, minlength=256).astype(np.float64)
    p = counts[counts > 0] / max(len(v), 1)
    return float(-(p * np.log2(p)).sum())


def payload_size(n: int, channels: int) -> int:
    return 1 + n * (GAP_BYTES + len(FIELDS) + channels)


def unpack(buf: bytes, n: int, channels: int, col_bits: int) -> dict:
    """Inverse of pack (sites come back in stored order)."""
    if len(buf) != payload_size(n, channels):
        raise SadFormatError("corrupt file: payload has the wrong size for its site count")
    flags = buf[0]
    arr = np.frombuffer(buf, dtype=np.uint8, offset=1).reshape(
        GAP_BYTES + len(FIELDS) + channels, n
    )
    gaps = np.zeros(n, dtype=np.uint64)
    for b in range(GAP_BYTES):
        gaps = (gaps << np.uint64(8)) | arr[b].astype(np.uint64)
    codes = np.cumsum(gaps, dtype=np.uint64)
    q = {"x": _compact(codes), "y": _compact(codes >> np.uint64(1))}
    for i, f in enumerate(FIELDS):
        q[f] = arr[GAP_BYTES + i].astype(np.int64)
    mask = (1 << col_bits) - 1
    col = np.empty((n, channels), dtype=np.int64)
    for c in range(channels):
        plane = arr[GAP_BYTES + len(FIELDS) + c].astype(np.int64)
        col[:, c] = (np.cumsum(plane) & mask) if flags >> c & 1 else plane
    q["col"] = col
    return q
