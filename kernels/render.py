"""Forward render: softmax blend of each pixel's top-K sites."""

import taichi as ti

from .common import blend


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
        for ch in ti.static(range(C)):
            v = ti.min(ti.max(col[ch], 0.0), 1.0)
            out[y, x, ch] = ti.cast(ti.floor(v * 255.0 + 0.5), ti.u8)
