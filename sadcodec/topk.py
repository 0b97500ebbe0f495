"""The per-pixel top-K candidate map and how it is built and kept fresh."""

from __future__ import annotations

import math

import numpy as np
import taichi as ti

from kernels import topk as k_topk


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
        self.nxt = ti.ndarray(ti.i32, shape=(self.height, self.width, self.k))
        self.seed = int(seed) & 0xFFFFFFFF
        self.passes = 0

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
        self.cur, self.nxt = self.nxt, self.cur
        self.passes += 1

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

        No random injection here: on Kodak files it made the built map less exact (recall
        0.996-0.998 against brute force, vs 1.00000 without) and the build 1.4x slower;
        it stays in ``refresh``, where sites move (bench/results/topk-recall-kodak.md)."""
        k_topk.clear(self.cur)
        self.reseed(tab, 0, n)
        if first_step is None:
            first_step = 2 ** math.ceil(math.log2(max(self.width, self.height, 2))) // 2
        step = int(first_step)
        while step >= 1:
            self._pass(tab, n, s_inv, step, stencil, inject)
            step //= 2
        for _ in range(extra_passes):
            self._pass(tab, n, s_inv, 1, stencil, inject)

    def exact(self, tab, n: int, s_inv: float) -> None:
        """The brute-force top-K (all sites scored at every pixel): a reference only."""
        k_topk.brute_force(self.cur, tab, n, self.sx, self.sy, s_inv, self.k)

    def reseed(self, tab, first: int, n: int) -> None:
        """Put sites [first, n) into the pixels containing them (new sites after densify)."""
        k_topk.seed_sites(self.cur, tab, first, n, self.sx, self.sy)

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

    def to_numpy(self) -> np.ndarray:
        return self.cur.to_numpy()
