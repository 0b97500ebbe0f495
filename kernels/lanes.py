"""Per-pixel arithmetic shared by the fitting kernels: a pixel's K candidates as vector
lanes (logits, softmax weights, blended colour) and their gradients.

Gradients are of L = sum over pixels and channels of (C(x) - T(x))^2, written by hand
(chain rule through softmax, logit, anisotropic metric); tests check them against finite
differences.
"""

import taichi as ti

from .common import GEOM_PARAMS, NEG_INF, Q_EPS, TABLE_COLS, exp_nonpos

# Candidates with a softmax weight below this get no gradient (all terms scale with w).
W_SKIP = 1e-5


@ti.func
def lanes_softmax(
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
def load_lanes(topk: ti.template(), tab: ti.template(), y: ti.i32, x: ti.i32, K: ti.template()):
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
def softmax_lanes(
    topk: ti.template(),
    tab: ti.template(),
    y: ti.i32,
    x: ti.i32,
    px: ti.f32,
    py: ti.f32,
    s_inv: ti.f32,
    K: ti.template(),
):
    """A pixel's K candidates as K vector lanes (lanes_softmax): ids, logits, weights,
    rotated offset and sqrt(q)."""
    ids, L = load_lanes(topk, tab, y, x, K)
    lg, wt, al, be, sq = lanes_softmax(ids, L, px, py, s_inv, K)
    return ids, lg, wt, al, be, sq


@ti.func
def lane_colour(ids: ti.template(), params: ti.template(), ch: ti.template(), K: ti.template()):
    """Channel ch of each lane's site colour (site 0's in an empty slot: mask it)."""
    return ti.Vector(
        [params[ti.max(ids[k], 0), GEOM_PARAMS + ch] for k in ti.static(range(K))], dt=ti.f32
    )


@ti.func
def colour_from(
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
def load_colours(ids: ti.template(), params: ti.template(), K: ti.template(), C: ti.template()):
    """The lanes' site colours as the columns of a C x K matrix."""
    cc = ti.Matrix([[0.0] * K for _ in range(C)], dt=ti.f32)
    for ch in ti.static(range(C)):
        lc = lane_colour(ids, params, ch, K)
        for k in ti.static(range(K)):
            cc[ch, k] = lc[k]
    return cc


@ti.func
def colour_lanes(
    ids: ti.template(),
    wt: ti.template(),
    params: ti.template(),
    target: ti.template(),
    y: ti.i32,
    x: ti.i32,
    K: ti.template(),
    C: ti.template(),
):
    """colour_from with the lanes' colours read from params."""
    return colour_from(load_colours(ids, params, K, C), wt, target, y, x, K, C)


@ti.func
def lanes_grads(
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
    lg, wt, al, be, sq = lanes_softmax(ids, L, px, py, s_inv, K)
    cs = ti.Vector([L[2, k] for k in ti.static(range(K))], dt=ti.f32)
    sn = ti.Vector([L[3, k] for k in ti.static(range(K))], dt=ti.f32)
    ea = ti.Vector([L[4, k] for k in ti.static(range(K))], dt=ti.f32)
    eia = ti.Vector([L[5, k] for k in ti.static(range(K))], dt=ti.f32)
    et = ti.Vector([L[7, k] for k in ti.static(range(K))], dt=ti.f32)
    col, gv, gc, e = colour_from(cc, wt, target, y, x, K, C)
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
def lane_grads(
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
    """lanes_grads with the lanes read from the map, the table and params; also ids."""
    ids, L = load_lanes(topk, tab, y, x, K)
    cc = load_colours(ids, params, K, C)
    err, wt, gv, g0, g1, g2, g3, g4, g5 = lanes_grads(ids, L, cc, target, y, x, s_inv, K, C)
    return ids, err, wt, gv, g0, g1, g2, g3, g4, g5
