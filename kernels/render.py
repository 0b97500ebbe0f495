"""Forward render: softmax blend of each pixel's top-K sites."""

import taichi as ti

from .common import NEG_INF, blend, blend_rows, blend_scored, site_logit
from .tiles import ROW, row_items, split_keys, tile_row, tile_row_topk


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
    ROWS: ti.template(),
):
    """Render to 8-bit: round(255 * clamp(sum_k w_k c_k, 0, 1)); with ROWS, a row of up
    to ROW pixels per work item blended by blend_rows, as render_tiled does when LARGE."""
    h = topk.shape[0]
    w = topk.shape[1]
    if ti.static(ROWS):
        R = ti.static(ROW)
        chunks = (w + R - 1) // R
        for u in range(h * chunks):
            y = u // chunks
            x0 = (u % chunks) * R
            py = (ti.cast(y, ti.f32) + 0.5) * sy
            ids = ti.Matrix([[-1] * K for _ in range(R)], dt=ti.i32)
            lg = ti.Matrix([[NEG_INF] * K for _ in range(R)], dt=ti.f32)
            for p in ti.static(range(R)):
                x = ti.min(x0 + p, w - 1)  # lanes past the row's end redo its last pixel
                px = (ti.cast(x, ti.f32) + 0.5) * sx
                for k in ti.static(range(K)):
                    c = topk[y, x, k]
                    ids[p, k] = c
                    if c >= 0:
                        lg[p, k] = site_logit(tab, c, px, py, s_inv)
            col = blend_rows(ids, lg, params, C)
            for p in range(ti.min(R, w - x0)):
                _store(out, y, x0 + p, ti.Vector([col[p, ch] for ch in ti.static(range(C))]), C)
    else:
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
    ox: ti.i32,
    oy: ti.i32,
    sx: ti.f32,
    sy: ti.f32,
    s_inv: ti.f32,
    pad: ti.i32,
    K: ti.template(),
    C: ti.template(),
    LARGE: ti.template(),
):
    """render() of the exact top-K straight from culled tile lists (topk.cull_tiles): each
    pixel finds its K sites as topk.tile_topk does and blends the scores it found them
    with, so no (H, W, K) map is stored (a third of a 24 MP decode's memory) or read.
    LARGE fills the lists by a sorting network and blends a row at a time (blend_rows):
    faster per pixel, more for a fresh process to trace (sadcodec/render.py decides).
    out is the w x h region of a larger output from pixel (ox, oy) on (0, 0: all of it),
    rendered as that output's pixels (kernels/tiles.py, _tile_rect)."""
    h = out.shape[0]
    w = out.shape[1]
    for u in range(row_items(cols, h, size) * pad):
        if u % pad != 0:
            continue
        t, x0, nx, y = tile_row(u // pad, size, cols, w)
        if y < h and nx > 0:
            key = tile_row_topk(
                lst, ub, off, cnt, tab, t, x0, nx, y, ox, oy, sx, sy, s_inv, K, LARGE
            )
            if ti.static(LARGE):
                ids, lg = split_keys(key)
                col = blend_rows(ids, lg, params, C)
                for p in range(nx):
                    row = ti.Vector([col[p, ch] for ch in ti.static(range(C))])
                    _store(out, y, x0 + p, row, C)
            else:
                for p in range(nx):
                    pid, plg = split_keys(ti.Vector([key[p, k] for k in ti.static(range(K))]))
                    _store(out, y, x0 + p, blend_scored(pid, plg, params, C), C)
