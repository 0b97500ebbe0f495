"""Fitting kernels: site-table preparation, fused forward+backward, site statistics, Adam.

Gradients are of L = sum over pixels and channels of (C(x) - T(x))^2, written by hand
(chain rule through softmax, logit, anisotropic metric); tests check them against finite
differences. They are accumulated as fixed-point int64 so that a run is bit-reproducible
on any number of threads.
"""

import taichi as ti

from .common import (
    GEOM_PARAMS,
    GRAD_SCALE,
    LOSS_SCALE,
    Q_EPS,
    STAT_SCALE,
    blend,
    to_fixed,
)

# Candidates with a softmax weight below this get no gradient (all terms scale with w).
W_SKIP = 1e-5


@ti.kernel
def prepare(
    params: ti.types.ndarray(dtype=ti.f32, ndim=2),
    tab: ti.types.ndarray(dtype=ti.f32, ndim=2),
    n: ti.i32,
):
    """Per-site values every pixel needs (trig and exponentials), computed once per step."""
    for i in range(n):
        th = params[i, 2]
        a = params[i, 3]
        tab[i, 0] = params[i, 0]
        tab[i, 1] = params[i, 1]
        tab[i, 2] = ti.cos(th)
        tab[i, 3] = ti.sin(th)
        tab[i, 4] = ti.exp(a)
        tab[i, 5] = ti.exp(-a)
        tab[i, 6] = params[i, 4]
        tab[i, 7] = ti.exp(params[i, 5])


@ti.kernel
def forward_backward(
    topk: ti.types.ndarray(dtype=ti.i32, ndim=3),
    tab: ti.types.ndarray(dtype=ti.f32, ndim=2),
    params: ti.types.ndarray(dtype=ti.f32, ndim=2),
    target: ti.types.ndarray(dtype=ti.f32, ndim=3),
    grad: ti.types.ndarray(dtype=ti.i64, ndim=2),
    loss: ti.types.ndarray(dtype=ti.i64, ndim=1),
    s_inv: ti.f32,
    K: ti.template(),
    C: ti.template(),
):
    """Accumulate dL/dparams into grad and each row's share of L into loss[y] (both fixed
    point). One loss cell per row: a single shared cell made every pixel fight over one
    cache line, which cost more than the whole forward pass."""
    h = topk.shape[0]
    w = topk.shape[1]
    for y, x in ti.ndrange(h, w):
        px = ti.cast(x, ti.f32) + 0.5
        py = ti.cast(y, ti.f32) + 0.5
        lg, wt, col, tot = blend(topk, tab, params, y, x, px, py, s_inv, K, C)
        if tot > 0:
            g = ti.Vector([0.0] * C, dt=ti.f32)
            err = 0.0
            for ch in ti.static(range(C)):
                r = col[ch] - target[y, x, ch]
                err += r * r
                g[ch] = 2.0 * r
            ti.atomic_add(loss[y], to_fixed(err, LOSS_SCALE))
            g_col = g.dot(col)
            for k in ti.static(range(K)):
                c = topk[y, x, k]
                # Every gradient term carries a factor w_k: skip the negligible ones.
                if c >= 0 and wt[k] > W_SKIP:
                    gc = 0.0
                    for ch in ti.static(range(C)):
                        gc += g[ch] * params[c, GEOM_PARAMS + ch]
                        ti.atomic_add(
                            grad[c, GEOM_PARAMS + ch], to_fixed(wt[k] * g[ch], GRAD_SCALE)
                        )
                    dl = wt[k] * (gc - g_col)  # dL/dlogit
                    et = tab[c, 7]
                    dx = px - tab[c, 0]
                    dy = py - tab[c, 1]
                    cs = tab[c, 2]
                    sn = tab[c, 3]
                    ea = tab[c, 4]
                    eia = tab[c, 5]
                    al = cs * dx + sn * dy
                    be = -sn * dx + cs * dy
                    q = ea * al * al + eia * be * be + Q_EPS
                    sq = ti.sqrt(q)
                    ds = -dl * et  # dL/ds, s = (sqrt(q) - r) / S
                    dq = ds * s_inv * 0.5 / sq
                    ti.atomic_add(
                        grad[c, 0],
                        to_fixed(dq * (-2.0 * ea * al * cs + 2.0 * eia * be * sn), GRAD_SCALE),
                    )
                    ti.atomic_add(
                        grad[c, 1],
                        to_fixed(dq * (-2.0 * ea * al * sn - 2.0 * eia * be * cs), GRAD_SCALE),
                    )
                    ti.atomic_add(grad[c, 2], to_fixed(dq * 2.0 * al * be * (ea - eia), GRAD_SCALE))
                    ti.atomic_add(
                        grad[c, 3], to_fixed(dq * (ea * al * al - eia * be * be), GRAD_SCALE)
                    )
                    ti.atomic_add(grad[c, 4], to_fixed(-ds * s_inv, GRAD_SCALE))
                    ti.atomic_add(grad[c, 5], to_fixed(dl * lg[k], GRAD_SCALE))


@ti.kernel
def site_stats(
    topk: ti.types.ndarray(dtype=ti.i32, ndim=3),
    tab: ti.types.ndarray(dtype=ti.f32, ndim=2),
    params: ti.types.ndarray(dtype=ti.f32, ndim=2),
    target: ti.types.ndarray(dtype=ti.f32, ndim=3),
    stats: ti.types.ndarray(dtype=ti.i64, ndim=2),
    s_inv: ti.f32,
    K: ti.template(),
    C: ti.template(),
):
    """Per site: 0 mass sum w; 1 error sum w*e; 2,3 error-weighted x, y sums;
    4 removal cost: the rise in squared error if the site alone were dropped from the
    pixel lists (the others re-normalised)."""
    h = topk.shape[0]
    w = topk.shape[1]
    for y, x in ti.ndrange(h, w):
        px = ti.cast(x, ti.f32) + 0.5
        py = ti.cast(y, ti.f32) + 0.5
        lg, wt, col, tot = blend(topk, tab, params, y, x, px, py, s_inv, K, C)
        if tot > 0:
            err = 0.0
            for ch in ti.static(range(C)):
                r = col[ch] - target[y, x, ch]
                err += r * r
            for i in range(K):
                ci = topk[y, x, i]
                if ci >= 0:
                    ti.atomic_add(stats[ci, 0], to_fixed(wt[i], STAT_SCALE))
                    ti.atomic_add(stats[ci, 1], to_fixed(wt[i] * err, STAT_SCALE))
                    ti.atomic_add(stats[ci, 2], to_fixed(wt[i] * err * px, STAT_SCALE))
                    ti.atomic_add(stats[ci, 3], to_fixed(wt[i] * err * py, STAT_SCALE))
                    # Leave-one-out blend, normalised against the best remaining logit.
                    m2 = -1e30
                    for j in range(K):
                        if j != i and topk[y, x, j] >= 0:
                            m2 = ti.max(m2, lg[j])
                    cost = 0.0
                    if m2 > -1e29:
                        acc = ti.Vector([0.0] * C, dt=ti.f32)
                        t2 = 0.0
                        for j in range(K):
                            cj = topk[y, x, j]
                            if j != i and cj >= 0:
                                e = ti.exp(lg[j] - m2)
                                t2 += e
                                for ch in ti.static(range(C)):
                                    acc[ch] += e * params[cj, GEOM_PARAMS + ch]
                        err2 = 0.0
                        for ch in ti.static(range(C)):
                            r2 = acc[ch] / t2 - target[y, x, ch]
                            err2 += r2 * r2
                        cost = err2 - err
                    else:
                        cost = 1.0 * C  # the only candidate: removing it leaves a hole
                    ti.atomic_add(stats[ci, 4], to_fixed(cost, STAT_SCALE))


@ti.kernel
def adam(
    params: ti.types.ndarray(dtype=ti.f32, ndim=2),
    grad: ti.types.ndarray(dtype=ti.i64, ndim=2),
    m: ti.types.ndarray(dtype=ti.f32, ndim=2),
    v: ti.types.ndarray(dtype=ti.f32, ndim=2),
    lr: ti.types.ndarray(dtype=ti.f32, ndim=1),
    lo: ti.types.ndarray(dtype=ti.f32, ndim=1),
    hi: ti.types.ndarray(dtype=ti.f32, ndim=1),
    n: ti.i32,
    beta1: ti.f32,
    beta2: ti.f32,
    bc1: ti.f32,
    bc2: ti.f32,
    eps: ti.f32,
):
    """One Adam step per parameter with per-column learning rate and box clamp; zeroes grad."""
    cols = params.shape[1]
    for i, j in ti.ndrange(n, cols):
        g = ti.cast(grad[i, j], ti.f32) * (1.0 / GRAD_SCALE)
        grad[i, j] = 0
        mm = beta1 * m[i, j] + (1.0 - beta1) * g
        vv = beta2 * v[i, j] + (1.0 - beta2) * g * g
        m[i, j] = mm
        v[i, j] = vv
        p = params[i, j] - lr[j] * (mm / bc1) / (ti.sqrt(vv / bc2) + eps)
        params[i, j] = ti.min(ti.max(p, lo[j]), hi[j])
