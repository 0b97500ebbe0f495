"""Shared kernel arithmetic (kernels/common.py) against numpy."""

# No "from __future__ import annotations": Taichi reads kernel annotations as objects.

import numpy as np
import taichi as ti

from sadcodec.kernels.common import exp_nonpos


@ti.kernel
def _apply_exp_nonpos(
    v: ti.types.ndarray(dtype=ti.f32, ndim=1), out: ti.types.ndarray(dtype=ti.f32, ndim=1)
):
    for i in range(v.shape[0]):
        out[i] = exp_nonpos(v[i])


def exp_nonpos_np(v: np.ndarray) -> np.ndarray:
    out = np.empty_like(v)
    _apply_exp_nonpos(v, out)
    return out


def test_exp_nonpos_is_exp_to_a_few_ulp():
    """The fit's vectorisable exp against exp over the range where exp is a normal float32,
    including the ends of each reduction interval: relative error within 3e-7 near 0,
    growing no faster than |v| (exp's condition number), exact at 0."""
    rng = np.random.default_rng(0)
    ln2 = np.log(2.0)
    edges = np.arange(0, 126) * ln2 + 0.5 * ln2  # where round(v / ln2) changes
    v = np.concatenate(
        [
            -rng.uniform(0, 87.0, 200_000),
            -rng.exponential(1e-3, 10_000),
            -edges,
            -np.nextafter(edges, 0),
            [0.0, -1e-30, -87.0],
        ]
    ).astype(np.float32)
    got = exp_nonpos_np(v).astype(np.float64)
    want = np.exp(v.astype(np.float64))
    rel = np.abs(got - want) / want / np.maximum(1.0, np.abs(v.astype(np.float64)))
    assert rel.max() < 3e-7, float(rel.max())
    assert got[v == 0].min() == 1.0


def test_exp_nonpos_underflows_to_zero_not_nan():
    """Far below the range (an empty slot's logit is -1e30) the result is 0, not NaN or a
    polynomial blown up to inf."""
    v = np.array([-88.5, -100.0, -1e4, -1e30, -3.4e38], np.float32)
    got = exp_nonpos_np(v)
    assert np.all(got == 0.0), got
