"""Fitting kernels: fused forward+backward, site statistics, Adam.

Gradients are of L = sum over pixels and channels of (C(x) - T(x))^2, written by hand
(chain rule through softmax, logit, anisotropic metric); tests check them against finite
differences. On the CPU each band of rows is summed by one thread into its own slice and
the slices are added in a fixed order, so a run is bit-reproducible on any number of
threads and no atomics are needed; along a row, a slot's run of one site is summed before
it is added to that site (forward_backward_bands).
"""

import taichi as ti

from .common import (
    GEOM_PARAMS,
    NEG_INF,
    Q_EPS,
    STAT_SCALE,
    TABLE_COLS,
    TASK_PAD,
    exp_nonpos,
    to_fixed,
)
from .table import table_site

# Candidates with a softmax weight below this get no gradient (all terms scale with w).
W_SKIP = 1e-5


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
            table_site(shown, tab, i)
        else:
            table_site(params, tab, i)
    for r in range(loss.shape[0]):
        loss[r] = 0.0


@ti.func
def _lanes_softmax(
    ids: ti.template(), L: ti.template(), px: ti.f32, py: ti.f32, s_inv: ti.f32, K: ti.template()
):
    """Logits (NEG_INF in empty slots), softmax weights (0 there; all 0 without
    candidates) and the rotated offset and sqrt(q) the gradient reuses, of K candidate
    lanes whose site table rows are the columns of L (TABLE_COLS x K; an empty slot's
    column is masked out). Lane-wise arithmetic, with exp_nonpos instead of libm's scalar
    expf, so LLVM emits AVX; the same values as blend up to float rounding (a few ulp in
    the weights)."""
    sx = ti.Vector([L[0, k] for k in ti.static(range(K))], dt=ti.f32)
    sy = ti.Vector([L[1, k] for k in ti.static(range(K))], dt=ti.f32)
    cs = ti.Vector([L[2, k] for k in ti.static(range(K))], dt=ti.f32)
    sn = ti.Vector([L[3, k] for k in ti.static(range(K))], dt=ti.f32)
    ea = ti.Vector([L[4, k] for k in ti.static(range(K))], dt=ti.f32)
    eia = ti.Vector([L[5, k] for k in ti.static(range(K))], dt=ti.f32)
    rr = ti.Vector([L[6, k] for k in ti.static(range(K))], dt=ti.f32)
    et = ti.Vector([L[7, k] for k in ti.static(range(K))], dt=ti.f32)
    live = ti.Vector([1.0 if ids[k] >= 0 else 0.0 for k in ti.static(range(K))], dt=ti.f32)
    dx = px - sx
    dy = py - sy
    al = cs * dx + sn * dy
    be = -sn * dx + cs * dy
    sq = ti.sqrt(ea * al * al + eia * be * be + Q_EPS)
    lg = ti.select(live > 0, -et * (sq - rr) * s_inv, NEG_INF)
    mx = lg.max()
    wt = ti.Vector([0.0] * K, dt=ti.f32)
    for k in ti.static(range(K)):
        wt[k] = live[k] * exp_nonpos(lg[k] - mx)
    tot = wt.sum()
    if tot > 0:
        wt /= tot
    return lg, wt, al, be, sq


@ti.func
def _load_lanes(topk: ti.template(), tab: ti.template(), y: ti.i32, x: ti.i32, K: ti.template()):
    """A pixel's K candidate ids and their site table rows as the columns of a
    TABLE_COLS x K matrix (an empty slot reads site 0)."""
    ids = ti.Vector([topk[y, x, k] for k in ti.static(range(K))], dt=ti.i32)
    L = ti.Matrix([[0.0] * K for _ in range(TABLE_COLS)], dt=ti.f32)
    for k in ti.static(range(K)):
        i = ti.max(ids[k], 0)
        for q in ti.static(range(TABLE_COLS)):
            L[q, k] = tab[i, q]
    return ids, L


@ti.func
def _softmax_lanes(
    topk: ti.template(),
    tab: ti.template(),
    y: ti.i32,
    x: ti.i32,
    px: ti.f32,
    py: ti.f32,
    s_inv: ti.f32,
    K: ti.template(),
):
    """A pixel's K candidates as K vector lanes (_lanes_softmax): ids, logits, weights,
    rotated offset and sqrt(q)."""
    ids, L = _load_lanes(topk, tab, y, x, K)
    lg, wt, al, be, sq = _lanes_softmax(ids, L, px, py, s_inv, K)
    return ids, lg, wt, al, be, sq


@ti.func
def _lane_colour(ids: ti.template(), params: ti.template(), ch: ti.template(), K: ti.template()):
    """Channel ch of each lane's site colour (site 0's in an empty slot: mask it)."""
    return ti.Vector(
        [params[ti.max(ids[k], 0), GEOM_PARAMS + ch] for k in ti.static(range(K))], dt=ti.f32
    )


@ti.func
def _colour_from(
    cc: ti.template(),
    wt: ti.template(),
    target: ti.template(),
    y: ti.i32,
    x: ti.i32,
    K: ti.template(),
    C: ti.template(),
):
    """A pixel's blended colour from its lanes' weights (0 in empty slots) and colours
    (the columns of cc, C x K), dL/dcolour, each candidate's dL/dcolour . colour and the
    squared error. One function for the full and the colour-only steps, so both do the
    same arithmetic (equal to rounding: fast math may compile it differently in each
    kernel)."""
    col = ti.Vector([0.0] * C, dt=ti.f32)
    gv = ti.Vector([0.0] * C, dt=ti.f32)
    gc = ti.Vector([0.0] * K, dt=ti.f32)
    err = 0.0
    for ch in ti.static(range(C)):
        lc = ti.Vector([cc[ch, k] for k in ti.static(range(K))], dt=ti.f32)
        col[ch] = (wt * lc).sum()
        r = col[ch] - target[y, x, ch]
        err += r * r
        gv[ch] = 2.0 * r
        gc += gv[ch] * lc
    return col, gv, gc, err


@ti.func
def _load_colours(ids: ti.template(), params: ti.template(), K: ti.template(), C: ti.template()):
    """The lanes' site colours as the columns of a C x K matrix."""
    cc = ti.Matrix([[0.0] * K for _ in range(C)], dt=ti.f32)
    for ch in ti.static(range(C)):
        lc = _lane_colour(ids, params, ch, K)
        for k in ti.static(range(K)):
            cc[ch, k] = lc[k]
    return cc


@ti.func
def _colour_lanes(
    ids: ti.template(),
    wt: ti.template(),
    params: ti.template(),
    target: ti.template(),
    y: ti.i32,
    x: ti.i32,
    K: ti.template(),
    C: ti.template(),
):
    """_colour_from with the lanes' colours read from params."""
    return _colour_from(_load_colours(ids, params, K, C), wt, target, y, x, K, C)


@ti.func
def _lanes_grads(
    ids: ti.template(),
    L: ti.template(),
    cc: ti.template(),
    target: ti.template(),
    y: ti.i32,
    x: ti.i32,
    s_inv: ti.f32,
    K: ti.template(),
    C: ti.template(),
):
    """One pixel's squared error (0 without candidates: nothing is rendered there to
    fit), weights, dL/dcolour gv, and per candidate lane the geometry gradients g0..g5
    (lane k's site gets g*[k] and wt[k] * gv; 0 in an empty slot), from the lanes' table
    rows L and colours cc."""
    px = ti.cast(x, ti.f32) + 0.5
    py = ti.cast(y, ti.f32) + 0.5
    lg, wt, al, be, sq = _lanes_softmax(ids, L, px, py, s_inv, K)
    cs = ti.Vector([L[2, k] for k in ti.static(range(K))], dt=ti.f32)
    sn = ti.Vector([L[3, k] for k in ti.static(range(K))], dt=ti.f32)
    ea = ti.Vector([L[4, k] for k in ti.static(range(K))], dt=ti.f32)
    eia = ti.Vector([L[5, k] for k in ti.static(range(K))], dt=ti.f32)
    et = ti.Vector([L[7, k] for k in ti.static(range(K))], dt=ti.f32)
    col, gv, gc, e = _colour_from(cc, wt, target, y, x, K, C)
    err = e if ids.max() >= 0 else 0.0
    dl = wt * (gc - gv.dot(col))  # dL/dlogit (0 in an empty slot: its weight is)
    ds = -dl * et  # dL/ds, s = (sqrt(q) - r) / S
    dq = ds * s_inv * 0.5 / sq

    g0 = dq * (-2.0 * ea * al * cs + 2.0 * eia * be * sn)
    g1 = dq * (-2.0 * ea * al * sn - 2.0 * eia * be * cs)
    g2 = dq * 2.0 * al * be * (ea - eia)
    g3 = dq * (ea * al * al - eia * be * be)
    g4 = -ds * s_inv
    g5 = dl * lg
    return err, wt, gv, g0, g1, g2, g3, g4, g5


@ti.func
def _lane_grads(
    topk: ti.template(),
    tab: ti.template(),
    params: ti.template(),
    target: ti.template(),
    y: ti.i32,
    x: ti.i32,
    s_inv: ti.f32,
    K: ti.template(),
    C: ti.template(),
):
    """_lanes_grads with the lanes read from the map, the table and params; also ids."""
    ids, L = _load_lanes(topk, tab, y, x, K)
    cc = _load_colours(ids, params, K, C)
    err, wt, gv, g0, g1, g2, g3, g4, g5 = _lanes_grads(ids, L, cc, target, y, x, s_inv, K, C)
    return ids, err, wt, gv, g0, g1, g2, g3, g4, g5


@ti.kernel
def forward_backward_bands(
    topk: ti.types.ndarray(dtype=ti.i32, ndim=3),
    tab: ti.types.ndarray(dtype=ti.f32, ndim=2),
    params: ti.types.ndarray(dtype=ti.f32, ndim=2),
    target: ti.types.ndarray(dtype=ti.f32, ndim=3),
    grad: ti.types.ndarray(dtype=ti.f32, ndim=3),
    loss: ti.types.ndarray(dtype=ti.f32, ndim=1),
    s_inv: ti.f32,
    stride: ti.i32,
    phase: ti.i32,
    K: ti.template(),
    C: ti.template(),
):
    """Add dL/dparams into grad (B, N, P) and write each row's squared error to loss[y].

    Only the pixels with (x + y) % stride == phase are visited (a checkerboard for 2; the
    loss scaled by stride, so its sum still estimates the whole image's); stride = 1 visits
    every pixel.

    The CPU path: the rows are cut into B bands, each summed serially by one thread into
    its own slice grad[b], so no atomics are needed (they cost 2.5x the whole pass on one
    thread) and the result does not depend on the thread count (adam() adds the slices in
    a fixed order). Along a row each slot keeps its site's table row and colour and a
    running sum of its gradient while the site stays the same; when it changes, the sum
    is added to the site and the new site's data are read. Those adds and reads were most
    of this kernel's time, and with a map from TopKMap.stable() 90% of them go (any map
    gives the same sums, to float rounding)."""
    h = topk.shape[0]
    w = topk.shape[1]
    nb = grad.shape[0]
    rows = (h + nb - 1) // nb
    P = ti.static(GEOM_PARAMS + C)
    for t in range(nb * TASK_PAD):
        if t % TASK_PAD == 0:
            b = t // TASK_PAD
            for y in range(b * rows, ti.min(h, (b + 1) * rows)):
                x0 = (phase + stride - y % stride) % stride
                row = 0.0
                prev = ti.Vector([-1] * K, dt=ti.i32)
                acc = ti.Matrix([[0.0] * K for _ in range(P)], dt=ti.f32)
                # Each slot's site table row (a row of LT: one read of 8 floats, measured
                # 3% faster than columns) and colour (a column of cc; rows: 4% slower).
                LT = ti.Matrix([[0.0] * TABLE_COLS for _ in range(K)], dt=ti.f32)
                cc = ti.Matrix([[0.0] * K for _ in range(C)], dt=ti.f32)
                for j in range((w - x0 + stride - 1) // stride):
                    x = x0 + j * stride
                    ids = ti.Vector([topk[y, x, k] for k in ti.static(range(K))], dt=ti.i32)
                    # Not unrolled: indexed by a variable, acc, LT and cc live in stack
                    # arrays that LLVM reads a row of lanes at a time; as scalars carried
                    # round the pixel loop they were not vectorised (1.1-1.6x slower).
                    for k in range(K):
                        c = prev[k]
                        if c != ids[k]:
                            if c >= 0:
                                for q in ti.static(range(P)):
                                    grad[b, c, q] = grad[b, c, q] + acc[q, k]
                            for q in ti.static(range(P)):
                                acc[q, k] = 0.0
                            i = ti.max(ids[k], 0)
                            for q in ti.static(range(TABLE_COLS)):
                                LT[k, q] = tab[i, q]
                            for ch in ti.static(range(C)):
                                cc[ch, k] = params[i, GEOM_PARAMS + ch]
                    err, wt, gv, g0, g1, g2, g3, g4, g5 = _lanes_grads(
                        ids, LT.transpose(), cc, target, y, x, s_inv, K, C
                    )
                    row += err
                    for k in ti.static(range(K)):
                        acc[0, k] += g0[k]
                        acc[1, k] += g1[k]
                        acc[2, k] += g2[k]
                        acc[3, k] += g3[k]
                        acc[4, k] += g4[k]
                        acc[5, k] += g5[k]
                        for ch in ti.static(range(C)):
                            acc[GEOM_PARAMS + ch, k] += wt[k] * gv[ch]
                    prev = ids
                for k in range(K):  # not unrolled, as above
                    c = prev[k]
                    if c >= 0:
                        for q in ti.static(range(P)):
                            grad[b, c, q] = grad[b, c, q] + acc[q, k]
                loss[y] = row * stride


@ti.kernel
def forward_backward_atomic(
    topk: ti.types.ndarray(dtype=ti.i32, ndim=3),
    tab: ti.types.ndarray(dtype=ti.f32, ndim=2),
    params: ti.types.ndarray(dtype=ti.f32, ndim=2),
    target: ti.types.ndarray(dtype=ti.f32, ndim=3),
    grad: ti.types.ndarray(dtype=ti.f32, ndim=3),
    loss: ti.types.ndarray(dtype=ti.f32, ndim=1),
    s_inv: ti.f32,
    stride: ti.i32,
    phase: ti.i32,
    K: ti.template(),
    C: ti.template(),
):
    """The GPU path of forward_backward_bands: every pixel in parallel, atomics into
    grad[0] (loss[y] must be zeroed first)."""
    h = topk.shape[0]
    w = topk.shape[1]
    for y, x in ti.ndrange(h, w):
        if (x + y) % stride == phase:
            ids, err, wt, gv, g0, g1, g2, g3, g4, g5 = _lane_grads(
                topk, tab, params, target, y, x, s_inv, K, C
            )
            for k in ti.static(range(K)):
                c = ids[k]
                # Every gradient term carries a factor w_k: skip the negligible ones.
                if c >= 0 and wt[k] > W_SKIP:
                    for ch in ti.static(range(C)):
                        ti.atomic_add(grad[0, c, GEOM_PARAMS + ch], wt[k] * gv[ch])
                    ti.atomic_add(grad[0, c, 0], g0[k])
                    ti.atomic_add(grad[0, c, 1], g1[k])
                    ti.atomic_add(grad[0, c, 2], g2[k])
                    ti.atomic_add(grad[0, c, 3], g3[k])
                    ti.atomic_add(grad[0, c, 4], g4[k])
                    ti.atomic_add(grad[0, c, 5], g5[k])
            ti.atomic_add(loss[y], err * stride)


def forward_backward(
    topk,
    tab,
    params,
    target,
    grad,
    loss,
    s_inv: float,
    k: int,
    c: int,
    banded: bool,
    stride: int = 1,
    phase: int = 0,
):
    """Fused forward+backward: the banded kernel on the CPU, the atomic one on a GPU; over
    the pixels with (x + y) % stride == phase (a cheaper, noisier gradient), or all."""
    kern = forward_backward_bands if banded else forward_backward_atomic
    kern(topk, tab, params, target, grad, loss, s_inv, stride, phase, k, c)


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
        _ids, _lg, wt, _al, _be, _sq = _softmax_lanes(topk, tab, y, x, px, py, s_inv, K)
        for k in ti.static(range(K)):
            wts[y, x, k] = wt[k]


@ti.func
def _lane_grads_colour(
    topk: ti.template(),
    wts: ti.template(),
    params: ti.template(),
    target: ti.template(),
    y: ti.i32,
    x: ti.i32,
    K: ti.template(),
    C: ti.template(),
):
    """_lane_grads's colour part from stored weights (the same arithmetic): ids, squared
    error, weights and dL/dcolour gv; no logits, no geometry gradients."""
    ids = ti.Vector([topk[y, x, k] for k in ti.static(range(K))], dt=ti.i32)
    wt = ti.Vector([wts[y, x, k] for k in ti.static(range(K))], dt=ti.f32)
    _col, gv, _gc, e = _colour_lanes(ids, wt, params, target, y, x, K, C)
    err = e if ids.max() >= 0 else 0.0
    return ids, err, wt, gv


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
    """forward_backward_bands for the colours alone (blend_weights), with its running
    sums per slot."""
    h = topk.shape[0]
    w = topk.shape[1]
    nb = grad.shape[0]
    rows = (h + nb - 1) // nb
    for t in range(nb * TASK_PAD):
        if t % TASK_PAD == 0:
            b = t // TASK_PAD
            for y in range(b * rows, ti.min(h, (b + 1) * rows)):
                row = 0.0
                prev = ti.Vector([-1] * K, dt=ti.i32)
                acc = ti.Matrix([[0.0] * K for _ in range(C)], dt=ti.f32)
                for x in range(w):
                    ids, err, wt, gv = _lane_grads_colour(topk, wts, params, target, y, x, K, C)
                    row += err
                    for k in ti.static(range(K)):
                        c = prev[k]
                        if c != ids[k]:
                            if c >= 0:
                                for ch in ti.static(range(C)):
                                    col = GEOM_PARAMS + ch
                                    grad[b, c, col] = grad[b, c, col] + acc[ch, k]
                            for ch in ti.static(range(C)):
                                acc[ch, k] = 0.0
                    for k in ti.static(range(K)):
                        for ch in ti.static(range(C)):
                            acc[ch, k] += wt[k] * gv[ch]
                    prev = ids
                for k in range(K):  # not unrolled: see forward_backward_bands
                    c = prev[k]
                    if c >= 0:
                        for ch in ti.static(range(C)):
                            col = GEOM_PARAMS + ch
                            grad[b, c, col] = grad[b, c, col] + acc[ch, k]
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
        ids, err, wt, gv = _lane_grads_colour(topk, wts, params, target, y, x, K, C)
        for k in ti.static(range(K)):
            c = ids[k]
            if c >= 0 and wt[k] > W_SKIP:
                for ch in ti.static(range(C)):
                    ti.atomic_add(grad[0, c, GEOM_PARAMS + ch], wt[k] * gv[ch])
        ti.atomic_add(loss[y], err)


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
        ids, lg, wt, _al, _be, _sq = _softmax_lanes(topk, tab, y, x, px, py, s_inv, K)
        if ids.max() >= 0:
            _col, _gv, _gc, err = _colour_lanes(ids, wt, params, target, y, x, K, C)
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
                            r2 = (e * _lane_colour(ids, params, ch, K)).sum() / t2
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
