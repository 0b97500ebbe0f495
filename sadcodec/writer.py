"""Sites -> .sad bytes: quantize, entropy-code, wrap in the container."""

from __future__ import annotations

from collections.abc import Callable

import numpy as np

from . import bitstream, container
from .quantize import QuantSpec, quantize


def make_writer(
    width: int, height: int, channels: int, k: int, spec: QuantSpec
) -> Callable[[np.ndarray], bytes]:
    """params (N, 6 + C) -> the whole file."""

    def write(params: np.ndarray) -> bytes:
        q = quantize(params, spec, width, height)
        payload = bitstream.encode_payload(q, spec.col_bits)
        hdr = container.Header(width, height, channels, k, len(params), spec)
        return container.write(hdr, payload)

    return write


def make_estimator(width: int, height: int, spec: QuantSpec) -> Callable[[np.ndarray], int]:
    """params -> approximate file bytes (a fast zstd level; bitstream.payload_size_estimate)."""

    def estimate(params: np.ndarray) -> int:
        q = quantize(params, spec, width, height)
        return bitstream.payload_size_estimate(q, spec.col_bits) + container.HEADER_SIZE

    return estimate


def fixed_bytes() -> int:
    """Bytes of a file that do not grow with its sites (header, checksums, zstd framing)."""
    return container.FIXED_BYTES + bitstream.FRAME_BYTES


def smallest_file(width: int, height: int, channels: int, k: int, spec: QuantSpec) -> int:
    """Bytes of the smallest possible file (one site) with these dimensions and grids."""
    p = np.zeros((1, 6 + channels), np.float32)
    return len(make_writer(width, height, channels, k, spec)(p))
