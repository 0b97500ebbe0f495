"""The fused forward+backward kernel against an independent float64 reference.

The top-K map is fixed (the brute-force top-K, with some trailing slots emptied), so the
loss is a smooth function of the parameters and its gradient can be checked against
central finite differences of a float64 numpy implementation, column by column.
"""

from __future__ import annotations

import numpy as np
import pytest
import taichi as ti
from conftest import random_scene

from sadcodec.kernels import colour as kcolour
from sadcodec.kernels import gradient as kgrad
from sadcodec.kernels import table as ktable
from sadcodec.kernels.common import TABLE_COLS

W, H, C, N, K = 24, 20, 3, 30, 8
S = max(W, H)
NAMES = ["px", "py", "theta", "a", "r", "t"] + [f"colour{c}" for c in range(C)]
# Central-difference step per column: small enough for the O(h^2) truncation error,
# large enough that float64 cancellation stays far below the tolerance.
STEPS = [1e-4, 1e-4, 1e-5, 1e-5, 1e-4, 1e-5] + [1e-3] * C
REL_TOL = 2e-3


def pixel_centres(width: int, height: int, sx: float = 1.0, sy: float = 1.0):
    ys, xs = np.mgrid[0:height, 0:width]
    return ((xs.ravel() + 0.5) * sx).astype(np.float64), ((ys.ravel() + 0.5) * sy).astype(
        np.float64
    )


def logits(p: np.ndarray, x: np.ndarray, y: np.ndarray, s: float) -> np.ndarray:
    """float64 logit of site rows p (..., 6 + C) at points x, y (broadcast)."""
    dx = x - p[..., 0]
    dy = y - p[..., 1]
    cs, sn = np.cos(p[..., 2]), np.sin(p[..., 2])
    al = cs * dx + sn * dy
    be = -sn * dx + cs * dy
    q = np.exp(p[..., 3]) * al * al + np.exp(-p[..., 3]) * be * be + 1e-4
    return -np.exp(p[..., 5]) * (np.sqrt(q) - p[..., 4]) / s


def brute_topk(params: np.ndarray, width: int, height: int, k: int) -> np.ndarray:
    x, y = pixel_centres(width, height)
    lg = logits(params.astype(np.float64)[None, :, :], x[:, None], y[:, None], S)
    order = np.argsort(-lg, axis=1, kind="stable")[:, :k]
    return order.reshape(height, width, k).astype(np.int32)


def ref_loss(
    params: np.ndarray, topk: np.ndarray, target: np.ndarray, mask: np.ndarray | None = None
) -> float:
    """L = sum over pixels (those where ``mask``, if given) and channels of
    (softmax-blended colour - target)^2."""
    h, w, k = topk.shape
    ids = topk.reshape(-1, k)
    valid = ids >= 0
    p = params[np.where(valid, ids, 0)]  # (P, K, 6 + C)
    x, y = pixel_centres(w, h)
    lg = np.where(valid, logits(p, x[:, None], y[:, None], S), -np.inf)
    e = np.exp(lg - lg.max(axis=1, keepdims=True))
    wt = e / e.sum(axis=1, keepdims=True)
    col = (wt[..., None] * p[..., 6:]).sum(axis=1)
    err = ((col - target.reshape(-1, target.shape[2])) ** 2).sum(axis=1)
    return float(err.sum() if mask is None else err[mask.ravel()].sum())


@pytest.fixture(scope="module")
def scene():
    rng = np.random.default_rng(1234)
    params = random_scene(rng, N, W, H, C, a_max=1.5, r_max=6.0)
    target = rng.uniform(0.0, 1.0, (H, W, C)).astype(np.float32)
    topk = brute_topk(params, W, H, K)
    # Empty the trailing slots of a quarter of the pixels (at least one entry stays), so
    # the -1 handling is part of what is checked.
    flat = topk.reshape(-1, K)
    for i in rng.choice(len(flat), len(flat) // 4, replace=False):
        flat[i, rng.integers(1, K) :] = -1
    return params, target, topk


def upload(params: np.ndarray, target: np.ndarray, topk: np.ndarray):
    """Taichi copies of the scene: params, their site table, the map and the target."""
    n, cols = params.shape
    p = ti.ndarray(ti.f32, shape=(n, cols))
    p.from_numpy(params)
    tab = ti.ndarray(ti.f32, shape=(n, TABLE_COLS))
    ktable.prepare(p, tab, n)
    tk = ti.ndarray(ti.i32, shape=topk.shape)
    tk.from_numpy(topk)
    tg = ti.ndarray(ti.f32, shape=target.shape)
    tg.from_numpy(target)
    return p, tab, tk, tg


def taichi_loss_and_grad(
    params: np.ndarray,
    target: np.ndarray,
    topk: np.ndarray,
    banded: bool = True,
    bands: int = 3,
    stride: int = 1,
    phase: int = 0,
):
    n, cols = params.shape
    p, tab, tk, tg = upload(params, target, topk)
    grad = ti.ndarray(ti.f32, shape=(bands if banded else 1, n, cols))
    grad.fill(0)
    loss = ti.ndarray(ti.f32, shape=(topk.shape[0],))
    loss.fill(0)
    kern = kgrad.forward_backward_bands if banded else kgrad.forward_backward_atomic
    kern(tk, tab, p, tg, grad, loss, 1.0 / S, stride, phase, K, C)
    return (
        float(loss.to_numpy().sum(dtype=np.float64)),
        grad.to_numpy().astype(np.float64).sum(axis=0),
    )


def test_loss_matches_reference(scene):
    params, target, topk = scene
    got, _ = taichi_loss_and_grad(params, target, topk)
    want = ref_loss(params.astype(np.float64), topk, target.astype(np.float64))
    print(f"\nloss: taichi {got:.6f} reference {want:.6f}")
    assert want > 1.0
    assert got == pytest.approx(want, rel=1e-4)


@pytest.mark.parametrize("banded", [True, False], ids=["cpu-bands", "atomics"])
def test_gradient_matches_finite_differences(scene, banded):
    params, target, topk = scene
    _, grad = taichi_loss_and_grad(params, target, topk, banded=banded)
    p64 = params.astype(np.float64)
    t64 = target.astype(np.float64)
    fd = np.zeros_like(grad)
    for j, h in enumerate(STEPS):
        for i in range(N):
            q = p64.copy()
            q[i, j] += h
            up = ref_loss(q, topk, t64)
            q[i, j] -= 2 * h
            down = ref_loss(q, topk, t64)
            fd[i, j] = (up - down) / (2 * h)
    errors = {}
    for j, name in enumerate(NAMES):
        scale = np.abs(fd[:, j]).max()
        assert scale > 1e-3, f"column {name} has no gradient to check ({scale})"
        errors[name] = np.abs(grad[:, j] - fd[:, j]).max() / scale
        # The sign and size must match site by site, not just in the worst case.
        assert np.corrcoef(grad[:, j], fd[:, j])[0, 1] > 0.9999, name
    print("\nmax |grad - fd| / max |fd| per column:")
    for name, err in errors.items():
        print(f"  {name:8s} {err:.2e}   (scale {np.abs(fd[:, NAMES.index(name)]).max():.3g})")
    bad = {k: v for k, v in errors.items() if v > REL_TOL}
    assert not bad, f"gradient columns off by more than {REL_TOL}: {bad}"


def test_band_count_does_not_change_the_gradient(scene):
    """The CPU path splits rows into bands; any split must give the same sums (to float
    rounding), and the same split must give bit-identical sums on every run."""
    params, target, topk = scene
    loss1, g1 = taichi_loss_and_grad(params, target, topk, bands=1)
    loss7, g7 = taichi_loss_and_grad(params, target, topk, bands=7)
    _, g7b = taichi_loss_and_grad(params, target, topk, bands=7)
    assert loss1 == pytest.approx(loss7, rel=1e-6)
    np.testing.assert_allclose(g1, g7, rtol=1e-4, atol=1e-6 * np.abs(g1).max())
    assert np.array_equal(g7, g7b)


@pytest.mark.parametrize("banded", [True, False], ids=["cpu-bands", "atomics"])
@pytest.mark.parametrize("stride", [2, 3])
def test_subsampled_gradient_visits_one_diagonal(scene, banded, stride):
    """With a stride, the gradient is the full kernel's over the pixels with
    (x + y) % stride == phase alone (the others emptied), and the loss is theirs times the
    stride; over all phases the gradients add up to the full one."""
    params, target, topk = scene
    loss_all, g_all = taichi_loss_and_grad(params, target, topk, banded=banded)
    ys, xs = np.mgrid[0:H, 0:W]
    g_sum = np.zeros_like(g_all)
    for phase in range(stride):
        loss, g = taichi_loss_and_grad(params, target, topk, banded, 3, stride, phase)
        mine = (xs + ys) % stride == phase
        only = topk.copy()
        only[~mine] = -1
        _, g_only = taichi_loss_and_grad(params, target, only, banded=banded)
        want = ref_loss(params.astype(np.float64), topk, target.astype(np.float64), mine)
        assert np.abs(g).max() > 1e-2
        np.testing.assert_allclose(g, g_only, rtol=1e-5, atol=1e-6 * np.abs(g_all).max())
        assert loss == pytest.approx(stride * want, rel=1e-4)
        g_sum += g
    np.testing.assert_allclose(g_sum, g_all, rtol=1e-4, atol=1e-6 * np.abs(g_all).max())


@pytest.mark.parametrize("banded", [True, False], ids=["cpu-bands", "atomics"])
def test_colour_steps_match_the_full_kernel(scene, banded):
    """The frozen phase's colour-only pass (stored softmax weights) gives the full
    kernel's loss and colour gradient, and no geometry gradient."""
    params, target, topk = scene
    loss_full, g_full = taichi_loss_and_grad(params, target, topk, banded=banded)
    n, cols = params.shape
    p, tab, tk, tg = upload(params, target, topk)
    wts = ti.ndarray(ti.f32, shape=topk.shape)
    kcolour.blend_weights(tk, tab, p, wts, 1.0 / S, K, C)
    grad = ti.ndarray(ti.f32, shape=(3 if banded else 1, n, cols))
    grad.fill(0)
    loss = ti.ndarray(ti.f32, shape=(H,))
    loss.fill(0)
    kern = kcolour.colour_grad_bands if banded else kcolour.colour_grad_atomic
    kern(tk, wts, p, tg, grad, loss, K, C)
    g = grad.to_numpy().astype(np.float64).sum(axis=0)
    assert float(loss.to_numpy().sum(dtype=np.float64)) == pytest.approx(loss_full, rel=1e-6)
    assert np.abs(g[:, 6:]).max() > 1e-2
    # Equal to float rounding: the two kernels share their arithmetic (softmax_lanes,
    # colour_lanes), but LLVM's fast math may contract it differently in each, and
    # atomics add in any order.
    np.testing.assert_allclose(g[:, 6:], g_full[:, 6:], rtol=1e-5, atol=1e-7)
    assert not g[:, :6].any()


@pytest.mark.parametrize("banded", [True, False], ids=["cpu-bands", "atomics"])
def test_slot_order_does_not_change_the_gradient(scene, banded):
    """The banded kernel sums a slot's run of one site along a row before adding it to
    the site; any order of a pixel's candidates (the sorted map, its slot-stable copy, a
    shuffle) gives the same loss and gradient to float rounding."""
    params, target, topk = scene
    loss, g = taichi_loss_and_grad(params, target, topk, banded=banded)
    rng = np.random.default_rng(5)
    shuffled = np.take_along_axis(topk, rng.permuted(np.indices(topk.shape)[2], axis=2), 2)
    assert not np.array_equal(shuffled, topk)
    # Runs of a site held in one slot: every pixel of a row takes its left neighbour's order
    # where the sets agree (here: copy the first pixel's order to pixels with the same set).
    runs = topk.copy()
    for y in range(H):
        for x in range(1, W):
            if set(runs[y, x]) == set(runs[y, x - 1]):
                runs[y, x] = runs[y, x - 1]
    assert (runs[:, 1:] == runs[:, :-1]).all(axis=2).sum() > 0
    for other in (shuffled, runs):
        loss2, g2 = taichi_loss_and_grad(params, target, other, banded=banded)
        assert loss2 == pytest.approx(loss, rel=1e-6)
        np.testing.assert_allclose(g2, g, rtol=1e-4, atol=1e-6 * np.abs(g).max())


def test_colour_normal_equations_match_the_colour_kernel(scene):
    """The CPU colour phase's normal equations (A = W^T W, b = W^T t) give the colour
    kernel's loss and gradient, for the scene's colours and for others."""
    from sadcodec.colour_ls import ColourNormal

    params, target, topk = scene
    n, cols = params.shape
    p, tab, tk, tg = upload(params, target, topk)
    wts = ti.ndarray(ti.f32, shape=topk.shape)
    kcolour.blend_weights(tk, tab, p, wts, 1.0 / S, K, C)
    normal = ColourNormal(topk, wts.to_numpy(), target, n)
    rng = np.random.default_rng(9)
    for colours in (params[:, 6:], rng.uniform(0, 1, (n, C)).astype(np.float32)):
        q = params.copy()
        q[:, 6:] = colours
        p.from_numpy(q)
        grad = ti.ndarray(ti.f32, shape=(3, n, cols))
        grad.fill(0)
        loss = ti.ndarray(ti.f32, shape=(H,))
        kcolour.colour_grad_bands(tk, wts, p, tg, grad, loss, K, C)
        want_g = grad.to_numpy().astype(np.float64).sum(axis=0)[:, 6:]
        want = float(loss.to_numpy().sum(dtype=np.float64))
        got, g = normal.loss_and_grad(colours)
        assert want > 1.0
        assert got == pytest.approx(want, rel=1e-5)
        np.testing.assert_allclose(g, want_g, rtol=1e-4, atol=1e-5 * np.abs(want_g).max())
