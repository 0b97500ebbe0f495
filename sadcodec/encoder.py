"""Image array -> .sad bytes: choose settings, fit under the budget, write the container."""

from __future__ import annotations

import numpy as np

from . import bitstream, container
from .errors import SadError
from .fit import FitConfig, FitResult, Progress, fit_to_budget
from .quantize import QuantSpec, quantize

# Effort levels: iterations of the main fit. The default, 1600 at 1 bpp, is within 0.1 dB
# of what 4x its iterations reach (kodim01 29.12 vs 29.20 dB, kodim05 30.35 vs 30.44) in
# 24-27 s on 2 cores; 800 (effort 4) were 0.5-0.6 dB short of 4x (docs/speed.md).
EFFORT_ITERATIONS = {1: 200, 2: 400, 3: 600, 4: 800, 5: 1200, 6: 1600, 7: 2400, 8: 3200, 9: 4800}
DEFAULT_EFFORT = 6
MIN_SITES = 1


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


# From this rate on, positions are stored on a 1/8-pixel grid instead of 1/4: two more
# bits a site, which paid at 2 bpp once sites are dense (+0.15 dB on kodim05/13/23 at full
# size, docs/tuning.md); not measured at 1 bpp, so lower rates keep 1/4 px.
FINE_POSITIONS_FROM_BPP = 1.5
# From this rate on, an effort level fits 1.5x its iterations, up to DENSE_SCALE_UP_TO:
# twice the sites of 1 bpp take longer to settle after the last densify round. At 2 bpp
# on kodim05/13/16/01, 800 -> 1000 -> 1200 iterations gave a mean +0.16 / +0.25 dB for
# 1.2x / 1.5x the time; on kodim05/13, 1600 -> 2400 gave +0.07 dB for 1.42x (31.78 vs
# 31.85 dB, 33 vs 47 s an image), so the default's 1600 stays 1600 (docs/tuning.md).
# An explicit iteration count is used as given.
MORE_ITERATIONS_FROM_BPP = 1.5
DENSE_ITERATION_SCALE = 1.5
DENSE_SCALE_UP_TO = 1600
# From that rate on, the fit also subsamples its gradient for the first 30% of the run
# instead of 50% (FitConfig.subsample_until): at 2 bpp (1200 iterations, kodim13/05) 50%
# cost 0.05 dB mean for 28% less time, 30% gained 0.03 dB for 20% less (docs/tuning.md).
DENSE_SUBSAMPLE_UNTIL = 0.3


def effort_iterations(effort: int, bpp: float) -> int:
    """Fit iterations for an effort level at a target rate."""
    n = EFFORT_ITERATIONS[effort]
    if bpp >= MORE_ITERATIONS_FROM_BPP:
        n = max(n, min(int(round(n * DENSE_ITERATION_SCALE)), DENSE_SCALE_UP_TO))
    return n


def choose_spec(width: int, height: int, bpp: float | None = None) -> QuantSpec:
    """The quantization grids for an image and target rate (stored in the header)."""
    spec = QuantSpec()
    pfb = spec.pos_frac_bits
    if bpp is not None and bpp >= FINE_POSITIONS_FROM_BPP:
        pfb += 1
    while pfb > 0 and max(width, height) << pfb > 65536:
        pfb -= 1
    return QuantSpec(**{**spec.__dict__, "pos_frac_bits": pfb})


def make_writer(width: int, height: int, channels: int, k: int, spec: QuantSpec):
    def write(params: np.ndarray) -> bytes:
        q = quantize(params, spec, width, height)
        payload = bitstream.encode_payload(q, spec.col_bits)
        hdr = container.Header(width, height, channels, k, len(params), spec)
        return container.write(hdr, payload)

    return write


def make_estimator(width: int, height: int, spec: QuantSpec):
    """params -> approximate file bytes (fast zstd level; see bitstream's estimate)."""

    def estimate(params: np.ndarray) -> int:
        q = quantize(params, spec, width, height)
        return bitstream.payload_size_estimate(q, spec.col_bits) + container.HEADER_SIZE

    return estimate


def min_file_bytes(
    width: int, height: int, channels: int, k: int = 8, bpp: float | None = None
) -> int:
    """Size of the smallest possible file (one site) for these dimensions and rate."""
    spec = choose_spec(width, height, bpp)
    p = np.zeros((MIN_SITES, 6 + channels), np.float32)
    return len(make_writer(width, height, channels, k, spec)(p))


def fit_config(
    bpp: float, iterations: int, *, k: int = 8, seed: int = 0, profile: bool = False
) -> FitConfig:
    """The fit's settings for a target rate (bench/sweep.py starts from these too)."""
    cfg = FitConfig(iterations=iterations, k=k, seed=seed, profile=profile)
    if bpp >= MORE_ITERATIONS_FROM_BPP:
        cfg.subsample_until = DENSE_SUBSAMPLE_UNTIL
    return cfg


def encode_array(
    image: np.ndarray,
    bpp: float,
    *,
    seed: int = 0,
    effort: int | None = None,
    iterations: int | None = None,
    k: int = 8,
    progress: Progress | None = None,
    profile: bool = False,
) -> tuple[bytes, FitResult]:
    img = as_image(image)
    h, w, c = img.shape
    if not (bpp > 0 and np.isfinite(bpp)):
        raise SadError(f"--bpp must be a positive number, got {bpp}")
    if bpp > 64:
        raise SadError(f"--bpp {bpp} is absurd; use at most 64")
    budget = int(bpp * w * h // 8)
    need = min_file_bytes(w, h, c, k, bpp)
    if budget < need:
        raise SadError(
            f"budget too small: {bpp:g} bpp is {budget} bytes for {w}x{h}; the smallest "
            f"file is {need} bytes ({need * 8 / (w * h):.4f} bpp)"
        )
    if isinstance(seed, bool) or not isinstance(seed, (int, np.integer)) or not (0 <= seed < 2**32):
        raise SadError(f"--seed must be an integer in 0..{2**32 - 1}, got {seed!r}")
    if iterations is None:
        e = DEFAULT_EFFORT if effort is None else int(effort)
        if e not in EFFORT_ITERATIONS:
            raise SadError(f"--effort must be 1..9, got {effort}")
        iterations = effort_iterations(e, bpp)
    if iterations < 1 or iterations > 100_000:
        raise SadError(f"--iterations must be 1..100000, got {iterations}")
    spec = choose_spec(w, h, bpp)
    cfg = fit_config(bpp, int(iterations), k=k, seed=int(seed), profile=profile)
    writer = make_writer(w, h, c, k, spec)
    target = img.astype(np.float32) / 255.0
    estimate = make_estimator(w, h, spec)
    result = fit_to_budget(target, budget, writer, spec, cfg, progress=progress, estimate=estimate)
    return result.data, result
