"""Quantization of site parameters to integers, and back.

Every parameter has a documented uniform grid (docs/FORMAT.md); the encoder fits through
``dequantize(quantize(.))`` in its last phase, so what it optimises is what decoders see.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass

import numpy as np

from .errors import SadFormatError

# The largest log-temperature a grid may reach (docs/FORMAT.md, "Parameter grids"). Every
# logit is -e^t (sqrt(q) - r) / S; over the image (|d| <= sqrt(2) S) and the ranges below
# (a <= 16, |r| <= 4096 + 64 * 255 = 20416 px) |sqrt(q) - r| / S <= sqrt(2) e^8 + 0.01 +
# 20416 < 24633 (S >= 1), so |logit| < e^56 * 24633 < 5.2e28: finite in float32 and far
# above the kernels' -1e30 empty-slot sentinel, so every pixel finds its K sites. The
# encoder's grids stop at 9.875.
T_MAX_LIMIT = 56.0


@dataclass(frozen=True)
class QuantSpec:
    """Bit depths and ranges; all stored in the file header."""

    # Positions on a 1/2**bits pixel grid (docs/tuning.md, "Quantization").
    pos_frac_bits: int = 2
    # Direction in [0, pi): 7 bits pay at every rate (docs/tuning.md, "Direction grid").
    theta_bits: int = 7
    a_bits: int = 5  # log-anisotropy in [0, a_max]
    a_max: float = 4.0
    # Radius r_min + r_step * [0, 2**bits - 1] px. Radii start at 0 and the grid is centred
    # there: a large common radius multiplies every logit (e^t * r / S), which made the
    # render hypersensitive to the quantized temperature.
    r_bits: int = 8
    r_min: float = -32.0
    r_step: float = 0.25
    t_bits: int = 6  # log-temperature t_min + t_step * [0, 2**bits - 1]
    t_min: float = 2.0
    t_step: float = 0.125  # exact in float32, as stored
    col_bits: int = 6  # per channel, [0, 1] (at most 7: chroma needs one bit more)

    def validate(self) -> None:
        ok = (
            0 <= self.pos_frac_bits <= 4
            and 1 <= self.theta_bits <= 8
            and 1 <= self.a_bits <= 8
            and 1 <= self.r_bits <= 8
            and 1 <= self.t_bits <= 8
            and 1 <= self.col_bits <= 7
            and all(
                math.isfinite(v)
                for v in (self.a_max, self.r_min, self.r_step, self.t_min, self.t_step)
            )
            and 0 < self.a_max <= 16
            and 0 < self.r_step <= 64
            and -4096 <= self.r_min <= 4096
            and -16 <= self.t_min <= 32
            and 0 < self.t_step <= 4
        )
        if not ok:
            raise SadFormatError(f"quantization settings out of range: {asdict(self)}")
        if self.t_max > T_MAX_LIMIT:
            raise SadFormatError(
                f"quantization settings out of range: the log-temperature grid reaches "
                f"{self.t_max:g} (t_min + t_step * (2^t_bits - 1) may be at most "
                f"{T_MAX_LIMIT:g}, or logits overflow)"
            )

    @property
    def t_max(self) -> float:
        return self.t_min + self.t_step * ((1 << self.t_bits) - 1)

    @property
    def r_max(self) -> float:
        return self.r_min + self.r_step * ((1 << self.r_bits) - 1)


def quantize(params: np.ndarray, spec: QuantSpec, width: int, height: int) -> dict:
    """Map float params (N, 6 + C) to integer fields; a < 0 is folded into theta + pi/2."""
    p = np.asarray(params, dtype=np.float64)
    scale = 1 << spec.pos_frac_bits
    x = np.clip(np.rint(p[:, 0] * scale), 0, width * scale - 1).astype(np.int64)
    y = np.clip(np.rint(p[:, 1] * scale), 0, height * scale - 1).astype(np.int64)
    a = p[:, 3]
    theta = p[:, 2] + np.where(a < 0, np.pi / 2, 0.0)
    a = np.abs(a)
    nth = 1 << spec.theta_bits
    th = np.mod(np.rint(theta / np.pi * nth), nth).astype(np.int64)
    amax = (1 << spec.a_bits) - 1
    aq = np.clip(np.rint(a / spec.a_max * amax), 0, amax).astype(np.int64)
    th = np.where(aq == 0, 0, th)  # an isotropic metric has no direction: store the cheapest
    rq = np.clip(np.rint((p[:, 4] - spec.r_min) / spec.r_step), 0, (1 << spec.r_bits) - 1)
    rq = rq.astype(np.int64)
    tq = np.clip(np.rint((p[:, 5] - spec.t_min) / spec.t_step), 0, (1 << spec.t_bits) - 1)
    cmax = (1 << spec.col_bits) - 1
    col = np.clip(np.rint(p[:, 6:] * cmax), 0, cmax).astype(np.int64)
    return {"x": x, "y": y, "theta": th, "a": aq, "r": rq, "t": tq.astype(np.int64), "col": col}


def dequantize(q: dict, spec: QuantSpec) -> np.ndarray:
    """Integer fields back to float32 params (N, 6 + C), the values the decoder renders."""
    n = len(q["x"])
    c = q["col"].shape[1]
    p = np.empty((n, 6 + c), dtype=np.float32)
    scale = float(1 << spec.pos_frac_bits)
    p[:, 0] = q["x"] / scale
    p[:, 1] = q["y"] / scale
    p[:, 2] = q["theta"] * (np.pi / (1 << spec.theta_bits))
    p[:, 3] = q["a"] * (spec.a_max / ((1 << spec.a_bits) - 1))
    p[:, 4] = spec.r_min + q["r"] * spec.r_step
    p[:, 5] = spec.t_min + q["t"] * spec.t_step
    p[:, 6:] = q["col"] / float((1 << spec.col_bits) - 1)
    return p


def roundtrip(
    params: np.ndarray, spec: QuantSpec, width: int, height: int, keep_sign: bool = False
) -> np.ndarray:
    """What the decoder would see for these params.

    With ``keep_sign`` the fold of a < 0 into theta + pi/2 is undone (the same metric),
    so that straight-through gradients computed at the quantized values keep the sign
    convention of the continuous parameters they are applied to."""
    out = dequantize(quantize(params, spec, width, height), spec)
    if keep_sign:
        neg = params[:, 3] < 0
        out[neg, 3] = -out[neg, 3]
        out[neg, 2] -= np.pi / 2
    return out
