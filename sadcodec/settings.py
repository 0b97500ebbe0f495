"""The one place that turns what a user asks for (bpp or a file size, effort, iterations,
seed, the metadata to keep) into the encoder's settings: the quantization grids, the
fit's configuration and the byte budget.

The API, the CLI, the benchmarks and the tests all take their settings from here, and the
arguments are validated here, once.
"""

from __future__ import annotations

import math
import numbers
import os
import re
from dataclasses import dataclass, replace
from typing import TYPE_CHECKING

from .container import EXIF_PREFIX, Metadata
from .errors import SadError, SadFormatError, SadTypeError
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
# From this many pixels on, below MORE_ITERATIONS_FROM_BPP, an effort level fits
# LARGE_ITERATION_SCALE times its iterations, and the whole geometry phase takes the
# subsampled gradient: photographs at camera resolution lose less to both than the Kodak
# images (docs/tuning.md, "Photographs at camera resolution").
LARGE_FROM_PIXELS = 1_000_000
LARGE_ITERATION_SCALE = 0.875
LARGE_SUBSAMPLE_UNTIL = 0.7

# An encode's peak memory, estimated from the image size and the settings before any work
# starts, so that an image too large for the machine is refused in one line instead of
# swapping or being killed. The terms follow what a fit allocates (sadcodec/fit/state.py,
# paths.py, topk.py, colour_ls.py, init.py); their sizes were fitted to the peak RSS of
# real encodes and rounded up, so the estimate stays above every measured peak:
#
#   bytes = MEMORY_BASE
#         + pixels * (MEMORY_PER_PIXEL + MEMORY_PER_MAP_SLOT * K + MEMORY_PER_SAMPLE * C)
#         + min(pixels, MEMORY_CHUNK_PIXELS) * MEMORY_PER_CHUNK_PIXEL
#         + site capacity * MEMORY_PER_SITE
#
# MEMORY_BASE: Python, numpy, scipy, the Taichi runtime and its compiled kernels, and on
# a cold kernel cache LLVM compiling them (about 100 MiB more: a 192x128 encode peaks at
# 191 MB with the cache warm, 289-294 MB with it empty).
# MEMORY_PER_MAP_SLOT: the (H, W, K) arrays held while fitting: the int32 top-K map, its
# slot-stable copy, the float32 softmax weights of the colour phase and, on the GPU path
# (or where tile culling declines), jump flooding's second map: 4 x 4 bytes.
# MEMORY_PER_SAMPLE: per pixel and channel: the uint8 input, the float32 target on the
# host and on the device, and the float64 temporaries of init's blur.
# MEMORY_PER_PIXEL: the rest per pixel: init's detail map and sampling weights, the loss
# rows, tile culling's lists, the render that measures the written file.
# MEMORY_PER_CHUNK_PIXEL: colour_ls builds the colour phase's normal equations from
# slices of CHUNK_PIXELS pixels (its sparse weight rows in float64, their product), so
# this term stops growing there.
# MEMORY_PER_SITE: per site of the fit's capacity (CAPACITY_FACTOR times the budget's
# first site goal at BITS_PER_SITE_GUESS bits, plus CAPACITY_SLACK; sadcodec.fit.schedule
# and .densify): the sites, Adam's moments, the per-site table, GRAD_BANDS gradient
# slices, the normal equations' sparse matrix, the writer's copies.
#
# Measured: peak RSS of fresh CPU processes encoding kodim23 resized (and noise, which
# gave the same), 50 iterations (memory does not depend on them: 768x512 at 1 bpp peaks
# at 309 MiB at 50 iterations, 308 at 400, 306 at the default 1600), Taichi's cache warm.
# A least-squares fit over 23 encodes gives 157 MiB + 150 B a pixel (K = 8) + 9.6 B a
# sample + 167 B a chunk pixel + 1450 B a site; the constants below, with a base 100 MiB
# lower than MEMORY_BASE's (which covers a cold cache too), give 1.17-1.31x the measured
# peak, MiB measured (estimated with that lower base; add 100):
#   256x256    RGB 1 bpp 176 (230), 64 bpp 382 (463); RGBA 64 bpp 397 (464)
#   768x512    RGB 1 bpp 309 (378), 2 bpp 337 (400), 8 bpp 429 (533); gray 1 bpp 298
#              (366); RGBA 2 bpp 333 (406)
#   1536x1024  RGB 1 bpp 674 (817), 2 bpp 736 (905); RGBA 2 bpp 760 (929)
#   3072x2048  RGB 1 bpp 1700 (2091); RGBA 2 bpp 2060 (2542)
# tests/test_encode.py checks a fresh process's peak against its estimate.
MEMORY_BASE = 300 << 20
MEMORY_PER_PIXEL = 48
MEMORY_PER_MAP_SLOT = 16
MEMORY_PER_SAMPLE = 16
MEMORY_PER_CHUNK_PIXEL = 192
MEMORY_CHUNK_PIXELS = 1 << 20  # = sadcodec.colour_ls.CHUNK_PIXELS
MEMORY_PER_SITE = 1700
# The fit's site capacity (sadcodec.fit.schedule.CAPACITY_FACTOR and CAPACITY_SLACK, over
# sadcodec.fit.densify.BITS_PER_SITE_GUESS); repeated here so that settings need not
# import the fit (and Taichi); tests/test_settings.py checks that they agree.
CAPACITY_FACTOR = 1.6
CAPACITY_SLACK = 64
BITS_PER_SITE_GUESS = 46.0
# Without --max-memory, an encode may use this share of the machine's memory (physical
# memory, or the cgroup's limit where that is lower).
DEFAULT_MEMORY_SHARE = 0.75
_UNITS = {"": 1, "k": 1 << 10, "m": 1 << 20, "g": 1 << 30, "t": 1 << 40}
# --size units: k, M, G are powers of 1000, Ki, Mi, Gi powers of 1024 (unlike
# --max-memory's K, M, G). --size is a hard upper limit, so a unit read as the smaller of
# the two readings keeps a file under the limit its writer meant either way.
_SIZE_UNITS = {"": 1, "k": 10**3, "m": 10**6, "g": 10**9, "ki": 1 << 10, "mi": 1 << 20}
_SIZE_UNITS |= {"gi": 1 << 30}


@dataclass(frozen=True)
class EncodeSettings:
    """Everything an encode of one image needs besides its pixels."""

    width: int
    height: int
    channels: int
    bpp: float  # 8 * budget_bytes / (W * H) for a --size, else as asked
    # The whole file, header and metadata included: floor(bpp * W * H / 8), or --size
    # (at most MAX_BPP's).
    budget_bytes: int
    spec: QuantSpec
    fit: FitConfig
    memory_bytes: int = 0  # estimated peak memory of the encode (estimate_memory)
    max_memory: int | None = None  # the limit it was checked against (None: unknown)
    metadata: Metadata = Metadata()  # what the file keeps besides its sites
    size: int | None = None  # the --size asked for (None: a --bpp budget)

    @property
    def fit_budget_bytes(self) -> int:
        """The budget of the fit's file (header and sites): the whole budget less the
        metadata's bytes, which are added to the fitted file afterwards."""
        return self.budget_bytes - self.metadata.block_bytes()

    def rate_target(self) -> RateTarget:
        from .fit.rate import RateTarget

        w, h = self.width, self.height
        return RateTarget(
            budget_bytes=self.fit_budget_bytes,
            write=make_writer(w, h, self.channels, self.fit.k, self.spec),
            estimate=make_estimator(w, h, self.spec),
            fixed_bytes=fixed_bytes(),
        )


def effort_iterations(effort: int, bpp: float, pixels: int = 0) -> int:
    """Fit iterations for an effort level at a target rate and image size."""
    n = EFFORT_ITERATIONS[effort]
    if bpp >= MORE_ITERATIONS_FROM_BPP:
        n = max(n, min(int(round(n * DENSE_ITERATION_SCALE)), DENSE_SCALE_UP_TO))
    elif pixels >= LARGE_FROM_PIXELS:
        n = int(round(n * LARGE_ITERATION_SCALE))
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


def fit_config(
    bpp: float, iterations: int, *, k: int = DEFAULT_K, seed: int = 0, pixels: int = 0
) -> FitConfig:
    """The fit's settings for a target rate and image size."""
    cfg = FitConfig(iterations=iterations, k=k, seed=seed)
    if bpp >= MORE_ITERATIONS_FROM_BPP:
        cfg.subsample_until = DENSE_SUBSAMPLE_UNTIL
    elif pixels >= LARGE_FROM_PIXELS:
        cfg.subsample_until = LARGE_SUBSAMPLE_UNTIL
    return cfg


def check_bpp(bpp: object) -> float:
    """The target rate as a float, or SadError (SadTypeError if it is not a number)."""
    msg = f"--bpp must be a number in (0, {MAX_BPP:g}], got {bpp!r}"
    if isinstance(bpp, bool) or not isinstance(bpp, numbers.Real):
        raise SadTypeError(msg)
    value = _as_float(bpp, msg)
    if not (math.isfinite(value) and 0 < value <= MAX_BPP):
        raise SadError(msg)
    return value


def _as_float(value: numbers.Real, msg: str) -> float:
    try:
        return float(value)
    except (OverflowError, ValueError):  # an integer beyond a float's range
        raise SadError(msg) from None


def _check_int(name: str, value: object, lo: int, hi: int) -> int:
    msg = f"--{name} must be an integer in {lo}..{hi}, got {value!r}"
    if isinstance(value, bool) or not isinstance(value, numbers.Integral):
        raise SadTypeError(msg)
    if not lo <= value <= hi:
        raise SadError(msg)
    return int(value)


def site_capacity(budget_bytes: int) -> int:
    """The fit's site capacity for a budget (sadcodec.fit.schedule.fit_to_budget)."""
    site_bytes = budget_bytes - fixed_bytes()
    goal = max(4, int(site_bytes * 8 / BITS_PER_SITE_GUESS))
    return int(goal * CAPACITY_FACTOR) + CAPACITY_SLACK


def estimate_memory(
    width: int, height: int, channels: int, budget_bytes: int, k: int = DEFAULT_K
) -> int:
    """Peak memory of an encode in bytes, an upper bound (the formula above)."""
    pixels = width * height
    per_pixel = MEMORY_PER_PIXEL + MEMORY_PER_MAP_SLOT * k + MEMORY_PER_SAMPLE * channels
    return int(
        MEMORY_BASE
        + pixels * per_pixel
        + min(pixels, MEMORY_CHUNK_PIXELS) * MEMORY_PER_CHUNK_PIXEL
        + site_capacity(budget_bytes) * MEMORY_PER_SITE
    )


def _cgroup_limit() -> int | None:
    """This process's cgroup memory limit (v2 or v1), or None where there is none."""
    paths = ["/sys/fs/cgroup/memory.max", "/sys/fs/cgroup/memory/memory.limit_in_bytes"]
    try:
        with open("/proc/self/cgroup") as f:
            for line in f:
                _, controllers, path = line.rstrip("\n").split(":", 2)
                if controllers == "":
                    paths.append(f"/sys/fs/cgroup{path}/memory.max")
                elif "memory" in controllers.split(","):
                    paths.append(f"/sys/fs/cgroup/memory{path}/memory.limit_in_bytes")
    except (OSError, ValueError):
        pass
    limits = []
    for path in paths:
        try:
            with open(path) as f:
                text = f.read().strip()
        except OSError:
            continue
        if text.isdigit() and int(text) < 1 << 60:  # v1 says "no limit" with ~2^63
            limits.append(int(text))
    return min(limits) if limits else None


def machine_memory() -> int | None:
    """The memory this process may use: physical memory, or the cgroup's limit where that
    is lower; None where neither is known."""
    try:
        total = os.sysconf("SC_PHYS_PAGES") * os.sysconf("SC_PAGE_SIZE")
    except (AttributeError, ValueError, OSError):
        total = None
    limit = _cgroup_limit()
    known = [m for m in (total, limit) if m is not None and m > 0]
    return min(known) if known else None


def default_max_memory() -> int | None:
    """The memory limit of an encode without --max-memory (None: unknown, not checked)."""
    total = machine_memory()
    return None if total is None else int(total * DEFAULT_MEMORY_SHARE)


def parse_memory(value: object) -> int:
    """A memory size in bytes: a positive number, or a string such as "8G", "512M",
    "1.5GiB" or "1000000" (K, M, G, T are powers of 1024); SadError otherwise."""
    msg = f"--max-memory must be a size in bytes, or with a unit such as 8G or 512M, got {value!r}"
    if isinstance(value, str):
        m = re.fullmatch(r"\s*(\d+(?:\.\d*)?|\.\d+)\s*(?:([kmgt])(?:i?b)?|b)?\s*", value, re.I)
        if m is None:
            raise SadError(msg)
        number = float(m.group(1)) * _UNITS[(m.group(2) or "").lower()]
    elif isinstance(value, numbers.Real) and not isinstance(value, bool):
        number = _as_float(value, msg)
    else:
        raise SadTypeError(msg)
    if not (math.isfinite(number) and number >= 1):
        raise SadError(msg)
    return int(number)


def parse_size(value: object) -> int:
    """A file size limit in bytes: a positive number, or a string such as "50k", "1.5M",
    "64KiB" or "20000" (k, M, G are powers of 1000; Ki, Mi, Gi of 1024; a trailing B is
    allowed); fractions of a byte are dropped. SadError otherwise."""
    msg = f"--size must be a size in bytes, or with a unit such as 50k or 1.5M, got {value!r}"
    if isinstance(value, str):
        m = re.fullmatch(r"\s*(\d+(?:\.\d*)?|\.\d+)\s*(?:([kmg]i?)b?|b)?\s*", value, re.I)
        if m is None:
            raise SadError(msg)
        number = float(m.group(1)) * _SIZE_UNITS[(m.group(2) or "").lower()]
    elif isinstance(value, numbers.Real) and not isinstance(value, bool):
        number = _as_float(value, msg)
    else:
        raise SadTypeError(msg)
    if not (math.isfinite(number) and number >= 1):
        raise SadError(msg)
    return int(number)


def make_metadata(icc_profile: object = None, exif: object = None) -> Metadata:
    """The metadata to store from an ICC profile and EXIF (bytes-like, or None / empty
    for none); EXIF with or without the "Exif\\0\\0" prefix of Pillow's info["exif"].
    SadTypeError for another type; their content is checked by encode_settings."""
    values = []
    for name, value in (("icc_profile", icc_profile), ("exif", exif)):
        if value is None:
            values.append(None)
            continue
        if not isinstance(value, (bytes, bytearray, memoryview)):
            raise SadTypeError(f"{name} must be bytes or None, got {type(value).__name__}")
        values.append(bytes(value) or None)
    icc, ex = values
    if ex is not None and ex.startswith(EXIF_PREFIX):
        ex = ex[len(EXIF_PREFIX) :] or None
    return Metadata(icc, ex)


def describe_metadata(meta: Metadata) -> str:
    """'ICC profile 3144 bytes, EXIF 1020 bytes' (the entries present)."""
    parts = []
    if meta.icc_profile:
        parts.append(f"ICC profile {len(meta.icc_profile)} bytes")
    if meta.exif:
        parts.append(f"EXIF {len(meta.exif)} bytes")
    return ", ".join(parts) or "none"


def format_bytes(n: float) -> str:
    """Bytes for people: 1.5 GiB, 300 MiB."""
    if n >= 1 << 30:
        return f"{n / (1 << 30):.1f} GiB"
    return f"{n / (1 << 20):.0f} MiB"


def check_memory(
    width: int, height: int, bpp: float, estimate: int, max_memory: object = None
) -> int | None:
    """The limit an encode's estimated peak memory must stay under (``max_memory``, else
    DEFAULT_MEMORY_SHARE of the machine's); SadError, in one line, when it does not."""
    if max_memory is None:
        limit = default_max_memory()
        total = machine_memory()
        where = f"{DEFAULT_MEMORY_SHARE:.0%} of this machine's {format_bytes(total or 0)}"
    else:
        limit = parse_memory(max_memory)
        where = "--max-memory"
    if limit is not None and estimate > limit:
        raise SadError(
            f"a {width}x{height} image at {bpp:g} bpp needs about {format_bytes(estimate)} "
            f"of memory to encode (estimated), over the limit of {format_bytes(limit)} "
            f"({where}); raise it with --max-memory (max_memory= in bytes in the Python "
            f"API), e.g. --max-memory {math.ceil(estimate / (1 << 30))}G"
        )
    return limit


def encode_settings(
    width: int,
    height: int,
    channels: int,
    bpp: float | None = None,
    *,
    size: object = None,
    effort: int | None = None,
    iterations: int | None = None,
    seed: int = 0,
    k: int = DEFAULT_K,
    max_memory: object = None,
    icc_profile: object = None,
    exif: object = None,
) -> EncodeSettings:
    """Validate the arguments and derive the settings of an encode; SadError if invalid,
    or if the encode's estimated peak memory (estimate_memory) is over ``max_memory``
    (bytes, or a string such as "8G"; default: DEFAULT_MEMORY_SHARE of the machine's).

    The budget is ``bpp`` (default 1.0) or ``size``, the most bytes the file may have
    (parse_size; capped at MAX_BPP's budget), not both. The metadata (make_metadata) is
    stored in the file and counts in its size: the fit gets the budget less its bytes."""
    if bpp is not None and size is not None:
        raise SadError("give --bpp or --size, not both")
    meta = make_metadata(icc_profile, exif)
    try:
        meta.validate(channels)
    except SadFormatError as exc:
        raise SadError(f"cannot store the metadata: {exc}") from None
    pixels = width * height
    if size is not None:
        limit_bytes = parse_size(size)
        budget = min(limit_bytes, math.floor(MAX_BPP * pixels / 8))
        bpp = 8 * budget / pixels
    else:
        limit_bytes = None
        bpp = check_bpp(1.0 if bpp is None else bpp)
        budget = math.floor(bpp * pixels / 8)
    seed = _check_int("seed", seed, 0, MAX_SEED)
    if effort is not None and iterations is not None:
        raise SadError("give --effort or --iterations, not both")
    meta_bytes = meta.block_bytes()
    # The fit's grids and iterations follow the rate its sites get.
    fit_bpp = max(0.0, bpp - 8 * meta_bytes / pixels)
    if iterations is None:
        e = DEFAULT_EFFORT if effort is None else _check_int("effort", effort, 1, 9)
        iterations = effort_iterations(e, fit_bpp, pixels)
    iterations = _check_int("iterations", iterations, 1, MAX_ITERATIONS)
    spec = choose_spec(width, height, fit_bpp)
    need = smallest_file(width, height, channels, k, spec)
    asked = f"--size {limit_bytes} bytes" if size is not None else f"{bpp:g} bpp"
    if budget < need + meta_bytes:
        least = 8 * (need + meta_bytes) / pixels
        if meta_bytes and budget >= need:
            raise SadError(
                f"the metadata ({describe_metadata(meta)}; {meta_bytes} bytes stored) leaves "
                f"{budget - meta_bytes} of the {budget} bytes {asked} allows for "
                f"{width}x{height}, less than the smallest file's {need}: drop it with "
                "--metadata none (or --metadata icc for EXIF), or allow at least "
                f"{need + meta_bytes} bytes ({least:.4f} bpp)"
            )
        if least > MAX_BPP:
            raise SadError(
                f"a {width}x{height} image is too small for .sad (the smallest file is "
                f"{need} bytes, {least:g} bpp; --bpp is at most {MAX_BPP:g})"
            )
        raise SadError(
            f"budget too small: {asked} is {budget} bytes for {width}x{height}; the "
            f"smallest file is {need + meta_bytes} bytes ({least:.4f} bpp)"
        )
    memory = estimate_memory(width, height, channels, budget - meta_bytes, k)
    limit = check_memory(width, height, bpp, memory, max_memory)
    return EncodeSettings(
        width=width,
        height=height,
        channels=channels,
        bpp=bpp,
        budget_bytes=budget,
        spec=spec,
        fit=fit_config(fit_bpp, iterations, k=k, seed=seed, pixels=pixels),
        memory_bytes=memory,
        max_memory=limit,
        metadata=meta,
        size=limit_bytes,
    )
