"""The encoder's optimisation: Adam on all site parameters, densify/prune, QAT, rate fit.

``Fitter`` owns the Taichi buffers for one image; ``fit_to_budget`` runs the schedule:

1. gradient-weighted init with part of the expected site budget;
2. Adam with per-group learning rates; the top-K map refreshed by step-1 passes;
3. every ``densify_every`` iterations (a 16th of the run, at least 50): drop dead sites, split
   the sites carrying the most error toward the error centroid (or shed the cheapest,
   when over), steering the count to what the budget allows (bits per site measured by
   really compressing the current sites);
4. the geometry is snapped to the file's grid in two steps (positions and directions,
   then the rest) and fixed; the last part of the run renders through quantize/dequantize
   (straight-through), so the colours are fitted to what the decoder sees;
5. the file is written; while it is over budget the sites cheapest to lose are removed
   and the fit is touched up briefly.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable
from dataclasses import dataclass, field

import numpy as np
import taichi as ti

from kernels import fit as kfit
from kernels import table as ktable
from kernels.common import GEOM_PARAMS, STAT_SCALE, TABLE_COLS

from . import quantize
from .backend import current_arch
from .colour_ls import ColourNormal
from .init import init_sites
from .topk import TopKMap


@dataclass
class FitConfig:
    iterations: int = 1600  # the encoder's default effort (sadcodec.encoder)
    k: int = 8
    seed: int = 0
    # Iterations between refreshes of the map while fitting: by step-1 passes (GPU, or
    # refresh_exact off), or by the exact tiled build (CPU), which needs them less often:
    # every 24 or 36 scored as every 12 (within +-0.03 dB on 11 Kodak fits at 0.25-2 bpp)
    # for 8-12% less encode time (docs/tuning.md, "Exact refreshes every 24").
    refresh_every: int = 6
    exact_refresh_every: int = 24
    # Refresh the map at the early snap too, not only at the next multiple of the
    # interval: one kodim15 fit at 2 bpp lost 0.35 dB to the stale map (0.2 back with it);
    # the other 47 Kodak fits at 1 and 2 bpp moved within 0.04 dB (docs/tuning.md).
    refresh_at_snap: bool = True
    inject: int = 4
    # Iterations between densify rounds; None: a sixteenth of the run, at least 50 (as
    # before up to 800 iterations), so a longer run has as many rounds, further apart.
    # More rounds did not pay: 1600 iterations with a round every 50 or every 100 gave
    # 29.75 / 29.73 dB mean on kodim01/05 at 1 bpp, and a round costs a pass of site
    # statistics and a rebuild.
    densify_every: int | None = None
    densify_until: float = 0.6
    init_fraction: float = 0.9
    grow_per_round: float = 0.35
    qat_from: float = 0.7
    # From this share of the run on, the geometry (position, shape, radius, temperature)
    # is snapped to its quantization grid and frozen, and only the colours keep learning:
    # they absorb the error the geometry grid causes, and the map needs no refreshing.
    freeze_from: float = 0.7
    # Geometry snapped (and fixed) earlier, at snap_from: the rest of the geometry adapts
    # to its grid before it is snapped in turn at freeze_from. Positions and directions
    # first: +0.17 dB mean on seven Kodak images at 1 bpp; the temperature and radius
    # first lost 0.05 dB (docs/tuning.md, "Site count, two-step snapping, Adam's second
    # moment"). Names joined by "+": pos, theta, a, r, t; "" snaps all at freeze_from.
    snap_early: str = "pos+theta"
    snap_from: float = 0.65
    decay_from: float = 0.5
    final_lr: float = 0.05
    touch_up: int = 20
    # Adam's second-moment decay. 0.999 averages over more steps than the geometry phase
    # has, and a site added by densify (zero moments) takes steps of 2-4x the rate for
    # its first hundred; 0.95: +0.2 dB on seven Kodak images at 1 bpp (docs/tuning.md).
    adam_b2: float = 0.95
    fill_slack: float = 0.06  # grow again if more than this share of the budget is unused
    # Build the map exactly by tile culling (CPU) at the start and after densify/prune,
    # instead of jump flooding (and five passes over the patched map after densify).
    exact_rebuild: bool = True
    # Once the geometry is frozen, step the colours alone from stored softmax weights
    # (the same gradient, without recomputing logits or geometry gradients).
    colour_steps: bool = True
    # On the CPU, take those steps' loss and gradient from the normal equations of the
    # colours' least-squares problem (sadcodec.colour_ls): the same values, from a sparse
    # product over the sites instead of a pass over the pixels.
    colour_normal: bool = True
    profile: bool = False  # exact per-stage timers on a GPU (a sync per stage)
    # The fit's kernels and bookkeeping: "cpu" (the gradient summed in bands of rows
    # without atomics over a slot-stable map copy, the exact tiled map build, the colour
    # phase from its normal equations), "gpu" (atomic gradients over the map itself, jump
    # flooding, the colour kernel), or "auto": "gpu" on CUDA, else "cpu". Tests run "gpu"
    # on the CPU, so the CUDA path's own bookkeeping is checked where no GPU is.
    kernels: str = "auto"
    # Stencil of the step-1 passes that keep the map fresh while fitting (4 or 8).
    refresh_stencil: int = 4
    # Refresh by the exact tiled build instead of a step-1 pass where that build is used
    # (CPU, exact_rebuild): it costs less than a pass (47 vs 74 ms on kodim01). Every 12
    # iterations it cut the top-K stage 10.1 -> 3.9 s on kodim01 at -0.02 dB mean over the
    # RD run, but kodim20 at 1 bpp lost 0.29 dB, which every 6 gave back; with the
    # subsampled early steps below every 6 no longer pays (docs/tuning.md).
    refresh_exact: bool = True
    # Until this share of the run, each step's gradient comes from one pixel in
    # ``subsample_stride`` (the diagonals (x + y) % stride == phase, a checkerboard for 2,
    # the phase advancing each step): that much cheaper, and early steps need a direction
    # more than precision. At 1 bpp on kodim01/05/20: +0.09 dB mean for 18% less time
    # (rows instead of diagonals: -0.16 dB; until 0.6: kodim20 -0.3 dB; docs/tuning.md).
    subsample_until: float = 0.5
    subsample_stride: int = 2
    # For benchmarks: keep a copy of the map after its last refresh before the geometry
    # freezes, with the sites it was refreshed for (FitResult.map_at_freeze).
    snapshot_map: bool = False
    # Adam step sizes per group (units: px, rad, log, px, log, colour in [0, 1]), chosen
    # by a sweep on three half-size Kodak images at 1 bpp (docs/tuning.md).
    lr: dict = field(
        default_factory=lambda: {
            "pos": 0.3,
            "theta": 0.02,
            "a": 0.03,
            "r": 0.05,
            "t": 0.003,
            "col": 0.04,
        }
    )


@dataclass
class FitResult:
    params: np.ndarray  # float32 (N, 6 + C), what was written (dequantized)
    raw_params: np.ndarray  # the continuous parameters behind them (for analysis)
    data: bytes
    psnr: float  # of the quantized sites against the target, from the fit's own render
    iterations: int
    seconds: float
    stage_seconds: dict
    # (ids (H, W, K), params (n, 6 + C)): the map after its last refresh before the
    # freeze and the sites it was refreshed for, if FitConfig.snapshot_map
    map_at_freeze: tuple[np.ndarray, np.ndarray] | None = None


Progress = Callable[[dict], None]
# Bands of rows the CPU gradient is split into: a fixed count (not the thread count), so
# files do not depend on --threads; one per thread of a 16-thread laptop. Each band is a
# full gradient slice that Adam reads and zeroes every step (32 -> 16 bands: optimizer
# stage 7.8 -> 2.4 s on kodim01 at 1 bpp, bench/results/stages-ab-2026-12-02.md).
GRAD_BANDS = 16
# The rate fit drops at most this share of the sites between two measurements of what
# each site's removal costs.
RATE_DROP_BATCH = 0.005
# A densify round over its site goal sheds at most this share of the sites (the fit has
# the iterations up to the next round to close the holes; see RATE_DROP_BATCH).
SHED_PER_ROUND = 0.02


class Fitter:
    """Taichi state for fitting sites to one image (float32 (H, W, C) in [0, 1])."""

    def __init__(self, target: np.ndarray, capacity: int, cfg: FitConfig):
        self.h, self.w, self.c = target.shape
        self.cfg = cfg
        self.cap = int(capacity)
        self.p = 6 + self.c
        self.s_inv = 1.0 / max(self.w, self.h)
        self.target = ti.ndarray(ti.f32, shape=(self.h, self.w, self.c))
        self.target.from_numpy(np.ascontiguousarray(target, dtype=np.float32))
        self.params = ti.ndarray(ti.f32, shape=(self.cap, self.p))
        self.shown = ti.ndarray(ti.f32, shape=(self.cap, self.p))  # what is rendered
        self.tab = ti.ndarray(ti.f32, shape=(self.cap, TABLE_COLS))
        # CPU: one gradient slice per band of rows (no atomics, reproducible); GPU: one.
        if cfg.kernels not in ("auto", "cpu", "gpu"):
            raise ValueError(f"FitConfig.kernels must be auto, cpu or gpu, not {cfg.kernels!r}")
        kind = cfg.kernels
        if kind == "auto":
            kind = "gpu" if current_arch() == "cuda" else "cpu"
        self.banded = kind == "cpu"
        self.bands = min(GRAD_BANDS, self.h) if self.banded else 1
        self.grad = ti.ndarray(ti.f32, shape=(self.bands, self.cap, self.p))
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
        self._lr_frozen: tuple | None = None  # the frozen state self.lr was uploaded for
        self.fixed_cols: tuple = ()  # geometry columns already snapped to the grid
        self.grid = ti.ndarray(ti.f32, shape=(11,))
        self._grid_spec: quantize.QuantSpec | None = None
        # Exact stage timers need a device sync per stage: free on the CPU (kernels there
        # are synchronous), a lost overlap on a GPU, so there only when profiling.
        self.sync_timers = self.banded or cfg.profile
        self.step_count = 0
        self.timers: dict[str, float] = {}
        self.wts = None  # softmax weights of the frozen phase's colour-only steps
        self._normal: ColourNormal | None = None  # their normal equations (CPU)
        self._cgrad: np.ndarray | None = None
        self._target_np = target
        self.map_at_freeze: tuple[np.ndarray, np.ndarray] | None = None
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

    def _tick(self, name: str, t0: float) -> float:
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
        kfit.prepare_step(
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
            t0 = self._tick("prepare", t0)
            if not (self.refreshes_exactly() and self._tiled_build()):
                self.map.refresh(
                    self.tab,
                    self.n,
                    self.s_inv,
                    stencil=self.cfg.refresh_stencil,
                    inject=self.cfg.inject,
                )
            if self.cfg.snapshot_map:  # the last one before the freeze is what remains
                self.map_at_freeze = (self.map.to_numpy(), src.to_numpy()[: self.n].copy())
            self.lanes()  # (the slot-stable copy is part of keeping the map)
            t0 = self._tick("topk", t0)
        lanes = self.lanes()
        grad = self.grad
        if self.frozen and self.cfg.colour_steps:
            # Geometry and map are fixed, so are the softmax weights: compute them once
            # and step the colours alone (no logits, no geometry gradients).
            if self.wts is None:
                # On the CPU a numpy array, which kernels write in place and numpy reads.
                shape = (self.h, self.w, self.cfg.k)
                self.wts = np.empty(shape, np.float32) if self.banded else ti.ndarray(ti.f32, shape)
            if self._wts_stale:
                kfit.blend_weights(lanes, self.tab, src, self.wts, self.s_inv, self.cfg.k, self.c)
                self._wts_stale = False
                self._normal = None
        if self.frozen and self.cfg.colour_steps and self.banded and self.cfg.colour_normal:
            if self._normal is None:
                self._normal = ColourNormal(lanes, self.wts, self._target_np, self.n)
                self._cgrad = np.zeros((1, self.cap, self.p), np.float32)
            colours = src.to_numpy()[: self.n, GEOM_PARAMS:]
            loss, g = self._normal.loss_and_grad(colours)
            self._cgrad[0, : self.n, GEOM_PARAMS:] = g  # adam() zeroes it after reading
            grad = self._cgrad
            rows = np.zeros(self.h, np.float32)
            rows[0] = loss
            self.loss.from_numpy(rows)
        elif self.frozen and self.cfg.colour_steps:
            kfit.colour_grad(
                lanes,
                self.wts,
                src,
                self.target,
                self.grad,
                self.loss,
                self.cfg.k,
                self.c,
                self.banded,
            )
        else:
            kfit.forward_backward(
                lanes,
                self.tab,
                src,
                self.target,
                self.grad,
                self.loss,
                self.s_inv,
                self.cfg.k,
                self.c,
                self.banded,
                stride,
                self.step_count % stride,
            )
        t0 = self._tick("forward_backward", t0)
        self.step_count += 1
        b1, b2 = 0.9, self.cfg.adam_b2
        state = (self.frozen, self.fixed_cols)
        if self._lr_frozen != state:  # upload the per-column rates on change only
            lrs = self.cfg.lr
            per_col = [lrs["pos"], lrs["pos"], lrs["theta"], lrs["a"], lrs["r"], lrs["t"]]
            if self.frozen:
                per_col = [0.0] * len(per_col)
            for col in self.fixed_cols:
                per_col[col] = 0.0
            per_col += [lrs["col"]] * self.c
            self.lr.from_numpy(np.array(per_col, np.float32))
            self._lr_frozen = state
        kfit.adam(
            self.params,
            grad,
            self.m,
            self.v,
            self.lr,
            self.lo,
            self.hi,
            self.n,
            b1,
            b2,
            1 - b1**self.step_count,
            1 - b2**self.step_count,
            1e-12,
            lr_scale,
        )
        self._tick("optimizer", t0)

    def lanes(self):
        """The map the gradient kernels read: on the CPU its slot-stable copy (the banded
        kernels add a slot's run of one site at once; TopKMap.stable), on a GPU itself."""
        return self.map.stable(self.bands) if self.banded else self.map.cur

    def last_loss(self) -> float:
        """Sum of squared errors seen by the latest step (waits for the device)."""
        return float(self.loss.to_numpy().sum(dtype=np.float64))

    def freeze_geometry(self, spec: quantize.QuantSpec) -> None:
        """Snap every site's geometry to the grid the file stores and stop updating it."""
        self.snap_columns(spec, tuple(range(GEOM_PARAMS)))
        self.map.refresh(self.tab, self.n, self.s_inv, steps=(1, 1), stencil=8)
        self.frozen = True
        self._wts_stale = True

    def snap_columns(self, spec: quantize.QuantSpec, cols: tuple) -> None:
        """Snap some geometry columns to the file's grid and stop updating them."""
        p, m, v = self.get_sites()
        q = quantize.roundtrip(p, spec, self.w, self.h, keep_sign=True)
        p[:, list(cols)] = q[:, list(cols)]
        self.set_sites(p, m, v)
        ktable.prepare(self.params, self.tab, self.n)
        self.fixed_cols = tuple(sorted(set(self.fixed_cols) | set(cols)))

    def psnr(self, loss: float) -> float:
        mse = loss / (self.h * self.w * self.c)
        return 10 * math.log10(1.0 / max(mse, 1e-12))

    def site_stats(self, spec: quantize.QuantSpec | None) -> np.ndarray:
        """Per-site mass, error, error centroid sums and removal cost (float64 (n, 5))."""
        src = self.show(spec)
        self.stats.fill(0)
        kfit.site_stats(
            self.map.cur, self.tab, src, self.target, self.stats, self.s_inv, self.cfg.k, self.c
        )
        return self.stats.to_numpy()[: self.n].astype(np.float64) / STAT_SCALE

    def rebuild_after(self, keep: np.ndarray | None, n_new_from: int | None) -> None:
        """Fix the map after pruning (keep mask over old sites) and/or appending sites."""
        self._wts_stale = True
        if keep is not None:
            new_index = np.full(len(keep), -1, np.int32)
            new_index[keep] = np.arange(int(keep.sum()), dtype=np.int32)
            self.map.remap(new_index)
        ktable.prepare(self.params, self.tab, self.n)
        if self._tiled_build():
            return
        if n_new_from is not None and n_new_from < self.n:
            self.map.reseed(self.tab, n_new_from, self.n)
        self.map.refresh(
            self.tab, self.n, self.s_inv, steps=(8, 4, 2, 1, 1), stencil=8, inject=self.cfg.inject
        )

    def full_build(self) -> None:
        ktable.prepare(self.params, self.tab, self.n)
        if not self._tiled_build():
            self.map.build(self.tab, self.n, self.s_inv)

    def _tiled_build(self) -> bool:
        """The exact map by tile culling, where it is used (CPU, exact_rebuild)."""
        if not self._tiles_used():
            return False
        return self.map.build_tiled(self.tab, self.n, self.s_inv)

    def _tiles_used(self) -> bool:
        # (the tiled build is written for the CPU: its lists live in host memory)
        return self.cfg.exact_rebuild and self.banded

    def refreshes_exactly(self) -> bool:
        """Whether the map is refreshed by the exact build while fitting (refresh_exact)."""
        return self.cfg.refresh_exact and self._tiles_used()

    def refresh_interval(self) -> int:
        """Iterations between map refreshes while fitting."""
        cfg = self.cfg
        return cfg.exact_refresh_every if self.refreshes_exactly() else cfg.refresh_every


_SNAP_COLS = {"pos": (0, 1), "theta": (2,), "a": (3,), "r": (4,), "t": (5,)}


def _snap_cols(names: str) -> tuple:
    return tuple(c for n in names.split("+") for c in _SNAP_COLS[n])


def quant_grid(spec: quantize.QuantSpec) -> np.ndarray:
    """The grid constants kernels.fit.quant_roundtrip reads (its docstring gives the order)."""
    return np.array(
        [
            1 << spec.pos_frac_bits,
            1 << spec.theta_bits,
            spec.a_max,
            (1 << spec.a_bits) - 1,
            spec.r_min,
            spec.r_step,
            (1 << spec.r_bits) - 1,
            spec.t_min,
            spec.t_step,
            (1 << spec.t_bits) - 1,
            (1 << spec.col_bits) - 1,
        ],
        np.float32,
    )


def fit_to_budget(
    target: np.ndarray,
    budget_bytes: int,
    writer: Callable[[np.ndarray], bytes],
    spec: quantize.QuantSpec,
    cfg: FitConfig,
    progress: Progress | None = None,
    bits_per_site_guess: float = 46.0,
    fixed_overhead: int = 60,
    estimate: Callable[[np.ndarray], int] | None = None,
) -> FitResult:
    """Fit sites to ``target`` so that ``writer(params)`` fits in ``budget_bytes``.

    ``estimate`` (optional): params -> approximate bytes, much cheaper than ``writer``;
    the densify rounds then write exactly once, to calibrate it, and estimate after
    (zstd at its file level was half of a GPU encode's time)."""
    t_start = time.perf_counter()
    h, w, c = target.shape
    rng = np.random.default_rng(cfg.seed)
    bps = bits_per_site_guess
    n_goal = max(4, int((budget_bytes - fixed_overhead) * 8 / bps))
    cap = int(n_goal * 1.6) + 64
    fitter = Fitter(target, cap, cfg)
    fitter.set_bounds(spec)
    t0 = time.perf_counter()
    p0 = init_sites(target, max(4, int(n_goal * cfg.init_fraction)), rng)
    fitter.set_sites(p0)
    fitter.full_build()
    t0 = fitter._tick("init", t0)

    iters = cfg.iterations
    dens_every = cfg.densify_every or max(50, iters // 16)
    dens_end = int(cfg.densify_until * iters)
    qat_from = int(cfg.qat_from * iters)
    freeze_from = int(cfg.freeze_from * iters) if cfg.freeze_from < 1 else -1
    decay_from = int(cfg.decay_from * iters)
    # Not before densification ends: sites it adds later would keep unsnapped columns.
    snap_from = max(int(cfg.snap_from * iters), dens_end + 1)
    sub_end = int(cfg.subsample_until * iters)
    refresh_every = fitter.refresh_interval()
    loss = float("nan")
    calib = None  # exact bytes / estimated bytes, measured at the first densify round
    for it in range(iters):
        if it > 0 and it % dens_every == 0 and it <= dens_end:
            t0 = time.perf_counter()
            p_now = fitter.get_sites()[0]
            if estimate is None:
                size = len(writer(p_now))
            elif calib is None:
                size = len(writer(p_now))
                calib = size / max(1, estimate(p_now))
            else:
                size = estimate(p_now) * calib
            bps = size * 8 / fitter.n
            n_goal = max(4, int((budget_bytes - fixed_overhead) * 8 / bps))
            _densify_prune(fitter, n_goal, rng, cfg, last=(it + dens_every > dens_end))
            fitter._tick("densify_prune", t0)
        if it < decay_from:
            scale = 1.0
        else:
            frac = (it - decay_from) / max(1, iters - decay_from)
            scale = cfg.final_lr + (1 - cfg.final_lr) * 0.5 * (1 + math.cos(math.pi * frac))
        if it == snap_from and cfg.snap_early:
            fitter.snap_columns(spec, _snap_cols(cfg.snap_early))
        if it == freeze_from:
            fitter.freeze_geometry(spec)
        use_q = spec if it >= qat_from else None
        stride = cfg.subsample_stride if it < sub_end else 1
        snapped = cfg.refresh_at_snap and it == snap_from and bool(cfg.snap_early)
        fitter.step(scale, use_q, refresh=(it % refresh_every == 0 or snapped), stride=stride)
        if progress is not None and (it % 10 == 0 or it == iters - 1):
            loss = fitter.last_loss()
            progress(
                {
                    "iteration": it + 1,
                    "iterations": iters,
                    "psnr": fitter.psnr(loss),
                    "sites": fitter.n,
                    "stage": "fit",
                }
            )

    # Rate fit: write; while over budget drop the sites that cost least to lose; while
    # well under it (the bits-per-site estimate was pessimistic) add sites where the
    # error is, since unused bytes are lost quality.
    t0 = time.perf_counter()
    stepped = sum(fitter.timers.values())  # the touch-up steps below time themselves
    data = b""
    grown = 0
    for attempt in range(16):
        data = writer(fitter.get_sites()[0])
        if len(data) <= budget_bytes:
            room = budget_bytes - len(data)
            if room <= cfg.fill_slack * budget_bytes or grown >= 2:
                break
            bps = len(data) * 8 / fitter.n
            n_add = int(room * 8 / bps * 0.9)
            if n_add < 1 or fitter.n + n_add > fitter.cap:
                break
            grown += 1
            _densify_prune(fitter, fitter.n + n_add, rng, cfg, last=True)
        else:
            bps = len(data) * 8 / fitter.n
            excess = len(data) - budget_bytes
            n_drop = min(fitter.n - 1, int(math.ceil(excess * 8 / bps * 1.05)) + 1 + attempt)
            # In batches, costs measured afresh before each: a cost is that of removing the
            # site alone, so sites that cover for each other (a flat area held by several)
            # all look free; removed together they left holes that far sites bled into
            # (kodim15 at 2 bpp lost 3 dB to one batch of 7%).
            while n_drop > 0:
                batch = min(n_drop, max(1, int(RATE_DROP_BATCH * fitter.n)))
                st = fitter.site_stats(spec)
                order = np.argsort(st[:, 4], kind="stable")
                keep = np.ones(fitter.n, bool)
                keep[order[:batch]] = False
                p, m, v = fitter.get_sites()
                fitter.set_sites(p[keep], m[keep], v[keep])
                fitter.rebuild_after(keep, None)
                n_drop -= batch
        for _ in range(cfg.touch_up * (2 if grown and len(data) <= budget_bytes else 1)):
            fitter.step(cfg.final_lr, spec, refresh=True)
        if progress is not None:
            loss = fitter.last_loss()
            progress(
                {
                    "iteration": iters,
                    "iterations": iters,
                    "psnr": fitter.psnr(loss),
                    "sites": fitter.n,
                    "stage": "rate",
                }
            )
    ti.sync()
    elapsed = time.perf_counter() - t0 - (sum(fitter.timers.values()) - stepped)
    fitter.timers["rate_fit"] = fitter.timers.get("rate_fit", 0.0) + elapsed
    if len(data) > budget_bytes:
        raise RuntimeError("rate control failed to meet the budget")
    # Final quality of exactly what was written.
    params = quantize.roundtrip(fitter.get_sites()[0], spec, w, h)
    full = np.zeros((fitter.cap, fitter.p), np.float32)
    full[: fitter.n] = params  # the file's own values (float64 rounding), not the f32 QAT copy
    fitter.shown.from_numpy(full)
    ktable.prepare(fitter.shown, fitter.tab, fitter.n)
    fitter.map.refresh(fitter.tab, fitter.n, fitter.s_inv, steps=(1,), stencil=4)
    fitter.loss.fill(0)
    kfit.forward_backward(
        fitter.lanes(),
        fitter.tab,
        fitter.shown,
        fitter.target,
        fitter.grad,
        fitter.loss,
        fitter.s_inv,
        cfg.k,
        c,
        fitter.banded,
    )
    fitter.grad.fill(0)
    final = float(fitter.loss.to_numpy().sum(dtype=np.float64))
    return FitResult(
        params=params,
        raw_params=fitter.get_sites()[0],
        data=data,
        psnr=fitter.psnr(final),
        iterations=iters,
        seconds=time.perf_counter() - t_start,
        stage_seconds=dict(fitter.timers),
        map_at_freeze=fitter.map_at_freeze,
    )


def _densify_prune(
    fitter: Fitter, n_goal: int, rng: np.random.Generator, cfg: FitConfig, last: bool
) -> None:
    """Drop dead sites; split high-error sites toward their error centroid, up to n_goal."""
    st = fitter.site_stats(None)
    p, m, v = fitter.get_sites()
    n = fitter.n
    keep = st[:, 0] >= 0.05  # sites that own almost no pixel mass are dead weight
    n_keep = int(keep.sum())
    if n_keep > n_goal:
        # A site's bits grow as the fit goes on (kodim01 at 1 bpp: 42.6 -> 45.1 bits), so
        # the count set early ends over budget; shed the sites cheapest to lose now, while
        # the fit can still adapt, not all at once in the rate fit.
        # At most SHED_PER_ROUND at once: each cost is that of losing the site alone.
        n_shed = min(n_keep - n_goal, max(1, int(SHED_PER_ROUND * n_keep)))
        cost = np.where(keep, st[:, 4], np.inf)
        keep[np.argsort(cost, kind="stable")[:n_shed]] = False
        n_keep -= n_shed
    room = fitter.cap - n_keep
    if last:
        n_add = n_goal - n_keep
    else:
        n_add = min(n_goal - n_keep, int(cfg.grow_per_round * n_keep))
    n_add = max(0, min(n_add, room))
    if n_add == 0 and n_keep == n:
        return
    err = np.where(keep, st[:, 1], -1.0)
    parents = np.argsort(-err, kind="stable")[:n_add]
    parents = parents[err[parents] > 0]
    new = p[parents].copy()
    e = np.maximum(st[parents, 1], 1e-12)
    cx = st[parents, 2] / e
    cy = st[parents, 3] / e
    dx = cx - p[parents, 0]
    dy = cy - p[parents, 1]
    dist = np.hypot(dx, dy)
    ang = rng.uniform(0, 2 * np.pi, len(parents))
    small = dist < 0.5
    dx = np.where(small, np.cos(ang), dx)
    dy = np.where(small, np.sin(ang), dy)
    new[:, 0] = np.clip(p[parents, 0] + dx, 0, fitter.w - 1e-3)
    new[:, 1] = np.clip(p[parents, 1] + dy, 0, fitter.h - 1e-3)
    tgt = fitter.target.to_numpy()
    xi = np.clip(new[:, 0].astype(int), 0, fitter.w - 1)
    yi = np.clip(new[:, 1].astype(int), 0, fitter.h - 1)
    new[:, 6:] = tgt[yi, xi]
    zeros = np.zeros_like(new)
    p2 = np.concatenate([p[keep], new])
    m2 = np.concatenate([m[keep], zeros])
    v2 = np.concatenate([v[keep], zeros])
    fitter.set_sites(p2, m2, v2)
    fitter.rebuild_after(keep if n_keep < n else None, n_keep)
