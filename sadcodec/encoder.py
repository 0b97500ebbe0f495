"""Image array -> .sad bytes: settings (sadcodec.settings), the fit under the budget
(sadcodec.fit), the metadata the settings keep, and the statistics of what was written."""

from __future__ import annotations

import math
import time
from dataclasses import dataclass

import numpy as np

from . import container
from .decoder import parse
from .errors import SadError
from .fit import FitHooks, fit_to_budget
from .fit.rate import Progress
from .render import render_params
from .settings import EncodeSettings


@dataclass(frozen=True)
class EncodeResult:
    """A written file and what it holds: its PSNR (when measured) is of the file as the
    decoder renders it at the stored size, over every channel, against the 8-bit input."""

    data: bytes
    psnr: float | None
    sites: int
    iterations: int
    seconds: float
    stage_seconds: dict

    @property
    def bytes(self) -> int:
        return len(self.data)


def as_image(image: np.ndarray) -> np.ndarray:
    """Check and normalise an input array to uint8 (H, W, C), C in {1, 3, 4}."""
    a = np.asarray(image)
    if a.ndim == 2:
        a = a[:, :, None]
    if a.ndim != 3 or a.shape[2] not in container.CHANNELS:
        raise SadError(f"unsupported image shape {a.shape}: need (H, W) or (H, W, 1|3|4)")
    if a.shape[0] < 1 or a.shape[1] < 1:
        raise SadError(f"image has zero size ({a.shape[1]}x{a.shape[0]})")
    if a.shape[0] > container.MAX_SIDE or a.shape[1] > container.MAX_SIDE:
        raise SadError(
            f"image too large ({a.shape[1]}x{a.shape[0]}); the limit is "
            f"{container.MAX_SIDE} per side"
        )
    if a.dtype != np.uint8:
        raise SadError(f"image must be 8-bit (uint8), got {a.dtype}")
    return np.ascontiguousarray(a)


# Samples per slice when comparing images: exact integer sums, temporaries of a few MB,
# not three full-size float64 copies.
PSNR_SLICE_SAMPLES = 1 << 20


def psnr(a: np.ndarray, b: np.ndarray) -> float:
    """PSNR in dB of two uint8 images of one shape over all samples (every channel)."""
    a, b = a.reshape(-1), b.reshape(-1)
    sse = 0
    for i in range(0, a.size, PSNR_SLICE_SAMPLES):
        d = a[i : i + PSNR_SLICE_SAMPLES].astype(np.int64) - b[i : i + PSNR_SLICE_SAMPLES]
        sse += int(np.dot(d, d))
    mse = sse / max(1, a.size)
    return math.inf if mse == 0 else 10 * math.log10(255.0**2 / mse)


def encode_image(
    img: np.ndarray,
    settings: EncodeSettings,
    progress: Progress | None = None,
    hooks: FitHooks | None = None,
    measure: bool = True,
) -> EncodeResult:
    """Fit ``img`` (uint8 (H, W, C), as_image) under the settings' budget; with
    ``measure``, render the written file to report its PSNR (a decode's time)."""
    t0 = time.perf_counter()
    h, w, _ = img.shape
    target = img.astype(np.float32)
    target /= 255.0  # in place: one float copy of the image, not two
    fit = fit_to_budget(
        target, settings.rate_target(), settings.spec, settings.fit, progress, hooks
    )
    del target  # the fit's copies are gone too: the measure below renders at full size
    data = fit.data
    if not settings.metadata.empty:
        # The fit had the budget less the metadata's bytes: the file stays within it.
        data = container.with_metadata(data, settings.metadata)
    seconds = time.perf_counter() - t0
    quality = None
    if measure:
        # The quality of exactly what was written: the file's sites, in the file's order.
        hdr, params = parse(data)
        shown = render_params(params, w, h, w, h, hdr.k)
        quality = psnr(shown.reshape(img.shape), img)
    return EncodeResult(
        data=data,
        psnr=quality,
        sites=len(fit.params),
        iterations=fit.iterations,
        seconds=seconds,
        stage_seconds=fit.stage_seconds,
    )
