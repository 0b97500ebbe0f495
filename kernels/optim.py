"""Per-site statistics for densify/prune and the rate fit, and the Adam update."""

import taichi as ti

from .common import NEG_INF, STAT_SCALE, exp_nonpos, to_fixed
from .lanes import colour_lanes, lane_colour, softmax_lanes


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
        ids, lg, wt, _al, _be, _sq = softmax_lanes(topk, tab, y, x, px, py, s_inv, K)
        if ids.max() >= 0:
            _col, _gv, _gc, err = colour_lanes(ids, wt, params, target, y, x, K, C)
            for i in ti.static(range(K)):
                ci = ids[i]
                if ci >= 0:
                    ti.atomic_add(stats[ci, 0], to_fixed(wt[i], STAT_SCALE))
                    ti.atomic_add(stats[ci, 1], to_fixed(wt[i] * err, STAT_SCALE))
                    ti.atomic_add(stats[ci, 2], to_fixed(wt[i] * err * px, STAT_SCALE))
                    ti.atomic_add(stats[ci, 3], to_fixed(wt[i] * err * py, STAT_SCALE))
                    # Leave-one-out blend over the other lanes, normalised against the
                    # best remaining logit (lane i and empty slots masked to NEG_INF).
                    rest = ti.Vector([NEG_INF] * K, dt=ti.f32)
                    for j in ti.static(range(K)):
                        if j != i:
                            rest[j] = lg[j]
                    m2 = rest.max()
                    cost = 1.0 * C  # the only candidate: removing it leaves a hole
                    if m2 > -1e29:
                        e = ti.Vector([0.0] * K, dt=ti.f32)
                        for j in ti.static(range(K)):
                            e[j] = exp_nonpos(rest[j] - m2)
                        t2 = e.sum()
                        err2 = 0.0
                        for ch in ti.static(range(C)):
                            r2 = (e * lane_colour(ids, params, ch, K)).sum() / t2
                            r2 -= target[y, x, ch]
                            err2 += r2 * r2
                        cost = err2 - err
                    ti.atomic_add(stats[ci, 4], to_fixed(cost, STAT_SCALE))


@ti.kernel
def adam(
    params: ti.types.ndarray(dtype=ti.f32, ndim=2),
    grad: ti.types.ndarray(dtype=ti.f32, ndim=3),
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
    lr_scale: ti.f32,
):
    """One Adam step per parameter with per-column learning rate (times lr_scale, the
    schedule, a scalar so no array is uploaded per step) and box clamp. The
    gradient is the sum of the band slices grad[:, i, j], added in band order (so the
    result is reproducible); the slices are zeroed for the next step."""
    cols = params.shape[1]
    nb = grad.shape[0]
    for i, j in ti.ndrange(n, cols):
        g = 0.0
        for b in range(nb):
            g += grad[b, i, j]
            grad[b, i, j] = 0.0
        mm = beta1 * m[i, j] + (1.0 - beta1) * g
        vv = beta2 * v[i, j] + (1.0 - beta2) * g * g
        m[i, j] = mm
        v[i, j] = vv
        p = params[i, j] - lr_scale * lr[j] * (mm / bc1) / (ti.sqrt(vv / bc2) + eps)
        params[i, j] = ti.min(ti.max(p, lo[j]), hi[j])
