"""Per-pixel top-K candidate map: seeding, jump-flooding passes with injection, remapping.

A map is an int32 ndarray (H, W, K) of site indices, -1 for an empty slot, kept sorted
by logit (best first). Pixel (X, Y) of the map is evaluated at the fitted-image point
((X + 0.5) * sx, (Y + 0.5) * sy), so the same kernels serve any output resolution.
"""

import taichi as ti

from .common import NEG_INF, TASK_PAD, random_index, site_logit


@ti.func
def _offer(
    ids: ti.template(),
    sc: ti.template(),
    cand: ti.i32,
    tab: ti.template(),
    px: ti.f32,
    py: ti.f32,
    s_inv: ti.f32,
):
    """Insert a candidate into the sorted list if it is new and beats the worst entry.

    The duplicate test comes first: it is a few integer compares in registers, while
    scoring loads the site's row from memory, and most candidates are duplicates."""
    n = ti.static(ids.n)
    dup = False
    for k in ti.static(range(n)):
        if ids[k] == cand:
            dup = True
    if not dup:
        _insert(ids, sc, cand, site_logit(tab, cand, px, py, s_inv))


@ti.func
def _insert(ids: ti.template(), sc: ti.template(), cand: ti.i32, s: ti.f32):
    """Put a scored candidate into the sorted list if it beats the worst entry."""
    n = ti.static(ids.n)
    if s > sc[n - 1]:
        ids[n - 1] = cand
        sc[n - 1] = s
        for k in ti.static(range(n - 1, 0, -1)):
            if sc[k] > sc[k - 1]:
                i_tmp = ids[k]
                ids[k] = ids[k - 1]
                ids[k - 1] = i_tmp
                s_tmp = sc[k]
                sc[k] = sc[k - 1]
                sc[k - 1] = s_tmp


@ti.kernel
def clear(topk: ti.types.ndarray(dtype=ti.i32, ndim=3)):
    for y, x, k in topk:
        topk[y, x, k] = -1


@ti.kernel
def seed_sites(
    topk: ti.types.ndarray(dtype=ti.i32, ndim=3),
    tab: ti.types.ndarray(dtype=ti.f32, ndim=2),
    first: ti.i32,
    n: ti.i32,
    sx: ti.f32,
    sy: ti.f32,
):
    """Put sites [first, n) into the pixel containing each one, replacing the worst slot
    that holds no site of this batch. Serial, so the result never depends on threads;
    the next pass re-sorts the lists."""
    h = topk.shape[0]
    w = topk.shape[1]
    kk = topk.shape[2]
    ti.loop_config(serialize=True)
    for i in range(first, n):
        x = ti.min(ti.max(ti.cast(ti.floor(tab[i, 0] / sx), ti.i32), 0), w - 1)
        y = ti.min(ti.max(ti.cast(ti.floor(tab[i, 1] / sy), ti.i32), 0), h - 1)
        for j in range(kk):
            k = kk - 1 - j
            if topk[y, x, k] < first:
                topk[y, x, k] = i
                break


@ti.func
def _offset(o: ti.i32, stencil: ti.i32):
    """Offset o of the stencil; o = 0 is the pixel itself."""
    ox = 0
    oy = 0
    if stencil == 8:
        j = o  # cell of the 3x3 block, with the centre (cell 4) visited first
        if o == 0:
            j = 4
        elif o <= 4:
            j = o - 1
        ox = j % 3 - 1
        oy = j // 3 - 1
    else:
        ox = ti.cast(o == 1, ti.i32) - ti.cast(o == 2, ti.i32)
        oy = ti.cast(o == 3, ti.i32) - ti.cast(o == 4, ti.i32)
    return ox, oy


@ti.kernel
def propagate(
    src: ti.types.ndarray(dtype=ti.i32, ndim=3),
    dst: ti.types.ndarray(dtype=ti.i32, ndim=3),
    tab: ti.types.ndarray(dtype=ti.f32, ndim=2),
    n: ti.i32,
    step: ti.i32,
    sx: ti.f32,
    sy: ti.f32,
    s_inv: ti.f32,
    n_inject: ti.i32,
    seed: ti.u32,
    stencil: ti.i32,
    K: ti.template(),
):
    """One pass: own list + neighbours at +-step (4 or 8 stencil) + random sites -> best K.

    The candidate loops are dynamic on purpose: unrolling 9 x K insertions makes LLVM
    compile for minutes.
    """
    h = src.shape[0]
    w = src.shape[1]
    for y, x in ti.ndrange(h, w):
        px = (ti.cast(x, ti.f32) + 0.5) * sx
        py = (ti.cast(y, ti.f32) + 0.5) * sy
        ids = ti.Vector([-1] * K, dt=ti.i32)
        sc = ti.Vector([NEG_INF] * K, dt=ti.f32)
        for o in range(stencil + 1):
            ox, oy = _offset(o, stencil)
            nx = x + ox * step
            ny = y + oy * step
            if 0 <= nx < w and 0 <= ny < h:
                for k in range(K):
                    c = src[ny, nx, k]
                    if c >= 0:
                        _offer(ids, sc, c, tab, px, py, s_inv)
        for j in range(n_inject):
            c = random_index(seed, y * w + x, j, n)
            _offer(ids, sc, c, tab, px, py, s_inv)
        for k in ti.static(range(K)):
            dst[y, x, k] = ids[k]


@ti.kernel
def brute_force(
    dst: ti.types.ndarray(dtype=ti.i32, ndim=3),
    tab: ti.types.ndarray(dtype=ti.f32, ndim=2),
    n: ti.i32,
    sx: ti.f32,
    sy: ti.f32,
    s_inv: ti.f32,
    K: ti.template(),
):
    """The exact top-K of every pixel, scoring all n sites: O(pixels x sites), a reference
    for measuring the jump-flooding map (benchmarks, tests), never used to decode."""
    h = dst.shape[0]
    w = dst.shape[1]
    for y, x in ti.ndrange(h, w):
        px = (ti.cast(x, ti.f32) + 0.5) * sx
        py = (ti.cast(y, ti.f32) + 0.5) * sy
        ids = ti.Vector([-1] * K, dt=ti.i32)
        sc = ti.Vector([NEG_INF] * K, dt=ti.f32)
        for i in range(n):
            _insert(ids, sc, i, site_logit(tab, i, px, py, s_inv))
        for k in ti.static(range(K)):
            dst[y, x, k] = ids[k]


@ti.kernel
def remap(
    topk: ti.types.ndarray(dtype=ti.i32, ndim=3), new_index: ti.types.ndarray(dtype=ti.i32, ndim=1)
):
    """Renumber sites after pruning (removed sites map to -1); passes refill the holes."""
    for y, x, k in topk:
        c = topk[y, x, k]
        if c >= 0:
            topk[y, x, k] = new_index[c]


@ti.kernel
def stable_slots(
    src: ti.types.ndarray(dtype=ti.i32, ndim=3),
    dst: ti.types.ndarray(dtype=ti.i32, ndim=3),
    bands: ti.i32,
    K: ti.template(),
):
    """dst = src with each pixel's list permuted so that a site also in the left
    neighbour's list keeps that neighbour's slot; the others fill the free slots in list
    order. The same sets, in a different order (not by logit): for the CPU gradient,
    which sums a slot's run of equal sites before adding it to the site (docs/tuning.md,
    "The CPU gradient kernel").
    Rows are independent; a band of rows is one thread's."""
    h = src.shape[0]
    w = src.shape[1]
    rows = (h + bands - 1) // bands
    for t in range(bands * TASK_PAD):
        if t % TASK_PAD == 0:
            b = t // TASK_PAD
            for y in range(b * rows, ti.min(h, (b + 1) * rows)):
                prev = ti.Vector([-1] * K, dt=ti.i32)
                for x in range(w):
                    cur = ti.Vector([src[y, x, k] for k in ti.static(range(K))], dt=ti.i32)
                    out = ti.Vector([-1] * K, dt=ti.i32)
                    for k in ti.static(range(K)):
                        if ti.select(cur == prev[k], 1, 0).sum() > 0:  # (-1 matching -1 leaves -1)
                            out[k] = prev[k]
                    fresh = 0
                    for j in ti.static(range(K)):
                        if cur[j] >= 0 and ti.select(out == cur[j], 1, 0).sum() == 0:
                            fresh += 1
                    if fresh > 0:  # branch-free tests above; placing is the rare case
                        for j in ti.static(range(K)):
                            if cur[j] >= 0 and ti.select(out == cur[j], 1, 0).sum() == 0:
                                placed = 0
                                for k in ti.static(range(K)):
                                    if placed == 0 and out[k] < 0:
                                        out[k] = cur[j]
                                        placed = 1
                    for k in ti.static(range(K)):
                        dst[y, x, k] = out[k]
                    prev = out


# --- Exact build by tile culling (the decoder's CPU build) -------------------------------
# For a tile of the map, every site's logit over the tile is bracketed by the least and
# greatest value of its metric over the tile's span of pixel centres. The K-th largest
# lower bound is a threshold that K sites beat at every pixel of the tile, so a site whose
# upper bound is below it is in no pixel's top-K there. Tiles are refined level by level
# (each level tests only its parent tile's survivors), then each pixel scores its tile's
