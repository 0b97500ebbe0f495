"""The fit's settings: a small, documented object (like libwebp's WebPConfig).

Every field is a hyperparameter of the schedule or the optimiser; ``docs/tuning.md`` says
how each default was chosen. The encoder derives one from the target rate and effort
(``sadcodec.settings``); tests and benchmarks may override fields.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass, field


class Geom(enum.IntEnum):
    """The geometry columns of a site's parameter row (kernels/common.py has the layout)."""

    X = 0
    Y = 1
    THETA = 2
    A = 3
    R = 4
    T = 5


GEOMETRY = tuple(Geom)


@dataclass
class FitConfig:
    iterations: int = 1600
    k: int = 8
    seed: int = 0
    # Iterations between map refreshes while fitting: by step-1 jump-flooding passes (the
    # GPU path) or by the exact tiled build (the CPU path), which needs them less often
    # (docs/tuning.md, "Exact map refreshes while fitting").
    refresh_every: int = 6
    exact_refresh_every: int = 24
    # Sites injected at random into each pixel's candidates by a step-1 pass (GPU path).
    inject: int = 4
    # Stencil of those step-1 passes (4 or 8 neighbours).
    refresh_stencil: int = 4
    # Iterations between densify rounds; None: a sixteenth of the run, at least 50, so a
    # longer run has as many rounds, further apart (docs/tuning.md, "Densify rounds").
    densify_every: int | None = None
    densify_until: float = 0.6  # share of the run after which no densify round starts
    init_fraction: float = 0.9  # share of the expected site count placed at the start
    grow_per_round: float = 0.35  # a round adds at most this share of the live sites
    qat_from: float = 0.7  # from this share on, steps render the quantized sites
    # From this share of the run on, the geometry is snapped to the file's grid and fixed;
    # only the colours keep learning (they absorb the error the geometry grid causes).
    freeze_from: float = 0.7
    # These geometry columns are snapped and fixed earlier, at snap_from, so the rest
    # adapts to their grid before it is snapped in turn; () snaps all at freeze_from
    # (docs/tuning.md, "Two-step snapping").
    snap_early: tuple[Geom, ...] = (Geom.X, Geom.Y, Geom.THETA)
    snap_from: float = 0.65
    decay_from: float = 0.5  # cosine decay of the learning rates from this share on
    final_lr: float = 0.05  # ... down to this factor
    touch_up: int = 20  # steps after each change of the site set in the rate fit
    # Adam's second-moment decay (docs/tuning.md, "Adam's second moment").
    adam_b2: float = 0.95
    fill_slack: float = 0.06  # grow again if more than this share of the budget is unused
    # Until this share of the run, each step's gradient comes from one pixel in
    # ``subsample_stride`` (the diagonals (x + y) % stride == phase, the phase advancing
    # each step): early steps need a direction more than precision (docs/tuning.md,
    # "Subsampled gradients early in the fit").
    subsample_until: float = 0.5
    subsample_stride: int = 2
    # The fit's kernels and bookkeeping (sadcodec.fit.paths): "cpu", "gpu", or "auto" ("gpu"
    # on CUDA, else "cpu"). Tests run "gpu" on the CPU, so the CUDA path's own bookkeeping
    # is checked where no GPU is.
    kernels: str = "auto"
    # Adam step sizes per group (units: px, rad, log, px, log, colour in [0, 1])
    # (docs/tuning.md, "Adam step sizes").
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
