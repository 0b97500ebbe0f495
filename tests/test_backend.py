"""The Taichi start-up shim in sadcodec.backend: kernels still compile, errors still point
at the source."""

import numpy as np
import pytest
import taichi as ti

from sadcodec import init_backend


def test_source_positions_are_plain_and_errors_still_name_the_line():
    init_backend(None)
    from taichi.lang.ast.ast_transformer_utils import ASTTransformerContext

    assert ASTTransformerContext.get_pos_info.__module__ == "sadcodec.backend"

    @ti.kernel
    def broken(a: ti.types.ndarray(dtype=ti.f32, ndim=1)):
        for i in a:
            a[i] = not_defined_anywhere  # noqa: F821

    with pytest.raises(Exception) as err:
        broken(np.zeros(3, np.float32))
    msg = str(err.value)
    assert "test_backend.py" in msg
    assert "a[i] = not_defined_anywhere" in msg


def test_kernels_compile_and_run_with_the_shim():
    init_backend(None)

    @ti.kernel
    def twice(a: ti.types.ndarray(dtype=ti.f32, ndim=1)):
        for i in a:
            a[i] = 2.0 * a[i] + ti.sqrt(4.0)

    a = np.arange(5, dtype=np.float32)
    twice(a)
    np.testing.assert_array_equal(a, 2 * np.arange(5, dtype=np.float32) + 2)
