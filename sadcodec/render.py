"""Sites -> pixels: the exact top-K of every output pixel and its softmax blend, at any
resolution (the decoder's render, and the encoder's measure of what it wrote).

On the CPU a render is exact or refused: its cost (decoder.check_decode_cost) is checked
before anything is allocated, before each culling level and once the lists are known,
so a crafted file cannot make it run for minutes or take gigabytes (docs/FORMAT.md,
"Limits a reader enforces before allocating")."""

from __future__ import annotations

import numpy as np
import taichi as ti

from sadcodec.kernels import render as krender
from sadcodec.kernels import table as ktable
from sadcodec.kernels.common import TABLE_COLS

from . import decoder
from .backend import current_arch
from .topk import TopKMap, cull_tiles

# From this many output pixels on, the fused render takes its LARGE variant: each
# pixel's first K entries filled by a sorting network (kernels/tiles.py, tile_row_topk)
# and the softmax a row of pixels at a time (kernels/common.py, blend_rows). It takes
# less time per pixel but longer for a fresh process to trace and compile, which it wins
# back from about this size (docs/tuning.md, "Large outputs: sorting network and row
# blend").
LARGE_OUTPUT_PIXELS = 8_000_000
# ... and only up to this K (the encoder's): the network grows as K^2 and LLVM takes it
# ever longer to compile (a fresh cache: 6 s of CPU at K = 8, 17 s at K = 16, 150 s at
# K = 32) for ~20% less time per pixel at K = 32.
LARGE_MAX_K = 8


def drop_shadowed(params: np.ndarray, k: int) -> np.ndarray:
    """params without the sites that are in no pixel's top-K: a site whose six geometric
    parameters are bit for bit those of k sites stored before it ties them at every point
    and loses each tie (the site stored first wins), so no top-K, and no pixel, changes
    without it. Only crafted files have any (400 copies of one site at K = 32 keep 32).

    Equal positions are adjacent in a file (sites are stored in Morton order of their
    position), so only runs of more than k sites at one position are sorted: the check is
    linear, and fitted files have no such run. Sites of other orders (the encoder's) lose
    fewer, never a site that shows."""
    n = len(params)
    if n <= k:
        return params
    g = np.ascontiguousarray(params[:, :6], dtype=np.float32).view(np.uint32)
    new_run = np.ones(n, bool)
    new_run[1:] = (g[1:, 0] != g[:-1, 0]) | (g[1:, 1] != g[:-1, 1])
    starts = np.flatnonzero(new_run)
    lengths = np.diff(np.append(starts, n))
    if lengths.max() <= k:
        return params
    run = np.cumsum(new_run) - 1
    idx = np.flatnonzero((lengths > k)[run])  # the sites of long runs, in stored order
    sub, sub_run = g[idx], run[idx]
    # Group equal (run, theta, a, r, t), each group in stored order; keep its first k.
    order = np.lexsort((idx, sub[:, 5], sub[:, 4], sub[:, 3], sub[:, 2], sub_run))
    sub, sub_run = sub[order], sub_run[order]
    new_group = np.ones(len(idx), bool)
    new_group[1:] = (sub_run[1:] != sub_run[:-1]) | (sub[1:, 2:] != sub[:-1, 2:]).any(axis=1)
    pos = np.arange(len(idx))
    first = np.maximum.accumulate(np.where(new_group, pos, 0))
    keep = np.ones(n, bool)
    keep[idx[order[pos - first >= k]]] = False
    return params[keep]


class DecodeBudget:
    """The CPU render's limits, as cull_tiles asks them (topk.CullBudget), from
    decoder.check_decode_cost: the output and its sites are checked when it is made,
    before anything is allocated."""

    def __init__(self, width: int, height: int, k: int, channels: int, n_sites: int):
        self.args = (width, height, k, channels, n_sites)
        self.culled = 0
        self.held = 0
        self.seconds, self.base = self._check()

    def _check(self, scored: float | None = None) -> tuple[float, int]:
        return decoder.check_decode_cost(
            *self.args, culled=self.culled, scored=scored, extra_bytes=self.held
        )

    def cull(self, slots: int) -> None:
        self.culled += slots
        self._check()

    def fits(self, nbytes: int) -> bool:
        ok = self.base + nbytes <= decoder.decode_limits(self.args[0] * self.args[1])[1]
        if ok:
            self.held = nbytes
        return ok

    def need(self, nbytes: int) -> None:
        self.held = nbytes
        self._check()

    def score(self, scored: float) -> None:
        self.seconds, _ = self._check(scored)


def render_params(
    params: np.ndarray, src_w: int, src_h: int, out_w: int, out_h: int, k: int, seed: int = 0
) -> np.ndarray:
    """Render sites fitted on a src_w x src_h image at out_w x out_h; uint8 (H, W, C).
    SadError (on the CPU) where the render would exceed the decoder's limits."""
    on_gpu = current_arch() == "cuda"
    if not on_gpu:
        params = drop_shadowed(params, k)
    n, cols = params.shape
    c = cols - 6
    s_inv = 1.0 / max(src_w, src_h)
    sx, sy = src_w / out_w, src_h / out_h
    # The CPU finds each pixel's exact top-K from tile-culled lists and blends it at once
    # (far faster than jump flooding there, and no (H, W, K) map is stored), within the
    # budget; CUDA (the tiled path is unmeasured there) builds the map by jump flooding.
    budget = None if on_gpu else DecodeBudget(out_w, out_h, k, c, n)

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
    if budget is not None:
        tiles = cull_tiles(tab, n, s_inv, out_w, out_h, k, sx, sy, budget=budget)
        large = int(out_w * out_h >= LARGE_OUTPUT_PIXELS and k <= LARGE_MAX_K)
        krender.render_tiled(out, *tiles.lists(), tab, p, *tiles.geometry(), k, c, large)
    else:
        topk = TopKMap(out_h, out_w, k, sx=sx, sy=sy, seed=seed)
        topk.build(tab, n, s_inv)
        krender.render(topk.cur, tab, p, out, topk.sx, topk.sy, s_inv, k, c, 0)
    return out.to_numpy() if on_gpu else out
