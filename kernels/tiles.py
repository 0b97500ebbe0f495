"""The exact top-K by tile culling: the decoder's CPU build and the CPU fit's map build.

For a tile of the map, every site's logit over the tile is bracketed by the least and
greatest value of its metric over the tile's span of pixel centres. The K-th largest
lower bound is a threshold that K sites beat at every pixel of the tile, so a site whose
upper bound is below it is in no pixel's top-K there. Tiles are refined level by level
(each level tests only its parent tile's survivors), then each pixel scores its tile's
list, in increasing site order like the brute force, so ties resolve the same way.
"""

import numpy as np
import taichi as ti

from .common import NEG_INF, Q_EPS

BOUND_SLACK = 1e-5  # relative: float rounding of a logit is ~1e-7 of its size


@ti.func
def _edge_min(a: ti.f32, b: ti.f32, c: ti.f32, u: ti.f32, v0: ti.f32, v1: ti.f32) -> ti.f32:
    """min over v in [v0, v1] of a u^2 + 2 b u v + c v^2 (c > 0)."""
    v = ti.min(ti.max(-b * u / c, v0), v1)
    return a * u * u + 2.0 * b * u * v + c * v * v


@ti.func
def _quad(a: ti.f32, b: ti.f32, c: ti.f32, u: ti.f32, v: ti.f32) -> ti.f32:
    return a * u * u + 2.0 * b * u * v + c * v * v


@ti.func
def _logit_bounds(tab: ti.template(), i: ti.i32, x0, x1, y0, y1, s_inv: ti.f32):
    """(lower, upper) bound of site i's logit over the points [x0, x1] x [y0, y1]; the
    corners are scalars, or vectors with one lane a rectangle (tile_cull_once bounds a
    2x2 block of tiles at once; the inside test is a select, so LLVM vectorises it).

    The metric q(d) = d^T G d is convex: its maximum over the rectangle is at a corner,
    its minimum is 0 if the site is inside, else on one of the four edges (a clamped 1-D
    quadratic each). The slack covers float rounding of these against site_logit's."""
    cs = tab[i, 2]
    sn = tab[i, 3]
    ea = tab[i, 4]
    eb = tab[i, 5]
    qa = ea * cs * cs + eb * sn * sn
    qc = ea * sn * sn + eb * cs * cs
    qb = (ea - eb) * cs * sn
    u0 = x0 - tab[i, 0]
    u1 = x1 - tab[i, 0]
    v0 = y0 - tab[i, 1]
    v1 = y1 - tab[i, 1]
    qmax = ti.max(
        ti.max(_quad(qa, qb, qc, u0, v0), _quad(qa, qb, qc, u0, v1)),
        ti.max(_quad(qa, qb, qc, u1, v0), _quad(qa, qb, qc, u1, v1)),
    )
    edges = ti.min(
        ti.min(_edge_min(qa, qb, qc, u0, v0, v1), _edge_min(qa, qb, qc, u1, v0, v1)),
        ti.min(_edge_min(qc, qb, qa, v0, u0, u1), _edge_min(qc, qb, qa, v1, u0, u1)),
    )
    inside = (u0 <= 0.0) & (u1 >= 0.0) & (v0 <= 0.0) & (v1 >= 0.0)
    qmin = ti.select(inside, 0.0, edges)
    near = ti.sqrt(ti.max(qmin, 0.0) + Q_EPS)
    far = ti.sqrt(qmax + Q_EPS)
    r = tab[i, 6]
    scale = tab[i, 7] * s_inv
    ub = -scale * (near - r)
    lb = -scale * (far - r)
    slack = BOUND_SLACK * scale * (far + ti.abs(r) + 1.0)
    return lb - slack, ub + slack


@ti.func
def _keep_largest(best: ti.template(), v: ti.f32):
    """Insert v into best, the K largest values so far in descending order."""
    K = ti.static(best.n)
    if v > best[K - 1]:
        best[K - 1] = v
        for k in ti.static(range(K - 1, 0, -1)):
            if best[k] > best[k - 1]:
                tmp = best[k]
                best[k] = best[k - 1]
                best[k - 1] = tmp


# Above this K the culling keeps each tile's K best lower bounds in a heap (log K a
# site), not a sorted list (up to K - 1 moves a site: sites in increasing order, as a
# crafted file can store them, made K = 32 culling 2.5x slower); the K-th best is the same.
HEAP_FROM_K = 8


@ti.func
def _heap_replace(heap: ti.template(), row, v: ti.f32) -> ti.f32:
    """heap[row, :] is a min-heap of the K largest values so far, its root the K-th:
    replace the root by v (v > root) and return the new root."""
    K = ti.static(heap.m)
    i = 0
    while 2 * i + 1 < K:
        c = 2 * i + 1
        if c + 1 < K and heap[row, c + 1] < heap[row, c]:
            c += 1
        if heap[row, c] < v:
            heap[row, i] = heap[row, c]
            i = c
        else:
            break
    heap[row, i] = v
    return heap[row, 0]


@ti.func
def _tile_rect(tx, ty, size: ti.i32, w: ti.i32, h: ti.i32, ox, oy, sx: ti.f32, sy: ti.f32):
    """The span of pixel centres of a tile, in fitted-image coordinates (tx, ty scalars,
    or vectors with one lane a tile). The map is w x h pixels of a larger output from
    pixel (ox, oy) on (a region decode; 0, 0 for a whole map): its pixel (x, y) is the
    output's (ox + x, oy + y)."""
    x0 = (ti.cast(ox + tx * size, ti.f32) + 0.5) * sx
    x1 = (ti.cast(ox + ti.min(tx * size + size, w) - 1, ti.f32) + 0.5) * sx
    y0 = (ti.cast(oy + ty * size, ti.f32) + 0.5) * sy
    y1 = (ti.cast(oy + ti.min(ty * size + size, h) - 1, ti.f32) + 0.5) * sy
    return x0, x1, y0, y1


# A ranked list is kept sorted by insertion as it grows up to this long (fitted files'
# 8x8 tiles hold ~40 sites, at most 89 on kodim05 at 1 bpp, 156 at 2 bpp); entries beyond
# are appended as they come and the whole list is sorted by rank_long_lists, in O(L log L)
# where insertion is O(L^2): a crafted file can store its sites in increasing bound
# order, so that every insertion moves the whole list. Up to this length insertion
# moves an entry at most as often as the pixels of a tile score it.
INSERTION_SORT_MAX = 128


@ti.func
def _append(
    out: ti.template(),
    out_ub: ti.template(),
    first: ti.i64,
    m: ti.i64,
    c: ti.i32,
    ub: ti.f32,
    ranked: ti.i32,
):
    """Add site c (upper bound ub) as entry m of the list that starts at out[first]; with
    ranked, keep the list sorted by bound, best first, while it is at most
    INSERTION_SORT_MAX long (insertion sort as it grows), and store the bounds, which only
    a ranked list needs."""
    q = m
    if ranked != 0:
        if m - first < INSERTION_SORT_MAX:
            while q > first:
                if out_ub[q - 1] >= ub:
                    break
                out[q] = out[q - 1]
                out_ub[q] = out_ub[q - 1]
                q -= 1
        out_ub[q] = ub
    out[q] = c


@ti.func
def _swap(out: ti.template(), out_ub: ti.template(), a: ti.i64, b: ti.i64):
    c = out[a]
    out[a] = out[b]
    out[b] = c
    u = out_ub[a]
    out_ub[a] = out_ub[b]
    out_ub[b] = u


@ti.func
def _sift_down(out: ti.template(), out_ub: ti.template(), first: ti.i64, root0: ti.i32, end):
    """Restore the min-heap (by bound) of out[first:first + end] below root0."""
    root = root0
    while 2 * root + 1 < end:
        child = 2 * root + 1
        if child + 1 < end and out_ub[first + child + 1] < out_ub[first + child]:
            child += 1
        if out_ub[first + child] < out_ub[first + root]:
            _swap(out, out_ub, first + root, first + child)
            root = child
        else:
            break


@ti.kernel
def rank_long_lists(
    lst: ti.types.ndarray(dtype=ti.i32, ndim=1),
    ub: ti.types.ndarray(dtype=ti.f32, ndim=1),
    off: ti.types.ndarray(dtype=ti.i64, ndim=1),
    cnt: ti.types.ndarray(dtype=ti.i32, ndim=1),
    pad: ti.i32,
):
    """Heapsort each ranked list longer than INSERTION_SORT_MAX by bound, best first (its
    first entries are sorted, the rest as they came). Equal bounds may change places: no
    user of the lists depends on their order (tile_row_topk breaks ties by site index).
    A separate kernel, loaded only where a list is that long, so that a fresh process
    decoding a fitted file does not compile it (tile_cull_once with it inlined took a
    Kodak decode's first call 50 ms longer). Tiles padded as in tile_cull."""
    for u in range(cnt.shape[0] * pad):
        if u % pad != 0:
            continue
        t = u // pad
        m = cnt[t]
        if m > INSERTION_SORT_MAX:
            first = off[t]
            for j in range(m // 2):  # a min-heap: the worst bound at the root
                _sift_down(lst, ub, first, m // 2 - 1 - j, m)
            for j in range(m - 1):
                end = m - 1 - j
                _swap(lst, ub, first, first + end)  # the worst left goes last
                _sift_down(lst, ub, first, 0, end)


@ti.kernel
def tile_cull(
    parent_list: ti.types.ndarray(dtype=ti.i32, ndim=1),
    parent_off: ti.types.ndarray(dtype=ti.i64, ndim=1),
    parent_cnt: ti.types.ndarray(dtype=ti.i32, ndim=1),
    thr: ti.types.ndarray(dtype=ti.f32, ndim=1),
    cnt: ti.types.ndarray(dtype=ti.i32, ndim=1),
    off: ti.types.ndarray(dtype=ti.i64, ndim=1),
    out: ti.types.ndarray(dtype=ti.i32, ndim=1),
    out_ub: ti.types.ndarray(dtype=ti.f32, ndim=1),
    tab: ti.types.ndarray(dtype=ti.f32, ndim=2),
    cols: ti.i32,
    rows: ti.i32,
    size: ti.i32,
    ratio: ti.i32,
    parent_cols: ti.i32,
    w: ti.i32,
    h: ti.i32,
    ox: ti.i32,
    oy: ti.i32,
    sx: ti.f32,
    sy: ti.f32,
    s_inv: ti.f32,
    fill: ti.i32,
    ranked: ti.i32,
    pad: ti.i32,
    K: ti.template(),
):
    """One culling level, in two launches. fill = 0: per tile, the K-th largest lower
    bound among its parent's sites (thr) and how many of them reach it (cnt). fill = 1:
    write those sites, in the parent's order, from out[off[tile]] on; with ranked = 1
    (the last level) also their upper bounds into out_ub, both sorted by it, best first
    (lists over INSERTION_SORT_MAX by rank_long_lists after), so that tile_topk can stop
    at the first site that cannot make a pixel's list.

    Taichi's CPU scheduler hands out at least 512 iterations per task, so a coarse level
    (Kodak's 32-px level has 384 tiles) would run on one thread: each tile's iteration
    is followed by pad - 1 empty ones (pad from cull_pad) to spread the tiles out."""
    for u in range(cols * rows * pad):
        if u % pad != 0:
            continue
        t = u // pad
        tx = t % cols
        ty = t // cols
        x0, x1, y0, y1 = _tile_rect(tx, ty, size, w, h, ox, oy, sx, sy)
        p = (ty // ratio) * parent_cols + tx // ratio
        first = parent_off[p]
        if fill == 0:
            best = ti.Vector([NEG_INF] * K, dt=ti.f32)
            for j in range(parent_cnt[p]):
                lb, _ = _logit_bounds(tab, parent_list[first + j], x0, x1, y0, y1, s_inv)
                _keep_largest(best, lb)
            thr[t] = best[K - 1]
        m = off[t]
        for j in range(parent_cnt[p]):
            c = parent_list[first + j]
            _, ub = _logit_bounds(tab, c, x0, x1, y0, y1, s_inv)
            if ub >= thr[t]:
                if fill != 0:
                    _append(out, out_ub, off[t], m, c, ub, ranked)
                m += 1
        if fill == 0:
            cnt[t] = ti.cast(m - off[t], ti.i32)


@ti.kernel
def tile_cull_once(
    parent_list: ti.types.ndarray(dtype=ti.i32, ndim=1),
    parent_off: ti.types.ndarray(dtype=ti.i64, ndim=1),
    parent_cnt: ti.types.ndarray(dtype=ti.i32, ndim=1),
    cnt: ti.types.ndarray(dtype=ti.i32, ndim=1),
    off: ti.types.ndarray(dtype=ti.i64, ndim=1),
    out: ti.types.ndarray(dtype=ti.i32, ndim=1),
    out_ub: ti.types.ndarray(dtype=ti.f32, ndim=1),
    tab: ti.types.ndarray(dtype=ti.f32, ndim=2),
    cols: ti.i32,
    rows: ti.i32,
    size: ti.i32,
    ratio: ti.i32,
    parent_cols: ti.i32,
    w: ti.i32,
    h: ti.i32,
    ox: ti.i32,
    oy: ti.i32,
    sx: ti.f32,
    sy: ti.f32,
    s_inv: ti.f32,
    ranked: ti.i32,
    pad: ti.i32,
    K: ti.template(),
):
    """tile_cull in one launch, each site's bounds computed once: every tile owns a slot
    of its parent's length from out[off[tile]] on (the caller sizes them), appends the
    parent's sites and upper bounds there, then compacts the slot to those reaching the
    K-th best lower bound, and sets cnt (ranked: sorted by bound, best first, up to
    INSERTION_SORT_MAX entries). A site
    whose upper bound is already under the K-th best lower bound so far is overwritten by
    the next (the append is branch-free): the bound only rises, so it would be dropped
    anyway, and the compaction reads only what is left (docs/tuning.md, "Culling levels").

    A work item is a 2x2 block of tiles with one parent (ratio even, or the root level's
    single parent), so each parent site is loaded once and bounded over the four tiles
    as four vector lanes; with an odd ratio a block is one tile."""
    blk = 1
    if ratio % 2 == 0 or parent_cols == 1 and ratio >= cols and ratio >= rows:
        blk = 2
    bcols = (cols + blk - 1) // blk
    brows = (rows + blk - 1) // blk
    for u in range(bcols * brows * pad):
        if u % pad != 0:
            continue
        b = u // pad
        bx = (b % bcols) * blk
        by = (b // bcols) * blk
        lx = ti.Vector([0, 1, 0, 1], dt=ti.i32)
        ly = ti.Vector([0, 0, 1, 1], dt=ti.i32)
        tx = bx + lx
        ty = by + ly
        valid = (tx < cols) & (ty < rows) & ((lx + ly == 0) | (blk == 2))
        x0, x1, y0, y1 = _tile_rect(tx, ty, size, w, h, ox, oy, sx, sy)  # one lane a tile
        p = (by // ratio) * parent_cols + bx // ratio
        first = parent_off[p]
        n = parent_cnt[p]
        base = ti.Vector([0, 0, 0, 0], dt=ti.i64)
        for lane in ti.static(range(4)):
            if valid[lane]:
                base[lane] = off[ty[lane] * cols + tx[lane]]
        best = ti.Matrix([[NEG_INF] * K for _ in range(4)], dt=ti.f32)
        kth = ti.Vector([NEG_INF] * 4, dt=ti.f32)
        cur = ti.Vector([0, 0, 0, 0], dt=ti.i32)
        for j in range(n):
            c = parent_list[first + j]
            lb, ub = _logit_bounds(tab, c, x0, x1, y0, y1, s_inv)
            for lane in ti.static(range(4)):
                if valid[lane]:
                    out[base[lane] + cur[lane]] = c
                    out_ub[base[lane] + cur[lane]] = ub[lane]
            cur += ti.cast(ub >= kth, ti.i32)
            if (lb > kth).any():
                for lane in range(4):
                    v = lb[lane]
                    if v > kth[lane]:
                        if ti.static(K > HEAP_FROM_K):
                            kth[lane] = _heap_replace(best, lane, v)
                        else:
                            k = K - 1
                            for _ in range(K - 1):
                                if v > best[lane, k - 1]:
                                    best[lane, k] = best[lane, k - 1]
                                    k -= 1
                                else:
                                    break
                            best[lane, k] = v
                            kth[lane] = best[lane, K - 1]
        for lane in range(4):
            if valid[lane]:
                t = ty[lane] * cols + tx[lane]
                thr = kth[lane]
                m = base[lane]
                for j in range(cur[lane]):
                    # Entries move only down to m <= base + j: what is still to be read stays.
                    ub = out_ub[base[lane] + j]
                    if ub >= thr:
                        _append(out, out_ub, base[lane], m, out[base[lane] + j], ub, ranked)
                        m += 1
                cnt[t] = ti.cast(m - base[lane], ti.i32)


# Pixels of a tile row scored together: one site's logits at ROW pixels are the same
# arithmetic on ROW lanes, which LLVM vectorises (the pixel loop is unrolled), where a
# pixel-by-pixel scan spends its time on one dependent chain per site.
ROW = 8


def _host_key(score: float, site: int) -> int:
    """_rank_key of a float32 score and a site, computed in Python (for constants)."""
    b = int(np.array([score], np.float32).view(np.int32)[0])
    return ((b ^ ((b >> 31) & 0x7FFFFFFF)) << 32) + (0x7FFFFFFF - site)


# The key of an empty slot (NEG_INF, site -1), below every site's; one above every key;
# the bits of -0.0 as an int32.
EMPTY_KEY = _host_key(NEG_INF, -1)
TOP_KEY = (1 << 63) - 1
NEG_ZERO_BITS = -(1 << 31)


@ti.func
def _rank_key(s, c):
    """One int64 that orders (logit s, site c) as the lists do: higher logit first, then
    the lower index. The float's bits, flipped below zero, order like the float (-0.0
    taken as +0.0); the low half is 2^31 - 1 - c. A compare-exchange of two keys is then
    a branch-free max and min, and a list's order test one integer compare."""
    b = ti.bit_cast(s, ti.i32)
    b = ti.select(b == NEG_ZERO_BITS, 0, b)
    o = b ^ ((b >> 31) & 0x7FFFFFFF)
    return (ti.cast(o, ti.i64) << 32) + (ti.i64(0x7FFFFFFF) - ti.cast(c, ti.i64))


@ti.func
def _key_logit(key):
    o = ti.cast(key >> 32, ti.i32)
    return ti.bit_cast(o ^ ((o >> 31) & 0x7FFFFFFF), ti.f32)


@ti.func
def split_keys(key):
    """(sites, logits) of _rank_key keys (scalars or vectors): an empty slot gives -1 and
    NEG_INF."""
    return ti.cast(ti.i64(0x7FFFFFFF) - (key & ti.i64(0xFFFFFFFF)), ti.i32), _key_logit(key)


@ti.func
def _row_logits(tab: ti.template(), c: ti.i32, x0: ti.i32, lanes, py: ti.f32, sx: ti.f32, s_inv):
    """Site c's logits at the pixels x0 + lanes of a row (site_logit's arithmetic, in its
    order), a vector lane a pixel: Taichi traces it once, not once per lane."""
    dx = (ti.cast(x0 + lanes, ti.f32) + 0.5) * sx - tab[c, 0]
    dy = py - tab[c, 1]
    al = tab[c, 2] * dx + tab[c, 3] * dy
    be = -tab[c, 3] * dx + tab[c, 2] * dy
    q = tab[c, 4] * al * al + tab[c, 5] * be * be + Q_EPS
    return -tab[c, 7] * (ti.sqrt(q) - tab[c, 6]) * s_inv


@ti.func
def tile_row_topk(
    lst: ti.template(),
    ub: ti.template(),
    off: ti.template(),
    cnt: ti.template(),
    tab: ti.template(),
    t: ti.i32,
    x0: ti.i32,
    nx: ti.i32,
    y: ti.i32,
    ox: ti.i32,
    oy: ti.i32,
    sx: ti.f32,
    sy: ti.f32,
    s_inv: ti.f32,
    K: ti.template(),
    SORT_FIRST: ti.template(),
):
    """The exact top-K of the nx <= ROW pixels from column x0 of row y, among tile t's
    surviving sites, given best bound first (the map's pixel (x, y) is the output's
    (ox + x, oy + y), as in _tile_rect): (ROW, K) _rank_key keys, best first, whose
    sites and logits split_keys gives (-1 and NEG_INF where a pixel has fewer than K
    sites; rows past nx are meaningless). The scan stops at the first site whose bound is
    below every pixel's K-th logit, as no later site can enter any list. Ties go to the
    lower index, so the result does not depend on the order the sites come in and equals
    the brute force's (the logit is site_logit's arithmetic, in its order).

    SORT_FIRST fills the lists with the first K sites by a sorting network, not one
    insertion at a time: faster per pixel, more code for a fresh process to load."""
    R = ti.static(ROW)
    key = ti.Matrix([[ti.i64(EMPTY_KEY)] * K for _ in range(R)], dt=ti.i64)
    py = (ti.cast(oy + y, ti.f32) + 0.5) * sy
    lanes = ti.Vector([p for p in ti.static(range(R))], dt=ti.i32)
    ux = ox + x0  # the output column of lane 0
    first = off[t]
    kth = ti.select(lanes < nx, ti.i64(EMPTY_KEY), ti.i64(TOP_KEY))
    thr = NEG_INF  # the lowest K-th logit: no site whose bound is below it enters a list
    m = 0
    if ti.static(SORT_FIRST):
        # The first K sites enter every list: store them, then sort each lane with a
        # branch-free network. Inserting them one at a time was most of the insertions
        # and most of the time (mispredicted branches); later sites seldom enter.
        m = ti.min(cnt[t], K)
        for j in range(m):
            c = lst[first + j]
            sk = _rank_key(_row_logits(tab, c, ux, lanes, py, sx, s_inv), c)
            for p in ti.static(range(R)):
                key[p, j] = sk[p]
        for p in range(R):
            for r in ti.static(range(K)):  # odd-even transposition: K rounds sort K keys
                for i in ti.static(range(r % 2, K - 1, 2)):
                    a = key[p, i]
                    b = key[p, i + 1]
                    key[p, i] = ti.max(a, b)
                    key[p, i + 1] = ti.min(a, b)
        last = ti.Vector([key[p, K - 1] for p in ti.static(range(R))], dt=ti.i64)
        kth = ti.select(lanes < nx, last, ti.i64(TOP_KEY))
        thr = _key_logit(kth.min())
    for j in range(m, cnt[t]):
        if ub[first + j] < thr:
            break
        c = lst[first + j]
        sk = _rank_key(_row_logits(tab, c, ux, lanes, py, sx, s_inv), c)
        # Most sites after the first few enter no lane: one vector compare skips them.
        if (sk > kth).any():
            for p in range(R):
                v = sk[p]
                if v > kth[p]:
                    k = K - 1
                    for _ in range(K - 1):
                        if v > key[p, k - 1]:
                            key[p, k] = key[p, k - 1]
                            k -= 1
                        else:
                            break
                    key[p, k] = v
                    kth[p] = key[p, K - 1]
            thr = _key_logit(kth.min())
    return key


@ti.func
def tile_row(u: ti.i32, size: ti.i32, cols: ti.i32, w: ti.i32):
    """Work item u of the scoring kernels: its tile, first column and pixel count, row."""
    chunks = (size + ROW - 1) // ROW
    t = u // (size * chunks)
    r = u % (size * chunks)
    x0 = (t % cols) * size + (r % chunks) * ROW
    nx = ti.max(ti.min(ROW, ti.min((t % cols) * size + size, w) - x0), 0)
    return t, x0, nx, (t // cols) * size + r // chunks


@ti.func
def row_items(cols: ti.i32, h: ti.i32, size: ti.i32) -> ti.i32:
    """How many work items the scoring kernels have: each tile row, in up-to-ROW pieces."""
    return cols * ((h + size - 1) // size) * size * ((size + ROW - 1) // ROW)


@ti.kernel
def tile_topk(
    dst: ti.types.ndarray(dtype=ti.i32, ndim=3),
    lst: ti.types.ndarray(dtype=ti.i32, ndim=1),
    ub: ti.types.ndarray(dtype=ti.f32, ndim=1),
    off: ti.types.ndarray(dtype=ti.i64, ndim=1),
    cnt: ti.types.ndarray(dtype=ti.i32, ndim=1),
    tab: ti.types.ndarray(dtype=ti.f32, ndim=2),
    size: ti.i32,
    cols: ti.i32,
    ox: ti.i32,
    oy: ti.i32,
    sx: ti.f32,
    sy: ti.f32,
    s_inv: ti.f32,
    pad: ti.i32,
    K: ti.template(),
):
    """Each pixel's exact top-K among its tile's surviving sites (tile_row_topk), a row of
    up to ROW pixels per work item. Items are padded out as in tile_cull; (ox, oy) as in
    _tile_rect."""
    h = dst.shape[0]
    w = dst.shape[1]
    for u in range(row_items(cols, h, size) * pad):
        if u % pad != 0:
            continue
        t, x0, nx, y = tile_row(u // pad, size, cols, w)
        if y < h and nx > 0:
            key = tile_row_topk(lst, ub, off, cnt, tab, t, x0, nx, y, ox, oy, sx, sy, s_inv, K, 1)
            for p in range(nx):
                ids, _ = split_keys(ti.Vector([key[p, k] for k in ti.static(range(K))]))
                for k in ti.static(range(K)):
                    dst[y, x0 + p, k] = ids[k]
