"""`-` as an input or output of `sad encode`, `decode` and `info`: binary standard input and
output, read no further than a file would be, written only once complete."""

from __future__ import annotations

import io
import json
import os
import subprocess
import sys

import numpy as np
import pytest
from PIL import Image

import sadcodec
from sadcodec import cli, imageload

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
H, W = 16, 24
ENCODE = ["--bpp", "3", "--iterations", "20", "--seed", "1"]


def _image() -> np.ndarray:
    y, x = np.mgrid[0:H, 0:W]
    img = np.stack([x * 10, y * 15, 255 - x * 10], axis=2).astype(np.uint8)
    img[4:10, 6:14] = (220, 40, 30)
    return img


def _png(img: np.ndarray) -> bytes:
    buf = io.BytesIO()
    Image.fromarray(img).save(buf, format="PNG")
    return buf.getvalue()


class _Stream(io.RawIOBase):
    """A non-seekable binary stream (a pipe) that counts what was read from it; ``endless``:
    its data, then zero bytes forever (like /dev/zero)."""

    def __init__(self, data: bytes, endless: bool = False):
        self.data, self.endless, self.pos = data, endless, 0

    def readable(self) -> bool:
        return True

    def readinto(self, b) -> int:
        if self.pos >= len(self.data):
            if not self.endless:
                return 0
            b[:] = bytes(len(b))
            self.pos += len(b)
            return len(b)
        n = min(len(b), len(self.data) - self.pos)
        b[:n] = self.data[self.pos : self.pos + n]
        self.pos += n
        return n


def run(args, monkeypatch, stdin: bytes | io.RawIOBase = b"", tty: bool = False):
    """`sad ARGS` in-process with binary standard streams; (exit code, stdout bytes, stderr)."""
    raw = stdin if isinstance(stdin, io.RawIOBase) else _Stream(stdin)
    out = io.BytesIO()
    stdin_w = io.TextIOWrapper(io.BufferedReader(raw))
    stdout_w = io.TextIOWrapper(out, write_through=True)
    err = io.StringIO()
    if tty:
        monkeypatch.setattr(stdin_w, "isatty", lambda: True, raising=False)
        monkeypatch.setattr(stdout_w, "isatty", lambda: True, raising=False)
    monkeypatch.setattr(sys, "stdin", stdin_w)
    monkeypatch.setattr(sys, "stdout", stdout_w)
    monkeypatch.setattr(sys, "stderr", err)
    monkeypatch.setattr(sys, "argv", ["sad", *map(str, args)])
    code = 0
    try:
        cli.main()
    except SystemExit as exc:
        code = exc.code if isinstance(exc.code, int) else 1
    return code, out.getvalue(), err.getvalue()


@pytest.fixture(scope="module")
def sad_file() -> bytes:
    """The encode `sad encode x.png -o x.sad ENCODE` makes, through the API."""
    return sadcodec.encode(_image(), bpp=3, iterations=20, seed=1)


def test_encode_stdin_to_stdout(tmp_path, monkeypatch, sad_file):
    """The same bytes as an encode of the file; nothing named '-' is created."""
    monkeypatch.chdir(tmp_path)
    code, out, err = run(["encode", "-", "-o", "-", *ENCODE], monkeypatch, _png(_image()))
    assert code == 0, err
    assert out == sad_file
    assert err.strip().splitlines()[-1].startswith(f"<stdin> -> <stdout>: {W}x{H} RGB, ")
    assert os.listdir(tmp_path) == []


def test_encode_json_is_the_only_stdout(tmp_path, monkeypatch, sad_file):
    png = tmp_path / "a.png"
    png.write_bytes(_png(_image()))
    args = ["encode", png, "-o", tmp_path / "a.sad", *ENCODE, "--json"]
    code, out, err = run(args, monkeypatch)
    assert code == 0, err
    summary = json.loads(out)
    assert summary["bytes"] == len(sad_file) == (tmp_path / "a.sad").stat().st_size
    assert (summary["width"], summary["height"], summary["channels"]) == (W, H, 3)
    assert summary["bytes"] <= summary["budget_bytes"] == 3 * W * H // 8
    assert summary["psnr"] > 20 and summary["sites"] > 0
    assert " -> " not in err  # the JSON replaces the summary line
    code, out, err = run(["encode", png, "-o", "-", "--json"], monkeypatch)
    assert code == 2 and out == b"" and "--json" in err


def test_decode_stdin_to_stdout_is_png_unless_told(monkeypatch, sad_file):
    want = sadcodec.decode(sad_file)
    code, out, err = run(["decode", "-", "-o", "-"], monkeypatch, sad_file)
    assert code == 0, err
    assert out.startswith(b"\x89PNG\r\n\x1a\n")
    np.testing.assert_array_equal(np.asarray(Image.open(io.BytesIO(out))), want)
    assert err.strip().startswith("<stdin> -> <stdout>:")
    code, out, err = run(["decode", "-", "-o", "-", "--format", "ppm"], monkeypatch, sad_file)
    assert code == 0, err
    assert out.startswith(b"P6")
    np.testing.assert_array_equal(np.asarray(Image.open(io.BytesIO(out))), want)


def test_info_from_stdin(monkeypatch, sad_file):
    code, out, err = run(["info", "-", "--json"], monkeypatch, sad_file)
    assert code == 0, err
    assert json.loads(out)["bytes"] == len(sad_file)
    code, out, err = run(["info", "-"], monkeypatch, sad_file)
    assert code == 0 and out.decode().startswith("file:        <stdin>\n")


def test_stdin_is_read_no_further_than_a_file(monkeypatch, sad_file):
    """A .sad file: its header says how long it is; an endless stream is refused after
    one byte past that. An image: at most MAX_STREAM_BYTES, then one byte more."""
    endless = _Stream(sad_file, endless=True)
    code, out, err = run(["info", "-"], monkeypatch, endless)
    assert (code, out) == (1, b"")
    assert err.startswith("sad: error: cannot read '<stdin>': corrupt file: unexpected bytes")
    assert endless.pos <= len(sad_file) + io.DEFAULT_BUFFER_SIZE  # the read-ahead at most
    stream = _Stream(sad_file + b"x")
    code, out, err = run(["decode", "-", "-o", "-"], monkeypatch, stream)
    assert (code, out) == (1, b"")
    assert "unexpected bytes after the payload" in err
    monkeypatch.setattr(imageload, "MAX_STREAM_BYTES", 4096)
    stream = _Stream(b"", endless=True)
    code, out, err = run(["encode", "-", "-o", "-"], monkeypatch, stream)
    assert (code, out) == (1, b"")
    assert "input is longer than 4096 bytes" in err
    assert stream.pos <= 4096 + 1 + io.DEFAULT_BUFFER_SIZE  # the buffer's read-ahead at most


def test_nothing_is_written_on_error(monkeypatch, sad_file):
    damaged = bytearray(sad_file)
    damaged[-8] ^= 0xFF  # the payload's end: its checksum fails
    code, out, err = run(["decode", "-", "-o", "-"], monkeypatch, bytes(damaged))
    assert (code, out) == (1, b""), err
    assert err.startswith("sad: error: cannot read '<stdin>': ")
    code, out, err = run(["encode", "-", "-o", "-"], monkeypatch, b"not an image")
    assert (code, out) == (1, b"")
    assert err.strip() == "sad: error: cannot read '<stdin>': not a supported image " + (
        "(PNG, JPEG, BMP, TIFF, GIF, WebP)"
    )
    # RGB cannot be PGM: refused before the decode, nothing written.
    code, out, err = run(["decode", "-", "-o", "-", "--format", "pgm"], monkeypatch, sad_file)
    assert (code, out) == (1, b"")
    assert "PGM stores greyscale only" in err


def test_terminals_are_refused(tmp_path, monkeypatch, sad_file):
    """An image is not read from, nor a file written to, a terminal (before any work)."""
    code, out, err = run(["decode", "-", "-o", tmp_path / "x.png"], monkeypatch, tty=True)
    assert code == 1 and "cannot read '<stdin>': it is a terminal" in err
    (tmp_path / "x.sad").write_bytes(sad_file)
    code, out, err = run(["decode", tmp_path / "x.sad", "-o", "-"], monkeypatch, tty=True)
    assert (code, out) == (1, b"") and "cannot write '<stdout>': it is a terminal" in err


def test_stdin_only_as_the_one_input(tmp_path, monkeypatch):
    code, _, err = run(["encode", "-", tmp_path / "a.png", "-o", tmp_path], monkeypatch)
    assert code == 2 and "'-' (standard input) can only be the one input" in err


def test_real_pipes(sad_file):
    """Through OS pipes, in a process of its own: stdout carries the image and nothing else
    (no banner, no summary), stdin is read to the file's end."""
    path = os.pathsep.join(filter(None, [ROOT, os.environ.get("PYTHONPATH")]))
    env = {**os.environ, "PYTHONPATH": path}
    res = subprocess.run(
        [sys.executable, "-m", "sadcodec", "decode", "-", "-o", "-", "--format", "pgm"],
        input=sadcodec.encode(_image()[..., 0], bpp=3, iterations=10),
        capture_output=True,
        env=env,
        cwd=ROOT,
        timeout=300,
    )
    assert res.returncode == 0, res.stderr
    assert res.stdout.startswith(b"P5")
    assert Image.open(io.BytesIO(res.stdout)).size == (W, H)
    assert res.stderr.decode().startswith("<stdin> -> <stdout>: 24x16 gray")
