"""Instrumentation of a fit, kept apart from the algorithm: what benchmarks and tests
observe (exact stage times on a GPU, the top-K map as the fit kept it)."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np


@dataclass
class FitHooks:
    """Called by the fit at fixed points; the default observes nothing.

    ``sync_stages``: synchronise the device after each stage so that the stage timers
    (``FitResult.stage_seconds``) are exact on a GPU, at the cost of the overlap between
    stages. CPU kernels are synchronous, so there the timers are exact anyway."""

    sync_stages: bool = False

    def map_refreshed(self, fitter, shown) -> None:
        """After each refresh of the map while the geometry still moves; ``shown`` holds the
        params the map was refreshed for."""


@dataclass
class MapSnapshot(FitHooks):
    """Keeps the map after its last refresh before the geometry freezes, with the sites it
    was refreshed for (bench/topk_fit.py measures it against the brute force)."""

    ids: np.ndarray | None = None  # int32 (H, W, K)
    sites: np.ndarray | None = None  # float32 (n, 6 + C)

    def map_refreshed(self, fitter, shown) -> None:
        self.ids = fitter.map.to_numpy()
        self.sites = shown.to_numpy()[: fitter.n].copy()
