"""The `sad` command end to end: encode/decode/info, and every bad input.

Commands run in-process through ``cli.main()`` (the real entry point, including its one-line
formatting of usage errors, which click's CliRunner would bypass), so Taichi starts and
compiles once per test session. Images are 40x32 and fits 30 iterations: about 0.2 s each.
"""

from __future__ import annotations

import contextlib
import io
import json
import os
import re
import signal
import stat
import subprocess
import sys
import threading
import time

import numpy as np
import pytest
from PIL import Image

from sadcodec import cli
from sadcodec.container import HEADER_SIZE

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def _pythonpath() -> str:
    """The repository first, then whatever PYTHONPATH the suite itself runs with."""
    return os.pathsep.join(filter(None, [ROOT, os.environ.get("PYTHONPATH")]))


W, H = 40, 32
FAST = ["--iterations", "30"]
SUMMARY = re.compile(
    r"^(?P<src>\S+) -> (?P<dst>\S+): (?P<w>\d+)x(?P<h>\d+) (?P<kind>gray|RGB|RGBA), "
    r"(?P<sites>\d+) sites, (?P<bytes>\d+) bytes, (?P<bpp>[\d.]+) bpp, "
    r"PSNR (?P<psnr>[\d.]+|inf) dB, encode (?P<secs>[\d.]+) s$"
)

# PSNR floors. Measured on 30-iteration CPU encodes of make_image() with seeds 0..3: RGB at
# 2 bpp 26.0-26.5 dB, gray at 3 bpp 32.2-32.8 dB, RGBA at 3 bpp 28.2-29.0 dB (all channels).
# A flat image of the mean colour scores 11.0 dB, so floors 3-4 dB under the
# lowest measurement leave room for tuning changes yet still prove the sites model the
# gradient and the shapes (a broken fit or a broken decoder lands far below them).
FLOOR_RGB_2BPP = 23.0
FLOOR = {"L": 28.0, "RGBA": 24.5}


def run(args, capsys, monkeypatch):
    """Run `sad ARGS` in-process; returns (exit code, stdout, stderr)."""
    monkeypatch.setattr(sys, "argv", ["sad", *map(str, args)])
    code = 0
    try:
        cli.main()
    except SystemExit as exc:
        code = exc.code if isinstance(exc.code, int) else 1
    out, err = capsys.readouterr()
    return code, out, err


def make_image(mode: str = "RGB") -> np.ndarray:
    """A smooth three-channel gradient with a disc and a rectangle, as uint8 (H, W[, C])."""
    y, x = np.mgrid[0:H, 0:W]
    img = np.stack([x * 255 // (W - 1), y * 255 // (H - 1), 200 - (x + y) * 2], axis=2)
    img[(x - 26) ** 2 + (y - 12) ** 2 < 49] = [230, 40, 30]
    img[20:28, 5:15] = [20, 60, 200]
    img = np.clip(img, 0, 255).astype(np.uint8)
    if mode == "L":
        return np.asarray(Image.fromarray(img).convert("L"))
    if mode == "RGBA":
        return np.dstack([img, (x * 255 // (W - 1)).astype(np.uint8)])
    return img


def save_png(path, mode="RGB") -> np.ndarray:
    img = make_image(mode)
    Image.fromarray(img).save(path)
    arr = np.asarray(Image.open(path))
    assert np.array_equal(arr, img)
    return arr if arr.ndim == 3 else arr[..., None]


def load(path) -> np.ndarray:
    arr = np.asarray(Image.open(path))
    return arr if arr.ndim == 3 else arr[..., None]


def psnr(a, b) -> float:
    mse = np.mean((a.astype(float) - b.astype(float)) ** 2)
    return float("inf") if mse == 0 else float(10 * np.log10(255**2 / mse))


def assert_one_line_error(code, err, phrase, expected_code=1, prefix="sad: error:"):
    assert code == expected_code, err
    lines = [ln for ln in err.splitlines() if ln.strip()]
    assert len(lines) == 1, err
    assert lines[0].startswith(prefix), err
    assert phrase in lines[0], err
    assert "Traceback" not in err


@pytest.fixture(scope="module")
def encoded(tmp_path_factory):
    """One RGB encode (with progress and summary) shared by several tests."""
    d = tmp_path_factory.mktemp("enc")
    img = save_png(d / "in.png")
    argv = ["sad", "encode", str(d / "in.png"), "-o", str(d / "out.sad"), "--bpp", "2"]
    argv += [*FAST, "--seed", "1"]
    out, err = io.StringIO(), io.StringIO()
    mp = pytest.MonkeyPatch()
    mp.setattr(sys, "argv", argv)
    try:
        with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
            with pytest.raises(SystemExit) as exc:
                cli.main()
    finally:
        mp.undo()
    assert exc.value.code == 0, err.getvalue()
    return d, img, out.getvalue(), err.getvalue()


# ------------------------------------------------------------------------------ round trips


def test_encode_summary_and_budget(encoded):
    d, img, out, err = encoded
    assert out == ""  # stdout stays clean
    assert "sad: notice" not in err
    size = (d / "out.sad").stat().st_size
    assert 8 * size / (W * H) <= 2.0
    m = SUMMARY.match(err.strip().splitlines()[-1])
    assert m, err
    assert (m["src"], m["dst"], m["kind"]) == ("in.png", "out.sad", "RGB")
    assert (int(m["w"]), int(m["h"]), int(m["bytes"])) == (W, H, size)
    assert float(m["bpp"]) == pytest.approx(8 * size / (W * H), abs=6e-4)
    assert float(m["psnr"]) >= FLOOR_RGB_2BPP
    assert "PSNR" in err.split(m["src"])[0]  # the progress bar ran before the summary


def test_decode_quality_matches_summary(encoded, capsys, monkeypatch):
    d, img, _, err = encoded
    code, out, derr = run(["decode", d / "out.sad", "-o", d / "out.png"], capsys, monkeypatch)
    assert code == 0, derr
    assert out == ""
    assert re.match(rf"^out\.sad -> out\.png: {W}x{H} RGB, decode [\d.]+ s$", derr.strip())
    dec = load(d / "out.png")
    assert dec.shape == img.shape
    got = psnr(dec, img)
    assert got >= FLOOR_RGB_2BPP
    # The summary's PSNR is honest: it is that of exactly the bytes written.
    summary = SUMMARY.match(err.strip().splitlines()[-1])
    assert float(summary["psnr"]) == pytest.approx(got, abs=0.006)


def test_info(encoded, capsys, monkeypatch):
    d, _, _, err = encoded
    summary = SUMMARY.match(err.strip().splitlines()[-1])
    size = (d / "out.sad").stat().st_size
    code, out, ierr = run(["info", d / "out.sad", "--json"], capsys, monkeypatch)
    assert code == 0 and ierr == ""
    info = json.loads(out)
    assert (info["width"], info["height"], info["channels"]) == (W, H, 3)
    assert info["sites"] == int(summary["sites"]) > 0
    assert info["bytes"] == size
    assert info["bpp"] == pytest.approx(8 * size / (W * H))
    assert info["checksum"] == "ok"
    assert info["format_version"] == "1.0"
    assert 1 <= info["k"] <= 32 and info["quantization"]["colour_bits"] > 0
    code, out, ierr = run(["info", d / "out.sad"], capsys, monkeypatch)
    assert code == 0 and ierr == ""
    assert f"dimensions:  {W}x{H}, 3 channel(s) (RGB)" in out
    assert f"sites:       {info['sites']} (K = {info['k']} per pixel)" in out
    assert f"size:        {size} bytes" in out
    assert "format:      .sad 1.0" in out and "checksum:    ok" in out


@pytest.mark.parametrize(
    "args,shape",
    [
        (["--width", str(2 * W)], (2 * H, 2 * W, 3)),
        (["--height", str(H // 2)], (H // 2, W // 2, 3)),
        (["--width", "50", "--height", "20"], (20, 50, 3)),
        (["--scale", "1.5"], (48, 60, 3)),
    ],
)
def test_decode_at_other_sizes(encoded, capsys, monkeypatch, args, shape):
    d, img, _, _ = encoded
    code, _, err = run(
        ["decode", d / "out.sad", "-o", d / "r.png", "--quiet", *args], capsys, monkeypatch
    )
    assert code == 0 and err == ""
    out = load(d / "r.png")
    assert out.shape == shape
    if shape[:2] == (2 * H, 2 * W):  # an upscaled render still looks like the image
        assert psnr(out[::2, ::2], img) >= FLOOR_RGB_2BPP - 3


@pytest.mark.parametrize("mode,channels,kind", [("L", 1, "gray"), ("RGBA", 4, "RGBA")])
def test_gray_and_alpha(tmp_path, capsys, monkeypatch, mode, channels, kind):
    img = save_png(tmp_path / "a.png", mode)
    args = ["encode", tmp_path / "a.png", "-o", tmp_path / "a.sad", "--bpp", "3", *FAST]
    code, _, err = run(args, capsys, monkeypatch)
    assert code == 0, err
    assert f"{W}x{H} {kind}," in err.strip().splitlines()[-1]
    code, out, _ = run(["info", tmp_path / "a.sad", "--json"], capsys, monkeypatch)
    assert json.loads(out)["channels"] == channels
    code, _, err = run(
        ["decode", tmp_path / "a.sad", "-o", tmp_path / "b.png"], capsys, monkeypatch
    )
    assert code == 0, err
    assert Image.open(tmp_path / "b.png").mode == {1: "L", 4: "RGBA"}[channels]
    dec = load(tmp_path / "b.png")
    assert dec.shape == (H, W, channels)
    assert psnr(dec, img) >= FLOOR[mode]


@pytest.mark.parametrize("shape", [(H, 1), (1, W), (3, 3)])
def test_thin_and_tiny_images_round_trip(tmp_path, capsys, monkeypatch, shape):
    """1xN, Nx1 and 3x3 images encode and decode (1x1 cannot: see the bad inputs)."""
    img = make_image()[: shape[0], : shape[1]]
    Image.fromarray(img).save(tmp_path / "a.png")
    args = ["encode", tmp_path / "a.png", "-o", tmp_path / "a.sad", "--bpp", "64", *FAST]
    code, _, err = run(args, capsys, monkeypatch)
    assert code == 0, err
    code, _, err = run(
        ["decode", tmp_path / "a.sad", "-o", tmp_path / "b.png"], capsys, monkeypatch
    )
    assert code == 0, err
    assert load(tmp_path / "b.png").shape == (*shape, 3)


def test_same_seed_same_bytes_and_quiet(tmp_path, capsys, monkeypatch):
    save_png(tmp_path / "a.png")
    for name in ("x.sad", "y.sad"):
        args = ["encode", tmp_path / "a.png", "-o", tmp_path / name, "--seed", "5", *FAST]
        args.append("--quiet")
        code, out, err = run(args, capsys, monkeypatch)
        assert (code, out, err) == (0, "", "")  # --quiet: no bar, no summary
    assert (tmp_path / "x.sad").read_bytes() == (tmp_path / "y.sad").read_bytes()


def test_notices_go_to_stderr(tmp_path, capsys, monkeypatch):
    gray16 = (make_image("L").astype(np.uint16) * 257).astype(np.uint16)
    Image.fromarray(gray16).save(tmp_path / "a16.png")
    args = ["encode", tmp_path / "a16.png", "-o", tmp_path / "a.sad", "--bpp", "3", *FAST]
    code, out, err = run(args, capsys, monkeypatch)
    assert code == 0 and out == ""
    assert "sad: notice: 16-bit input reduced to 8 bits per channel" in err.splitlines()


def test_existing_output_is_replaced(encoded, tmp_path, capsys, monkeypatch):
    d, _, _, _ = encoded
    (tmp_path / "o.png").write_bytes(b"old")
    code, _, err = run(
        ["decode", d / "out.sad", "-o", tmp_path / "o.png", "--quiet"], capsys, monkeypatch
    )
    assert code == 0, err
    assert load(tmp_path / "o.png").shape == (H, W, 3)
    assert sorted(os.listdir(tmp_path)) == ["o.png"]


# ------------------------------------------------------------------------------ bad inputs


@pytest.fixture
def bad_files(encoded, tmp_path):
    """A directory of broken inputs next to one good image and one good .sad file."""
    d, _, _, _ = encoded
    good = (d / "out.sad").read_bytes()
    assert len(good) > HEADER_SIZE + 8
    save_png(tmp_path / "in.png")
    Image.fromarray(make_image()[:1, :1]).save(tmp_path / "one.png")
    (tmp_path / "good.sad").write_bytes(good)
    (tmp_path / "noise.png").write_bytes(bytes(np.random.default_rng(0).integers(0, 256, 300)))
    (tmp_path / "notes.txt").write_text("not an image\n")
    (tmp_path / "empty.sad").write_bytes(b"")
    (tmp_path / "trunc.sad").write_bytes(good[: len(good) // 2])
    (tmp_path / "trunc_header.sad").write_bytes(good[:20])
    payload_flip = bytearray(good)
    payload_flip[(HEADER_SIZE + len(good) - 4) // 2] ^= 0x10
    (tmp_path / "flip.sad").write_bytes(bytes(payload_flip))
    header_flip = bytearray(good)
    header_flip[10] ^= 0x01
    (tmp_path / "hflip.sad").write_bytes(bytes(header_flip))
    (tmp_path / "magic.sad").write_bytes(b"PNG!" + good[4:])
    (tmp_path / "version.sad").write_bytes(good[:4] + bytes([9]) + good[5:])  # nothing else fixed
    (tmp_path / "extra.sad").write_bytes(good + b"\0")
    (tmp_path / "loop.png").symlink_to("loop.png")
    return tmp_path


BAD = {
    # id: (args, phrase); in args "T/x" is bad_files / x, and "TT/x" is the literal string
    # bad_files + "/x" (pathlib would normalise "./").
    "missing input": (["encode", "T/missing.png", "-o", "T/o.sad"], "no such file"),
    "input is a directory": (["encode", "T/", "-o", "T/o.sad"], "is a directory"),
    "not an image": (["encode", "T/noise.png", "-o", "T/o.sad"], "not a supported image"),
    "text file": (["encode", "T/notes.txt", "-o", "T/o.sad"], "not a supported image"),
    "budget too small": (["encode", "T/in.png", "-o", "T/o.sad", "--bpp", "0.0001"], "too small"),
    "1x1 image": (
        ["encode", "T/one.png", "-o", "T/o.sad", "--bpp", "64"],
        "'T/one.png': a 1x1 image is too small for .sad (the smallest file is",
    ),
    "negative bpp": (["encode", "T/in.png", "-o", "T/o.sad", "--bpp", "-1"], "--bpp must be"),
    "zero bpp": (["encode", "T/in.png", "-o", "T/o.sad", "--bpp", "0"], "--bpp must be"),
    "bpp 1000": (["encode", "T/in.png", "-o", "T/o.sad", "--bpp", "1000"], "--bpp must be"),
    "bpp nan": (["encode", "T/in.png", "-o", "T/o.sad", "--bpp", "nan"], "--bpp must be"),
    "output dir missing": (["encode", "T/in.png", "-o", "T/nodir/o.sad"], "does not exist"),
    "output is a directory": (["encode", "T/in.png", "-o", "T/"], "it is a directory"),
    "output == input": (["encode", "T/in.png", "-o", "T/in.png"], "same as the input"),
    "output == input spelled differently": (
        ["encode", "T/in.png", "-o", "TT/./in.png"],
        "same as the input",
    ),
    "decode missing": (["decode", "T/missing.sad", "-o", "T/o.png"], "no such file"),
    "decode empty": (["decode", "T/empty.sad", "-o", "T/o.png"], "'T/empty.sad': not a .sad file"),
    "decode truncated": (
        ["decode", "T/trunc.sad", "-o", "T/o.png"],
        "'T/trunc.sad': truncated file",
    ),
    "decode truncated header": (
        ["decode", "T/trunc_header.sad", "-o", "T/o.png"],
        "truncated file (header incomplete)",
    ),
    "decode flipped payload byte": (
        ["decode", "T/flip.sad", "-o", "T/o.png"],
        "'T/flip.sad': corrupt file: payload checksum mismatch",
    ),
    "decode flipped header byte": (
        ["decode", "T/hflip.sad", "-o", "T/o.png"],
        "header checksum mismatch",
    ),
    "decode bad magic": (
        ["decode", "T/magic.sad", "-o", "T/o.png"],
        "cannot read 'T/magic.sad': not a .sad file (bad magic bytes)",
    ),
    "decode unknown version": (
        ["decode", "T/version.sad", "-o", "T/o.png"],
        "'T/version.sad': unsupported .sad version 9.0",
    ),
    "decode trailing bytes": (["decode", "T/extra.sad", "-o", "T/o.png"], "after the payload"),
    "decode a png": (["decode", "T/in.png", "-o", "T/o.png"], "'T/in.png': not a .sad file"),
    "decode unknown extension": (
        ["decode", "T/good.sad", "-o", "T/o.xyz"],
        "unknown image extension '.xyz'",
    ),
    "decode no extension": (["decode", "T/good.sad", "-o", "T/o"], "no file extension"),
    "decode output dir missing": (["decode", "T/good.sad", "-o", "T/no/o.png"], "does not exist"),
    "decode output == input": (["decode", "T/good.sad", "-o", "T/good.sad"], "same as the input"),
    "decode huge size": (
        ["decode", "T/good.sad", "-o", "T/o.png", "--width", "70000"],
        "too large",
    ),
    "info missing": (["info", "T/missing.sad"], "no such file"),
    "info not a sad": (["info", "T/in.png"], "not a .sad file"),
    "info truncated": (["info", "T/trunc.sad"], "'T/trunc.sad': truncated file (payload"),
    "info bad version": (["info", "T/version.sad"], "unsupported .sad version"),
    "info flipped payload byte": (["info", "T/flip.sad"], "'T/flip.sad': corrupt file: payload"),
    # Issue 24: hostile arguments, each refused before the work with a one-line message.
    "input symlink loop": (
        ["encode", "T/loop.png", "-o", "T/o.sad"],
        "cannot read 'T/loop.png': too many levels of symbolic links",
    ),
    "decode input symlink loop": (
        ["decode", "T/loop.png", "-o", "T/o.png"],
        "too many levels of symbolic links",
    ),
    "info input symlink loop": (["info", "T/loop.png"], "too many levels of symbolic links"),
    "output symlink loop": (
        ["encode", "T/in.png", "-o", "T/loop.png"],
        "cannot write 'T/loop.png': too many levels of symbolic links",
    ),
    "empty output name": (["encode", "T/in.png", "-o", ""], "the output file name is empty"),
    "decode empty output name": (
        ["decode", "T/good.sad", "-o", ""],
        "the output file name is empty",
    ),
    "output name too long": (
        ["encode", "T/in.png", "-o", "T/" + "a" * 300 + ".sad"],
        "file name too long (304 bytes; the limit is",
    ),
    "decode output name too long": (
        ["decode", "T/good.sad", "-o", "T/" + "a" * 300 + ".png"],
        "file name too long",
    ),
    "decode --scale 1e308": (
        ["decode", "T/good.sad", "-o", "T/o.png", "--scale", "1e308"],
        "output size is too large (at most 65535 per side",
    ),
    "decode --width 10**400": (
        ["decode", "T/good.sad", "-o", "T/o.png", "--width", str(10**400)],
        "output size is too large",
    ),
    "decode --height 10**300": (
        ["decode", "T/good.sad", "-o", "T/o.png", "--height", str(10**300)],
        "output size is too large",
    ),
    "decode --scale inf": (
        ["decode", "T/good.sad", "-o", "T/o.png", "--scale", "inf"],
        "--scale must be a positive finite number",
    ),
}


@pytest.mark.parametrize("case", list(BAD))
def test_bad_input(case, bad_files, capsys, monkeypatch):
    args, phrase = BAD[case]
    phrase = phrase.replace("'T/", f"'{bad_files}/")
    args = [
        f"{bad_files}/{a[3:]}"
        if a.startswith("TT/")
        else str(bad_files / a[2:])
        if a.startswith("T/")
        else a
        for a in args
    ]
    before = {p: p.read_bytes() for p in bad_files.iterdir() if p.is_file()}
    code, out, err = run(args, capsys, monkeypatch)
    assert_one_line_error(code, err, phrase)
    # No output file, no temporary file, and every input untouched.
    after = {p: p.read_bytes() for p in bad_files.iterdir() if p.is_file()}
    assert after == before
    assert not (bad_files / "nodir").exists() and not (bad_files / "no").exists()
    if args[0] != "info":
        assert out == ""


def test_damaged_file_is_still_described(bad_files, capsys, monkeypatch):
    code, out, err = run(["info", bad_files / "flip.sad", "--json"], capsys, monkeypatch)
    assert_one_line_error(code, err, "payload checksum mismatch")
    assert json.loads(out)["checksum"].startswith("failed: corrupt file")


@pytest.mark.skipif(not hasattr(os, "geteuid") or os.geteuid() == 0, reason="root can write")
def test_unwritable_output(bad_files, capsys, monkeypatch):
    ro = bad_files / "ro"
    ro.mkdir()
    ro.chmod(0o500)
    try:
        code, _, err = run(
            ["encode", bad_files / "in.png", "-o", ro / "o.sad"], capsys, monkeypatch
        )
        assert_one_line_error(code, err, "permission denied")
        assert os.listdir(ro) == []
    finally:
        ro.chmod(0o700)


@pytest.mark.parametrize(
    "args,phrase",
    [
        (["encode", "a.png", "-o", "b.sad", "--arch", "tpu"], "'--arch'"),
        (["encode", "a.png"], "'--output'"),
        (["encode", "-o", "b.sad"], "Missing argument 'INPUT...'"),
        (["decode", "-o", "b.png"], "Missing argument 'INPUT'"),
        (["decode", "a.sad", "-o", "b.png", "--format", "gif"], "'--format'"),
        (["decode", "a.sad", "-o", "b.png", "--webp-quality", "-1"], "'--webp-quality'"),
        (["encode", "-", "-o", "-", "--json"], "--json prints on stdout"),
        (["encode", "a.png", "-o", "b.sad", "--effort", "10"], "'--effort'"),
        (["encode", "a.png", "-o", "b.sad", "--effort", "3", *FAST], "not both"),
        (["encode", "a.png", "-o", "b.sad", "--seed", "-1"], "'--seed'"),
        (["encode", "a.png", "-o", "b.sad", "--bpp", "lots"], "'--bpp'"),
        (["decode", "a.sad", "-o", "b.png", "--scale", "2", "--width", "9"], "--scale cannot"),
        (["decode", "a.sad", "-o", "b.png", "--scale", "0"], "'--scale'"),
        (["decode", "a.sad", "-o", "b.png", "--width", "0"], "'--width'"),
        (["frobnicate"], "No such command 'frobnicate'"),
    ],
)
def test_usage_errors_are_one_line(tmp_path, capsys, monkeypatch, args, phrase):
    monkeypatch.chdir(tmp_path)
    code, out, err = run(args, capsys, monkeypatch)
    assert_one_line_error(code, err, phrase, expected_code=2)
    assert "--help" in err and out == ""
    assert os.listdir(tmp_path) == []


def test_interrupt_and_internal_error(bad_files, capsys, monkeypatch):
    from sadcodec import api

    args = ["encode", bad_files / "in.png", "-o", bad_files / "o.sad", *FAST]

    def interrupted(*a, **k):
        raise KeyboardInterrupt

    monkeypatch.setattr(api, "encode", interrupted)
    code, _, err = run(args, capsys, monkeypatch)
    assert code == 130 and err.strip() == "sad: interrupted"

    def buggy(*a, **k):
        raise ValueError("boom\nsecond line")

    monkeypatch.setattr(api, "encode", buggy)
    monkeypatch.delenv("SAD_DEBUG", raising=False)
    code, _, err = run(args, capsys, monkeypatch)
    assert_one_line_error(
        code, err, "ValueError: boom", expected_code=2, prefix="sad: internal error:"
    )
    monkeypatch.setenv("SAD_DEBUG", "1")  # the traceback is what a developer wants
    monkeypatch.setattr(sys, "argv", ["sad", *map(str, args)])
    with pytest.raises(ValueError, match="boom"):
        cli.main()
    assert not (bad_files / "o.sad").exists()
    assert not [p for p in os.listdir(bad_files) if p.endswith(".tmp")]


# ------------------------------------------------------------------------- help and process


def test_version_and_help(capsys, monkeypatch):
    from sadcodec import __version__

    code, out, _ = run(["--version"], capsys, monkeypatch)
    assert (code, out.strip()) == (0, f"sad {__version__}")
    code, out, _ = run(["--help"], capsys, monkeypatch)
    assert code == 0 and all(c in out for c in ("encode", "decode", "info"))
    code, out, _ = run(["encode", "--help"], capsys, monkeypatch)
    assert code == 0
    for opt in ("--output", "--bpp", "--effort", "--iterations", "--seed", "--arch", "--quiet"):
        assert opt in out
    assert "[default: 1.0]" in out and "SAD_ARCH; default: cpu]" in out and "auto|cpu|cuda" in out
    code, out, _ = run(["decode", "-h"], capsys, monkeypatch)
    assert code == 0 and all(o in out for o in ("--width", "--height", "--scale", "png"))
    code, out, _ = run(["info", "--help"], capsys, monkeypatch)
    assert code == 0 and "--json" in out
    code, out, err = run([], capsys, monkeypatch)  # bare `sad`: help on stderr
    assert code == 2 and "Usage: sad" in err and "sad: error" not in err


def test_python_m_and_info_without_taichi(encoded):
    """`python -m sadcodec info` works and never imports Taichi (checked with -X importtime)."""
    d, _, _, _ = encoded
    env = {**os.environ, "PYTHONPATH": _pythonpath()}
    res = subprocess.run(
        [sys.executable, "-X", "importtime", "-m", "sadcodec", "info", str(d / "out.sad")],
        capture_output=True,
        text=True,
        cwd=ROOT,
        env=env,
        timeout=60,
    )
    assert res.returncode == 0, res.stderr
    assert f"{W}x{H}" in res.stdout
    imported = [ln.split("|")[-1].strip() for ln in res.stderr.splitlines() if "|" in ln]
    assert "sadcodec.cli" in imported
    assert not [m for m in imported if m.split(".")[0] == "taichi"]
    snippet = (
        "import sys; from sadcodec import read_info; "
        f"read_info(open({str(d / 'out.sad')!r}, 'rb').read()); "
        "assert 'taichi' not in sys.modules, 'taichi imported'"
    )
    res = subprocess.run(
        [sys.executable, "-c", snippet], capture_output=True, text=True, cwd=ROOT, env=env
    )
    assert res.returncode == 0, res.stderr
    res = subprocess.run(
        [sys.executable, "-m", "sadcodec", "info", str(d / "missing.sad")],
        capture_output=True,
        text=True,
        cwd=ROOT,
        env=env,
    )
    assert res.returncode == 1
    assert res.stderr.strip() == f"sad: error: cannot read '{d / 'missing.sad'}': no such file"


def test_sad_command_exits_quickly_but_completely(encoded, tmp_path):
    """`python -m sadcodec` skips the interpreter's teardown (cli.run): the output is
    complete, the exit code is kept, and Taichi's offline cache is still written; with
    --quiet and a cold cache it prints nothing."""
    d, _, _, _ = encoded
    cache = tmp_path / "cache"
    env = {**os.environ, "PYTHONPATH": _pythonpath(), "TI_OFFLINE_CACHE_FILE_PATH": str(cache)}
    out = tmp_path / "out.png"
    cmd = [sys.executable, "-m", "sadcodec", "decode", str(d / "out.sad"), "-o", str(out)]
    cmd.append("--quiet")
    res = subprocess.run(cmd, capture_output=True, text=True, cwd=ROOT, env=env, timeout=300)
    assert res.returncode == 0, res.stderr
    # --quiet with a fresh cache: compiling the decoder's kernels prints nothing either (an
    # i64 loop bound once made Taichi warn on every first compile).
    assert res.stderr == "", res.stderr
    with contextlib.redirect_stdout(io.StringIO()):
        from sadcodec import decode

        expected = decode((d / "out.sad").read_bytes())
    np.testing.assert_array_equal(np.asarray(Image.open(out)), expected)
    assert (cache / "ticache.tcb").is_file()
    assert list(cache.glob("*.tic"))
    res = subprocess.run(
        cmd[:-3] + ["-o", str(tmp_path / "x.unknown")],
        capture_output=True,
        text=True,
        cwd=ROOT,
        env=env,
        timeout=300,
    )
    assert res.returncode == 1 and res.stderr.startswith("sad: error:"), res.stderr


OLD_OUTPUT = b"SAD\x1a the previous output, which an interrupted encode must not touch"


@pytest.mark.skipif(sys.platform == "win32", reason="POSIX signals")
@pytest.mark.parametrize(
    "sig,existing",
    [
        (signal.SIGINT, False),
        (signal.SIGINT, True),
        (signal.SIGTERM, True),
        (signal.SIGKILL, True),
    ],
    ids=[
        "SIGINT-new-output",
        "SIGINT-existing-output",
        "SIGTERM-existing-output",
        "SIGKILL-existing-output",
    ],
)
def test_interrupted_encode_loses_nothing(tmp_path, sig, existing):
    """Ctrl-C, kill or kill -9 during the fit: the old output is intact byte for byte (or
    none is created) and no temporary file is left; Ctrl-C also says `sad: interrupted`,
    exit 130, and SIGTERM `sad: terminated`, exit 143.

    The new file is only written, to a temporary file renamed over the old one, once the
    fit is done, so a kill -9 here cannot leave a partial file either."""
    save_png(tmp_path / "in.png")
    if existing:
        (tmp_path / "o.sad").write_bytes(OLD_OUTPUT)
    before = sorted(os.listdir(tmp_path))
    args = ["encode", "in.png", "-o", "o.sad", "--iterations", "100000"]  # until interrupted
    proc = subprocess.Popen(
        [sys.executable, "-m", "sadcodec", *args],
        cwd=tmp_path,
        stderr=subprocess.PIPE,
        env={**os.environ, "PYTHONPATH": _pythonpath()},
        # A runner started in the background may ignore SIGINT, and children inherit that.
        preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL),
    )
    try:
        seen = b""
        deadline = time.monotonic() + 60
        # The fit is running once its first progress line is out (plain lines: a pipe).
        while b"fit: " not in seen and time.monotonic() < deadline:
            chunk = os.read(proc.stderr.fileno(), 4096)
            if not chunk:
                break
            seen += chunk
        assert b"fit: " in seen, seen
        proc.send_signal(sig)
        rest = proc.stderr.read().decode()
        code = proc.wait(timeout=60)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
        proc.stderr.close()
    if sig in (signal.SIGINT, signal.SIGTERM):
        want_code, want = (130, "interrupted") if sig == signal.SIGINT else (143, "terminated")
        assert code == want_code, rest
        assert rest.strip().splitlines()[-1] == f"sad: {want}"
        assert "Traceback" not in rest
    else:
        assert code == -signal.SIGKILL
    assert sorted(os.listdir(tmp_path)) == before
    if existing:
        assert (tmp_path / "o.sad").read_bytes() == OLD_OUTPUT


# --------------------------------------------------- hostile inputs and outputs (issue 24)


@pytest.mark.parametrize(
    "output,phrase",
    [
        ("", "the output file name is empty"),
        ("T/" + "a" * 300 + ".sad", "file name too long"),
        ("T/loop.png", "too many levels of symbolic links"),
        ("T/nodir/o.sad", "does not exist"),
        ("T/notes.txt/o.sad", "a component of the path is not a directory"),
    ],
    ids=["empty", "too-long", "link-loop", "no-directory", "parent-is-a-file"],
)
def test_output_is_checked_before_the_encode(bad_files, capsys, monkeypatch, output, phrase):
    """A bad output path fails at once, not after the whole encode (api.encode must not
    even be called)."""
    from sadcodec import api

    def must_not_run(*_a, **_k):
        raise AssertionError("the encode ran")

    monkeypatch.setattr(api, "encode", must_not_run)
    out = str(bad_files / output[2:]) if output.startswith("T/") else output
    code, _, err = run(["encode", bad_files / "in.png", "-o", out, *FAST], capsys, monkeypatch)
    assert_one_line_error(code, err, phrase)


def _without_dac_override() -> list[str]:
    """A command prefix under which chmod 000 means unreadable: nothing for a normal user;
    for root, setpriv dropping the capabilities that let root read anything."""
    if os.geteuid() != 0:
        return []
    caps = "-dac_override,-dac_read_search"
    prefix = ["setpriv", f"--inh-caps={caps}", f"--bounding-set={caps}"]
    try:
        ok = subprocess.run([*prefix, "true"], capture_output=True, timeout=30).returncode == 0
    except (OSError, subprocess.SubprocessError):
        ok = False
    if not ok:
        pytest.skip("running as root without setpriv: root can read any file")
    return prefix


@pytest.mark.skipif(sys.platform == "win32", reason="POSIX permissions")
def test_unreadable_input_is_a_file_error(bad_files):
    """chmod 000 input: exit 1 with "permission denied", like a missing one (exit 1, "no
    such file"); click's own readability check made it a usage error (exit 2)."""
    prefix = _without_dac_override()
    (bad_files / "locked.png").write_bytes((bad_files / "in.png").read_bytes())
    (bad_files / "locked.sad").write_bytes((bad_files / "good.sad").read_bytes())
    for name in ("locked.png", "locked.sad"):
        (bad_files / name).chmod(0)
    env = {**os.environ, "PYTHONPATH": _pythonpath()}
    cases = [
        ["encode", "locked.png", "-o", "o.sad", *FAST],
        ["decode", "locked.sad", "-o", "o.png"],
        ["info", "locked.sad"],
    ]
    try:
        for args in cases:
            res = subprocess.run(
                [*prefix, sys.executable, "-m", "sadcodec", *args],
                capture_output=True,
                text=True,
                cwd=bad_files,
                env=env,
                timeout=120,
            )
            assert (res.returncode, res.stderr) == (
                1,
                f"sad: error: cannot read '{args[1]}': permission denied\n",
            ), args
    finally:
        for name in ("locked.png", "locked.sad"):
            (bad_files / name).chmod(0o644)
    assert not (bad_files / "o.sad").exists() and not (bad_files / "o.png").exists()


@pytest.mark.skipif(not hasattr(os, "mkfifo"), reason="POSIX FIFOs")
def test_decode_into_a_fifo(encoded, tmp_path, capsys, monkeypatch):
    """A FIFO output is written into (a reader gets the whole PNG) and stays a FIFO."""
    d, _, _, _ = encoded
    fifo = tmp_path / "x.png"
    os.mkfifo(fifo)
    got = []

    def read():
        with open(fifo, "rb") as f:
            got.append(f.read())

    reader = threading.Thread(target=read, daemon=True)
    reader.start()
    code, _, err = run(["decode", d / "out.sad", "-o", fifo, "--quiet"], capsys, monkeypatch)
    reader.join(timeout=60)
    assert code == 0, err
    assert np.asarray(Image.open(io.BytesIO(got[0]))).shape == (H, W, 3)
    assert stat.S_ISFIFO(fifo.lstat().st_mode)
    assert os.listdir(tmp_path) == ["x.png"]


@pytest.mark.skipif(not hasattr(os, "geteuid") or os.geteuid() != 0, reason="mknod needs root")
def test_decode_into_a_null_device_keeps_it(encoded, tmp_path, capsys, monkeypatch):
    """`-o x.png` naming a copy of /dev/null (made with mknod, never the real one): the
    image is written into it, and the device node stays, not replaced by a file."""
    d, _, _, _ = encoded
    dev = tmp_path / "x.png"
    try:
        os.mknod(dev, 0o666 | stat.S_IFCHR, os.makedev(1, 3))
        os.close(os.open(dev, os.O_WRONLY))  # a nodev mount refuses to open it
    except OSError as exc:
        pytest.skip(f"cannot make a character device here: {exc}")
    before = dev.lstat()
    code, _, err = run(["decode", d / "out.sad", "-o", dev, "--quiet"], capsys, monkeypatch)
    assert code == 0, err
    after = dev.lstat()
    assert stat.S_ISCHR(after.st_mode) and (after.st_ino, after.st_rdev) == (
        before.st_ino,
        before.st_rdev,
    )
    assert os.listdir(tmp_path) == ["x.png"]


def test_decode_through_a_symlink(encoded, tmp_path, capsys, monkeypatch):
    """A link to a file: the file it points to gets the image, the link stays a link."""
    d, _, _, _ = encoded
    (tmp_path / "real").mkdir()
    real = tmp_path / "real" / "x.png"
    real.write_bytes(b"old")
    link = tmp_path / "x.png"
    link.symlink_to(real)
    code, _, err = run(["decode", d / "out.sad", "-o", link, "--quiet"], capsys, monkeypatch)
    assert code == 0, err
    assert link.is_symlink() and load(real).shape == (H, W, 3)
    assert os.listdir(tmp_path / "real") == ["x.png"]


@pytest.mark.skipif(sys.platform == "win32", reason="POSIX resource limits")
def test_file_size_limit_zero_is_one_line(encoded, tmp_path):
    """`ulimit -f 0`: Taichi's import finds no usable temporary directory; the message
    names the cause, before any work, instead of an internal error from inside Taichi."""
    import resource

    d, _, _, _ = encoded
    hard = resource.getrlimit(resource.RLIMIT_FSIZE)[1]
    res = subprocess.run(
        [sys.executable, "-m", "sadcodec", "decode", str(d / "out.sad"), "-o", "o.png"],
        capture_output=True,
        text=True,
        cwd=tmp_path,
        env={**os.environ, "PYTHONPATH": _pythonpath()},
        preexec_fn=lambda: resource.setrlimit(resource.RLIMIT_FSIZE, (0, hard)),
        timeout=120,
    )
    assert res.returncode == 1, res.stderr
    assert res.stderr == (
        "sad: error: cannot start the compute backend: the file size limit (ulimit -f) is "
        "0 bytes; no file can be written\n"
    )
    assert os.listdir(tmp_path) == []


def test_no_usable_temporary_directory_is_one_line(encoded, tmp_path, capsys, monkeypatch):
    from sadcodec import backend

    d, _, _, _ = encoded

    def none_usable():
        raise FileNotFoundError(2, "No usable temporary directory found in [...]")

    monkeypatch.setenv("TMPDIR", "/nonexistent/tmp")
    monkeypatch.setattr(backend.tempfile, "gettempdir", none_usable)
    code, _, err = run(["decode", d / "out.sad", "-o", tmp_path / "o.png"], capsys, monkeypatch)
    assert_one_line_error(
        code,
        err,
        "cannot start the compute backend: no usable temporary directory "
        "(TMPDIR='/nonexistent/tmp', /tmp, /var/tmp, /usr/tmp and the current directory are "
        "not writable); set TMPDIR to a writable directory",
    )
    assert os.listdir(tmp_path) == []


@pytest.mark.skipif(sys.platform == "win32", reason="POSIX signals")
@pytest.mark.parametrize("sig", ["SIGINT", "SIGTERM"])
@pytest.mark.parametrize("when", ["fsync", "replace"])
def test_signal_while_the_output_is_written(encoded, tmp_path, capsys, monkeypatch, sig, when):
    """Ctrl-C or SIGTERM while the output is written, or just as it is renamed into place:
    no .tmp file is left, and the report is true: the new file is complete and the
    message says so (it used to say only "interrupted", as if the old file had stayed;
    a SIGTERM left the .tmp file)."""
    from sadcodec import atomic

    d, _, _, _ = encoded
    out = tmp_path / "o.png"
    out.write_bytes(b"old")
    real = getattr(os, when)
    sent = []

    def hook(*args):
        result = real(*args)
        if not sent:
            sent.append(True)
            signal.raise_signal(getattr(signal, sig))
        return result

    monkeypatch.setattr(atomic.os, when, hook)
    code, _, err = run(["decode", d / "out.sad", "-o", out, "--quiet"], capsys, monkeypatch)
    monkeypatch.undo()
    want_code, what = (130, "interrupted") if sig == "SIGINT" else (143, "terminated")
    assert code == want_code, err
    assert err.strip() == f"sad: {what} after writing '{out}' (the file is complete)"
    assert load(out).shape == (H, W, 3)
    assert os.listdir(tmp_path) == ["o.png"]
    assert signal.getsignal(signal.SIGTERM) == signal.SIG_DFL  # main() put it back


def test_help_lists_exit_statuses(capsys, monkeypatch):
    code, out, _ = run(["--help"], capsys, monkeypatch)
    assert code == 0
    assert "Exit status: 0 done, 1 input/output/data error, 2 usage error" in " ".join(out.split())
    assert "130 interrupted" in out and "143 terminated" in " ".join(out.split())


# ------------------------------------------- conventions of codec command lines (issue 27)


def test_quiet_silences_notices_and_q_is_not_quiet(tmp_path, capsys, monkeypatch):
    gray16 = (make_image("L").astype(np.uint16) * 257).astype(np.uint16)
    Image.fromarray(gray16).save(tmp_path / "a16.png")
    args = ["encode", tmp_path / "a16.png", "-o", tmp_path / "a.sad", "--bpp", "3", *FAST]
    code, out, err = run([*args, "--quiet"], capsys, monkeypatch)
    assert (code, out, err) == (0, "", "")  # not even the 16-bit notice
    code, _, err = run([*args, "-q"], capsys, monkeypatch)  # -q means quality elsewhere
    assert_one_line_error(code, err, "No such option '-q'", expected_code=2)


def test_verbose_prints_settings_and_timings(encoded, tmp_path, capsys, monkeypatch):
    d, _, _, _ = encoded
    args = ["encode", d / "in.png", "-o", tmp_path / "v.sad", "--bpp", "2", *FAST, "-v"]
    code, out, err = run(args, capsys, monkeypatch)
    assert code == 0 and out == "", err
    lines = err.splitlines()
    settings = [ln for ln in lines if ln.startswith("sad: settings: ")]
    assert len(settings) == 1, err
    assert f"{W}x{H} RGB, budget {2 * W * H // 8} bytes (2 bpp), 30 iterations" in settings[0]
    timings = [ln for ln in lines if ln.startswith("sad: timings: read ")]
    assert len(timings) == 1 and " write " in timings[0], err
    assert SUMMARY.match(lines[-1]), err  # the summary still closes the output
    args = ["decode", d / "out.sad", "-o", tmp_path / "v.png", "-v"]
    code, _, err = run(args, capsys, monkeypatch)
    assert code == 0, err
    assert re.search(rf"^sad: decode: {W}x{H} stored, \d+ sites \(K = \d+\) -> {W}x{H} PNG", err)


def test_progress_is_plain_lines_unless_on_a_terminal(encoded, tmp_path, capsys, monkeypatch):
    """Written to a file or pipe, progress is a few whole lines (no carriage-return
    frames): one per tenth of the iterations and one for the rate fit. On a terminal it
    is a bar."""
    d, _, _, _ = encoded
    args = ["encode", d / "in.png", "-o", tmp_path / "p.sad", "--bpp", "2", *FAST]
    code, _, err = run(args, capsys, monkeypatch)
    assert code == 0, err
    assert "\r" not in err
    lines = err.splitlines()
    fit = [ln for ln in lines if ln.startswith("fit: ")]
    assert fit[0].startswith("fit: 1/30 iterations, PSNR ") and fit[-1].startswith("fit: 30/30")
    assert len(fit) <= 11
    assert re.fullmatch(r"fit: \d+/30 iterations, PSNR [\d.]+ dB, \d+ sites", fit[1])
    assert len([ln for ln in lines if ln.startswith("rate: PSNR ")]) == 1
    assert SUMMARY.match(lines[-1]) and len(lines) == len(fit) + 2
    monkeypatch.setattr(sys.stderr, "isatty", lambda: True, raising=False)
    code, _, err = run(args, capsys, monkeypatch)
    assert code == 0 and "\r" in err and "it/s" in err  # tqdm's bar


def test_compile_notice_while_the_kernel_cache_is_cold(tmp_path, capsys, monkeypatch):
    """Said once, by a process whose encoder kernels are not in Taichi's offline cache yet;
    run() records them after the cache is written, and the next process says nothing."""
    from sadcodec import backend

    arch = backend.current_arch()
    monkeypatch.setenv("TI_OFFLINE_CACHE_FILE_PATH", str(tmp_path))
    monkeypatch.setattr(backend, "current_arch", lambda: None)  # as in a fresh process
    monkeypatch.setattr(cli, "_cold_cache", [])
    cli._announce_compile(arch, None)
    assert capsys.readouterr().err == f"sad: notice: {cli.COMPILE_NOTICE}\n"
    assert cli._cold_cache == [arch]
    backend.mark_kernels_cached(arch)  # no cache index yet: the stamp alone means nothing
    assert not backend.kernels_cached(arch)
    (tmp_path / "ticache.tcb").write_bytes(b"")  # Taichi wrote its cache
    backend.mark_kernels_cached(arch)
    assert backend.kernels_cached(arch) and not backend.kernels_cached("other")
    cli._announce_compile(arch, None)
    assert capsys.readouterr().err == ""


def _decoded(path) -> np.ndarray:
    with Image.open(path) as im:
        return np.asarray(im.convert("RGB"))


def _api_decode(path) -> np.ndarray:
    from sadcodec import decode

    return decode(path)


@pytest.mark.parametrize(
    "name,args,kind,exact",
    [
        ("o.tif", [], "TIFF", True),
        ("o.bmp", [], "BMP", True),
        ("o.ppm", [], "PPM", True),
        ("o.webp", [], "WEBP", True),
        ("o.webp", ["--webp-quality", "50"], "WEBP", False),
        ("o.jpg", ["--jpeg-quality", "20"], "JPEG", False),
        ("o.png", ["--format", "jpeg"], "JPEG", False),  # --format over the extension
        ("o.img", ["--format", "tiff"], "TIFF", True),
    ],
)
def test_decode_formats(encoded, tmp_path, capsys, monkeypatch, name, args, kind, exact):
    d, _, _, _ = encoded
    code, _, err = run(["decode", d / "out.sad", "-o", tmp_path / name, *args], capsys, monkeypatch)
    assert code == 0, err
    assert Image.open(tmp_path / name).format == kind
    got, want = _decoded(tmp_path / name), _api_decode(d / "out.sad")
    if exact:
        np.testing.assert_array_equal(got, want)
    else:
        assert 20.0 < psnr(got, want) < 60.0


def test_lossy_quality_options_change_the_output(encoded, tmp_path, capsys, monkeypatch):
    d, _, _, _ = encoded
    sizes = {}
    for name, args in [
        ("hi.jpg", []),
        ("lo.jpg", ["--jpeg-quality", "10"]),
        ("lossless.webp", []),
        ("lossy.webp", ["--webp-quality", "10"]),
    ]:
        code, _, err = run(
            ["decode", d / "out.sad", "-o", tmp_path / name, "--quiet", *args], capsys, monkeypatch
        )
        assert code == 0, err
        sizes[name] = (tmp_path / name).stat().st_size
    want = _api_decode(d / "out.sad")
    assert sizes["lo.jpg"] < sizes["hi.jpg"] and sizes["lossy.webp"] < sizes["lossless.webp"]
    assert psnr(_decoded(tmp_path / "lo.jpg"), want) < psnr(_decoded(tmp_path / "hi.jpg"), want)


def test_format_refusals_come_before_the_decode(bad_files, tmp_path, capsys, monkeypatch):
    """Checked from the header: no decode is spent on an output that cannot be written."""
    from sadcodec import api

    def no_decode(*args, **kwargs):
        raise AssertionError("decoded")

    monkeypatch.setattr(api, "decode", no_decode)
    out = tmp_path / "out"
    out.mkdir()
    cases = [
        (["-o", out / "o.pgm"], "PGM stores greyscale only"),
        (["-o", out / "o.xyz"], "unknown image extension '.xyz'"),
        (["-o", out / "o.png", "--format", "gif"], "Invalid value for '--format'"),
        (["-o", out / "o.png", "--jpeg-quality", "101"], "Invalid value for '--jpeg-quality'"),
    ]
    for args, phrase in cases:
        code, _, err = run(["decode", bad_files / "good.sad", *args], capsys, monkeypatch)
        assert_one_line_error(code, err, phrase, expected_code=2 if "Invalid" in phrase else 1)
    assert os.listdir(out) == []


def test_cli_format_list_is_imageload_s():
    """The CLI repeats imageload's formats so that `sad --help` does not import Pillow."""
    from sadcodec import imageload

    assert cli._FORMATS == imageload.FORMATS
    assert cli._JPEG_QUALITY == imageload.JPEG_QUALITY


@pytest.mark.skipif(sys.version_info < (3, 11), reason="tomllib is Python 3.11+")
def test_every_subpackage_is_in_the_wheel():
    """pyproject.toml lists the packages to install: one left out builds a wheel whose
    `sad` fails on import (sadcodec.fit once was)."""
    import tomllib

    with open(os.path.join(ROOT, "pyproject.toml"), "rb") as f:
        listed = set(tomllib.load(f)["tool"]["setuptools"]["packages"])
    found = {"sadcodec.kernels"}  # kernels/, installed under sadcodec (package-dir)
    top = os.path.join(ROOT, "sadcodec")
    for dirpath, _, files in os.walk(top):
        if "__init__.py" in files:
            rel = os.path.relpath(dirpath, top)
            found.add("sadcodec" if rel == "." else "sadcodec." + rel.replace(os.sep, "."))
    assert listed == found
