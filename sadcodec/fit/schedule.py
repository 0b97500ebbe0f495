"""The fit's schedule and the loop that runs it (``fit_to_budget``).

1. gradient-weighted init with part of the expected site count;
2. Adam with per-group learning rates, cosine decay over the second half; the top-K map
   refreshed every few iterations (FitPath); early steps on a subsample of the pixels;
3. densify rounds a sixteenth of the run apart until 60% (sadcodec.fit.densify);
4. the geometry snapped to the file's grid in two steps (positions and directions, then
   the rest) and fixed; the last 30% render through quantize/dequantize (straight-through),
   so the colours are fitted to what the decoder sees;
5. the rate fit (sadcodec.fit.rate): the file is written and the site set adjusted until
   it fits the budget closely.
"""

from __future__ import annotations

import math
import time
from dataclasses import dataclass

import numpy as np

from .. import quantize
from ..init import init_sites
from .config import FitConfig
from .densify import DensifyPrune
from .hooks import FitHooks
from .rate import Progress, RateTarget, fit_rate
from .state import Fitter

# Site capacity over the first goal: room for the goal to rise as densify measures it.
CAPACITY_FACTOR = 1.6
CAPACITY_SLACK = 64


@dataclass(frozen=True)
class Schedule:
    """Iteration numbers of the schedule's events for one run of ``cfg.iterations``."""

    iterations: int
    densify_every: int
    densify_end: int
    qat_from: int
    freeze_from: int  # -1: never
    decay_from: int
    snap_from: int
    subsample_end: int
    final_lr: float
    stride: int

    @classmethod
    def of(cls, cfg: FitConfig) -> Schedule:
        iters = cfg.iterations
        dens_end = int(cfg.densify_until * iters)
        return cls(
            iterations=iters,
            densify_every=cfg.densify_every or max(50, iters // 16),
            densify_end=dens_end,
            qat_from=int(cfg.qat_from * iters),
            freeze_from=int(cfg.freeze_from * iters) if cfg.freeze_from < 1 else -1,
            decay_from=int(cfg.decay_from * iters),
            # Not before densification ends: sites added later would keep unsnapped columns.
            snap_from=max(int(cfg.snap_from * iters), dens_end + 1),
            subsample_end=int(cfg.subsample_until * iters),
            final_lr=cfg.final_lr,
            stride=cfg.subsample_stride,
        )

    def densify_at(self, it: int) -> bool:
        return it > 0 and it % self.densify_every == 0 and it <= self.densify_end

    def last_densify(self, it: int) -> bool:
        return it + self.densify_every > self.densify_end

    def lr_scale(self, it: int) -> float:
        """1 until decay_from, then a cosine down to final_lr at the end."""
        if it < self.decay_from:
            return 1.0
        frac = (it - self.decay_from) / max(1, self.iterations - self.decay_from)
        return self.final_lr + (1 - self.final_lr) * 0.5 * (1 + math.cos(math.pi * frac))

    def stride_at(self, it: int) -> int:
        return self.stride if it < self.subsample_end else 1


@dataclass
class FitResult:
    params: np.ndarray  # float32 (N, 6 + C), what was written (dequantized)
    raw_params: np.ndarray  # the continuous parameters behind them (for analysis)
    data: bytes
    iterations: int
    seconds: float
    stage_seconds: dict


def fit_to_budget(
    target: np.ndarray,
    rate: RateTarget,
    spec: quantize.QuantSpec,
    cfg: FitConfig,
    progress: Progress | None = None,
    hooks: FitHooks | None = None,
) -> FitResult:
    """Fit sites to ``target`` (float32 (H, W, C) in [0, 1]) so that ``rate.write(params)``
    fits in ``rate.budget_bytes``."""
    t_start = time.perf_counter()
    h, w, c = target.shape
    rng = np.random.default_rng(cfg.seed)
    strategy = DensifyPrune(cfg, rate, rng)
    n_goal = strategy.goal()
    fitter = Fitter(target, int(n_goal * CAPACITY_FACTOR) + CAPACITY_SLACK, cfg, hooks)
    fitter.set_bounds(spec)
    t0 = time.perf_counter()
    fitter.set_sites(init_sites(target, max(4, int(n_goal * cfg.init_fraction)), rng))
    fitter.full_build()
    fitter.tick("init", t0)

    sched = Schedule.of(cfg)
    refresh_every = fitter.refresh_interval()
    snap_early = bool(cfg.snap_early)
    for it in range(sched.iterations):
        if sched.densify_at(it):
            t0 = time.perf_counter()
            strategy.round(fitter, last=sched.last_densify(it))
            fitter.tick("densify_prune", t0)
        snapping = snap_early and it == sched.snap_from
        if snapping:
            fitter.snap_columns(spec, cfg.snap_early)
        if it == sched.freeze_from:
            fitter.freeze_geometry(spec)
        # The map is refreshed at the snap too: the sites it was made for have moved.
        fitter.step(
            sched.lr_scale(it),
            spec if it >= sched.qat_from else None,
            refresh=(it % refresh_every == 0 or snapping),
            stride=sched.stride_at(it),
        )
        if progress is not None and (it % 10 == 0 or it == sched.iterations - 1):
            progress(
                {
                    "iteration": it + 1,
                    "iterations": sched.iterations,
                    "psnr": fitter.psnr(fitter.last_loss()),
                    "sites": fitter.n,
                    "stage": "fit",
                }
            )

    data = fit_rate(fitter, rate, spec, cfg, strategy, progress)
    raw = fitter.get_sites()[0]
    return FitResult(
        params=quantize.roundtrip(raw, spec, w, h),
        raw_params=raw,
        data=data,
        iterations=sched.iterations,
        seconds=time.perf_counter() - t_start,
        stage_seconds=dict(fitter.timers),
    )
