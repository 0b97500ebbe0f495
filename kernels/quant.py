"""Quantization on the device: the per-step site table from the params or from their
round trip through the file's grids (quantization-aware fitting, no host round trip)."""

import taichi as ti

from .table import table_site

# The file's quantization grids as the kernels read them (sadcodec.quantize.QuantSpec): an
# f32 array of GRID_SIZE values at these named positions. (A ti.types.struct argument
# reads better but costs 0.2-0.3 ms more per launch on the CPU, docs/tuning.md, "Kernel
# arguments".)
POS_SCALE = 0  # 2 ** pos_frac_bits
THETA_LEVELS = 1  # 2 ** theta_bits
A_MAX = 2
A_TOP = 3  # 2 ** a_bits - 1
R_MIN = 4
R_STEP = 5
R_TOP = 6  # 2 ** r_bits - 1
T_MIN = 7
T_STEP = 8
T_TOP = 9  # 2 ** t_bits - 1
COL_TOP = 10  # 2 ** col_bits - 1
GRID_SIZE = 11


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
    ps = grid[POS_SCALE]
    nth = grid[THETA_LEVELS]
    shown[i, 0] = ti.min(ti.max(ti.round(params[i, 0] * ps), 0.0), width * ps - 1.0) / ps
    shown[i, 1] = ti.min(ti.max(ti.round(params[i, 1] * ps), 0.0), height * ps - 1.0) / ps
    a = params[i, 3]
    theta = params[i, 2]
    if a < 0:
        theta += pi / 2
    th = ti.round(theta / pi * nth)
    th = th - nth * ti.floor(th / nth)
    aq = ti.min(ti.round(ti.abs(a) / grid[A_MAX] * grid[A_TOP]), grid[A_TOP])
    if aq == 0:
        th = 0.0
    th_out = th * (pi / nth)
    a_out = aq * (grid[A_MAX] / grid[A_TOP])
    if a < 0:
        a_out = -a_out
        th_out -= pi / 2
    shown[i, 2] = th_out
    shown[i, 3] = a_out
    rq = ti.min(ti.max(ti.round((params[i, 4] - grid[R_MIN]) / grid[R_STEP]), 0.0), grid[R_TOP])
    shown[i, 4] = grid[R_MIN] + rq * grid[R_STEP]
    tq = ti.min(ti.max(ti.round((params[i, 5] - grid[T_MIN]) / grid[T_STEP]), 0.0), grid[T_TOP])
    shown[i, 5] = grid[T_MIN] + tq * grid[T_STEP]
    for j in range(6, cols):
        cq = ti.min(ti.max(ti.round(params[i, j] * grid[COL_TOP]), 0.0), grid[COL_TOP])
        shown[i, j] = cq / grid[COL_TOP]


@ti.kernel
def quant_roundtrip(
    params: ti.types.ndarray(dtype=ti.f32, ndim=2),
    shown: ti.types.ndarray(dtype=ti.f32, ndim=2),
    n: ti.i32,
    width: ti.i32,
    height: ti.i32,
    grid: ti.types.ndarray(dtype=ti.f32, ndim=1),
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
    grid: ti.types.ndarray(dtype=ti.f32, ndim=1),
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
