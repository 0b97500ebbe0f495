"""Forward render: softmax blend of each pixel's top-K sites."""

import taichi as ti

from .common import blend, blend_scored
from .topk import row_items, split_keys, tile_row, tile_row_topk


@ti.kernel
def render(
    topk: ti.types.ndarray(dtype=ti.i32, ndim=3),
    tab: ti.types.ndarray(dtype=ti.f32, ndim=2),
    params: ti.types.ndarray(dtype=ti.f32, ndim=2),
    out: ti.types.ndarray(dtype=ti.u8, ndim=3),
    sx: ti.f32,
    sy: ti.f32,
    s_inv: ti.f32,
    K: ti.template(),
    C: ti.template(),
):
    """Render to 8-bit: round(255 * clamp(sum_k w_k c_k, 0, 1))."""
    h = topk.shape[0]
    w = topk.shape[1]
    for y, x in ti.ndrange(h, w):
        px = (ti.cast(x, ti.f32) + 0.5) * sx
        py = (ti.cast(y, ti.f32) + 0.5) * sy
        _, _, col, _ = blend(topk, tab, params, y, x, px, py, s_inv, K, C)
        _store(out, y, x, col, C)


@ti.func
def _store(out: ti.template(), y: ti.i32, x: ti.i32, col: ti.template(), C: ti.template()):
    for ch in ti.static(range(C)):
        v = ti.min(ti.max(col[ch], 0.0), 1.0)
        out[y, x, ch] = ti.cast(ti.floor(v * 255.0 + 0.5), ti.u8)


@ti.kernel
def render_tiled(
    out: ti.types.ndarray(dtype=ti.u8, ndim=3),
    lst: ti.types.ndarray(dtype=ti.i32, ndim=1),
    ub: ti.types.ndarray(dtype=ti.f32, ndim=1),
    off: ti.types.ndarray(dtype=ti.i64, ndim=1),
    cnt: ti.types.ndarray(dtype=ti.i32, ndim=1),
    tab: ti.types.ndarray(dtype=ti.f32, ndim=2),
    params: ti.types.ndarray(dtype=ti.f32, ndim=2),
    size: ti.i32,
    cols: ti.i32,
    sx: ti.f32,
    sy: ti.f32,
    s_inv: ti.f32,
    pad: ti.i32,
    K: ti.template(),
    C: ti.template(),
    SORT_FIRST: ti.template(),
):
    """render() of the exact top-K straight from culled tile lists (topk.cull_tiles): each
    pixel finds its K sites as topk.tile_topk does and blends the scores it found them
    with, so no (H, W, K) map is stored (a third of a 24 MP decode's memory) or read."""
    h = out.shape[0]
    w = out.shape[1]
    for u in range(row_items(cols, h, size) * pad):
        if u % pad != 0:
            continue
        t, x0, nx, y = tile_row(u // pad, size, cols, w)
        if y < h and nx > 0:
            key = tile_row_topk(lst, ub, off, cnt, tab, t, x0, nx, y, sx, sy, s_inv, K, SORT_FIRST)
            for p in range(nx):
                pid, plg = split_keys(ti.Vector([key[p, k] for k in ti.static(range(K))]))
                _store(out, y, x0 + p, blend_scored(pid, plg, params, C), C)
