"""Quantization on the device: the per-step site table from the params or from their
round trip through the file's grids (quantization-aware fitting, no host round trip)."""

import taichi as ti

from .table import table_site

# The file's quantization grids as the kernels read them (sadcodec.quantize.QuantSpec):
# the position scale 2^bits, the number of directions, a's range and top level, r's
# and t's first value, step and top level, and the colours' top level.
QuantGrid = ti.types.struct(
    pos_scale=ti.f32,
    theta_levels=ti.f32,
    a_max=ti.f32,
    a_top=ti.f32,
    r_min=ti.f32,
    r_step=ti.f32,
    r_top=ti.f32,
    t_min=ti.f32,
    t_step=ti.f32,
    t_top=ti.f32,
    col_top=ti.f32,
)


@ti.func
def quant_site(
    params: ti.template(),
    shown: ti.template(),
    i: ti.i32,
    width: ti.i32,
    height: ti.i32,
    grid: ti.template(),
):
    pi = 3.141592653589793
    cols = params.shape[1]
    ps = grid.pos_scale
    nth = grid.theta_levels
    shown[i, 0] = ti.min(ti.max(ti.round(params[i, 0] * ps), 0.0), width * ps - 1.0) / ps
    shown[i, 1] = ti.min(ti.max(ti.round(params[i, 1] * ps), 0.0), height * ps - 1.0) / ps
    a = params[i, 3]
    theta = params[i, 2]
    if a < 0:
        theta += pi / 2
    th = ti.round(theta / pi * nth)
    th = th - nth * ti.floor(th / nth)
    aq = ti.min(ti.round(ti.abs(a) / grid.a_max * grid.a_top), grid.a_top)
    if aq == 0:
        th = 0.0
    th_out = th * (pi / nth)
    a_out = aq * (grid.a_max / grid.a_top)
    if a < 0:
        a_out = -a_out
        th_out -= pi / 2
    shown[i, 2] = th_out
    shown[i, 3] = a_out
    rq = ti.min(ti.max(ti.round((params[i, 4] - grid.r_min) / grid.r_step), 0.0), grid.r_top)
    shown[i, 4] = grid.r_min + rq * grid.r_step
    tq = ti.min(ti.max(ti.round((params[i, 5] - grid.t_min) / grid.t_step), 0.0), grid.t_top)
    shown[i, 5] = grid.t_min + tq * grid.t_step
    for j in range(6, cols):
        cq = ti.min(ti.max(ti.round(params[i, j] * grid.col_top), 0.0), grid.col_top)
        shown[i, j] = cq / grid.col_top


@ti.kernel
def quant_roundtrip(
    params: ti.types.ndarray(dtype=ti.f32, ndim=2),
    shown: ti.types.ndarray(dtype=ti.f32, ndim=2),
    n: ti.i32,
    width: ti.i32,
    height: ti.i32,
    grid: QuantGrid,
):
    """shown = what the decoder would see for params, on the device (sadcodec.quantize
    .roundtrip with keep_sign, in f32: the training copy for QAT, not the file's values)."""
    for i in range(n):
        quant_site(params, shown, i, width, height, grid)


@ti.kernel
def prepare_step(
    params: ti.types.ndarray(dtype=ti.f32, ndim=2),
    shown: ti.types.ndarray(dtype=ti.f32, ndim=2),
    tab: ti.types.ndarray(dtype=ti.f32, ndim=2),
    loss: ti.types.ndarray(dtype=ti.f32, ndim=1),
    n: ti.i32,
    width: ti.i32,
    height: ti.i32,
    grid: QuantGrid,
    quant: ti.i32,
):
    """One launch for what every step needs first (a launch costs more Python time on a
    GPU than these loops take): the site table from params, or with ``quant`` from their
    quantized round trip written to ``shown``; and the per-row loss zeroed."""
    for i in range(n):
        if quant:
            quant_site(params, shown, i, width, height, grid)
            table_site(shown, tab, i)
        else:
            table_site(params, tab, i)
    for r in range(loss.shape[0]):
        loss[r] = 0.0
