"""The one place that turns what a user asks for (bpp, effort, iterations, seed) into the
encoder's settings: the quantization grids, the fit's configuration and the byte budget.

The API, the CLI, the benchmarks and the tests all take their settings from here, and the
arguments are validated here, once.
"""

from __future__ import annotations

import math
import numbers
from dataclasses import dataclass, replace
from typing import TYPE_CHECKING

from .errors import SadError
from .fit.config import FitConfig
from .quantize import QuantSpec
from .writer import fixed_bytes, make_estimator, make_writer, smallest_file

if TYPE_CHECKING:
    from .fit.rate import RateTarget

MAX_BPP = 64.0
MAX_SEED = 2**32 - 1
MAX_ITERATIONS = 100_000
DEFAULT_K = 8
# Effort levels: iterations of the main fit (docs/tuning.md, "Iterations by effort and
# rate").
EFFORT_ITERATIONS = {1: 200, 2: 400, 3: 600, 4: 800, 5: 1200, 6: 1600, 7: 2400, 8: 3200, 9: 4800}
DEFAULT_EFFORT = 6
# From this rate on, positions are stored on a grid twice as fine: two more bits a site,
# which pay once sites are dense (docs/tuning.md, "Fine positions at high rates").
FINE_POSITIONS_FROM_BPP = 1.5
# From this rate on, an effort level fits DENSE_ITERATION_SCALE times its iterations, up to
# DENSE_SCALE_UP_TO: denser sites take longer to settle after the last densify round; and
# the gradient is subsampled for a shorter share of the run (docs/tuning.md, "Iterations
# by effort and rate" and "Subsampled gradients early in the fit"). An explicit iteration
# count is used as given.
MORE_ITERATIONS_FROM_BPP = 1.5
DENSE_ITERATION_SCALE = 1.5
DENSE_SCALE_UP_TO = 1600
DENSE_SUBSAMPLE_UNTIL = 0.3


@dataclass(frozen=True)
class EncodeSettings:
    """Everything an encode of one image needs besides its pixels."""

    width: int
    height: int
    channels: int
    bpp: float
    budget_bytes: int  # floor(bpp * W * H / 8): the whole file, header included
    spec: QuantSpec
    fit: FitConfig

    def rate_target(self) -> RateTarget:
        from .fit.rate import RateTarget

        w, h = self.width, self.height
        return RateTarget(
            budget_bytes=self.budget_bytes,
            write=make_writer(w, h, self.channels, self.fit.k, self.spec),
            estimate=make_estimator(w, h, self.spec),
            fixed_bytes=fixed_bytes(),
        )


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
    return replace(spec, pos_frac_bits=pfb)


def fit_config(bpp: float, iterations: int, *, k: int = DEFAULT_K, seed: int = 0) -> FitConfig:
    """The fit's settings for a target rate."""
    cfg = FitConfig(iterations=iterations, k=k, seed=seed)
    if bpp >= MORE_ITERATIONS_FROM_BPP:
        cfg.subsample_until = DENSE_SUBSAMPLE_UNTIL
    return cfg


def check_bpp(bpp: object) -> float:
    """The target rate as a float, or SadError."""
    ok = isinstance(bpp, numbers.Real) and not isinstance(bpp, bool)
    if not ok or not (math.isfinite(bpp) and 0 < bpp <= MAX_BPP):
        raise SadError(f"--bpp must be a number in (0, {MAX_BPP:g}], got {bpp!r}")
    return float(bpp)


def _check_int(name: str, value: object, lo: int, hi: int) -> int:
    if isinstance(value, bool) or not isinstance(value, numbers.Integral) or not lo <= value <= hi:
        raise SadError(f"--{name} must be an integer in {lo}..{hi}, got {value!r}")
    return int(value)


def encode_settings(
    width: int,
    height: int,
    channels: int,
    bpp: float,
    *,
    effort: int | None = None,
    iterations: int | None = None,
    seed: int = 0,
    k: int = DEFAULT_K,
) -> EncodeSettings:
    """Validate the arguments and derive the settings of an encode; SadError if invalid."""
    bpp = check_bpp(bpp)
    seed = _check_int("seed", seed, 0, MAX_SEED)
    if effort is not None and iterations is not None:
        raise SadError("give --effort or --iterations, not both")
    if iterations is None:
        e = DEFAULT_EFFORT if effort is None else _check_int("effort", effort, 1, 9)
        iterations = effort_iterations(e, bpp)
    iterations = _check_int("iterations", iterations, 1, MAX_ITERATIONS)
    spec = choose_spec(width, height, bpp)
    budget = math.floor(bpp * width * height / 8)
    need = smallest_file(width, height, channels, k, spec)
    if budget < need:
        least = 8 * need / (width * height)
        if least > MAX_BPP:
            raise SadError(
                f"a {width}x{height} image is too small for .sad (the smallest file is "
                f"{need} bytes, {least:g} bpp; --bpp is at most {MAX_BPP:g})"
            )
        raise SadError(
            f"budget too small: {bpp:g} bpp is {budget} bytes for {width}x{height}; the "
            f"smallest file is {need} bytes ({least:.4f} bpp)"
        )
    return EncodeSettings(
        width=width,
        height=height,
        channels=channels,
        bpp=bpp,
        budget_bytes=budget,
        spec=spec,
        fit=fit_config(bpp, iterations, k=k, seed=seed),
    )
