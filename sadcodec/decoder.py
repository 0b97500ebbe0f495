""".sad bytes -> image array: parse, validate, rebuild the top-K map, render."""

from __future__ import annotations

import numpy as np
import taichi as ti

from kernels import render as krender
from kernels import table as ktable
from kernels.common import TABLE_COLS

from . import bitstream, container
from .backend import current_arch
from .errors import SadError, SadFormatError
from .quantize import dequantize
from .topk import CULL_SLOTS_PER_PIXEL, TopKMap, cull_tiles

MAX_OUTPUT_PIXELS = 1 << 28
# Working memory of one decode (bytes_per_pixel times the output's pixels). Refusing
# beyond it turns a huge declared size into a clear error instead of a failed allocation,
# which crashes the process inside Taichi.
MAX_DECODE_BYTES = 4 << 30
# From this many output pixels on, the fused render takes its LARGE variant: each
# pixel's first K entries filled by a sorting network (kernels/topk.py, tile_row_topk)
# and the softmax a row of pixels at a time (kernels/common.py, blend_rows). It takes
# less time per pixel (24 MP mosaic render 2.27 -> 1.87 s) but ~0.18 s more for a fresh
# process to trace and compile (1 MP: 0.97 vs 0.80 s), won back from about 8 MP
# (docs/speed.md).
LARGE_OUTPUT_PIXELS = 8_000_000


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


def render_params(
    params: np.ndarray, src_w: int, src_h: int, out_w: int, out_h: int, k: int, seed: int = 0
) -> np.ndarray:
    """Render sites fitted on a src_w x src_h image at out_w x out_h; uint8 (H, W, C)."""
    n, cols = params.shape
    c = cols - 6
    s_inv = 1.0 / max(src_w, src_h)
    sx, sy = src_w / out_w, src_h / out_h
    on_gpu = current_arch() == "cuda"

    def array(shape: tuple, dtype, kind):
        # On the CPU Taichi works on numpy arrays in place (a fresh process then loads no
        # conversion kernels); a GPU needs its own buffers.
        return ti.ndarray(kind, shape=shape) if on_gpu else np.empty(shape, dtype)

    p = array((n, cols), np.float32, ti.f32)
    if on_gpu:
        p.from_numpy(np.ascontiguousarray(params, dtype=np.float32))
    else:
        p[:] = params
    tab = array((n, TABLE_COLS), np.float32, ti.f32)
    ktable.prepare(p, tab, n)
    out = array((out_h, out_w, c), np.uint8, ti.u8)
    # The CPU finds each pixel's exact top-K from tile-culled lists and blends it at once
    # (about 8x faster than jump flooding on Kodak files, and no (H, W, K) map is stored).
    # CUDA (7 ms on an H100; the tiled path is unmeasured there), or a file whose sites
    # defeat culling, builds the map by jump flooding.
    tiles = None if on_gpu else cull_tiles(tab, n, s_inv, out_w, out_h, k, sx, sy)
    if tiles is not None:
        large = int(out_w * out_h >= LARGE_OUTPUT_PIXELS)
        krender.render_tiled(out, *tiles.lists(), tab, p, *tiles.geometry(), k, c, large)
    else:
        topk = TopKMap(out_h, out_w, k, sx=sx, sy=sy, seed=seed)
        topk.build(tab, n, s_inv)
        krender.render(topk.cur, tab, p, out, topk.sx, topk.sy, s_inv, k, c, 0)
    return out.to_numpy() if on_gpu else out
