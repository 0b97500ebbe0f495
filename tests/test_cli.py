"""The `sad` command end to end: encode/decode/info, and every bad input."""

import json
import os
import subprocess
import sys

import numpy as np
import pytest
from PIL import Image

from sadcodec import cli


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


def make_png(path, h=32, w=40, mode="RGB"):
    y, x = np.mgrid[0:h, 0:w]
    img = np.stack([x * 255 // w, y * 255 // h, np.full_like(x, 120)], axis=2)
    img[(x - 25) ** 2 + (y - 14) ** 2 < 64] = [230, 40, 30]
    img = img.astype(np.uint8)
    im = Image.fromarray(img)
    if mode == "L":
        im = im.convert("L")
    elif mode == "RGBA":
        im.putalpha(Image.fromarray((x * 255 // w).astype(np.uint8)))
    im.save(path)
    return np.asarray(Image.open(path))


def assert_one_line_error(code, err, phrase, expected_code=1):
    assert code == expected_code, err
    lines = [ln for ln in err.strip().splitlines() if ln.strip()]
    assert len(lines) == 1, err
    assert lines[0].startswith("sad: error:"), err
    assert phrase in lines[0], err
    assert "Traceback" not in err


def no_leftovers(directory, name):
    assert not (directory / name).exists()
    assert not [p for p in os.listdir(directory) if p.endswith(".tmp")]


def psnr(a, b):
    mse = np.mean((a.astype(float) - b.astype(float)) ** 2)
    return 10 * np.log10(255**2 / mse)


@pytest.fixture(scope="module")
def encoded(tmp_path_factory):
    """One small encode shared by several tests (encodes are the slow part)."""
    d = tmp_path_factory.mktemp("enc")
    src = d / "in.png"
    img = make_png(src)
    mp = pytest.MonkeyPatch()
    mp.setattr(
        sys,
        "argv",
        [
            "sad",
            "encode",
            str(src),
            "-o",
            str(d / "out.sad"),
            "--bpp",
            "2",
            "--iterations",
            "40",
            "--seed",
            "1",
            "-q",
        ],
    )
    with pytest.raises(SystemExit) as exc:
        cli.main()
    mp.undo()
    assert exc.value.code == 0
    return d, img


def test_encode_meets_budget_and_quality(encoded, capsys, monkeypatch):
    d, img = encoded
    size = (d / "out.sad").stat().st_size
    h, w = img.shape[:2]
    assert 8 * size / (w * h) <= 2.0
    code, _, err = run(["decode", d / "out.sad", "-o", d / "out.png", "-q"], capsys, monkeypatch)
    assert code == 0, err
    out = np.asarray(Image.open(d / "out.png"))
    assert out.shape == img.shape
    # Measured 25-27 dB for this 40x32 gradient + disc at 2 bpp and 40 iterations.
    assert psnr(out, img) > 22.0


def test_info_reports_what_was_written(encoded, capsys, monkeypatch):
    d, img = encoded
    code, out, err = run(["info", d / "out.sad", "--json"], capsys, monkeypatch)
    assert code == 0, err
    info = json.loads(out)
    size = (d / "out.sad").stat().st_size
    assert (info["width"], info["height"], info["channels"]) == (40, 32, 3)
    assert info["bytes"] == size
    assert info["bpp"] == pytest.approx(8 * size / (40 * 32))
    assert info["sites"] > 0 and info["checksum"] == "ok"
    code, out, _ = run(["info", d / "out.sad"], capsys, monkeypatch)
    assert code == 0 and "40x32" in out and "checksum:    ok" in out


def test_summary_line_and_progress(tmp_path, capsys, monkeypatch):
    make_png(tmp_path / "a.png", 24, 24)
    code, out, err = run(
        [
            "encode",
            tmp_path / "a.png",
            "-o",
            tmp_path / "a.sad",
            "--bpp",
            "2",
            "--iterations",
            "20",
        ],
        capsys,
        monkeypatch,
    )
    assert code == 0, err
    assert out == ""  # stdout stays clean
    last = err.strip().splitlines()[-1]
    assert "a.png -> a.sad: 24x24 RGB" in last and "bpp" in last and "PSNR" in last


def test_decode_at_other_sizes(encoded, capsys, monkeypatch):
    d, _ = encoded
    for args, shape in ((["--width", "80"], (64, 80, 3)), (["--scale", "0.5"], (16, 20, 3))):
        code, _, err = run(
            ["decode", d / "out.sad", "-o", d / "r.png", "-q", *args], capsys, monkeypatch
        )
        assert code == 0, err
        assert np.asarray(Image.open(d / "r.png")).shape == shape


@pytest.mark.parametrize("mode,channels", [("L", 1), ("RGBA", 4)])
def test_gray_and_alpha(tmp_path, capsys, monkeypatch, mode, channels):
    make_png(tmp_path / "a.png", 24, 24, mode)
    code, _, err = run(
        [
            "encode",
            tmp_path / "a.png",
            "-o",
            tmp_path / "a.sad",
            "--bpp",
            "3",
            "--iterations",
            "20",
            "-q",
        ],
        capsys,
        monkeypatch,
    )
    assert code == 0, err
    code, out, _ = run(["info", tmp_path / "a.sad", "--json"], capsys, monkeypatch)
    assert json.loads(out)["channels"] == channels
    run(["decode", tmp_path / "a.sad", "-o", tmp_path / "b.png", "-q"], capsys, monkeypatch)
    im = Image.open(tmp_path / "b.png")
    assert im.mode == {1: "L", 4: "RGBA"}[channels]


def test_same_seed_same_bytes(tmp_path, capsys, monkeypatch):
    make_png(tmp_path / "a.png", 24, 24)
    for name in ("x.sad", "y.sad"):
        code, _, err = run(
            [
                "encode",
                tmp_path / "a.png",
                "-o",
                tmp_path / name,
                "--bpp",
                "2",
                "--iterations",
                "20",
                "--seed",
                "5",
                "-q",
            ],
            capsys,
            monkeypatch,
        )
        assert code == 0, err
    assert (tmp_path / "x.sad").read_bytes() == (tmp_path / "y.sad").read_bytes()


def test_bad_inputs(encoded, tmp_path, capsys, monkeypatch):
    d, _ = encoded
    good = (d / "out.sad").read_bytes()
    png = tmp_path / "in.png"
    make_png(png, 16, 16)
    (tmp_path / "noise.png").write_bytes(os.urandom(300))
    (tmp_path / "trunc.sad").write_bytes(good[: len(good) // 2])
    flipped = bytearray(good)
    flipped[60] ^= 0x10
    (tmp_path / "flip.sad").write_bytes(bytes(flipped))
    (tmp_path / "magic.sad").write_bytes(b"PNG!" + good[4:])
    (tmp_path / "version.sad").write_bytes(good[:4] + bytes([9]) + good[5:])
    out = tmp_path / "o.sad"
    cases = [
        (["encode", tmp_path / "missing.png", "-o", out], "no such file"),
        (["encode", tmp_path / "noise.png", "-o", out], "not a supported image"),
        (["encode", png, "-o", out, "--bpp", "0.0001"], "budget too small"),
        (["encode", png, "-o", out, "--bpp", "-1"], "--bpp"),
        (["encode", png, "-o", out, "--bpp", "1000"], "--bpp"),
        (["encode", png, "-o", tmp_path / "nodir" / "o.sad"], "does not exist"),
        (["encode", png, "-o", png], "same as the input"),
        (["decode", tmp_path / "trunc.sad", "-o", tmp_path / "o.png"], "truncated"),
        (["decode", tmp_path / "flip.sad", "-o", tmp_path / "o.png"], "checksum"),
        (["decode", tmp_path / "magic.sad", "-o", tmp_path / "o.png"], "not a .sad file"),
        (
            ["decode", tmp_path / "version.sad", "-o", tmp_path / "o.png"],
            "unsupported .sad version",
        ),
        (["decode", d / "out.sad", "-o", tmp_path / "o.xyz"], "unknown image extension"),
        (["decode", png, "-o", tmp_path / "o.png"], "not a .sad file"),
        (["info", tmp_path / "trunc.sad"], "truncated"),
    ]
    for args, phrase in cases:
        code, _, err = run(args, capsys, monkeypatch)
        assert_one_line_error(code, err, phrase)
        no_leftovers(tmp_path, "o.sad")
        no_leftovers(tmp_path, "o.png")
    assert png.exists() and (d / "out.sad").read_bytes() == good  # inputs untouched


def test_usage_errors_are_one_line(tmp_path, capsys, monkeypatch):
    code, _, err = run(["encode", "a.png", "-o", "b.sad", "--arch", "tpu"], capsys, monkeypatch)
    assert_one_line_error(code, err, "--arch", expected_code=2)
    code, _, err = run(["encode", "a.png"], capsys, monkeypatch)
    assert_one_line_error(code, err, "--output", expected_code=2)


def test_info_does_not_start_taichi(encoded):
    d, _ = encoded
    code = (
        "import sys; from sadcodec.api import read_info; "
        f"read_info(open({str(d / 'out.sad')!r}, 'rb').read()); "
        "assert 'taichi' not in sys.modules, 'taichi imported'"
    )
    res = subprocess.run(
        [sys.executable, "-c", code],
        capture_output=True,
        text=True,
        cwd=os.path.dirname(os.path.dirname(__file__)),
    )
    assert res.returncode == 0, res.stderr
