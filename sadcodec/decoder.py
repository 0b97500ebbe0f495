""".sad bytes -> image array: parse and validate the file, then render its sites
(sadcodec.render) at the stored size or another."""

from __future__ import annotations

import numpy as np

from . import bitstream, container
from .errors import RegionError, SadError, SadFormatError
from .quantize import dequantize
from .topk import CULL_SLOTS_PER_PIXEL, tile_levels

MAX_OUTPUT_PIXELS = 1 << 28
# Working memory of one decode (bytes_per_pixel times the output's pixels). Refusing
# beyond it turns a huge declared size into a clear error instead of a failed allocation,
# which crashes the process inside Taichi.
MAX_DECODE_BYTES = 4 << 30


def parse(data: bytes) -> tuple[container.Header, np.ndarray]:
    """Validate a file and return its header and dequantized params (N, 6 + C), float32.

    The sites are decoded and dequantized a chunk at a time (bitstream.iter_sites) into
    the params, so the parse holds the params, the decompressed planes (8 + C bytes a
    site) and one chunk's fields at most: PARSE_BYTES_PER_SITE (docs/FORMAT.md)."""
    hdr, payload = container.read(data)
    spec = hdr.spec
    flags, planes = bitstream.decode_planes(payload, hdr.n_sites, hdr.channels)
    params = np.empty((hdr.n_sites, 6 + hdr.channels), dtype=np.float32)
    names = ("x", "y", "theta", "a", "r", "t", "col")
    top = dict.fromkeys(names, 0)
    for start, q in bitstream.iter_sites(flags, planes, hdr.channels, spec.col_bits):
        params[start : start + len(q["x"])] = dequantize(q, spec)
        for name in names:
            top[name] = max(top[name], int(q[name].max(initial=0)))
    del planes
    scale = 1 << spec.pos_frac_bits
    checks = (
        ("positions", top["x"] < hdr.width * scale and top["y"] < hdr.height * scale),
        ("directions", top["theta"] < (1 << spec.theta_bits)),
        ("anisotropy", top["a"] < (1 << spec.a_bits)),
        ("radii", top["r"] < (1 << spec.r_bits)),
        ("temperatures", top["t"] < (1 << spec.t_bits)),
        ("colours", top["col"] < (1 << spec.col_bits)),
    )
    for name, ok in checks:
        if not ok:
            raise SadFormatError(f"corrupt file: site {name} out of range")
    return hdr, params


def bytes_per_pixel(k: int, channels: int) -> int:
    """Decoder memory per output pixel, whichever path runs: jump flooding's two (H, W, K)
    int32 maps plus the output (CUDA), or tile culling at the fit's one-launch limits (a
    level's slots, index and bound, CULL_SLOTS_PER_PIXEL a pixel; the slot array of
    indices its parent was culled into, as long; the output), plus ~1 byte of per-tile
    arrays: output_size's bound from the header alone. The CPU decoder holds its arrays
    under the decode limits' memory as it culls (check_decode_cost), which binds first:
    it culls a level in one launch wherever its slots fit them, else counts its survivors
    first. Kodak files need far less: slots are written only for possible survivors."""
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
# Each site, before culling: parse and dequantize (numpy, one thread), the shadowed-copy
# check and the site table: 200-400 ns of CPU time a site measured on 2^22 random sites
# and on a photo's 67k, under load; counted twice, as it runs on one core of the two.
COST_SITE_NS = (800.0, 0.0)
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
# A prediction of the culled lists' cost from a sample of the output (render.probe_cost)
# refuses a decode before its culling only where it is over the time limit by this
# factor: the sample's error is well under it (docs/robustness.md), and a decode it lets
# through is still checked as it culls.
PROBE_MARGIN = 1.5


def site_bytes(channels: int) -> int:
    """Peak decoder memory per site, besides the output and the culling lists: its float32
    params (6 + C) and table row (8, kernels/common.py) while it renders, or its params
    and decompressed planes (8 + C bytes) and a chunk's fields while it is parsed (parse),
    rounded up to cover the parse's chunk and the shadowed-copy check (drop_shadowed)."""
    return 4 * (6 + channels) + 4 * 8 + 12


def root_tiles(width: int, height: int, region: bool = False) -> int:
    """Tiles of the first culling level of a width x height map, each of which bounds
    every site (topk.tile_levels): one for a region (render.region_levels)."""
    if region:
        return 1
    size = tile_levels(width, height)[0]
    return -(-width // size) * -(-height // size)


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
    region: bool = False,
    estimated: bool = False,
) -> tuple[float, int]:
    """Model an exact CPU decode at width x height (with region, of a region that size of
    a larger output: the same work); SadError if it exceeds the limits.

    culled: sites bounded over tiles so far (at least every site over each tile of the
    root level: the least is counted before culling starts); scored: candidates the
    pixels may score (the culled lists' entries times their tiles' pixels), or None while
    culling is not done, then the least possible, K a pixel; extra_bytes: the culling
    arrays live besides the output and the site tables; estimated: culled and scored are
    a prediction (render.probe_cost), which refuses only beyond PROBE_MARGIN times the
    time limit. Returns (seconds, bytes). Deterministic, so a file decodes or is refused
    alike on every machine."""
    pixels = width * height
    least = scored is None
    if least:
        scored = min(k, n_sites) * pixels
    culled = max(culled, n_sites * root_tiles(width, height, region))

    def ns(cost: tuple[float, float], units: float) -> float:
        return (cost[0] + cost[1] * k) * units

    work = ns(COST_PIXEL_NS, pixels) + ns(COST_SCORE_NS, scored) + ns(COST_CULL_NS, culled)
    work += ns(COST_SITE_NS, n_sites)
    seconds = 1e-9 * work / COST_CORES
    memory = pixels * channels + site_bytes(channels) * n_sites + int(extra_bytes)
    max_seconds, max_memory = decode_limits(pixels)
    if seconds > (PROBE_MARGIN if estimated else 1.0) * max_seconds or memory > max_memory:
        about = "an estimated" if estimated else "at least" if least else "about"
        shown = f"{seconds:.1f}" if seconds < 100 else f"{seconds:.0f}"
        at = f"a {width}x{height} region" if region else f"at {width}x{height}"
        smaller = "a smaller region, " if region else ""
        raise SadError(
            f"this file needs {about} {memory / 1e9:.1f} GB and {shown} s to decode {at} "
            f"(limits {max_memory / 1e9:.3g} GB, {max_seconds:.3g} s on {COST_CORES} CPU "
            f"cores); decode it smaller ({smaller}--scale, --width or --height)"
        )
    return seconds, memory


Region = tuple[int, int, int, int]


def check_region(region: Region, width: int, height: int) -> Region:
    """region (x, y, w, h), integers, as a tuple: RegionError unless it is a non-empty
    rectangle inside the width x height output."""
    x, y, w, h = (int(v) for v in region)
    shown = f"{x},{y},{w},{h}"
    if w < 1 or h < 1:
        raise RegionError(f"region {shown} is empty (its width and height must be at least 1)")
    if x < 0 or y < 0 or x + w > width or y + h > height:
        raise RegionError(
            f"region {shown} is not inside the {width}x{height} output "
            f"(x + width <= {width}, y + height <= {height}, x and y >= 0)"
        )
    return x, y, w, h


def output_size(
    hdr: container.Header,
    width: int | None,
    height: int | None,
    scale: float | None,
    region: Region | None = None,
) -> tuple[int, int]:
    """Output dimensions: as stored, scaled, or given (one side keeps the aspect ratio).

    With a region (x, y, w, h) of that output (check_region), only the region is
    rendered: the pixel and memory limits apply to it, the side limit to the output."""
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
    if width > container.MAX_SIDE or height > container.MAX_SIDE:
        shown = f"{width}x{height} " if max(width, height) < 10**12 else ""
        raise SadError(f"output size {shown}{too_large}")
    what, area_w, area_h, smaller = "output size", width, height, "--scale, --width or --height"
    if region is not None:
        area_w, area_h = check_region(region, width, height)[2:]
        what, smaller = "region", "a smaller region, --scale, --width or --height"
    if area_w * area_h > MAX_OUTPUT_PIXELS:
        raise SadError(f"{what} {area_w}x{area_h} {too_large}")
    need = area_w * area_h * bytes_per_pixel(hdr.k, hdr.channels)
    need += site_bytes(hdr.channels) * hdr.n_sites
    if need > MAX_DECODE_BYTES:
        raise SadError(
            f"{what} {area_w}x{area_h} needs {need / 2**30:.1f} GiB to decode at K = "
            f"{hdr.k} (the limit is {MAX_DECODE_BYTES >> 30} GiB); decode it smaller "
            f"({smaller})"
        )
    return width, height
