"""`--size BYTES` (`encode(size=...)`): a hard limit on the file's size, as --bpp is.

A size converts to the same budget as the bpp that gives it, so it costs one fit like
any --bpp encode. Encodes are 40x32 images fitted 30 iterations, in-process.
"""

from __future__ import annotations

import sys

import numpy as np
import pytest
from PIL import Image

import sadcodec
from sadcodec import cli, settings
from sadcodec.errors import SadError, SadTypeError

W, H = 40, 32


def image() -> np.ndarray:
    y, x = np.mgrid[0:H, 0:W]
    img = np.stack([x * 6, y * 7, 200 - (x + y) * 2], axis=2).clip(0, 255).astype(np.uint8)
    img[(x - 26) ** 2 + (y - 12) ** 2 < 49] = [230, 40, 30]
    return img


@pytest.mark.parametrize(
    "text, size",
    [
        ("1000", 1000),
        ("50k", 50_000),
        ("50K", 50_000),
        ("50kB", 50_000),
        ("1.5M", 1_500_000),
        ("1.5 MB", 1_500_000),
        ("64KiB", 65_536),
        ("2Mi", 2 << 20),
        ("1G", 10**9),
        (" 12.9 ", 12),  # a fraction of a byte is dropped: the limit is never exceeded
        (2000, 2000),
        (2000.7, 2000),
        (np.int64(3000), 3000),
    ],
)
def test_sizes_parse(text, size):
    assert settings.parse_size(text) == size


@pytest.mark.parametrize(
    "value, kind",
    [
        ("lots", SadError),
        ("", SadError),
        ("-5k", SadError),
        ("0.5", SadError),
        ("1e3", SadError),
        ("5T", SadError),
        ("5 kbit", SadError),
        (float("nan"), SadError),
        (float("inf"), SadError),
        (0, SadError),
        (True, SadTypeError),
        ([1000], SadTypeError),
    ],
)
def test_bad_sizes_are_refused(value, kind):
    with pytest.raises(kind, match="--size must be a size in bytes") as exc:
        settings.parse_size(value)
    assert type(exc.value) is kind


def test_a_size_is_the_budget_its_bpp_would_give():
    s = settings.encode_settings(W, H, 3, size="960")
    b = settings.encode_settings(W, H, 3, 6.0)
    assert (s.budget_bytes, s.bpp, s.size) == (960, 6.0, 960)
    assert (s.spec, s.fit) == (b.spec, b.fit)
    assert settings.encode_settings(W, H, 3).bpp == 1.0  # neither: 1 bpp
    # Past 64 bpp the budget stops growing: the file is still within the size asked for.
    big = settings.encode_settings(W, H, 3, size="1M")
    assert (big.budget_bytes, big.bpp, big.size) == (64 * W * H // 8, 64.0, 10**6)


def test_size_arguments_are_checked():
    with pytest.raises(SadError, match="give --bpp or --size, not both"):
        sadcodec.encode_settings((H, W, 3), 1.0, size=1000)
    with pytest.raises(SadError, match="budget too small: --size 40 bytes is 40 bytes"):
        sadcodec.encode_settings((H, W, 3), size=40)
    with pytest.raises(SadTypeError):
        sadcodec.encode(image(), size=b"1k", iterations=1)


def test_size_encode_is_the_bpp_encode():
    """The same budget, the same fit: a --size encode costs what a --bpp encode does."""
    img = image()
    by_size = sadcodec.encode(img, size="0.96k", iterations=30)
    assert by_size == sadcodec.encode(img, 6.0, iterations=30)
    assert 0.9 * 960 <= len(by_size) <= 960


def test_size_holds_with_metadata():
    from PIL import ImageCms

    icc = ImageCms.ImageCmsProfile(ImageCms.createProfile("sRGB")).tobytes()
    data = sadcodec.encode(image(), size=1500, iterations=30, icc_profile=icc)
    assert 0.9 * 1500 <= len(data) <= 1500
    assert sadcodec.read_metadata(data) == {"icc_profile": icc}


def run(args, capsys, monkeypatch):
    monkeypatch.setattr(sys, "argv", ["sad", *map(str, args)])
    code = 0
    try:
        cli.main()
    except SystemExit as exc:
        code = exc.code if isinstance(exc.code, int) else 1
    out, err = capsys.readouterr()
    return code, out, err


def test_cli_size(tmp_path, capsys, monkeypatch):
    src = tmp_path / "in.png"
    Image.fromarray(image()).save(src)
    out = tmp_path / "out.sad"
    base = ["encode", src, "-o", out, "--iterations", "30"]
    code, _, err = run([*base, "--size", "1.2k"], capsys, monkeypatch)
    assert code == 0, err
    assert 0.9 * 1200 <= out.stat().st_size <= 1200
    assert f"{out.stat().st_size} bytes" in err
    code, _, err = run([*base, "--size", "1k", "--bpp", "2"], capsys, monkeypatch)
    assert code == 2 and "give --bpp or --size, not both" in err
    code, _, err = run([*base, "--size", "big"], capsys, monkeypatch)
    assert code == 2 and "'big' is not a size" in err
    code, _, err = run([*base, "--size", "30"], capsys, monkeypatch)
    assert code == 1 and "budget too small: --size 30 bytes" in err
