"""The device-side QAT round trip (kernels.quant.quant_roundtrip) against the numpy one."""

from __future__ import annotations

import numpy as np
import taichi as ti

from sadcodec import quantize
from sadcodec.fit.state import quant_grid
from sadcodec.kernels import quant as kquant


def test_device_roundtrip_matches_numpy():
    rng = np.random.default_rng(3)
    n, w, h, c = 4000, 97, 61, 3
    spec = quantize.QuantSpec()
    p = np.empty((n, 6 + c), np.float32)
    p[:, 0] = rng.uniform(-2, w + 2, n)  # some outside the image: clamped
    p[:, 1] = rng.uniform(-2, h + 2, n)
    p[:, 2] = rng.uniform(-7, 7, n)
    p[:, 3] = rng.uniform(-5, 5, n)  # both signs and beyond a_max
    p[:, 3][:200] = 0.01  # quantizes to a = 0: the direction is dropped
    p[:, 4] = rng.uniform(spec.r_min - 5, spec.r_max + 5, n)
    p[:, 5] = rng.uniform(spec.t_min - 1, spec.t_max + 1, n)
    p[:, 6:] = rng.uniform(-0.1, 1.1, (n, c))
    want = quantize.roundtrip(p, spec, w, h, keep_sign=True)

    src = ti.ndarray(ti.f32, shape=p.shape)
    src.from_numpy(p)
    out = ti.ndarray(ti.f32, shape=p.shape)
    grid = ti.ndarray(ti.f32, shape=(kquant.GRID_SIZE,))
    grid.from_numpy(quant_grid(spec))
    kquant.quant_roundtrip(src, out, n, w, h, grid)
    got = out.to_numpy()

    # Angles may differ by a whole turn of pi (the same direction); compare the metric's
    # direction modulo pi, everything else directly.
    dth = np.mod(got[:, 2] - want[:, 2] + np.pi / 2, np.pi) - np.pi / 2
    assert np.abs(dth).max() < 1e-5
    other = [0, 1, 3, 4, 5, *range(6, 6 + c)]
    np.testing.assert_allclose(got[:, other], want[:, other], rtol=0, atol=1e-5)
