"""The per-site table every pixel reads: trig and exponentials of the parameters, once.

Its own module so that the decoder, which needs only this of the fitting kernels, does
not import (and have Taichi decorate) the rest of them: each decorated function costs a
fresh `sad decode` process most of a millisecond.
"""

import taichi as ti


@ti.func
def table_site(params: ti.template(), tab: ti.template(), i: ti.i32):
    th = params[i, 2]
    a = params[i, 3]
    tab[i, 0] = params[i, 0]
    tab[i, 1] = params[i, 1]
    tab[i, 2] = ti.cos(th)
    tab[i, 3] = ti.sin(th)
    tab[i, 4] = ti.exp(a)
    tab[i, 5] = ti.exp(-a)
    tab[i, 6] = params[i, 4]
    tab[i, 7] = ti.exp(params[i, 5])


@ti.kernel
def prepare(
    params: ti.types.ndarray(dtype=ti.f32, ndim=2),
    tab: ti.types.ndarray(dtype=ti.f32, ndim=2),
    n: ti.i32,
):
    """Per-site values every pixel needs (trig and exponentials), computed once per step."""
    for i in range(n):
        table_site(params, tab, i)
