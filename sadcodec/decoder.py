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
    (H, W, K) int32 maps plus the output (CUDA), or tile culling at its one-launch limits
    (a level's slots, index and bound, CULL_SLOTS_PER_PIXEL a pixel; the slot array of
    indices its parent was culled into, as long; the output), plus ~1 byte of per-tile
    arrays: output_size's bound from the header alone. The CPU decoder also holds its
    arrays under MAX_DECODE_MEMORY as it culls (check_decode_cost): a level whose slots
    would not fit counts its survivors first. Kodak files need far less: slots are
    written only for possible survivors."""
    jump_flooding = 8 * k + 2 * channels
    culling = (4 + 8) * CULL_SLOTS_PER_PIXEL + channels + 1
    return max(jump_flooding, culling)


# The CPU decoder's cost model (check_decode_cost): CPU nanoseconds per unit of work,
# each a + b*K, on the 2-core reference machine (docs/speed.md's). Fitted to the exact
# decoder's culling and fused top-K + blend (sadcodec/render.py), CPU time measured under
# load, on kodim05 at 1 bpp and its mosaics at 0.1-25 MP (K = 8, and the same sites with
# K = 32) and on crafted files (400 sites at one point, K = 8 and 32; sites stored in the
# order that costs culling most), then rounded up: it overestimates those decodes by
# 1.2-2x. A 24 MP mosaic of kodim05 at 1 bpp models at 5.8 s (2.5 s measured idle).
COST_PIXEL_NS = (40.0, 8.0)  # each output pixel: filling its first K, the blend
COST_SCORE_NS = (1.0, 0.5)  # each candidate a pixel may score (its 8x8 tile's list)
COST_CULL_NS = (25.0, 0.75)  # each site bounded over a tile while culling
COST_CORES = 2
# What a decode may take: seconds of the model on COST_CORES cores, and bytes of the
# decoder's arrays (output, site tables, culling lists; the process adds ~0.2 GB). Each is
# the larger of a floor and an allowance per output pixel of about twice what a
# Kodak-density file costs (the model puts a 24 MP mosaic of kodim05 at 1 bpp at 5.8 s
# and ~25 bytes a pixel), so large outputs of ordinary files decode while a crafted file
# costs at most about twice an ordinary one of its output size. Any file decodes within
# them or is refused before it is rendered (at the latest once its lists are culled).
MAX_DECODE_SECONDS = 8.0
MAX_DECODE_SECONDS_PER_PIXEL = 0.5e-6
MAX_DECODE_MEMORY = 1_500_000_000
MAX_DECODE_MEMORY_PER_PIXEL = 64


def decode_limits(pixels: int) -> tuple[float, int]:
    """(seconds, bytes) a CPU decode of this many output pixels may take."""
    return (
        max(MAX_DECODE_SECONDS, MAX_DECODE_SECONDS_PER_PIXEL * pixels),
        max(MAX_DECODE_MEMORY, MAX_DECODE_MEMORY_PER_PIXEL * pixels),
    )


def check_decode_cost(
    width: int,
    height: int,
    k: int,
    channels: int,
    n_sites: int,
    *,
    culled: float = 0,
    scored: float | None = None,
    extra_bytes: int = 0,
) -> tuple[float, int]:
    """Model an exact CPU decode at width x height; SadError if it exceeds the limits.

    culled: sites bounded over tiles so far; scored: candidates the pixels may score (the
    culled lists' entries times their tiles' pixels), or None while culling is not done,
    then the least possible, K a pixel; extra_bytes: the culling arrays live besides the
    output and the site tables. Returns (seconds, bytes). Deterministic, so a file decodes
    or is refused alike on every machine."""
    pixels = width * height
    least = scored is None
    if least:
        scored = min(k, n_sites) * pixels

    def ns(cost: tuple[float, float], units: float) -> float:
        return (cost[0] + cost[1] * k) * units

    work = ns(COST_PIXEL_NS, pixels) + ns(COST_SCORE_NS, scored) + ns(COST_CULL_NS, culled)
    seconds = 1e-9 * work / COST_CORES
    # The uint8 output, the float32 params (6 + C) and site table (8) of every site.
    memory = pixels * channels + 4 * (14 + channels) * n_sites + int(extra_bytes)
    max_seconds, max_memory = decode_limits(pixels)
    if seconds > max_seconds or memory > max_memory:
        about = "at least" if least else "about"
        shown = f"{seconds:.1f}" if seconds < 100 else f"{seconds:.0f}"
        raise SadError(
            f"this file needs {about} {memory / 1e9:.1f} GB and {shown} s to decode at "
            f"{width}x{height} (limits {max_memory / 1e9:.3g} GB, {max_seconds:.3g} s on "
            f"{COST_CORES} CPU cores); decode it smaller (--scale, --width or --height)"
        )
    return seconds, memory


def output_size(
    hdr: container.Header, width: int | None, height: int | None, scale: float | None
) -> tuple[int, int]:
    """Output dimensions: as stored, scaled, or given (one side keeps the aspect ratio)."""
    too_large = (
        f"is too large (at most {container.MAX_SIDE} per side and {MAX_OUTPUT_PIXELS} pixels)"
    )
    if scale is not None:
        if not (scale > 0 and np.isfinite(scale)):
            raise SadError(f"--scale must be a positive finite number, got {scale}")
    try:  # --scale 1e308 or --width 10**400 overflow a float: a size like any too large
        if scale is not None:
            width, height = round(hdr.width * scale), round(hdr.height * scale)
        elif width is not None and height is None:
            height = round(hdr.height * width / hdr.width)
        elif height is not None and width is None:
            width = round(hdr.width * height / hdr.height)
    except OverflowError:
        raise SadError(f"output size {too_large}") from None
    width = hdr.width if width is None else int(width)
    height = hdr.height if height is None else int(height)
    if width < 1 or height < 1:
        raise SadError(f"output size {width}x{height} is empty")
    if (
        width > container.MAX_SIDE
        or height > container.MAX_SIDE
        or width * height > MAX_OUTPUT_PIXELS
    ):
        shown = f"{width}x{height} " if max(width, height) < 10**12 else ""
        raise SadError(f"output size {shown}{too_large}")
    # Each culling level's slots may also take one entry per site (12 bytes).
    need = width * height * bytes_per_pixel(hdr.k, hdr.channels) + 12 * hdr.n_sites
    if need > MAX_DECODE_BYTES:
        raise SadError(
            f"output size {width}x{height} needs {need / 2**30:.1f} GiB to decode at K = "
            f"{hdr.k} (the limit is {MAX_DECODE_BYTES >> 30} GiB); decode it smaller "
            "(--scale, --width or --height)"
        )
    return width, height
