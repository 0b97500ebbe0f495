""".sad bytes -> image array: parse and validate the file, then render its sites
(sadcodec.render) at the stored size or another."""

from __future__ import annotations

import numpy as np

from . import bitstream, container
from .errors import SadError, SadFormatError
from .quantize import dequantize
from .topk import CULL_SLOTS_PER_PIXEL

MAX_OUTPUT_PIXELS = 1 << 28
# Working memory of one decode (bytes_per_pixel times the output's pixels). Refusing
# beyond it turns a huge declared size into a clear error instead of a failed allocation,
# which crashes the process inside Taichi.
MAX_DECODE_BYTES = 4 << 30


def parse(data: bytes) -> tuple[container.Header, np.ndarray]:
    """Validate a file and return its header and dequantized params (N, 6 + C)."""
    hdr, payload = container.read(data)
    spec = hdr.spec
    q = bitstream.decode_payload(payload, hdr.n_sites, hdr.channels, spec.col_bits)
    scale = 1 << spec.pos_frac_bits
    checks = (
        (
            "positions",
            q["x"].max(initial=0) < hdr.width * scale
            and q["y"].max(initial=0) < hdr.height * scale,
        ),
        ("directions", q["theta"].max(initial=0) < (1 << spec.theta_bits)),
        ("anisotropy", q["a"].max(initial=0) < (1 << spec.a_bits)),
        ("radii", q["r"].max(initial=0) < (1 << spec.r_bits)),
        ("temperatures", q["t"].max(initial=0) < (1 << spec.t_bits)),
        ("colours", q["col"].max(initial=0) < (1 << spec.col_bits)),
    )
    for name, ok in checks:
        if not ok:
            raise SadFormatError(f"corrupt file: site {name} out of range")
    return hdr, dequantize(q, spec)


def bytes_per_pixel(k: int, channels: int) -> int:
    """Peak decoder memory per output pixel, whichever path runs: jump flooding's two
    (H, W, K) int32 maps plus the output, or tile culling at its limits (a one-launch
    level's slots, index and bound, CULL_SLOTS_PER_PIXEL a pixel; the slot array of
    indices its parent was culled into, as long; the output), plus ~1 byte of per-tile
    arrays. A two-launch level holds less (its lists at most MAX_TILE_ENTRIES_PER_PIXEL
    a pixel). Kodak files need far less: slots are written only for possible survivors."""
    jump_flooding = 8 * k + 2 * channels
    culling = (4 + 8) * CULL_SLOTS_PER_PIXEL + channels + 1
    return max(jump_flooding, culling)


def output_size(
    hdr: container.Header, width: int | None, height: int | None, scale: float | None
) -> tuple[int, int]:
    """Output dimensions: as stored, scaled, or given (one side keeps the aspect ratio)."""
    if scale is not None:
        if not (scale > 0 and np.isfinite(scale)):
            raise SadError(f"--scale must be positive, got {scale}")
        width, height = round(hdr.width * scale), round(hdr.height * scale)
    elif width is not None and height is None:
        height = round(hdr.height * width / hdr.width)
    elif height is not None and width is None:
        width = round(hdr.width * height / hdr.height)
    width = hdr.width if width is None else int(width)
    height = hdr.height if height is None else int(height)
    if width < 1 or height < 1:
        raise SadError(f"output size {width}x{height} is empty")
    if (
        width > container.MAX_SIDE
        or height > container.MAX_SIDE
        or width * height > MAX_OUTPUT_PIXELS
    ):
        raise SadError(
            f"output size {width}x{height} is too large (at most {container.MAX_SIDE} per "
            f"side and {MAX_OUTPUT_PIXELS} pixels)"
        )
    # Each culling level's slots may also take one entry per site (12 bytes).
    need = width * height * bytes_per_pixel(hdr.k, hdr.channels) + 12 * hdr.n_sites
    if need > MAX_DECODE_BYTES:
        raise SadError(
            f"output size {width}x{height} needs {need / 2**30:.1f} GiB to decode at K = "
            f"{hdr.k} (the limit is {MAX_DECODE_BYTES >> 30} GiB); decode it smaller "
            "(--scale, --width or --height)"
        )
    return width, height
