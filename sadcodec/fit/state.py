"""A fit's device state and one optimisation step.

``Fitter`` owns the Taichi buffers for one image (the sites, Adam's moments, the per-site
table, the top-K map) and takes one Adam step at a time; the schedule that drives it is
``sadcodec.fit.schedule`` and the CPU/GPU differences live in ``sadcodec.fit.paths``.
"""

from __future__ import annotations

import math
import time

import numpy as np
import taichi as ti

from sadcodec.kernels import colour as kcolour
from sadcodec.kernels import optim as koptim
from sadcodec.kernels import quant as kquant
from sadcodec.kernels import table as ktable
from sadcodec.kernels.common import STAT_SCALE, TABLE_COLS

from .. import quantize
from ..topk import TopKMap
from .config import GEOMETRY, FitConfig
from .hooks import FitHooks
from .paths import choose_path

ADAM_B1 = 0.9
ADAM_EPS = 1e-12


class Fitter:
    """Taichi state for fitting sites to one image (float32 (H, W, C) in [0, 1])."""

    def __init__(
        self, target: np.ndarray, capacity: int, cfg: FitConfig, hooks: FitHooks | None = None
    ):
        self.h, self.w, self.c = target.shape
        self.cfg = cfg
        self.hooks = hooks or FitHooks()
        self.path = choose_path(self.h, self.w, cfg)
        self.cap = int(capacity)
        self.p = 6 + self.c
        self.s_inv = 1.0 / max(self.w, self.h)
        self.target_np = target
        self.target = ti.ndarray(ti.f32, shape=(self.h, self.w, self.c))
        self.target.from_numpy(np.ascontiguousarray(target, dtype=np.float32))
        self.params = ti.ndarray(ti.f32, shape=(self.cap, self.p))
        self.shown = ti.ndarray(ti.f32, shape=(self.cap, self.p))  # what is rendered
        self.tab = ti.ndarray(ti.f32, shape=(self.cap, TABLE_COLS))
        self.grad = ti.ndarray(ti.f32, shape=(self.path.bands, self.cap, self.p))
        self.m = ti.ndarray(ti.f32, shape=(self.cap, self.p))
        self.v = ti.ndarray(ti.f32, shape=(self.cap, self.p))
        self.stats = ti.ndarray(ti.i64, shape=(self.cap, 5))
        self.loss = ti.ndarray(ti.f32, shape=(self.h,))
        self.lr = ti.ndarray(ti.f32, shape=(self.p,))
        self.lo = ti.ndarray(ti.f32, shape=(self.p,))
        self.hi = ti.ndarray(ti.f32, shape=(self.p,))
        self.map = TopKMap(self.h, self.w, cfg.k, seed=cfg.seed)
        self.n = 0
        self.frozen = False  # geometry snapped to the grid and no longer updated
        self._lr_state: tuple | None = None  # the (frozen, fixed_cols) self.lr holds
        self.fixed_cols: tuple[int, ...] = ()  # geometry columns already snapped
        self.grid = ti.ndarray(ti.f32, shape=(kquant.GRID_SIZE,))
        self._grid_spec: quantize.QuantSpec | None = None
        self.sync_timers = self.path.synchronous or self.hooks.sync_stages
        self.step_count = 0
        self.timers: dict[str, float] = {}
        self.wts = None  # softmax weights of the frozen phase's colour-only steps
        self._wts_stale = True

    # -- host <-> device -------------------------------------------------------------
    def set_sites(
        self, p: np.ndarray, m: np.ndarray | None = None, v: np.ndarray | None = None
    ) -> None:
        n = len(p)
        if n > self.cap:
            raise ValueError("site capacity exceeded")
        self.n = n
        self._wts_stale = True
        full = np.zeros((self.cap, self.p), np.float32)
        full[:n] = p
        self.params.from_numpy(full)
        for arr, src in ((self.m, m), (self.v, v)):
            buf = np.zeros((self.cap, self.p), np.float32)
            if src is not None:
                buf[:n] = src
            arr.from_numpy(buf)
        self.grad.fill(0)

    def get_sites(self) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        n = self.n
        return (self.params.to_numpy()[:n], self.m.to_numpy()[:n], self.v.to_numpy()[:n])

    def set_bounds(self, spec: quantize.QuantSpec) -> None:
        big = 1e6
        lo = [0.0, 0.0, -big, -spec.a_max, spec.r_min, spec.t_min] + [0.0] * self.c
        hi = [float(self.w), float(self.h), big, spec.a_max, spec.r_max, spec.t_max]
        hi += [1.0] * self.c
        self.lo.from_numpy(np.array(lo, np.float32))
        self.hi.from_numpy(np.array(hi, np.float32))

    def tick(self, name: str, t0: float) -> float:
        """Add the time since t0 to stage ``name``; returns now."""
        if self.sync_timers:
            ti.sync()
        t1 = time.perf_counter()
        self.timers[name] = self.timers.get(name, 0.0) + t1 - t0
        return t1

    # -- one optimisation step -------------------------------------------------------
    def show(self, spec: quantize.QuantSpec | None):
        """Fill the per-site table from the params, or from their quantized round trip
        (QAT, computed on the device: no host round trip per step); zero the loss rows.
        Returns the params array the table came from."""
        if spec is not None and self._grid_spec is not spec:
            self.grid.from_numpy(quant_grid(spec))
            self._grid_spec = spec
        quant = spec is not None
        kquant.prepare_step(
            self.params,
            self.shown,
            self.tab,
            self.loss,
            self.n,
            self.w,
            self.h,
            self.grid,
            int(quant),
        )
        return self.shown if quant else self.params

    def step(
        self, lr_scale: float, spec: quantize.QuantSpec | None, refresh: bool, stride: int = 1
    ) -> None:
        """One Adam iteration, its gradient from one pixel in ``stride`` (all by default).
        Its loss (before the update) is read by ``last_loss``; it is not returned, so a
        GPU step needs no host round trip."""
        t0 = time.perf_counter()
        src = self.show(spec)
        if refresh and not self.frozen:
            t0 = self.tick("prepare", t0)
            self.path.refresh(self)
            self.hooks.map_refreshed(self, src)
            self.lanes()  # (the slot-stable copy is part of keeping the map)
            t0 = self.tick("topk", t0)
        lanes = self.lanes()
        if self.frozen:
            grad = self._colour_step(lanes, src)
        else:
            self.path.gradient(self, lanes, src, stride)
            grad = self.grad
        t0 = self.tick("forward_backward", t0)
        self.step_count += 1
        self._upload_rates()
        b2 = self.cfg.adam_b2
        koptim.adam(
            self.params,
            grad,
            self.m,
            self.v,
            self.lr,
            self.lo,
            self.hi,
            self.n,
            ADAM_B1,
            b2,
            1 - ADAM_B1**self.step_count,
            1 - b2**self.step_count,
            ADAM_EPS,
            lr_scale,
        )
        self.tick("optimizer", t0)

    def _colour_step(self, lanes, src):
        """With geometry and map fixed the softmax weights are too: compute them once and
        step the colours alone (no logits, no geometry gradients)."""
        if self.wts is None:
            self.wts = self.path.weights_buffer((self.h, self.w, self.cfg.k))
        if self._wts_stale:
            kcolour.blend_weights(lanes, self.tab, src, self.wts, self.s_inv, self.cfg.k, self.c)
            self._wts_stale = False
            self.path.weights_changed()
        return self.path.colour_gradient(self, lanes, src)

    def _upload_rates(self) -> None:
        """Per-column learning rates (0 for fixed columns), uploaded when they change."""
        state = (self.frozen, self.fixed_cols)
        if self._lr_state == state:
            return
        lrs = self.cfg.lr
        per_col = [lrs["pos"], lrs["pos"], lrs["theta"], lrs["a"], lrs["r"], lrs["t"]]
        if self.frozen:
            per_col = [0.0] * len(per_col)
        for col in self.fixed_cols:
            per_col[col] = 0.0
        per_col += [lrs["col"]] * self.c
        self.lr.from_numpy(np.array(per_col, np.float32))
        self._lr_state = state

    def lanes(self):
        """The map the gradient kernels read (FitPath.lanes)."""
        return self.path.lanes(self)

    def last_loss(self) -> float:
        """Sum of squared errors seen by the latest step (waits for the device)."""
        return float(self.loss.to_numpy().sum(dtype=np.float64))

    def psnr(self, loss: float) -> float:
        mse = loss / (self.h * self.w * self.c)
        return 10 * math.log10(1.0 / max(mse, 1e-12))

    # -- snapping ----------------------------------------------------------------------
    def freeze_geometry(self, spec: quantize.QuantSpec) -> None:
        """Snap every site's geometry to the grid the file stores and stop updating it."""
        self.snap_columns(spec, GEOMETRY)
        self.map.refresh(self.tab, self.n, self.s_inv, steps=(1, 1), stencil=8)
        self.frozen = True
        self._wts_stale = True

    def snap_columns(self, spec: quantize.QuantSpec, cols: tuple) -> None:
        """Snap some geometry columns to the file's grid and stop updating them."""
        cols = [int(c) for c in cols]
        p, m, v = self.get_sites()
        q = quantize.roundtrip(p, spec, self.w, self.h, keep_sign=True)
        p[:, cols] = q[:, cols]
        self.set_sites(p, m, v)
        ktable.prepare(self.params, self.tab, self.n)
        self.fixed_cols = tuple(sorted(set(self.fixed_cols) | set(cols)))

    # -- the map and the site set --------------------------------------------------------
    def site_stats(self, spec: quantize.QuantSpec | None) -> np.ndarray:
        """Per-site mass, error, error centroid sums and removal cost (float64 (n, 5))."""
        src = self.show(spec)
        self.stats.fill(0)
        koptim.site_stats(
            self.map.cur, self.tab, src, self.target, self.stats, self.s_inv, self.cfg.k, self.c
        )
        return self.stats.to_numpy()[: self.n].astype(np.float64) / STAT_SCALE

    def full_build(self) -> None:
        """The map from scratch for the current sites."""
        ktable.prepare(self.params, self.tab, self.n)
        self.path.build(self)

    def rebuild_after(self, keep: np.ndarray | None, n_new_from: int | None) -> None:
        """Fix the map after pruning (keep mask over old sites) and/or appending sites."""
        self._wts_stale = True
        if keep is not None:
            new_index = np.full(len(keep), -1, np.int32)
            new_index[keep] = np.arange(int(keep.sum()), dtype=np.int32)
            self.map.remap(new_index)
        ktable.prepare(self.params, self.tab, self.n)
        self.path.rebuild(self, n_new_from)

    def refresh_interval(self) -> int:
        """Iterations between map refreshes while fitting."""
        return self.path.refresh_every()


def quant_grid(spec: quantize.QuantSpec | None = None) -> np.ndarray:
    """The grids as kernels.quant reads them (float32 at its named positions); None: a
    placeholder for steps that do not quantize."""
    spec = spec or quantize.QuantSpec()
    g = np.zeros(kquant.GRID_SIZE, np.float32)
    g[kquant.POS_SCALE] = 1 << spec.pos_frac_bits
    g[kquant.THETA_LEVELS] = 1 << spec.theta_bits
    g[kquant.A_MAX] = spec.a_max
    g[kquant.A_TOP] = (1 << spec.a_bits) - 1
    g[kquant.R_MIN] = spec.r_min
    g[kquant.R_STEP] = spec.r_step
    g[kquant.R_TOP] = (1 << spec.r_bits) - 1
    g[kquant.T_MIN] = spec.t_min
    g[kquant.T_STEP] = spec.t_step
    g[kquant.T_TOP] = (1 << spec.t_bits) - 1
    g[kquant.COL_TOP] = (1 << spec.col_bits) - 1
    return g
