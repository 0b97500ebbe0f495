"""Forward render: softmax blend of each pixel's top-K sites."""

import taichi as ti

from .common import GEOM_PARAMS, site_logit


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
        lg = ti.Vector([0.0] * K, dt=ti.f32)
        mx = -1e30
        for k in ti.static(range(K)):
            c = topk[y, x, k]
            if c >= 0:
                lg[k] = site_logit(tab, c, px, py, s_inv)
                mx = ti.max(mx, lg[k])
        acc = ti.Vector([0.0] * C, dt=ti.f32)
        tot = 0.0
        for k in ti.static(range(K)):
            c = topk[y, x, k]
            if c >= 0:
                e = ti.exp(lg[k] - mx)
                tot += e
                for ch in ti.static(range(C)):
                    acc[ch] += e * params[c, GEOM_PARAMS + ch]
        for ch in ti.static(range(C)):
            v = 0.0
            if tot > 0:
                v = acc[ch] / tot
            out[y, x, ch] = ti.cast(ti.floor(ti.min(ti.max(v, 0.0), 1.0) * 255.0 + 0.5), ti.u8)
