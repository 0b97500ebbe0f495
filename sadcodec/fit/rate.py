"""Rate control: the byte budget a fit must meet, and the final fit to it.

While fitting, densify rounds steer the site count by a measured cost per site; at the end
the file is really written, and while it is over budget the sites cheapest to lose are
removed (in small batches, costs measured afresh before each), while it is well under,
sites are added where the error is, since unused bytes are lost quality; each change is
followed by a few touch-up steps.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING

import numpy as np
import taichi as ti

from .. import quantize
from .config import FitConfig

if TYPE_CHECKING:
    from .densify import DensifyPrune
    from .state import Fitter

# The rate fit drops at most this share of the sites between two measurements of what
# each site's removal costs: a cost is that of removing the site alone, so sites that
# cover for each other all look free, and removed together leave holes
# (docs/tuning.md, "The rate fit's drop batches").
RATE_DROP_BATCH = 0.005
# Write attempts before the rate fit gives up (each drops more than the last).
MAX_ATTEMPTS = 16
# Times the rate fit grows the site set at most.
MAX_GROWTHS = 2

Progress = Callable[[dict], None]


@dataclass(frozen=True)
class RateTarget:
    """What a fit's file must fit in, and how to measure it.

    ``write``: params -> the file's bytes; ``estimate`` (optional): params -> approximate
    bytes, much cheaper (densify rounds then write once, to calibrate it); ``fixed_bytes``:
    the part of a file that does not grow with the sites."""

    budget_bytes: int
    write: Callable[[np.ndarray], bytes]
    estimate: Callable[[np.ndarray], int] | None = None
    fixed_bytes: int = 0

    def site_bytes(self) -> int:
        """The part of the budget the sites may take."""
        return self.budget_bytes - self.fixed_bytes


def fit_rate(
    fitter: Fitter,
    rate: RateTarget,
    spec: quantize.QuantSpec,
    cfg: FitConfig,
    strategy: DensifyPrune,
    progress: Progress | None = None,
) -> bytes:
    """Write the file, dropping or adding sites until it fits the budget closely; returns
    the bytes. Its time (not counting the touch-up steps) goes to stage ``rate_fit``."""
    t0 = time.perf_counter()
    stepped = sum(fitter.timers.values())  # the touch-up steps time themselves
    budget = rate.budget_bytes
    data = b""
    grown = 0
    for attempt in range(MAX_ATTEMPTS):
        data = rate.write(fitter.get_sites()[0])
        if len(data) <= budget:
            room = budget - len(data)
            if room <= cfg.fill_slack * budget or grown >= MAX_GROWTHS:
                break
            bps = len(data) * 8 / fitter.n
            n_add = int(room * 8 / bps * 0.9)
            if n_add < 1 or fitter.n + n_add > fitter.cap:
                break
            grown += 1
            strategy.apply(fitter, fitter.n + n_add, last=True)
        else:
            bps = len(data) * 8 / fitter.n
            excess = len(data) - budget
            n_drop = min(fitter.n - 1, int(math.ceil(excess * 8 / bps * 1.05)) + 1 + attempt)
            _drop_cheapest(fitter, spec, n_drop)
        for _ in range(cfg.touch_up * (2 if grown and len(data) <= budget else 1)):
            fitter.step(cfg.final_lr, spec, refresh=True)
        if progress is not None:
            progress(
                {
                    "iteration": cfg.iterations,
                    "iterations": cfg.iterations,
                    "psnr": fitter.psnr(fitter.last_loss()),
                    "sites": fitter.n,
                    "stage": "rate",
                }
            )
    ti.sync()
    elapsed = time.perf_counter() - t0 - (sum(fitter.timers.values()) - stepped)
    fitter.timers["rate_fit"] = fitter.timers.get("rate_fit", 0.0) + elapsed
    if len(data) > budget:
        raise RuntimeError("rate control failed to meet the budget")
    return data


def _drop_cheapest(fitter: Fitter, spec: quantize.QuantSpec, n_drop: int) -> None:
    """Remove the n_drop sites whose removal costs least, RATE_DROP_BATCH at a time."""
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
