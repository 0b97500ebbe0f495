"""bench/sidebyside.py's picture and arguments, without running a codec."""

from __future__ import annotations

import argparse

import numpy as np
import pytest

from bench import sidebyside


def test_crop_argument() -> None:
    assert sidebyside.parse_crop("256,192,192,128") == (256, 192, 192, 128)
    for bad in ("1,2,3", "a,b,c,d", "-1,0,8,8", "0,0,0,8"):
        with pytest.raises(argparse.ArgumentTypeError):
            sidebyside.parse_crop(bad)
    sidebyside.check_crop((8, 4, 16, 12), 24, 16)  # touches the corner: inside
    with pytest.raises(SystemExit, match="outside the 24x16 image"):
        sidebyside.check_crop((9, 4, 16, 12), 24, 16)


def test_picture_places_each_crop_enlarged_under_its_label() -> None:
    y, x = np.mgrid[0:16, 0:24]
    base = np.stack([x * 10, y * 15, np.zeros_like(x)], axis=2).astype(np.uint8)
    images = [base, 255 - base, base // 2]
    crop, zoom = (8, 4, 6, 5), 3
    pic = np.asarray(sidebyside.picture([(im, ["a", "b"]) for im in images], crop, zoom))
    pw, ph = crop[2] * zoom, crop[3] * zoom
    assert pic.shape[1] == 3 * pw + 2 * sidebyside.GAP and pic.shape[0] > ph
    for i, im in enumerate(images):
        left = i * (pw + sidebyside.GAP)
        want = np.repeat(np.repeat(im[4:9, 8:14], zoom, axis=0), zoom, axis=1)
        np.testing.assert_array_equal(pic[:ph, left : left + pw], want)
    gap = pic[:ph, pw : pw + sidebyside.GAP]
    assert (gap == 255).all()
    labels = pic[ph:, :pw]
    assert (labels < 128).any() and (labels == 255).any()  # black text on white
