"""render.render_params against a numpy reference render over the brute-force top-K."""

from __future__ import annotations

import numpy as np
import pytest
from conftest import random_scene

from sadcodec.render import render_params

K = 8


def reference_render(
    params: np.ndarray, src_w: int, src_h: int, out_w: int, out_h: int, k: int
) -> np.ndarray:
    """The normative render (docs/FORMAT.md) in float64 with the exact top-K."""
    p = params.astype(np.float64)
    s = max(src_w, src_h)
    ys, xs = np.mgrid[0:out_h, 0:out_w]
    x = ((xs.ravel() + 0.5) * src_w / out_w)[:, None]
    y = ((ys.ravel() + 0.5) * src_h / out_h)[:, None]
    dx, dy = x - p[:, 0], y - p[:, 1]
    cs, sn = np.cos(p[:, 2]), np.sin(p[:, 2])
    al = cs * dx + sn * dy
    be = -sn * dx + cs * dy
    q = np.exp(p[:, 3]) * al * al + np.exp(-p[:, 3]) * be * be + 1e-4
    lg = -np.exp(p[:, 5]) * (np.sqrt(q) - p[:, 4]) / s  # (P, N)
    top = np.argsort(-lg, axis=1, kind="stable")[:, :k]
    tl = np.take_along_axis(lg, top, axis=1)
    e = np.exp(tl - tl[:, :1])
    wt = e / e.sum(axis=1, keepdims=True)
    col = (wt[..., None] * p[top, 6:]).sum(axis=1)
    out = np.floor(np.clip(col, 0.0, 1.0) * 255.0 + 0.5).astype(np.uint8)
    return out.reshape(out_h, out_w, -1)


def compare(got: np.ndarray, want: np.ndarray) -> tuple[float, int]:
    diff = np.abs(got.astype(np.int32) - want.astype(np.int32))
    return float((diff <= 1).mean()), int(diff.max())


@pytest.fixture(scope="module")
def scene() -> np.ndarray:
    rng = np.random.default_rng(4242)
    p = random_scene(rng, 150, 64, 48, 3, a_max=2.0, r_max=6.0, t_jitter=1.0)
    p[:5, 6:] = [[2.5, -1.5, 0.5]] * 5  # out-of-range colours exercise the clamp
    return p


def test_native_render_matches_reference(scene):
    got = render_params(scene, 64, 48, 64, 48, K)
    want = reference_render(scene, 64, 48, 64, 48, K)
    assert got.shape == (48, 64, 3) and got.dtype == np.uint8
    within, worst = compare(got, want)
    print(f"\nnative 64x48: {within:.5f} of samples within 1 level, worst {worst}")
    assert within >= 0.999
    assert got.std() > 20  # a real picture, not a flat field
    assert (got == 255).any() and (got == 0).any()  # the clamp was reached


def test_render_is_deterministic(scene):
    a = render_params(scene, 64, 48, 64, 48, K)
    b = render_params(scene, 64, 48, 64, 48, K)
    assert np.array_equal(a, b)


def test_double_size_render(scene):
    big = render_params(scene, 64, 48, 128, 96, K)
    assert big.shape == (96, 128, 3)
    within, worst = compare(big, reference_render(scene, 64, 48, 128, 96, K))
    native = render_params(scene, 64, 48, 64, 48, K).astype(np.float64)
    box = big.astype(np.float64).reshape(48, 2, 64, 2, 3).mean(axis=(1, 3))
    mad = float(np.abs(box - native).mean())
    print(
        f"\n2x 128x96: {within:.5f} within 1 level of the reference, worst {worst}; "
        f"2x2 box vs native: mean abs diff {mad:.3f} levels"
    )
    assert within >= 0.999
    assert mad < 2.0


def test_anisotropic_scaling_render(scene):
    """Different scales per axis (48x60 from 64x48) evaluate at the scaled points."""
    got = render_params(scene, 64, 48, 48, 60, K)
    assert got.shape == (60, 48, 3)
    within, worst = compare(got, reference_render(scene, 64, 48, 48, 60, K))
    print(f"\n48x60 from 64x48: {within:.5f} within 1 level, worst {worst}")
    assert within >= 0.999


@pytest.mark.parametrize("channels", [1, 4])
def test_other_channel_counts(channels):
    rng = np.random.default_rng(channels)
    p = random_scene(rng, 40, 32, 24, channels, a_max=1.5)
    got = render_params(p, 32, 24, 32, 24, K)
    assert got.shape == (24, 32, channels) and got.dtype == np.uint8
    within, worst = compare(got, reference_render(p, 32, 24, 32, 24, K))
    print(f"\nC={channels}: {within:.5f} within 1 level, worst {worst}")
    assert within >= 0.999
    for c in range(channels):
        assert got[..., c].std() > 10


def test_small_k_and_few_sites():
    """K = 1 is a hard diagram; N < K leaves empty slots that must not be blended."""
    rng = np.random.default_rng(8)
    p = random_scene(rng, 12, 32, 24, 3)
    for k, params in ((1, p), (8, p[:5])):
        got = render_params(params, 32, 24, 32, 24, k)
        within, worst = compare(got, reference_render(params, 32, 24, 32, 24, k))
        print(f"\nK={k}, N={len(params)}: {within:.5f} within 1 level, worst {worst}")
        assert within >= 0.999


def _map_render(
    params: np.ndarray, src_w: int, src_h: int, out_w: int, out_h: int, k: int, rows: int = 0
):
    """render() over the brute-force top-K map: the two-step path the fused one replaces
    (rows: blended a row of pixels at a time, as the fused LARGE variant does)."""
    import taichi as ti

    from sadcodec.kernels import render as krender
    from sadcodec.kernels import table as ktable
    from sadcodec.kernels.common import TABLE_COLS
    from sadcodec.topk import TopKMap

    n, cols = params.shape
    p = ti.ndarray(ti.f32, shape=(n, cols))
    p.from_numpy(params.astype(np.float32))
    tab = ti.ndarray(ti.f32, shape=(n, TABLE_COLS))
    ktable.prepare(p, tab, n)
    s_inv = 1.0 / max(src_w, src_h)
    m = TopKMap(out_h, out_w, k, sx=src_w / out_w, sy=src_h / out_h)
    m.exact(tab, n, s_inv)
    out = ti.ndarray(ti.u8, shape=(out_h, out_w, cols - 6))
    krender.render(m.cur, tab, p, out, m.sx, m.sy, s_inv, k, cols - 6, rows)
    return out.to_numpy()


@pytest.mark.parametrize("large", [False, True], ids=["small", "large"])
@pytest.mark.parametrize("out_w,out_h", [(64, 48), (128, 96), (48, 60), (21, 16)])
def test_fused_tiled_render_is_the_map_render(scene, out_w, out_h, large, monkeypatch):
    """The CPU decoder's fused path (culled tile lists, top-K and blend in one kernel)
    writes exactly the bytes of render() over the brute-force map, in both its variants:
    insertion and a per-pixel blend, or (large outputs) a sorting network and the row
    blend."""
    import sadcodec.render as render_mod

    monkeypatch.setattr(render_mod, "LARGE_OUTPUT_PIXELS", 0 if large else 1 << 40)
    got = render_params(scene, 64, 48, out_w, out_h, K)
    assert np.array_equal(got, _map_render(scene, 64, 48, out_w, out_h, K, int(large)))


@pytest.mark.parametrize("out_w,out_h", [(64, 48), (128, 96), (21, 16)])
def test_row_blend_is_the_pixel_blend_up_to_rounding(scene, out_w, out_h):
    """blend_rows (vector lanes, a polynomial exp) and blend (libm's exp) give the same
    colours up to float rounding: at most one level apart, on few pixels."""
    a = _map_render(scene, 64, 48, out_w, out_h, K, 0).astype(int)
    b = _map_render(scene, 64, 48, out_w, out_h, K, 1).astype(int)
    assert np.abs(a - b).max() <= 1
    assert (a != b).mean() < 0.01
    assert a.std() > 10  # a real picture, not a blank one


def test_render_falls_back_to_jump_flooding(scene, monkeypatch):
    """Where culling declines (lists would outgrow their cap, as for a crafted file), the
    decoder builds a jump-flooding map instead and still renders the picture."""
    import sadcodec.topk as topk_mod

    monkeypatch.setattr(topk_mod, "MAX_TILE_ENTRIES_PER_PIXEL", 0.0)
    calls = []
    real = topk_mod.TopKMap.build
    monkeypatch.setattr(
        topk_mod.TopKMap, "build", lambda self, *a, **kw: calls.append(1) or real(self, *a, **kw)
    )
    got = render_params(scene, 64, 48, 64, 48, K)
    assert calls, "the jump-flooding build was not used"
    within, _ = compare(got, reference_render(scene, 64, 48, 64, 48, K))
    assert within >= 0.99
