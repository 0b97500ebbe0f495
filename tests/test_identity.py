"""Byte identity of encoded files: the sha256 of the .sad bytes of fixed small cases.

A change that means to keep the encoder's output (a restructuring, a speed-up) must keep
these; a change that means to alter it (a better fit, a new format) updates them, and says
so in its commit. bench/identity.py does the same for full-size Kodak images. CPU encodes
are bit-reproducible (docs/FORMAT.md); CUDA ones are not, so this runs on the CPU only.
"""

from __future__ import annotations

import hashlib
import os
from pathlib import Path

import imageio.v3 as iio
import numpy as np
import pytest

import sadcodec

SAMPLE = Path(__file__).resolve().parent.parent / "samples" / "kodim23_crop.png"

pytestmark = pytest.mark.skipif(
    os.environ.get("SAD_TEST_ARCH", "cpu") != "cpu",
    reason="CUDA sums gradients with atomics in no fixed order: files differ run to run",
)


def scene(h: int, w: int, channels: int) -> np.ndarray:
    """A colour ramp, a disc and a bar, uint8 (H, W[, C])."""
    y, x = np.mgrid[0:h, 0:w]
    img = np.zeros((h, w, 3))
    img[..., 0] = x / w
    img[..., 1] = y / h
    img[..., 2] = 0.5 + 0.3 * np.sin(x / 5.0) * np.cos(y / 7.0)
    disc = (x - w * 0.6) ** 2 + (y - h * 0.4) ** 2 < (min(h, w) * 0.25) ** 2
    img[disc] = [0.9, 0.2, 0.1]
    img[int(h * 0.7) : int(h * 0.8), 5 : w - 5] = [0.1, 0.1, 0.8]
    img = np.clip(img * 255 + 0.5, 0, 255).astype(np.uint8)
    if channels == 1:
        return img.mean(axis=2).astype(np.uint8)
    if channels == 4:
        alpha = np.clip(255 - x * 200 / w, 0, 255).astype(np.uint8)[..., None]
        return np.concatenate([img, alpha], axis=2)
    return img


CASES = {
    "sample-1bpp-effort1": (
        lambda: iio.imread(SAMPLE),
        {"bpp": 1.0, "effort": 1},
        "c2a408cb1f1bdc007dc2d35e9a1a33e25378de3b9515d229850448f21ccedfa9",
    ),
    "sample-2bpp-it300": (
        lambda: iio.imread(SAMPLE),
        {"bpp": 2.0, "iterations": 300, "seed": 3},
        "d3bfe98358833c9ba17cb83fda115d2022ebfa4fca66d1fb654f8f31f5a26c81",
    ),
    "rgba-1bpp-it200": (
        lambda: scene(40, 56, 4),
        {"bpp": 1.0, "iterations": 200},
        "a1d105905371c843eb54adb025e7880ab4a0bd35a8c787c4544893ad55713eb7",
    ),
    "gray-1.5bpp-it200": (
        lambda: scene(48, 40, 1),
        {"bpp": 1.5, "iterations": 200},
        "e0edf67432e5363d02ccdc8fa879f8161dddcb4052b9ddb08bf239544cca514f",
    ),
}


@pytest.mark.parametrize("name", list(CASES))
def test_encoded_bytes_are_unchanged(name):
    make, kwargs, digest = CASES[name]
    data = sadcodec.encode(make(), **kwargs)
    assert hashlib.sha256(data).hexdigest() == digest
