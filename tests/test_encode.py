"""Encoder behaviour through the Python API: budget, quality, determinism, channels."""

import os
import re
import time

import numpy as np
import pytest

import sadcodec
from sadcodec.errors import SadError


def _scene(h=40, w=48, c=3, seed=0):
    """A smooth gradient with a disc and a bar: edges plus flat areas."""
    rng = np.random.default_rng(seed)
    y, x = np.mgrid[0:h, 0:w]
    img = np.zeros((h, w, 3))
    img[..., 0] = x / w
    img[..., 1] = y / h
    img[..., 2] = 0.5
    disc = (x - w * 0.6) ** 2 + (y - h * 0.4) ** 2 < (min(h, w) * 0.25) ** 2
    img[disc] = [0.9, 0.2, 0.1]
    img[int(h * 0.7) : int(h * 0.8), 5 : w - 5] = [0.1, 0.1, 0.8]
    img += rng.normal(0, 0.01, img.shape)
    img = np.clip(img * 255 + 0.5, 0, 255).astype(np.uint8)
    if c == 1:
        return img.mean(axis=2).astype(np.uint8)
    if c == 4:
        alpha = np.clip(x * 255 / w, 0, 255).astype(np.uint8)[..., None]
        return np.concatenate([img, alpha], axis=2)
    return img


def _psnr(a, b):
    mse = np.mean((a.astype(np.float64) - b.astype(np.float64)) ** 2)
    return 10 * np.log10(255**2 / mse)


@pytest.mark.parametrize("bpp", [1.0, 3.0])
def test_file_meets_budget_and_quality(bpp):
    img = _scene()
    data = sadcodec.encode(img, bpp=bpp, iterations=60, seed=1)
    h, w = img.shape[:2]
    assert 8 * len(data) / (w * h) <= bpp
    # Aim close to the budget: unused bits are lost quality.
    assert 8 * len(data) / (w * h) >= 0.8 * bpp
    out = sadcodec.decode(data)
    assert out.shape == img.shape and out.dtype == np.uint8
    # Flat colours and straight edges: even 1 bpp on 48x40 (240 bytes, ~25 sites)
    # reproduces this scene far better than its mean colour (~12 dB); measured at 60
    # iterations: 21.0 dB at 1 bpp, 25.4 dB at 3 bpp.
    assert _psnr(out, img) > (19.0 if bpp == 1.0 else 24.0)


def test_more_bits_give_higher_quality():
    img = _scene()
    lo = sadcodec.decode(sadcodec.encode(img, bpp=0.8, iterations=60))
    hi = sadcodec.decode(sadcodec.encode(img, bpp=4.0, iterations=60))
    assert _psnr(hi, img) > _psnr(lo, img) + 2.0


@pytest.mark.skipif(
    os.environ.get("SAD_TEST_ARCH") == "cuda",
    reason="CUDA sums gradients with atomics in no fixed order: same-seed files may differ "
    "there (docs/FORMAT.md); the CPU sums fixed bands in order and is bit-exact",
)
def test_deterministic_for_a_seed():
    img = _scene()
    a = sadcodec.encode(img, bpp=1.5, iterations=40, seed=7)
    b = sadcodec.encode(img, bpp=1.5, iterations=40, seed=7)
    c = sadcodec.encode(img, bpp=1.5, iterations=40, seed=8)
    assert a == b
    assert a != c


@pytest.mark.parametrize("channels", [1, 4])
def test_gray_and_alpha_channels_are_kept(channels):
    img = _scene(c=channels)
    data = sadcodec.encode(img, bpp=2.0, iterations=40)
    info = sadcodec.read_info(data)
    assert info["channels"] == channels
    out = sadcodec.decode(data)
    # Greyscale decodes to (H, W), as Pillow and imageio give it.
    assert out.shape == (img.shape if channels > 1 else img.shape[:2])
    assert _psnr(out.reshape(img.shape), img) > 20.0


def test_decode_at_another_resolution():
    img = _scene()
    data = sadcodec.encode(img, bpp=2.0, iterations=40)
    big = sadcodec.decode(data, scale=2)
    assert big.shape == (80, 96, 3)
    small = sadcodec.decode(data, width=24)
    assert small.shape == (20, 24, 3)
    # The 2x render, box-downsampled, matches the native render closely.
    native = sadcodec.decode(data).astype(np.float64)
    down = big.astype(np.float64).reshape(40, 2, 48, 2, 3).mean(axis=(1, 3))
    assert np.abs(down - native).mean() < 3.0


def test_too_small_budget_is_refused():
    with pytest.raises(SadError, match="budget too small"):
        sadcodec.encode(_scene(), bpp=0.001, iterations=5)


@pytest.mark.parametrize("bpp", [0.0, -1.0, float("nan"), 1000.0])
def test_absurd_bpp_is_refused(bpp):
    with pytest.raises(SadError, match="bpp"):
        sadcodec.encode(_scene(), bpp=bpp, iterations=5)


def test_bad_arrays_are_refused():
    with pytest.raises(SadError, match="shape"):
        sadcodec.encode(np.zeros((4, 4, 2), np.uint8), bpp=1.0)
    with pytest.raises(SadError, match="uint8"):
        sadcodec.encode(np.zeros((4, 4, 3), np.float32), bpp=1.0)
    with pytest.raises(SadError, match="zero size"):
        sadcodec.encode(np.zeros((0, 4, 3), np.uint8), bpp=1.0)


@pytest.mark.parametrize("seed", [-1, 2**32, 1.5, "3", True])
def test_bad_seed_is_refused(seed):
    img = np.zeros((16, 16, 3), np.uint8)
    with pytest.raises(SadError, match="--seed must be an integer"):
        sadcodec.encode(img, 8.0, seed=seed, iterations=1)


# ------------------------------------------------------------------ memory


def test_psnr_is_exact_over_every_sample():
    from sadcodec.encoder import psnr

    rng = np.random.default_rng(3)
    a = rng.integers(0, 256, (700, 900, 3), dtype=np.uint8)  # more than one slice
    b = rng.integers(0, 256, a.shape, dtype=np.uint8)
    d = a.astype(np.float64) - b
    assert psnr(a, b) == pytest.approx(10 * np.log10(255.0**2 / np.mean(d * d)), abs=1e-9)
    assert psnr(a, a) == float("inf")


_MEASURE = """
import resource, sys
import numpy as np
from PIL import Image
import sadcodec
img = np.asarray(Image.open(sys.argv[1]).convert("RGBA").crop((0, 0, 192, 128)))
s = sadcodec.encode_settings(img.shape, 16.0, iterations=30)
sadcodec.encode(img, 16.0, iterations=30, stats=True)
print(s.memory_bytes, resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024)
"""


@pytest.mark.skipif(
    os.environ.get("SAD_TEST_ARCH", "cpu") != "cpu" or not os.path.exists("/proc/self/statm"),
    reason="the estimate is calibrated for CPU encodes; ru_maxrss in KiB is Linux's",
)
def test_the_memory_estimate_covers_a_real_encode():
    """A fresh process encodes (sites dense enough to make the per-site term count) and
    its peak RSS stays under the estimate settings made for it."""
    import subprocess
    import sys

    root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    sample = os.path.join(root, "samples", "kodim23.png")
    env = dict(
        os.environ, PYTHONPATH=os.pathsep.join(filter(None, [root, os.environ.get("PYTHONPATH")]))
    )
    out = subprocess.run(
        [sys.executable, "-c", _MEASURE, sample],
        capture_output=True,
        text=True,
        env=env,
        timeout=300,
    )
    assert out.returncode == 0, out.stderr[-2000:]
    estimate, peak = map(int, out.stdout.split()[-2:])
    assert peak <= estimate, (peak, estimate)


def _sad(args, capsys, monkeypatch):
    """`sad ARGS` in-process (as tests/test_cli.py runs it); (exit code, stderr)."""
    import sys

    from sadcodec import cli

    monkeypatch.setattr(sys, "argv", ["sad", *map(str, args)])
    code = 0
    try:
        cli.main()
    except SystemExit as exc:
        code = exc.code if isinstance(exc.code, int) else 1
    return code, capsys.readouterr().err


def _declared_png(width, height):
    """A PNG header declaring width x height gray pixels, and almost no pixel data."""
    import struct
    import zlib

    def chunk(kind, data):
        return (
            struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))
        )

    ihdr = struct.pack(">IIBBBBB", width, height, 8, 0, 0, 0, 0)
    return (
        b"\x89PNG\r\n\x1a\n"
        + chunk(b"IHDR", ihdr)
        + chunk(b"IDAT", zlib.compress(bytes(16)))
        + chunk(b"IEND", b"")
    )


def test_cli_refuses_an_image_too_large_for_memory_from_its_header(tmp_path, capsys, monkeypatch):
    """A small PNG declaring 65535x1525 pixels went past 6 GB in seconds; now the size in
    its header is refused, in one line, before its pixels are decoded."""
    from sadcodec import settings

    src, dst = tmp_path / "wide.png", tmp_path / "wide.sad"
    src.write_bytes(_declared_png(65535, 1525))
    monkeypatch.setattr(settings, "machine_memory", lambda: 8 << 30)
    start = time.perf_counter()
    code, err = _sad(["encode", src, "-o", dst, "--quiet"], capsys, monkeypatch)
    assert time.perf_counter() - start < 5
    assert code == 1 and err.count("\n") == 1, err
    assert re.fullmatch(
        r"sad: error: cannot encode '\S+wide.png': a 65535x1525 image at 1 bpp needs about "
        r"[\d.]+ GiB of memory to encode \(estimated\), over the limit of 6.0 GiB \(75% of "
        r"this machine's 8.0 GiB\); raise it with --max-memory \(max_memory= in bytes in the "
        r"Python API\), e.g. --max-memory \d+G\n",
        err,
    ), err
    assert not dst.exists()
    code, err = _sad(["encode", src, "-o", dst, "--max-memory", "2G"], capsys, monkeypatch)
    assert code == 1 and "over the limit of 2.0 GiB (--max-memory)" in err
    # Let through, the decode finds the missing pixels: the size was checked first.
    code, err = _sad(["encode", src, "-o", dst, "--max-memory", "1T"], capsys, monkeypatch)
    assert code == 1 and "corrupt or truncated PNG file" in err


def test_cli_max_memory(tmp_path, capsys, monkeypatch):
    from PIL import Image

    src, dst = tmp_path / "a.png", tmp_path / "a.sad"
    Image.fromarray(_scene()).save(src)
    code, err = _sad(["encode", src, "-o", dst, "--max-memory", "lots"], capsys, monkeypatch)
    assert code == 1 and "--max-memory must be a size" in err and not dst.exists()
    code, err = _sad(["encode", src, "-o", dst, "--max-memory", "1M"], capsys, monkeypatch)
    assert code == 1 and "over the limit of 1 MiB (--max-memory)" in err
    args = ["encode", src, "-o", dst, "--max-memory", "8G", "--iterations", "20", "--quiet"]
    assert _sad(args, capsys, monkeypatch) == (0, "")
    assert sadcodec.read_info(str(dst))["width"] == 48
