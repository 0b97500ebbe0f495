"""Sites -> pixels: the exact top-K of every output pixel and its softmax blend, at any
resolution (the decoder's render, and the encoder's measure of what it wrote).

On the CPU a render is exact or refused: its cost (decoder.check_decode_cost) is checked
before anything is allocated, before each culling level and once the lists are known,
so a crafted file cannot make it run for minutes or take gigabytes (docs/FORMAT.md,
"Limits a reader enforces before allocating"). A region of an output is culled and
rendered alone there, at a cost that grows with the region, not the output, and gives
the same pixels as the same crop of the whole render."""

from __future__ import annotations

import numpy as np
import taichi as ti

from sadcodec.kernels import render as krender
from sadcodec.kernels import table as ktable
from sadcodec.kernels.common import TABLE_COLS

from . import decoder
from .backend import current_arch
from .topk import FINEST_TILE, LEVEL_RATIO, TopKMap, cull_tiles, tile_levels

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
    # The bits of the geometric parameters, a view (no copy) where params are float32.
    g = params[:, :6] if params.dtype == np.float32 else params[:, :6].astype(np.float32)
    g = g.view(np.uint32)
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

    def __init__(
        self,
        width: int,
        height: int,
        k: int,
        channels: int,
        n_sites: int,
        region: bool = False,
        outside: int = 0,
    ):
        """outside: bytes the render holds besides its sites' arrays (drop_shadowed's
        input, where it made a smaller copy)."""
        self.args = (width, height, k, channels, n_sites)
        self.region = region
        self.outside = outside
        self.culled = 0
        self.held = 0
        self.seconds, self.base = self._check()

    def _check(self, scored: float | None = None, estimated: bool = False) -> tuple[float, int]:
        return decoder.check_decode_cost(
            *self.args,
            culled=self.culled,
            scored=scored,
            extra_bytes=self.outside + self.held,
            region=self.region,
            estimated=estimated,
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

    def predict(self, culled: float, scored: float) -> None:
        """SadError where a prediction of the whole culling (sites bounded over tiles,
        candidates scored; probe_cost) is over the limits by decoder.PROBE_MARGIN."""
        before = self.culled
        self.culled = max(before, culled)
        try:
            self._check(scored, estimated=True)
        finally:
            self.culled = before


def region_levels(w: int, h: int) -> tuple[int, ...]:
    """Culling levels of a w x h region of an output: topk.tile_levels' under one tile over
    the whole region. Most sites of a large output are far from a small region, and that
    tile sheds them, each site bounded once instead of over up to 16 tiles (a 512x512
    region of a 25 MP file, 559k sites: 0.15 s of CPU time warm, 0.34 s with 16 root
    tiles)."""
    sizes = tile_levels(w, h)
    top = sizes[0]
    while top < max(w, h):
        top *= LEVEL_RATIO
    return sizes if top == sizes[0] else (top, *sizes)


# The probe (probe_cost): windows of PROBE_SIDE x PROBE_SIDE output pixels on a
# PROBE_GRID x PROBE_GRID grid, culled alone before the whole map is; it runs where its
# modelled cost is at most PROBE_SHARE of the decode's least (so an ordinary decode is not
# slowed) and each side of the map is at least PROBE_SPREAD times the grid's.
PROBE_SIDE = 64
PROBE_GRID = 4
PROBE_SHARE = 0.05
PROBE_SPREAD = 2


class _Tally:
    """A cull_tiles budget that refuses nothing and keeps what each level bounded and what
    the pixels would score."""

    def __init__(self) -> None:
        self.levels: list[int] = []
        self.scored = 0.0

    def cull(self, slots: int) -> None:
        self.levels.append(slots)

    def fits(self, nbytes: int) -> bool:
        return True

    def need(self, nbytes: int) -> None:
        pass

    def score(self, scored: float) -> None:
        self.scored += scored


def probe_cost(
    budget: DecodeBudget,
    tab: np.ndarray,
    n: int,
    s_inv: float,
    w: int,
    h: int,
    k: int,
    sx: float,
    sy: float,
    origin: tuple[int, int],
) -> bool:
    """Predict the culling of a w x h map from a sample and refuse (SadError, through the
    budget) a decode whose prediction is over the limits by decoder.PROBE_MARGIN, before
    the whole map is culled: a file whose sites stay in long lists everywhere (issue 24's
    ramp of radii) is refused in a fraction of the time its culling would take.

    Each window is culled exactly (tile culling over a region, as a region decode does);
    the prediction takes its scored candidates and the sites its finer levels bounded per
    pixel, times the map's pixels, plus every site over each root tile. Returns whether
    it ran (it does only where cheap: PROBE_SHARE, PROBE_SPREAD)."""
    side = PROBE_SIDE
    if min(w, h) < PROBE_SPREAD * PROBE_GRID * side:
        return False
    units = PROBE_GRID**2 * n * decoder.root_tiles(side, side)
    a, b = decoder.COST_CULL_NS
    if 1e-9 * (a + b * k) * units / decoder.COST_CORES > PROBE_SHARE * budget.seconds:
        return False
    tally = _Tally()
    step = FINEST_TILE  # windows on the map's finest tiles
    for i in range(PROBE_GRID):
        for j in range(PROBE_GRID):
            x = (w * (2 * i + 1) // (2 * PROBE_GRID) - side // 2) // step * step
            y = (h * (2 * j + 1) // (2 * PROBE_GRID) - side // 2) // step * step
            at = (origin[0] + x, origin[1] + y)
            before = len(tally.levels)
            cull_tiles(tab, n, s_inv, side, side, k, sx, sy, budget=tally, origin=at)
            del tally.levels[before]  # the window's root level: every site, not a sample
    per_pixel = w * h / (PROBE_GRID**2 * side * side)
    culled = n * decoder.root_tiles(w, h, budget.region) + sum(tally.levels) * per_pixel
    budget.predict(culled, tally.scored * per_pixel)
    return True


def render_params(
    params: np.ndarray,
    src_w: int,
    src_h: int,
    out_w: int,
    out_h: int,
    k: int,
    seed: int = 0,
    region: tuple[int, int, int, int] | None = None,
) -> np.ndarray:
    """Render sites fitted on a src_w x src_h image at out_w x out_h; uint8 (H, W, C).
    With region (x, y, w, h) inside that output, only those pixels: uint8 (h, w, C),
    identical to the same crop of the whole render. SadError (on the CPU) where the
    render would exceed the decoder's limits."""
    on_gpu = current_arch() == "cuda"
    if on_gpu and region is not None:
        # Jump flooding's map is approximate and depends on the whole map, so a region
        # cut from anything but the whole render could differ from it.
        x, y, w, h = region
        whole = render_params(params, src_w, src_h, out_w, out_h, k, seed)
        return whole[y : y + h, x : x + w].copy()
    given = params
    if not on_gpu:
        params = drop_shadowed(params, k)
    n, cols = params.shape
    c = cols - 6
    s_inv = 1.0 / max(src_w, src_h)
    sx, sy = src_w / out_w, src_h / out_h
    # Tile culling is exact, so its lists over a region give each pixel the sites the
    # whole render gives it: the region is culled and scored alone, its pixels at their
    # place in the output (kernels/tiles.py, _tile_rect).
    x0, y0, map_w, map_h = (0, 0, out_w, out_h) if region is None else region
    # The CPU finds each pixel's exact top-K from tile-culled lists and blends it at once
    # (far faster than jump flooding there, and no (H, W, K) map is stored), within the
    # budget; CUDA (the tiled path is unmeasured there) builds the map by jump flooding.
    outside = 0 if params is given else given.nbytes
    budget = None if on_gpu else DecodeBudget(map_w, map_h, k, c, n, region is not None, outside)

    def array(shape: tuple, dtype, kind):
        # On the CPU Taichi works on numpy arrays in place (a fresh process then loads no
        # conversion kernels); a GPU needs its own buffers.
        return ti.ndarray(kind, shape=shape) if on_gpu else np.empty(shape, dtype)

    if on_gpu:
        p = array((n, cols), np.float32, ti.f32)
        p.from_numpy(np.ascontiguousarray(params, dtype=np.float32))
    else:  # read in place (no copy: the kernels do not write it)
        p = np.ascontiguousarray(params, dtype=np.float32)
    tab = array((n, TABLE_COLS), np.float32, ti.f32)
    ktable.prepare(p, tab, n)
    out = array((map_h, map_w, c), np.uint8, ti.u8)
    if budget is not None:
        probe_cost(budget, tab, n, s_inv, map_w, map_h, k, sx, sy, (x0, y0))
        sizes = region_levels(map_w, map_h) if region is not None else None
        tiles = cull_tiles(
            tab, n, s_inv, map_w, map_h, k, sx, sy, sizes, budget=budget, origin=(x0, y0)
        )
        # Chosen by the whole output's size, a region's too: the variants' colours may
        # differ by float rounding (kernels/common.py, blend_rows).
        large = int(out_w * out_h >= LARGE_OUTPUT_PIXELS and k <= LARGE_MAX_K)
        krender.render_tiled(out, *tiles.lists(), tab, p, *tiles.geometry(), k, c, large)
    else:
        topk = TopKMap(out_h, out_w, k, sx=sx, sy=sy, seed=seed)
        topk.build(tab, n, s_inv)
        krender.render(topk.cur, tab, p, out, topk.sx, topk.sy, s_inv, k, c, 0)
    return out.to_numpy() if on_gpu else out
