"""Densify/prune: the policy that steers the number of sites toward what the budget
allows, apart from the loop that runs it (compare gsplat's ``strategy`` objects).

Each round measures what a site costs in bytes (by writing the current sites, or by a
calibrated cheap estimate), sets the site goal from the budget, drops dead sites, sheds
the sites cheapest to lose while over the goal, and splits the sites that carry the most
error toward their error centroid while under it.
"""

from __future__ import annotations

import numpy as np

from .config import FitConfig
from .rate import RateTarget
from .state import Fitter

# The first site goal assumes this many bits a site (Kodak fits measure 42-46); each
# round replaces it by a measurement.
BITS_PER_SITE_GUESS = 46.0
# Sites that own less pixel mass than this (sum of softmax weights) are dead weight.
DEAD_MASS = 0.05
# A round over its site goal sheds at most this share of the sites: each removal cost is
# that of losing the site alone, and the fit has the iterations up to the next round to
# close the holes (docs/tuning.md, "Site count and shedding").
SHED_PER_ROUND = 0.02


class DensifyPrune:
    """Site-count steering for one fit. ``rng`` is shared with the fit (split directions)."""

    def __init__(self, cfg: FitConfig, rate: RateTarget, rng: np.random.Generator):
        self.cfg = cfg
        self.rate = rate
        self.rng = rng
        self.bits_per_site = BITS_PER_SITE_GUESS
        self._calib: float | None = None  # exact bytes / estimated bytes, measured once

    def goal(self) -> int:
        """Sites the budget allows at the current bits per site."""
        return max(4, int(self.rate.site_bytes() * 8 / self.bits_per_site))

    def measure(self, fitter: Fitter) -> None:
        """Bits per site of the current sites: written exactly once to calibrate the cheap
        estimate, estimated after (zstd at the file's level is slow)."""
        p = fitter.get_sites()[0]
        rate = self.rate
        if rate.estimate is None:
            size = len(rate.write(p))
        elif self._calib is None:
            size = len(rate.write(p))
            self._calib = size / max(1, rate.estimate(p))
        else:
            size = rate.estimate(p) * self._calib
        self.bits_per_site = size * 8 / fitter.n

    def round(self, fitter: Fitter, last: bool) -> None:
        """One densify round: measure, set the goal, prune and grow toward it."""
        self.measure(fitter)
        self.apply(fitter, self.goal(), last)

    def apply(self, fitter: Fitter, n_goal: int, last: bool) -> None:
        """Drop dead sites; shed the cheapest while over n_goal; split high-error sites
        toward their error centroid while under it (all the way if ``last``, else by at
        most grow_per_round of the live sites)."""
        st = fitter.site_stats(None)
        p, m, v = fitter.get_sites()
        n = fitter.n
        keep = st[:, 0] >= DEAD_MASS
        n_keep = int(keep.sum())
        if n_keep > n_goal:
            # A site's bits grow as the fit goes on, so the count set early ends over
            # budget: shed now, while the fit can still adapt, not all in the rate fit.
            n_shed = min(n_keep - n_goal, max(1, int(SHED_PER_ROUND * n_keep)))
            cost = np.where(keep, st[:, 4], np.inf)
            keep[np.argsort(cost, kind="stable")[:n_shed]] = False
            n_keep -= n_shed
        room = fitter.cap - n_keep
        if last:
            n_add = n_goal - n_keep
        else:
            n_add = min(n_goal - n_keep, int(self.cfg.grow_per_round * n_keep))
        n_add = max(0, min(n_add, room))
        if n_add == 0 and n_keep == n:
            return
        new = self._children(fitter, p, st, keep, n_add)
        zeros = np.zeros_like(new)
        fitter.set_sites(
            np.concatenate([p[keep], new]),
            np.concatenate([m[keep], zeros]),
            np.concatenate([v[keep], zeros]),
        )
        fitter.rebuild_after(keep if n_keep < n else None, n_keep)

    def _children(
        self, fitter: Fitter, p: np.ndarray, st: np.ndarray, keep: np.ndarray, n_add: int
    ) -> np.ndarray:
        """New sites: copies of the n_add kept sites with the most error, moved to their
        error centroid (a random unit step where it is under half a pixel away), coloured
        from the target there."""
        err = np.where(keep, st[:, 1], -1.0)
        parents = np.argsort(-err, kind="stable")[:n_add]
        parents = parents[err[parents] > 0]
        new = p[parents].copy()
        e = np.maximum(st[parents, 1], 1e-12)
        dx = st[parents, 2] / e - p[parents, 0]
        dy = st[parents, 3] / e - p[parents, 1]
        dist = np.hypot(dx, dy)
        ang = self.rng.uniform(0, 2 * np.pi, len(parents))
        small = dist < 0.5
        dx = np.where(small, np.cos(ang), dx)
        dy = np.where(small, np.sin(ang), dy)
        new[:, 0] = np.clip(p[parents, 0] + dx, 0, fitter.w - 1e-3)
        new[:, 1] = np.clip(p[parents, 1] + dy, 0, fitter.h - 1e-3)
        tgt = fitter.target_np
        xi = np.clip(new[:, 0].astype(int), 0, fitter.w - 1)
        yi = np.clip(new[:, 1].astype(int), 0, fitter.h - 1)
        new[:, 6:] = tgt[yi, xi]
        return new
