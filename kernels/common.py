"""Shared Taichi functions: the SAD score, a counter-based RNG, fixed-point accumulation.

Site table layout (float32, one row per site), written by ``table.prepare``:
    0 px, 1 py, 2 cos(theta), 3 sin(theta), 4 exp(a), 5 exp(-a), 6 r, 7 exp(t)
Parameter layout (float32, one row per site), what the optimiser updates:
    0 px, 1 py, 2 theta, 3 a, 4 r, 5 t, 6.. colour channels
"""

import taichi as ti

TABLE_COLS = 8
GEOM_PARAMS = 6
# q is floored at Q_EPS (px^2) so sqrt(q) has a finite gradient at the site itself.
Q_EPS = 1e-4
NEG_INF = -1e30
# Fixed-point scale of the site statistics: integer atomics are associative, so the sums
# do not depend on thread scheduling (float atomics would).
STAT_SCALE = 2.0**20
# Taichi's CPU scheduler hands out at least 512 loop iterations per task (and ignores
# block_dim), so a loop over a few bands would run on one thread: band loops spread
# their bands TASK_PAD iterations apart so that each task holds exactly one band.
TASK_PAD = 512


@ti.func
def site_logit(tab: ti.template(), i: ti.i32, x: ti.f32, y: ti.f32, s_inv: ti.f32) -> ti.f32:
    """Logit l_i(x) = -exp(t) * (sqrt(d^T G d) - r) / S for a point in fitted-image pixels."""
    dx = x - tab[i, 0]
    dy = y - tab[i, 1]
    al = tab[i, 2] * dx + tab[i, 3] * dy
    be = -tab[i, 3] * dx + tab[i, 2] * dy
    q = tab[i, 4] * al * al + tab[i, 5] * be * be + Q_EPS
    return -tab[i, 7] * (ti.sqrt(q) - tab[i, 6]) * s_inv


@ti.func
def exp_nonpos(v):
    """exp(v) for v <= 0 (a scalar, or elementwise on a vector or matrix) in plain
    arithmetic, so LLVM can vectorise it across lanes (libm's expf is one call per
    value): 2^n * p(r), r = v - n ln2 in [-ln2/2, ln2/2], p the degree-6 Taylor
    polynomial. Relative error within 3e-7 * max(1, |v|) (fast math may merge the
    two-part ln2, so it grows like exp's own conditioning); 0 below about -87.3."""
    u = ti.max(v, -88.0)  # keeps p finite; 2^n is then 0 (n = -127)
    n = ti.round(u * 1.4426950408889634)
    r = u - n * 0.693145751953125  # ln2 in two parts: n * hi is exact
    r = r - n * 1.4286068202862268e-06
    p = r * (1.0 / 720.0) + 1.0 / 120.0  # p takes r's shape: a scalar, vector or matrix
    p = p * r + 1.0 / 24.0
    p = p * r + 1.0 / 6.0
    p = p * r + 0.5
    p = p * r + 1.0
    p = p * r + 1.0
    scale = ti.bit_cast((ti.cast(n, ti.i32) + 127) << 23, ti.f32)
    return p * scale


@ti.func
def hash_u32(v: ti.u32) -> ti.u32:
    """A well-mixed 32-bit integer hash (xorshift-multiply finaliser)."""
    h = v
    h ^= h >> 16
    h *= ti.u32(0x7FEB352D)
    h ^= h >> 15
    h *= ti.u32(0x846CA68B)
    h ^= h >> 16
    return h


@ti.func
def random_index(seed: ti.u32, pixel: ti.i32, j: ti.i32, n: ti.i32) -> ti.i32:
    """A site index drawn from (seed, pixel, j) alone, so results do not depend on threads."""
    h = hash_u32(seed ^ hash_u32(ti.cast(pixel, ti.u32) * ti.u32(16) + ti.cast(j, ti.u32)))
    return ti.cast(h % ti.cast(n, ti.u32), ti.i32)


@ti.func
def to_fixed(v: ti.f32, scale: ti.template()) -> ti.i64:
    return ti.cast(ti.round(v * scale), ti.i64)


@ti.func
def blend(
    topk: ti.template(),
    tab: ti.template(),
    params: ti.template(),
    y: ti.i32,
    x: ti.i32,
    px: ti.f32,
    py: ti.f32,
    s_inv: ti.f32,
    K: ti.template(),
    C: ti.template(),
):
    """One pixel's logits, softmax weights (0 for empty slots) and blended colour; the
    total is 0 when the pixel has no candidate. Shared by render, fitting and statistics."""
    lg = ti.Vector([NEG_INF] * K, dt=ti.f32)
    wt = ti.Vector([0.0] * K, dt=ti.f32)
    col = ti.Vector([0.0] * C, dt=ti.f32)
    mx = NEG_INF
    for k in ti.static(range(K)):
        c = topk[y, x, k]
        if c >= 0:
            lg[k] = site_logit(tab, c, px, py, s_inv)
            mx = ti.max(mx, lg[k])
    tot = 0.0
    for k in ti.static(range(K)):
        if topk[y, x, k] >= 0:
            wt[k] = ti.exp(lg[k] - mx)
            tot += wt[k]
    if tot > 0:
        wt /= tot
        for k in ti.static(range(K)):
            c = topk[y, x, k]
            if c >= 0:
                for ch in ti.static(range(C)):
                    col[ch] += wt[k] * params[c, GEOM_PARAMS + ch]
    return lg, wt, col, tot


@ti.func
def blend_scored(ids: ti.template(), lg: ti.template(), params: ti.template(), C: ti.template()):
    """The blended colour of sites already scored (ids, logits; -1 marks an empty slot):
    blend's arithmetic, in the same order, so both render the same bytes."""
    K = ti.static(ids.n)
    wt = ti.Vector([0.0] * K, dt=ti.f32)
    col = ti.Vector([0.0] * C, dt=ti.f32)
    mx = NEG_INF
    for k in ti.static(range(K)):
        if ids[k] >= 0:
            mx = ti.max(mx, lg[k])
    tot = 0.0
    for k in ti.static(range(K)):
        if ids[k] >= 0:
            wt[k] = ti.exp(lg[k] - mx)
            tot += wt[k]
    if tot > 0:
        wt /= tot
        for k in ti.static(range(K)):
            c = ids[k]
            if c >= 0:
                for ch in ti.static(range(C)):
                    col[ch] += wt[k] * params[c, GEOM_PARAMS + ch]
    return col


@ti.func
def blend_rows(ids: ti.template(), lg: ti.template(), params: ti.template(), C: ti.template()):
    """The blended colours (R, C) of R pixels' scored sites, ids and logits (R, K) (-1
    marks an empty slot): blend_scored as whole-matrix arithmetic, a vector lane a pixel,
    so LLVM vectorises the softmax, with exp_nonpos for libm's exp (blend_scored was a
    third of the render of a 24 MP decode). Its colours may differ from blend_scored's by
    float rounding. Matrix operations keep the code Taichi traces per process small; it
    is still more than blend_scored's, so the renderers use it for large outputs."""
    R = ti.static(ids.n)
    K = ti.static(ids.m)
    live = ids >= 0
    lgm = ti.select(live, lg, NEG_INF)
    mx = ti.Vector([NEG_INF] * R, dt=ti.f32)
    for k in ti.static(range(K)):
        mx = ti.max(mx, ti.Vector([lgm[p, k] for p in ti.static(range(R))], dt=ti.f32))
    ones = ti.Vector([1.0] * K, dt=ti.f32)
    wt = ti.select(live, exp_nonpos(lgm - mx.outer_product(ones)), 0.0)
    tot = wt @ ones
    # A pixel with no site (tot 0) has all weights 0 and stays black, as in blend.
    wt = wt / ti.select(tot > 0, tot, 1.0).outer_product(ones)
    rows = ti.max(ids, 0)  # an empty slot's weight is 0: any site's colour will do
    col = ti.Matrix([[0.0] * C for _ in range(R)], dt=ti.f32)
    for ch in ti.static(range(C)):
        g = ti.Matrix(
            [
                [params[rows[p, k], GEOM_PARAMS + ch] for k in ti.static(range(K))]
                for p in ti.static(range(R))
            ],
            dt=ti.f32,
        )
        v = (wt * g) @ ones
        for p in ti.static(range(R)):
            col[p, ch] = v[p]
    return col
