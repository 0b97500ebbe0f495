"""The two ways of running a fit's steps, chosen once per fit.

``CpuPath``: the gradient summed in bands of rows without atomics over a slot-stable copy
of the map (bit-reproducible on any thread count), the exact top-K map by tile culling
(at the start, after densify/prune and as the refresh while fitting), and the colour phase
from the normal equations of the colours' least-squares problem.
``GpuPath``: atomic gradients over the map itself, the map built and kept by jump
flooding, and the colour phase as a kernel over the pixels.

``FitConfig.kernels`` picks one ("auto": GPU on CUDA, else CPU); tests run the GPU path
on the CPU, so its bookkeeping is checked where no GPU is.
"""

from __future__ import annotations

import numpy as np
import taichi as ti

from sadcodec.kernels import colour as kcolour
from sadcodec.kernels import gradient as kgrad
from sadcodec.kernels.common import GEOM_PARAMS

from ..backend import current_arch
from ..colour_ls import ColourNormal
from .config import FitConfig

# Bands of rows the CPU gradient is split into: a fixed count (not the thread count), so
# files do not depend on --threads; one per thread of a 16-thread laptop. Each band is a
# full gradient slice that Adam reads and zeroes every step (docs/tuning.md, "Gradient
# bands").
GRAD_BANDS = 16


class FitPath:
    """What differs between the CPU and the GPU fit; ``Fitter`` holds the state."""

    name = ""
    synchronous = False  # kernels return when done, so stage timers need no sync
    bands = 1  # gradient slices

    def __init__(self, h: int, w: int, cfg: FitConfig):
        self.h, self.w, self.cfg = h, w, cfg

    def refresh_every(self) -> int:
        """Iterations between map refreshes while fitting."""
        return self.cfg.refresh_every

    def lanes(self, fitter):
        """The map the gradient kernels read."""
        return fitter.map.cur

    def build(self, fitter) -> None:
        """The map from scratch, for the current sites (the table is prepared)."""
        fitter.map.build(fitter.tab, fitter.n, fitter.s_inv)

    def refresh(self, fitter) -> None:
        """Keep the map fresh while the sites move: step-1 passes with injection."""
        cfg = self.cfg
        fitter.map.refresh(
            fitter.tab, fitter.n, fitter.s_inv, stencil=cfg.refresh_stencil, inject=cfg.inject
        )

    def rebuild(self, fitter, n_new_from: int | None) -> None:
        """The map after densify/prune (already renumbered): new sites seeded, then passes."""
        if n_new_from is not None and n_new_from < fitter.n:
            fitter.map.reseed(fitter.tab, n_new_from, fitter.n)
        fitter.map.refresh(
            fitter.tab,
            fitter.n,
            fitter.s_inv,
            steps=(8, 4, 2, 1, 1),
            stencil=8,
            inject=self.cfg.inject,
        )

    def gradient_kernel(self):
        """The fused forward+backward kernel: atomic adds into one gradient slice."""
        return kgrad.forward_backward_atomic

    def gradient(self, fitter, lanes, src, stride: int) -> None:
        """The fused forward+backward into fitter.grad and fitter.loss."""
        self.gradient_kernel()(
            lanes,
            fitter.tab,
            src,
            fitter.target,
            fitter.grad,
            fitter.loss,
            fitter.s_inv,
            stride,
            fitter.step_count % stride,
            self.cfg.k,
            fitter.c,
        )

    def weights_buffer(self, shape: tuple):
        """Storage for the colour phase's softmax weights."""
        return ti.ndarray(ti.f32, shape)

    def weights_changed(self) -> None:
        """The stored softmax weights were recomputed."""

    def colour_gradient(self, fitter, lanes, src):
        """The colour phase's loss (into fitter.loss) and gradient; returns the gradient
        array Adam reads."""
        kcolour.colour_grad_atomic(
            lanes, fitter.wts, src, fitter.target, fitter.grad, fitter.loss, self.cfg.k, fitter.c
        )
        return fitter.grad


class GpuPath(FitPath):
    name = "gpu"


class CpuPath(FitPath):
    name = "cpu"
    synchronous = True

    def __init__(self, h: int, w: int, cfg: FitConfig):
        super().__init__(h, w, cfg)
        self.bands = min(GRAD_BANDS, h)
        self._normal: ColourNormal | None = None
        self._cgrad: np.ndarray | None = None

    def refresh_every(self) -> int:
        return self.cfg.exact_refresh_every

    def lanes(self, fitter):
        # The banded kernels add a slot's run of one site at once (TopKMap.stable).
        return fitter.map.stable(self.bands)

    def _tiled(self, fitter) -> bool:
        """The exact map by tile culling; False where culling declines (then the caller
        falls back to jump flooding)."""
        return fitter.map.build_tiled(fitter.tab, fitter.n, fitter.s_inv)

    def build(self, fitter) -> None:
        if not self._tiled(fitter):
            super().build(fitter)

    def refresh(self, fitter) -> None:
        if not self._tiled(fitter):
            super().refresh(fitter)

    def rebuild(self, fitter, n_new_from: int | None) -> None:
        if not self._tiled(fitter):
            super().rebuild(fitter, n_new_from)

    def gradient_kernel(self):
        """Each band of rows summed by one thread into its own slice (no atomics)."""
        return kgrad.forward_backward_bands

    def weights_buffer(self, shape: tuple):
        # A numpy array, which kernels write in place and numpy reads.
        return np.empty(shape, np.float32)

    def weights_changed(self) -> None:
        self._normal = None

    def colour_gradient(self, fitter, lanes, src):
        # Loss and gradient from the normal equations (sadcodec.colour_ls): the same values
        # as the colour kernel, from a sparse product over the sites.
        if self._normal is None:
            self._normal = ColourNormal(lanes, fitter.wts, fitter.target_np, fitter.n)
            self._cgrad = np.zeros((1, fitter.cap, fitter.p), np.float32)
        colours = src.to_numpy()[: fitter.n, GEOM_PARAMS:]
        loss, g = self._normal.loss_and_grad(colours)
        self._cgrad[0, : fitter.n, GEOM_PARAMS:] = g  # adam() zeroes it after reading
        rows = np.zeros(fitter.h, np.float32)
        rows[0] = loss
        fitter.loss.from_numpy(rows)
        return self._cgrad


def choose_path(h: int, w: int, cfg: FitConfig) -> FitPath:
    """The path for ``cfg.kernels`` on the running backend."""
    if cfg.kernels not in ("auto", "cpu", "gpu"):
        raise ValueError(f"FitConfig.kernels must be auto, cpu or gpu, not {cfg.kernels!r}")
    kind = cfg.kernels
    if kind == "auto":
        kind = "gpu" if current_arch() == "cuda" else "cpu"
    return CpuPath(h, w, cfg) if kind == "cpu" else GpuPath(h, w, cfg)
