"""The colour phase's kernels: with the geometry frozen the softmax weights no longer
change, so they are computed once (``blend_weights``) and each step updates the colours
alone (``colour_grad_*``: banded on the CPU, atomic on a GPU)."""

import taichi as ti

from .common import GEOM_PARAMS, TASK_PAD
from .lanes import W_SKIP, colour_lanes, softmax_lanes


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
        _ids, _lg, wt, _al, _be, _sq = softmax_lanes(topk, tab, y, x, px, py, s_inv, K)
        for k in ti.static(range(K)):
            wts[y, x, k] = wt[k]


@ti.func
def lane_grads_colour(
    topk: ti.template(),
    wts: ti.template(),
    params: ti.template(),
    target: ti.template(),
    y: ti.i32,
    x: ti.i32,
    K: ti.template(),
    C: ti.template(),
):
    """lane_grads's colour part from stored weights (the same arithmetic): ids, squared
    error, weights and dL/dcolour gv; no logits, no geometry gradients."""
    ids = ti.Vector([topk[y, x, k] for k in ti.static(range(K))], dt=ti.i32)
    wt = ti.Vector([wts[y, x, k] for k in ti.static(range(K))], dt=ti.f32)
    _col, gv, _gc, e = colour_lanes(ids, wt, params, target, y, x, K, C)
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
                    ids, err, wt, gv = lane_grads_colour(topk, wts, params, target, y, x, K, C)
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
        ids, err, wt, gv = lane_grads_colour(topk, wts, params, target, y, x, K, C)
        for k in ti.static(range(K)):
            c = ids[k]
            if c >= 0 and wt[k] > W_SKIP:
                for ch in ti.static(range(C)):
                    ti.atomic_add(grad[0, c, GEOM_PARAMS + ch], wt[k] * gv[ch])
        ti.atomic_add(loss[y], err)
