"""The per-pixel top-K candidate map and how it is built and kept fresh."""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Protocol

import numpy as np
import taichi as ti

from sadcodec.kernels import tiles as k_tiles
from sadcodec.kernels import topk as k_topk

# The culling levels: tiles of 8 pixels, then levels LEVEL_RATIO times coarser up to one
# with at most ROOT_TILES tiles. The root level tests every site against each of its
# tiles, so it must stay small as images grow; the last level leaves each pixel a short
# list. A level tests each of its parent's sites ratio^2 times, so halving the side per
# level (4 children) culls for less than quartering it (16 children) despite the extra
# levels (docs/tuning.md, "Culling levels"); the lists are the same either way.
FINEST_TILE = 8
LEVEL_RATIO = 2
ROOT_TILES = 16
# A crafted file could make every tile keep every site: a level may keep at most this
# many entries per map pixel (fitted files keep well under one) before the fit's build
# falls back to jump flooding, so its lists never outgrow the map itself. (The decoder
# has no such cap: its budget, render.DecodeBudget, bounds the lists' time and memory.)
MAX_TILE_ENTRIES_PER_PIXEL = 2
# One-launch culling gives each tile a slot as long as its parent's list; the fit uses it
# while the slots of a level total at most this many entries (8 bytes each) per map pixel
# plus the site count, else the level is counted and filled in two launches; fitted files
# fit in one (docs/tuning.md, "Culling levels"), and 64 bytes a pixel is less than an
# (H, W, K) map. (The decoder uses it wherever its budget's memory allows.)
CULL_SLOTS_PER_PIXEL = 8
# Taichi's CPU scheduler gives each thread at least this many loop iterations at a time;
# culling levels are padded out to this many tasks (4 per thread of a 16-thread CPU).
CPU_TASK_CHUNK = 512
CULL_TASKS = 64


def tile_levels(w: int, h: int) -> tuple[int, ...]:
    """Tile sides of the culling levels, coarse to fine (Kodak: 256, 128, 64, 32, 16, 8)."""
    sizes = [FINEST_TILE]
    while -(-w // sizes[-1]) * -(-h // sizes[-1]) > ROOT_TILES:
        sizes.append(sizes[-1] * LEVEL_RATIO)
    return tuple(reversed(sizes))


def cull_pad(tiles: int) -> int:
    """Iterations per tile in tile_cull's loop: enough for CULL_TASKS tasks of Taichi's
    512-iteration CPU chunks, so every level of culling is spread over the threads."""
    return max(1, min(CPU_TASK_CHUNK, -(-CULL_TASKS * CPU_TASK_CHUNK // max(tiles, 1))))


def _tile_areas(w: int, h: int, size: int) -> np.ndarray:
    """Pixels in each tile of side size, row-major like the kernels' tile index."""
    cw = np.minimum(np.arange(0, w, size) + size, w) - np.arange(0, w, size)
    ch = np.minimum(np.arange(0, h, size) + size, h) - np.arange(0, h, size)
    return (ch[:, None] * cw[None, :]).ravel().astype(np.float64)


@dataclass
class TileLists:
    """Each finest tile's surviving sites, best upper bound first (cull_tiles)."""

    lst: np.ndarray  # int32 site indices
    ub: np.ndarray  # float32 their logit upper bounds over the tile
    off: np.ndarray  # int64 first entry of each tile
    cnt: np.ndarray  # int32 entries of each tile
    size: int  # tile side, in map pixels
    cols: int  # tiles per row
    sx: float
    sy: float
    s_inv: float
    origin: tuple[int, int] = (0, 0)  # the output pixel of map pixel (0, 0)

    def lists(self) -> tuple:
        return self.lst, self.ub, self.off, self.cnt

    def geometry(self) -> tuple:
        """The scoring kernels' arguments after the lists (tile_topk, render_tiled), padded
        for their work items: each tile row in pieces of up to k_tiles.ROW pixels."""
        rows = -(-int(self.cnt.shape[0]) // self.cols)
        items = self.cols * rows * self.size * -(-self.size // k_tiles.ROW)
        ox, oy = self.origin
        return self.size, self.cols, ox, oy, self.sx, self.sy, self.s_inv, cull_pad(items)


class CullBudget(Protocol):
    """What cull_tiles asks of a decoder's budget (sadcodec/render.py); each method may
    raise (SadError) where the decode would exceed the budget's limits."""

    def cull(self, slots: int) -> None:
        """A level is about to bound this many (site, tile) pairs."""

    def fits(self, nbytes: int) -> bool:
        """Whether culling arrays of nbytes fit the memory limit."""

    def need(self, nbytes: int) -> None:
        """As fits, but raise where they do not."""

    def score(self, scored: float) -> None:
        """The pixels may score this many candidates (entries times their tiles' pixels)."""


def cull_tiles(
    tab,
    n: int,
    s_inv: float,
    w: int,
    h: int,
    k: int,
    sx: float = 1.0,
    sy: float = 1.0,
    sizes: tuple[int, ...] | None = None,
    budget: CullBudget | None = None,
    origin: tuple[int, int] = (0, 0),
) -> TileLists | None:
    """Cull the sites tile by tile for a w x h map (kernels/tiles.py explains the bounds):
    levels of tiles coarse to fine, each keeping of its parent's sites those that can be
    in the top-K of one of its pixels. None when culling fails (sites whose bounds overlap
    everywhere, as in a crafted file) and scoring the survivors would cost more than
    jump flooding; the caller then builds a map by jump flooding.

    With a budget (the decoder's) it never returns None: the lists may grow as long as
    the budget allows (it raises beyond), each level is charged before it runs, a level
    whose one-launch slots would not fit the budget's memory counts first, and the
    scoring work is charged at the end. The lists are the same either way.

    origin: the map is the w x h region of a larger output from this pixel on (a region
    decode): its pixel (x, y) is the output's (x + origin[0], y + origin[1])."""
    sizes = tile_levels(w, h) if sizes is None else sizes
    # Plain numpy arrays as kernel arguments: on the CPU Taichi reads and writes them in
    # place, so no from_numpy/to_numpy kernels need loading in a fresh process.
    lst = np.arange(max(n, 1), dtype=np.int32)
    off = np.zeros(1, np.int64)
    cnt = np.array([n], np.int32)
    parent_size, parent_cols = 1 << 30, 1
    dummy_ub = np.zeros(1, np.float32)
    ub = dummy_ub
    counts = np.array([n], np.int64)
    for level, size in enumerate(sizes):
        last = level == len(sizes) - 1
        cols, rows = -(-w // size), -(-h // size)
        new_cnt = np.zeros(cols * rows, np.int32)
        ratio = max(parent_size // size, 1)
        geom = (cols, rows, size, ratio, parent_cols, w, h, *origin, sx, sy, s_inv)
        pad = cull_pad(cols * rows)
        # Each tile gets a slot of its parent's length and culls in one launch where
        # those slots fit (the fit: CULL_SLOTS_PER_PIXEL; the decoder: its budget's
        # memory); else count, then fill at the exclusive prefix sums. The last level
        # keeps each site's bound too, sorted, for the per-pixel early stop.
        tx, ty = np.meshgrid(np.arange(cols), np.arange(rows))
        slots = counts[((ty // ratio) * parent_cols + tx // ratio).ravel()]
        n_slots = int(slots.sum())
        once = n_slots <= CULL_SLOTS_PER_PIXEL * w * h + n
        # Held while the level runs: the parent's lists, its tiles' and this level's.
        held = lst.nbytes + off.nbytes + cnt.nbytes + 20 * cols * rows
        if budget is not None:
            # One launch bounds each site once, vectorised over 2x2 tiles: many times
            # faster than two (2^22 random sites on a 181x181 map: its levels in 1.7 s
            # against 25 s, under load), so the decoder takes it wherever its memory
            # limit allows.
            once = budget.fits(held + 8 * max(n_slots, 1))
            budget.cull(n_slots if once else 2 * n_slots)  # two launches read it twice
        if once:
            new_off = np.concatenate(([0], np.cumsum(slots)[:-1])).astype(np.int64)
            ub = None  # the parent's bounds are not read: free them before allocating
            new_lst = np.empty(max(n_slots, 1), np.int32)
            ub = np.empty(new_lst.shape, np.float32)
            k_tiles.tile_cull_once(
                lst, off, cnt, new_cnt, new_off, new_lst, ub, tab, *geom, int(last), pad, k
            )
            counts = new_cnt.astype(np.int64)
            if budget is None and int(counts.sum()) > max(MAX_TILE_ENTRIES_PER_PIXEL * w * h, n):
                return None
        else:
            ub = None  # the parent's bounds are not read: free them first
            thr = np.empty(cols * rows, np.float32)
            new_off = np.zeros(cols * rows, np.int64)
            k_tiles.tile_cull(
                lst, off, cnt, thr, new_cnt, new_off, lst, dummy_ub, tab, *geom, 0, 0, pad, k
            )
            counts = new_cnt.astype(np.int64)
            total = int(counts.sum())
            if budget is not None:
                budget.need(held + (8 if last else 4) * max(total, 1))
            elif total > max(MAX_TILE_ENTRIES_PER_PIXEL * w * h, n):
                return None
            new_off = np.concatenate(([0], np.cumsum(counts)[:-1])).astype(np.int64)
            new_lst = np.empty(max(total, 1), np.int32)
            ub = np.empty(max(total, 1), np.float32) if last else dummy_ub
            k_tiles.tile_cull(
                lst, off, cnt, thr, new_cnt, new_off, new_lst, ub, tab, *geom, 1, int(last), pad, k
            )
        lst, off, cnt = new_lst, new_off, new_cnt
        parent_size, parent_cols = size, cols
    # The pixels' scoring work: the budget's to judge, or against jump flooding's (9
    # cells x K candidates per pass).
    area = _tile_areas(w, h, parent_size)
    scored = float((counts * area).sum())
    passes = math.ceil(math.log2(max(w, h, 2))) + 1
    if budget is not None:
        budget.score(scored)
    elif scored > 9.0 * k * passes * w * h:
        return None
    # Lists too long to have been kept sorted as they grew (kernels/tiles.py).
    if len(sizes) and int(cnt.max(initial=0)) > k_tiles.INSERTION_SORT_MAX:
        k_tiles.rank_long_lists(lst, ub, off, cnt, cull_pad(cnt.shape[0]))
    return TileLists(lst, ub, off, cnt, parent_size, parent_cols, sx, sy, s_inv, tuple(origin))


class TopKMap:
    """A double-buffered (H, W, K) map of site indices, best logit first.

    ``sx, sy`` map a map pixel to fitted-image coordinates, so a decoder can build the map
    at any output resolution. Each pass draws its injected sites from (seed, pass number),
    which keeps runs reproducible.
    """

    def __init__(
        self, height: int, width: int, k: int, sx: float = 1.0, sy: float = 1.0, seed: int = 0
    ):
        self.height, self.width, self.k = int(height), int(width), int(k)
        self.sx, self.sy = float(sx), float(sy)
        self.cur = ti.ndarray(ti.i32, shape=(self.height, self.width, self.k))
        self._nxt = None  # the second buffer, allocated by the first jump-flooding pass
        # A copy with each site kept in its left neighbour's slot (stable()), remade on
        # demand after the map changes (every method that writes the map bumps version).
        self.version = 0
        self._stable = None
        self._stable_version = -1

        self.seed = int(seed) & 0xFFFFFFFF
        self.passes = 0

    @property
    def nxt(self):
        if self._nxt is None:
            self._nxt = ti.ndarray(ti.i32, shape=(self.height, self.width, self.k))
        return self._nxt

    def _pass(self, tab, n: int, s_inv: float, step: int, stencil: int, inject: int) -> None:
        pass_seed = (self.seed * 0x9E3779B1 + self.passes * 0x85EBCA77 + 1) & 0xFFFFFFFF
        k_topk.propagate(
            self.cur,
            self.nxt,
            tab,
            n,
            step,
            self.sx,
            self.sy,
            s_inv,
            inject,
            pass_seed,
            stencil,
            self.k,
        )
        self.cur, self._nxt = self.nxt, self.cur
        self.passes += 1
        self.version += 1

    def build(
        self,
        tab,
        n: int,
        s_inv: float,
        extra_passes: int = 1,
        stencil: int = 8,
        inject: int = 0,
        first_step: int | None = None,
    ) -> None:
        """Build from scratch: seed, halving jump steps, then extra step-1 passes (JFA+).

        No random injection here: it made the built map less exact and the build slower;
        it stays in ``refresh``, where sites move (docs/tuning.md, "Random injection in
        the top-K map")."""
        k_topk.clear(self.cur)
        self.version += 1
        self.reseed(tab, 0, n)
        if first_step is None:
            first_step = 2 ** math.ceil(math.log2(max(self.width, self.height, 2))) // 2
        step = int(first_step)
        while step >= 1:
            self._pass(tab, n, s_inv, step, stencil, inject)
            step //= 2
        for _ in range(extra_passes):
            self._pass(tab, n, s_inv, 1, stencil, inject)

    def build_tiled(self, tab, n: int, s_inv: float, sizes=None) -> bool:
        """Build the exact top-K by culling sites tile by tile (cull_tiles); the CPU's
        build at the start of a fit and after densify/prune. Returns False, leaving the
        map untouched, where cull_tiles declines."""
        tiles = cull_tiles(tab, n, s_inv, self.width, self.height, self.k, self.sx, self.sy, sizes)
        if tiles is None:
            return False
        k_tiles.tile_topk(self.cur, *tiles.lists(), tab, *tiles.geometry(), self.k)
        self.version += 1
        return True

    def exact(self, tab, n: int, s_inv: float) -> None:
        """The brute-force top-K (all sites scored at every pixel): a reference only."""
        k_topk.brute_force(self.cur, tab, n, self.sx, self.sy, s_inv, self.k)
        self.version += 1

    def reseed(self, tab, first: int, n: int) -> None:
        """Put sites [first, n) into the pixels containing them (new sites after densify)."""
        k_topk.seed_sites(self.cur, tab, first, n, self.sx, self.sy)
        self.version += 1

    def refresh(
        self, tab, n: int, s_inv: float, steps=(1,), stencil: int = 4, inject: int = 4
    ) -> None:
        """Cheap maintenance while fitting: a few passes at small steps."""
        for step in steps:
            self._pass(tab, n, s_inv, int(step), stencil, inject)

    def remap(self, new_index: np.ndarray) -> None:
        """Renumber after sites were removed or reordered (-1 drops a site)."""
        arr = ti.ndarray(ti.i32, shape=(len(new_index),))
        arr.from_numpy(np.ascontiguousarray(new_index, dtype=np.int32))
        k_topk.remap(self.cur, arr)
        self.version += 1

    def stable(self, bands: int):
        """The map with each pixel's sites reordered to keep their left neighbour's slots
        (kernels.topk.stable_slots): the same sets, for the CPU gradient kernels. Cached
        until the map changes; the map itself stays sorted by logit (propagation needs it)."""
        if self._stable is None:
            # A numpy array: kernels on the CPU write and read it in place, and the colour
            # phase's normal equations (sadcodec.colour_ls) read it without a copy.
            self._stable = np.empty((self.height, self.width, self.k), np.int32)
        if self._stable_version != self.version:
            k_topk.stable_slots(self.cur, self._stable, min(bands, self.height), self.k)
            self._stable_version = self.version
        return self._stable

    def to_numpy(self) -> np.ndarray:
        return self.cur.to_numpy()
