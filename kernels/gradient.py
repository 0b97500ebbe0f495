"""The fused forward+backward pass of a fit step, in two variants.

``forward_backward_bands`` (the CPU): each band of rows is summed by one thread into its
own gradient slice and the slices are added in a fixed order (by ``optim.adam``), so a run
is bit-reproducible on any number of threads and no atomics are needed; along a row, a
slot's run of one site is summed before it is added to that site.
``forward_backward_atomic`` (a GPU): one thread per pixel, atomic adds into one slice.
Both take the pixels with (x + y) % stride == phase (a cheaper, noisier gradient), or all.
"""

import taichi as ti

from .common import GEOM_PARAMS, TABLE_COLS, TASK_PAD
from .lanes import W_SKIP, lane_grads, lanes_grads


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
                    err, wt, gv, g0, g1, g2, g3, g4, g5 = lanes_grads(
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
            ids, err, wt, gv, g0, g1, g2, g3, g4, g5 = lane_grads(
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
