"""Sites -> pixels: the exact top-K of every output pixel and its softmax blend, at any
resolution (the decoder's render, and the encoder's measure of what it wrote)."""

from __future__ import annotations

import numpy as np
import taichi as ti

from sadcodec.kernels import render as krender
from sadcodec.kernels import table as ktable
from sadcodec.kernels.common import TABLE_COLS

from .backend import current_arch
from .topk import TopKMap, cull_tiles

# From this many output pixels on, the fused render takes its LARGE variant: each
# pixel's first K entries filled by a sorting network (kernels/tiles.py, tile_row_topk)
# and the softmax a row of pixels at a time (kernels/common.py, blend_rows). It takes
# less time per pixel but longer for a fresh process to trace and compile, which it wins
# back from about this size (docs/tuning.md, "Large outputs: sorting network and row
# blend").
LARGE_OUTPUT_PIXELS = 8_000_000


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
    # (far faster than jump flooding there, and no (H, W, K) map is stored). CUDA (the
    # tiled path is unmeasured there), or a file whose sites defeat culling, builds the map
    # by jump flooding.
    tiles = None if on_gpu else cull_tiles(tab, n, s_inv, out_w, out_h, k, sx, sy)
    if tiles is not None:
        large = int(out_w * out_h >= LARGE_OUTPUT_PIXELS)
        krender.render_tiled(out, *tiles.lists(), tab, p, *tiles.geometry(), k, c, large)
    else:
        topk = TopKMap(out_h, out_w, k, sx=sx, sy=sy, seed=seed)
        topk.build(tab, n, s_inv)
        krender.render(topk.cur, tab, p, out, topk.sx, topk.sy, s_inv, k, c, 0)
    return out.to_numpy() if on_gpu else out
