"""Fixtures of the benchmark tests: Taichi is started once per session, on the CPU unless
``SAD_TEST_ARCH`` says otherwise (as in tests/conftest.py, which this package does not
import: tests and bench share no code)."""

from __future__ import annotations

import os

import pytest


@pytest.fixture(scope="session")
def backend() -> str:
    """Start Taichi once (idempotent, so it agrees with tests/conftest.py in one session)."""
    from sadcodec.backend import init_backend

    return init_backend(os.environ.get("SAD_TEST_ARCH", "cpu"))
