"""Fitting kernels: site-table preparation, fused forward+backward, site statistics, Adam.

Gradients are of L = sum over pixels and channels of (C(x) - T(x))^2, written by hand
(chain rule through softmax, logit, anisotropic metric); tests check them against finite
differences. On the CPU each band of rows is summed by one thread into
its own slice and the slices are added in a fixed order, so a run is bit-reproducible on
any number of threads and no atomics are needed.
"""

import taichi as ti

from .common import (
    GEOM_PARAMS,
    Q_EPS,
    STAT_SCALE,
    blend,
    to_fixed,
)

# Candidates with a softmax weight below this get no gradient (all terms scale with w).
W_SKIP = 1e-5
# Loop iterations per band in forward_backward_bands (see there).
TASK_PAD = 512


@ti.func
def _table_site(params: ti.template(), tab: ti.template(), i: ti.i32):
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
def prepare(
    params: ti.types.ndarray(dtype=ti.f32, ndim=2),
    tab: ti.types.ndarray(dtype=ti.f32, ndim=2),
    n: ti.i32,
):
    """Per-site values every pixel needs (trig and exponentials), computed once per step."""
    for i in range(n):
        _table_site(params, tab, i)


@ti.func
def _quant_site(
    params: ti.template(),
    shown: ti.template(),
    i: ti.i32,
    width: ti.i32,
    height: ti.i32,
    grid: ti.template(),
):
    pi = 3.141592653589793
    cols = params.shape[1]
    ps = grid[0]
    nth = grid[1]
    shown[i, 0] = ti.min(ti.max(ti.round(params[i, 0] * ps), 0.0), width * ps - 1.0) / ps
    shown[i, 1] = ti.min(ti.max(ti.round(params[i, 1] * ps), 0.0), height * ps - 1.0) / ps
    a = params[i, 3]
    theta = params[i, 2]
    if a < 0:
        theta += pi / 2
    th = ti.round(theta / pi * nth)
    th = th - nth * ti.floor(th / nth)
    aq = ti.min(ti.round(ti.abs(a) / grid[2] * grid[3]), grid[3])
    if aq == 0:
        th = 0.0
    th_out = th * (pi / nth)
    a_out = aq * (grid[2] / grid[3])
    if a < 0:
        a_out = -a_out
        th_out -= pi / 2
    shown[i, 2] = th_out
    shown[i, 3] = a_out
    rq = ti.min(ti.max(ti.round((params[i, 4] - grid[4]) / grid[5]), 0.0), grid[6])
    shown[i, 4] = grid[4] + rq * grid[5]
    tq = ti.min(ti.max(ti.round((params[i, 5] - grid[7]) / grid[8]), 0.0), grid[9])
    shown[i, 5] = grid[7] + tq * grid[8]
    for j in range(6, cols):
        cq = ti.min(ti.max(ti.round(params[i, j] * grid[10]), 0.0), grid[10])
        shown[i, j] = cq / grid[10]


@ti.kernel
def quant_roundtrip(
    params: ti.types.ndarray(dtype=ti.f32, ndim=2),
    shown: ti.types.ndarray(dtype=ti.f32, ndim=2),
    n: ti.i32,
    width: ti.i32,
    height: ti.i32,
    grid: ti.types.ndarray(dtype=ti.f32, ndim=1),
):
    """shown = what the decoder would see for params, on the device (sadcodec.quantize
    .roundtrip with keep_sign, in f32: the training copy for QAT, not the file's values).

    grid: pos scale, theta levels, a_max, a levels-1, r_min, r_step, r levels-1, t_min,
    t_step, t levels-1, colour levels-1.
    """
    for i in range(n):
        _quant_site(params, shown, i, width, height, grid)


@ti.kernel
def prepare_step(
    params: ti.types.ndarray(dtype=ti.f32, ndim=2),
    shown: ti.types.ndarray(dtype=ti.f32, ndim=2),
    tab: ti.types.ndarray(dtype=ti.f32, ndim=2),
    loss: ti.types.ndarray(dtype=ti.f32, ndim=1),
    n: ti.i32,
    width: ti.i32,
    height: ti.i32,
    grid: ti.types.ndarray(dtype=ti.f32, ndim=1),
    quant: ti.i32,
):
    """One launch for what every step needs first (launches cost ~0.1 ms of Python on a
    GPU, more than these loops): the site table from params, or with ``quant`` from their
    quantized round trip written to ``shown``; and the per-row loss zeroed."""
    for i in range(n):
        if quant:
            _quant_site(params, shown, i, width, height, grid)
            _table_site(shown, tab, i)
        else:
            _table_site(params, tab, i)
    for r in range(loss.shape[0]):
        loss[r] = 0.0


@ti.func
def _acc(g: ti.template(), b: ti.i32, c: ti.i32, j: ti.i32, v: ti.f32, ATOMIC: ti.template()):
    if ti.static(ATOMIC):
        ti.atomic_add(g[b, c, j], v)
    else:
        g[b, c, j] = g[b, c, j] + v  # a band is one thread's: no atomic needed


@ti.func
def _pixel_grad(
    topk: ti.template(),
    tab: ti.template(),
    params: ti.template(),
    target: ti.template(),
    g: ti.template(),
    b: ti.i32,
    y: ti.i32,
    x: ti.i32,
    s_inv: ti.f32,
    K: ti.template(),
    C: ti.template(),
    ATOMIC: ti.template(),
) -> ti.f32:
    """Add one pixel's dL/dparams into gradient slice b; return its squared error."""
    px = ti.cast(x, ti.f32) + 0.5
    py = ti.cast(y, ti.f32) + 0.5
    lg, wt, col, tot = blend(topk, tab, params, y, x, px, py, s_inv, K, C)
    err = 0.0
    if tot > 0:
        gv = ti.Vector([0.0] * C, dt=ti.f32)
        for ch in ti.static(range(C)):
            r = col[ch] - target[y, x, ch]
            err += r * r
            gv[ch] = 2.0 * r
        g_col = gv.dot(col)
        for k in ti.static(range(K)):
            c = topk[y, x, k]
            # Every gradient term carries a factor w_k: skip the negligible ones.
            if c >= 0 and wt[k] > W_SKIP:
                gc = 0.0
                for ch in ti.static(range(C)):
                    gc += gv[ch] * params[c, GEOM_PARAMS + ch]
                    _acc(g, b, c, GEOM_PARAMS + ch, wt[k] * gv[ch], ATOMIC)
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
                _acc(g, b, c, 0, dq * (-2.0 * ea * al * cs + 2.0 * eia * be * sn), ATOMIC)
                _acc(g, b, c, 1, dq * (-2.0 * ea * al * sn - 2.0 * eia * be * cs), ATOMIC)
                _acc(g, b, c, 2, dq * 2.0 * al * be * (ea - eia), ATOMIC)
                _acc(g, b, c, 3, dq * (ea * al * al - eia * be * be), ATOMIC)
                _acc(g, b, c, 4, -ds * s_inv, ATOMIC)
                _acc(g, b, c, 5, dl * lg[k], ATOMIC)
    return err


@ti.kernel
def forward_backward_bands(
    topk: ti.types.ndarray(dtype=ti.i32, ndim=3),
    tab: ti.types.ndarray(dtype=ti.f32, ndim=2),
    params: ti.types.ndarray(dtype=ti.f32, ndim=2),
    target: ti.types.ndarray(dtype=ti.f32, ndim=3),
    grad: ti.types.ndarray(dtype=ti.f32, ndim=3),
    loss: ti.types.ndarray(dtype=ti.f32, ndim=1),
    s_inv: ti.f32,
    K: ti.template(),
    C: ti.template(),
):
    """Add dL/dparams into grad (B, N, P) and write each row's squared error to loss[y].

    The CPU path: the rows are cut into B bands, each summed serially by one thread into
    its own slice grad[b], so no atomics are needed (they cost 2.5x the whole pass on one
    thread) and the result does not depend on the thread count (adam() adds the slices in
    a fixed order)."""
    h = topk.shape[0]
    w = topk.shape[1]
    nb = grad.shape[0]
    rows = (h + nb - 1) // nb
    # Taichi's CPU scheduler hands out at least 512 loop iterations per task (and ignores
    # block_dim), so a loop over 32 bands would run on one thread: spread the bands
    # TASK_PAD iterations apart so that each task holds exactly one band.
    for t in range(nb * TASK_PAD):
        if t % TASK_PAD == 0:
            b = t // TASK_PAD
            for y in range(b * rows, ti.min(h, (b + 1) * rows)):
                row = 0.0
                for x in range(w):
                    row += _pixel_grad(topk, tab, params, target, grad, b, y, x, s_inv, K, C, False)
                loss[y] = row


@ti.kernel
def forward_backward_atomic(
    topk: ti.types.ndarray(dtype=ti.i32, ndim=3),
    tab: ti.types.ndarray(dtype=ti.f32, ndim=2),
    params: ti.types.ndarray(dtype=ti.f32, ndim=2),
    target: ti.types.ndarray(dtype=ti.f32, ndim=3),
    grad: ti.types.ndarray(dtype=ti.f32, ndim=3),
    loss: ti.types.ndarray(dtype=ti.f32, ndim=1),
    s_inv: ti.f32,
    K: ti.template(),
    C: ti.template(),
):
    """The GPU path of forward_backward_bands: every pixel in parallel, atomics into
    grad[0] (loss[y] must be zeroed first)."""
    h = topk.shape[0]
    w = topk.shape[1]
    for y, x in ti.ndrange(h, w):
        e = _pixel_grad(topk, tab, params, target, grad, 0, y, x, s_inv, K, C, True)
        ti.atomic_add(loss[y], e)


def forward_backward(
    topk, tab, params, target, grad, loss, s_inv: float, k: int, c: int, banded: bool
):
    """Fused forward+backward: the banded kernel on the CPU, the atomic one on a GPU."""
    kern = forward_backward_bands if banded else forward_backward_atomic
    kern(topk, tab, params, target, grad, loss, s_inv, k, c)


@ti.kernel
def blend_weights(
    topk: ti.types.ndarray(dtype=ti.i32, ndim=3),
    tab: ti.types.ndarray(dtype=ti.f32, ndim=2),
    params: ti.types.ndarray(dtype=ti.f32, ndim=2),
    wts: ti.types.ndarray(dtype=ti.f32, ndim=3),
    s_inv: ti.f32,
    K: ti.template(),
    C: ti.template(),
):
    """Each pixel's softmax weights (0 in empty slots), for the colour-only steps: with
    the geometry frozen they no longer change, and the render is linear in the colours."""
    h = topk.shape[0]
    w = topk.shape[1]
    for y, x in ti.ndrange(h, w):
        px = ti.cast(x, ti.f32) + 0.5
        py = ti.cast(y, ti.f32) + 0.5
        _lg, wt, _col, _tot = blend(topk, tab, params, y, x, px, py, s_inv, K, C)
        for k in ti.static(range(K)):
            wts[y, x, k] = wt[k]


@ti.func
def _pixel_grad_colour(
    topk: ti.template(),
    wts: ti.template(),
    params: ti.template(),
    target: ti.template(),
    g: ti.template(),
    b: ti.i32,
    y: ti.i32,
    x: ti.i32,
    K: ti.template(),
    C: ti.template(),
    ATOMIC: ti.template(),
) -> ti.f32:
    """_pixel_grad's colour part from stored weights (the same sums in the same order):
    the error and dL/dcolour of one pixel; no logits, no geometry gradients."""
    err = 0.0
    if topk[y, x, 0] >= 0:
        col = ti.Vector([0.0] * C, dt=ti.f32)
        for k in ti.static(range(K)):
            c = topk[y, x, k]
            if c >= 0:
                for ch in ti.static(range(C)):
                    col[ch] += wts[y, x, k] * params[c, GEOM_PARAMS + ch]
        gv = ti.Vector([0.0] * C, dt=ti.f32)
        for ch in ti.static(range(C)):
            r = col[ch] - target[y, x, ch]
            err += r * r
            gv[ch] = 2.0 * r
        for k in ti.static(range(K)):
            c = topk[y, x, k]
            wk = wts[y, x, k]
            if c >= 0 and wk > W_SKIP:
                for ch in ti.static(range(C)):
                    _acc(g, b, c, GEOM_PARAMS + ch, wk * gv[ch], ATOMIC)
    return err


@ti.kernel
def colour_grad_bands(
    topk: ti.types.ndarray(dtype=ti.i32, ndim=3),
    wts: ti.types.ndarray(dtype=ti.f32, ndim=3),
    params: ti.types.ndarray(dtype=ti.f32, ndim=2),
    target: ti.types.ndarray(dtype=ti.f32, ndim=3),
    grad: ti.types.ndarray(dtype=ti.f32, ndim=3),
    loss: ti.types.ndarray(dtype=ti.f32, ndim=1),
    K: ti.template(),
    C: ti.template(),
):
    """forward_backward_bands for the colours alone (blend_weights)."""
    h = topk.shape[0]
    w = topk.shape[1]
    nb = grad.shape[0]
    rows = (h + nb - 1) // nb
    for t in range(nb * TASK_PAD):
        if t % TASK_PAD == 0:
            b = t // TASK_PAD
            for y in range(b * rows, ti.min(h, (b + 1) * rows)):
                row = 0.0
                for x in range(w):
                    row += _pixel_grad_colour(topk, wts, params, target, grad, b, y, x, K, C, False)
                loss[y] = row


@ti.kernel
def colour_grad_atomic(
    topk: ti.types.ndarray(dtype=ti.i32, ndim=3),
    wts: ti.types.ndarray(dtype=ti.f32, ndim=3),
    params: ti.types.ndarray(dtype=ti.f32, ndim=2),
    target: ti.types.ndarray(dtype=ti.f32, ndim=3),
    grad: ti.types.ndarray(dtype=ti.f32, ndim=3),
    loss: ti.types.ndarray(dtype=ti.f32, ndim=1),
    K: ti.template(),
    C: ti.template(),
):
    """forward_backward_atomic for the colours alone (loss[y] must be zeroed first)."""
    h = topk.shape[0]
    w = topk.shape[1]
    for y, x in ti.ndrange(h, w):
        e = _pixel_grad_colour(topk, wts, params, target, grad, 0, y, x, K, C, True)
        ti.atomic_add(loss[y], e)


def colour_grad(topk, wts, params, target, grad, loss, k: int, c: int, banded: bool):
    """The colour-only forward+backward: banded on the CPU, atomic on a GPU."""
    kern = colour_grad_bands if banded else colour_grad_atomic
    kern(topk, wts, params, target, grad, loss, k, c)


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
