"""Shared fixtures: Taichi is started once per session, on the CPU.

``SAD_TEST_ARCH=cuda pytest`` runs the same suite on a GPU (CI has none; the device
machine does). Tests that exercise one backend's code path only say so with a skip.
"""

from __future__ import annotations

import os

import numpy as np
import pytest

from sadcodec.backend import init_backend


@pytest.fixture(scope="session", autouse=True)
def taichi_cpu() -> str:
    """Start Taichi once (CPU unless SAD_TEST_ARCH says otherwise); every test may then
    create ndarrays and run kernels."""
    arch = os.environ.get("SAD_TEST_ARCH", "cpu")
    if arch != "cpu":
        os.environ["SAD_ARCH"] = arch  # the in-process CLI tests use the same backend
    return init_backend(arch)


def random_scene(
    rng: np.random.Generator,
    n: int,
    width: int,
    height: int,
    channels: int = 3,
    a_max: float = 1.5,
    r_max: float = 6.0,
    t_jitter: float = 0.5,
    t_scale: float = 3.0,
) -> np.ndarray:
    """Random site params, float32 (n, 6 + channels), in the layout the kernels read.

    Positions uniform over the image, theta in [0, 2 pi), a in [-a_max, a_max], r in
    [0, r_max], t = log(t_scale * S / spacing) +- t_jitter (S = max side, spacing the mean
    site spacing), colours uniform in [0, 1].
    """
    s = max(width, height)
    spacing = np.sqrt(width * height / n)
    p = np.empty((n, 6 + channels), dtype=np.float64)
    p[:, 0] = rng.uniform(0.0, width, n)
    p[:, 1] = rng.uniform(0.0, height, n)
    p[:, 2] = rng.uniform(0.0, 2 * np.pi, n)
    p[:, 3] = rng.uniform(-a_max, a_max, n)
    p[:, 4] = rng.uniform(0.0, r_max, n)
    p[:, 5] = np.log(t_scale * s / spacing) + rng.uniform(-t_jitter, t_jitter, n)
    p[:, 6:] = rng.uniform(0.0, 1.0, (n, channels))
    return p.astype(np.float32)


@pytest.fixture
def make_scene():
    """The random_scene helper, for test modules that prefer a fixture to an import."""
    return random_scene
