"""Gradient-weighted initialisation of sites."""

from __future__ import annotations

import numpy as np


def _box_blur(a: np.ndarray, r: int) -> np.ndarray:
    """Separable box blur with edge clamping (cumulative sums; no SciPy needed)."""
    out = a
    for axis in (0, 1):
        pad = [(0, 0)] * out.ndim
        pad[axis] = (r + 1, r)
        c = np.cumsum(np.pad(out, pad, mode="edge"), axis=axis, dtype=np.float64)
        n = out.shape[axis]
        hi = c[2 * r + 1 : 2 * r + 1 + n] if axis == 0 else c[:, 2 * r + 1 : 2 * r + 1 + n]
        lo = c[:n] if axis == 0 else c[:, :n]
        out = ((hi - lo) / (2 * r + 1)).astype(np.float32)
    return out


def detail_map(img: np.ndarray) -> np.ndarray:
    """Local gradient magnitude of the image, lightly blurred (H, W), float32."""
    lum = img.mean(axis=2)
    gx = np.zeros_like(lum)
    gy = np.zeros_like(lum)
    gx[:, 1:-1] = lum[:, 2:] - lum[:, :-2]
    gy[1:-1, :] = lum[2:, :] - lum[:-2, :]
    return _box_blur(np.sqrt(gx * gx + gy * gy), 2)


def init_sites(
    img: np.ndarray,
    n: int,
    rng: np.random.Generator,
    uniform_share: float = 0.3,
    r0: float = 0.0,
    sharpness: float = 3.0,
) -> np.ndarray:
    """Place n sites with probability rising with local detail; returns params (n, 6 + C).

    Colours come from the image, radii start equal (r0; only differences matter much), and
    each temperature is set from the local site spacing so a boundary spans about
    1/sharpness of the spacing.
    """
    h, w, c = img.shape
    det = detail_map(img).ravel().astype(np.float64)
    prob = (1 - uniform_share) * det / max(det.sum(), 1e-12) + uniform_share / det.size
    prob /= prob.sum()
    n = min(n, h * w)
    idx = rng.choice(h * w, size=n, replace=False, p=prob)
    yi, xi = np.divmod(idx, w)
    p = np.zeros((n, 6 + c), dtype=np.float32)
    p[:, 0] = xi + rng.uniform(0.25, 0.75, n)
    p[:, 1] = yi + rng.uniform(0.25, 0.75, n)
    p[:, 2] = rng.uniform(0, np.pi, n)
    p[:, 3] = 0.0
    p[:, 4] = r0
    spacing = 1.0 / np.sqrt(n * prob[idx])  # local mean distance between sites, px
    p[:, 5] = np.log(sharpness * max(w, h) / np.maximum(spacing, 0.5))
    blur = _box_blur(img, 1)
    p[:, 6:] = blur[yi, xi]
    return p
