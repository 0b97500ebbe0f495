"""Run `sad` on bad and odd inputs and tabulate what each really prints.

    python -m bench.bad_inputs            # prints the table, writes it into docs/robustness.md
    python -m bench.bad_inputs --no-report

Every input is generated in a temporary directory (odd images, broken files, unwritable
places) and every command runs as a real `sad` process there, so the table shows exactly
what a user sees: the exit status and stderr (progress bars stripped). Successful encodes
use `--iterations 20` to keep the run short. As root, the read-only-directory case runs
as user nobody (setpriv), since root may write anywhere.
"""

from __future__ import annotations

import argparse
import os
import re
import shlex
import shutil
import struct
import subprocess
import sys
import tempfile
import zlib

import numpy as np
from PIL import Image

from bench.benchlib import ROOT, code_label, provenance
from bench.mdsection import replace_section

# Hand-built PNGs (Pillow cannot write zero-size or lying headers, nor 16-bit colour).
from bench.pngs import header_only_png, png16

SAD = os.path.join(os.path.dirname(sys.executable), "sad")
FAST = ["--iterations", "20"]


def _scene(h: int, w: int) -> np.ndarray:
    """A small RGB gradient with a disc."""
    y, x = np.mgrid[0:h, 0:w]
    img = np.stack([x * 255 // max(w - 1, 1), y * 255 // max(h - 1, 1), 128 + 0 * x], axis=2)
    img[(x - w * 0.6) ** 2 + (y - h * 0.4) ** 2 < (min(h, w) * 0.3) ** 2] = [230, 40, 30]
    return img.astype(np.uint8)


def ramp_file() -> bytes:
    """Issue 24's crafted file: 400 sites at one point of a 3900x3900 image, K = 32, with a
    ramp of radii (no two alike), so that every tile keeps ~90 sites: 734 bytes whose
    render at the stored size models at ~15 s, over the decoder's limit."""
    from sadcodec.settings import choose_spec
    from sadcodec.writer import make_writer

    n, size = 400, 3900
    p = np.zeros((n, 9), np.float32)
    p[:, :2] = size / 2
    p[:, 4] = np.linspace(-32, 31, n)
    p[:, 5] = 2.0
    p[:, 6:] = 0.5
    p[:, 6] = np.random.default_rng(1).integers(0, 2, n)
    return make_writer(size, size, 3, 32, choose_spec(size, size))(p)


def make_inputs(d: str) -> None:
    """Write every input file the commands below refer to."""

    def save(name: str, img: Image.Image, **kw) -> None:
        img.save(os.path.join(d, name), **kw)

    def write(name: str, data: bytes) -> None:
        with open(os.path.join(d, name), "wb") as f:
            f.write(data)

    photo = _scene(32, 40)
    save("photo.png", Image.fromarray(photo))
    save("one.png", Image.fromarray(photo[:1, :1]))
    save("col.png", Image.fromarray(_scene(64, 1)))
    save("row.png", Image.fromarray(_scene(1, 64)))
    write("zero.png", header_only_png(0, 5))
    write("huge.png", header_only_png(100_000, 100_000))
    save("palette.png", Image.fromarray(photo).quantize(16))
    pt = Image.fromarray(photo).quantize(16)
    pt.info["transparency"] = 0
    save("palette-alpha.png", pt)
    save("cmyk.jpg", Image.fromarray(photo).convert("CMYK"), quality=95)
    exif = Image.Exif()
    exif[0x0112] = 6  # display rotated 90 degrees clockwise
    save("exif6.jpg", Image.fromarray(photo), exif=exif, quality=95)
    write("gray16.png", png16(np.arange(32 * 40).reshape(32, 40) * 51))
    write("rgb16.png", png16(photo.astype(np.uint16) * 257))
    save("float.tif", Image.fromarray(photo[..., 0].astype(np.float32) / 255))
    black = Image.new("RGB", (40, 32))
    save("anim.gif", Image.fromarray(photo), save_all=True, append_images=[black])
    write("noise.png", np.random.default_rng(0).bytes(3000))
    write("text.jpg", b"this is not a picture\n")
    write("empty.png", b"")
    with open(os.path.join(d, "photo.png"), "rb") as f:
        write("truncated.png", f.read()[:200])
    write("existing.sad", b"an older file that encode replaces atomically")
    write("grey-65535x1525.png", header_only_png(65535, 1525))
    write("ramp.sad", ramp_file())
    os.mkfifo(os.path.join(d, "fifo.png"))
    os.symlink("loop.png", os.path.join(d, "loop.png"))
    os.mkdir(os.path.join(d, "readonly"), 0o555)
    os.chmod(d, 0o755)  # nobody must reach the files for the read-only case


def commands() -> list[tuple[str, list[str]]]:
    """(what, argv) in run order; decodes use the files the encodes before them wrote."""
    enc = ["encode", "photo.png", "-o"]
    dec = ["decode", "existing.sad", "-o", "x.png"]
    return [
        ("zero-size PNG", ["encode", "zero.png", "-o", "z.sad"]),
        ("1x1 image", ["encode", "one.png", "-o", "one.sad", "--bpp", "64"]),
        ("1x64 image at 1 bpp (8 bytes)", ["encode", "col.png", "-o", "col.sad"]),
        ("1x64 image at 16 bpp", ["encode", "col.png", "-o", "col.sad", "--bpp", "16", *FAST]),
        ("... and decoded", ["decode", "col.sad", "-o", "col-out.png"]),
        ("64x1 image at 16 bpp", ["encode", "row.png", "-o", "row.sad", "--bpp", "16", *FAST]),
        ("... and decoded", ["decode", "row.sad", "-o", "row-out.png"]),
        ("PNG declaring 100000x100000", ["encode", "huge.png", "-o", "h.sad"]),
        ("palette PNG", ["encode", "palette.png", "-o", "p.sad", *FAST]),
        ("palette PNG with transparency", ["encode", "palette-alpha.png", "-o", "pa.sad", *FAST]),
        ("CMYK JPEG", ["encode", "cmyk.jpg", "-o", "c.sad", *FAST]),
        ("EXIF-rotated JPEG (orientation 6)", ["encode", "exif6.jpg", "-o", "e.sad", *FAST]),
        ("16-bit gray PNG", ["encode", "gray16.png", "-o", "g16.sad", *FAST]),
        ("16-bit RGB PNG", ["encode", "rgb16.png", "-o", "c16.sad", *FAST]),
        ("float TIFF", ["encode", "float.tif", "-o", "f.sad", *FAST]),
        ("animated GIF", ["encode", "anim.gif", "-o", "a.sad", *FAST]),
        ("random bytes named .png", ["encode", "noise.png", "-o", "n.sad"]),
        ("text named .jpg", ["encode", "text.jpg", "-o", "t.sad"]),
        ("empty .png", ["encode", "empty.png", "-o", "e0.sad"]),
        ("truncated PNG", ["encode", "truncated.png", "-o", "tr.sad"]),
        ("missing input", ["encode", "missing.png", "-o", "m.sad"]),
        ("negative --bpp", [*enc, "o.sad", "--bpp", "-1"]),
        ("zero --bpp", [*enc, "o.sad", "--bpp", "0"]),
        ("absurd --bpp", [*enc, "o.sad", "--bpp", "1e9"]),
        ("--bpp nan", [*enc, "o.sad", "--bpp", "nan"]),
        ("--bpp not a number", [*enc, "o.sad", "--bpp", "lots"]),
        ("--bpp too small for the image", [*enc, "o.sad", "--bpp", "0.01"]),
        ("unknown --arch", [*enc, "o.sad", "--arch", "tpu"]),
        ("--effort out of range", [*enc, "o.sad", "--effort", "10"]),
        ("--threads 0", [*enc, "o.sad", "--threads", "0"]),
        ("missing output directory", [*enc, "nodir/o.sad"]),
        ("output is a directory", [*enc, "readonly"]),
        ("read-only output directory", [*enc, "readonly/o.sad"]),
        ("same path in and out", [*enc, "photo.png"]),
        ("same path, spelled differently", [*enc, "./photo.png"]),
        ("output exists (replaced atomically)", [*enc, "existing.sad", *FAST]),
        ("decode a PNG", ["decode", "photo.png", "-o", "x.png"]),
        ("decode a truncated .sad", ["decode", "trunc.sad", "-o", "x.png"]),
        ("decode a .sad with one bit flipped", ["decode", "flip.sad", "-o", "x.png"]),
        ("decode a .sad declaring 16384x16384, K=32", ["decode", "big.sad", "-o", "x.png"]),
        ("... at a smaller size", ["decode", "big.sad", "-o", "x.png", "--width", "64"]),
        ("decode to --width 70000", ["decode", "existing.sad", "-o", "x.png", "--width", "70000"]),
        ("decode to an unknown extension", ["decode", "existing.sad", "-o", "x.xyz"]),
        ("decode --scale 0", ["decode", "existing.sad", "-o", "x.png", "--scale", "0"]),
        ("RGBA to JPEG", ["decode", "pa.sad", "-o", "x.jpg"]),
        (
            "PNG header declaring 65535x1525 (no pixels)",
            ["encode", "grey-65535x1525.png", "-o", "g.sad"],
        ),
        ("self-looping symlink as input", ["encode", "loop.png", "-o", "l.sad"]),
        ("empty output name", [*enc, ""]),
        ("output name of 300 bytes", [*enc, "x" * 296 + ".sad"]),
        ("decode --scale 1e308", ["decode", "existing.sad", "-o", "x.png", "--scale", "1e308"]),
        ("decode into a FIFO (a reader drains it)", ["decode", "existing.sad", "-o", "fifo.png"]),
        ("info of /dev/zero", ["info", "/dev/zero"]),
        ("decode a .sad with bytes appended", ["decode", "tail.sad", "-o", "x.png"]),
        (
            "decode a 734-byte .sad whose render costs too much (400 sites, K=32, 3900x3900)",
            ["decode", "ramp.sad", "-o", "x.png"],
        ),
        (
            "... a 256x256 region of it",
            ["decode", "ramp.sad", "-o", "x.png", "--region", "1822,1822,256,256"],
        ),
        ("decode --region outside the output", [*dec, "--region", "30,20,20,20"]),
        ("decode --region of zero width", [*dec, "--region", "0,0,0,8"]),
        ("decode --region not four numbers", [*dec, "--region", "1,2,3"]),
    ]


def damaged_files(d: str) -> None:
    """Broken .sad files made from the encode of photo.png (existing.sad by then)."""
    with open(os.path.join(d, "existing.sad"), "rb") as f:
        good = f.read()
    flip = bytearray(good)
    flip[len(good) // 2] ^= 0x04
    big = bytearray(good)
    struct.pack_into("<HHB", big, 6, 16384, 16384, 3)  # width, height, channels
    big[11] = 32  # K
    struct.pack_into("<I", big, 47, zlib.crc32(bytes(big[:47])))
    tail = good + b"\0" * 1000
    for name, data in (
        ("trunc.sad", good[:-9]),
        ("flip.sad", flip),
        ("big.sad", big),
        ("tail.sad", tail),
    ):
        with open(os.path.join(d, name), "wb") as f:
            f.write(bytes(data))


def run(d: str, argv: list[str]) -> tuple[str, int, str]:
    prefix = []
    if "readonly/" in " ".join(argv) and os.geteuid() == 0 and shutil.which("setpriv"):
        prefix = ["setpriv", "--reuid=65534", "--regid=65534", "--clear-groups"]
    drain = None
    if "fifo.png" in argv:  # a reader for the FIFO, as a pipeline would have
        drain = subprocess.Popen(["cat", os.path.join(d, "fifo.png")], stdout=subprocess.DEVNULL)
    res = subprocess.run([*prefix, SAD, *argv], cwd=d, capture_output=True, text=True)
    if drain is not None:
        drain.wait(timeout=60)
    lines = [ln.split("\r")[-1].strip() for ln in res.stderr.splitlines()]
    lines = [ln for ln in lines if not re.search(r"\d+/\d+ \[", ln)]  # progress bars
    # and progress as plain lines (stderr is not a terminal): "fit: 10/20 iterations, PSNR"
    lines = [ln for ln in lines if not re.match(r"[a-z_]+: (\d+/\d+ iterations, )?PSNR ", ln)]
    shown = " ".join(prefix[:1] + ["sad", *argv]) if prefix else shlex.join(["sad", *argv])
    return shown, res.returncode, "<br>".join(ln for ln in lines if ln)


def table(rows: list[tuple[str, str, int, str]], code: str = "") -> str:
    out = [
        "## Bad inputs and what `sad` says (`bench/bad_inputs.py`)",
        "",
        "Each command ran in a directory of generated inputs; stderr is shown as printed "
        "(progress bars removed). Exit 0 is success, 1 a refused input, 2 a usage error. "
        f"`python -m bench.bad_inputs`, code {code or 'not recorded'}.",
        "",
        "| case | command | exit | stderr |",
        "|---|---|---:|---|",
    ]
    for what, cmd, code, err in rows:
        cells = [what, f"`{cmd}`", str(code), err.replace("|", "\\|")]
        out.append("| " + " | ".join(cells) + " |")
    return "\n".join(out)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--report", default=os.path.join(ROOT, "docs", "robustness.md"))
    ap.add_argument("--no-report", action="store_true", help="print only")
    args = ap.parse_args(argv)
    code = code_label({k: str(v) for k, v in provenance().items()})
    rows = []
    with tempfile.TemporaryDirectory() as d:
        make_inputs(d)
        for what, cmd in commands():
            if cmd[0] == "decode" and cmd[1] in ("trunc.sad", "flip.sad", "big.sad"):
                if not os.path.exists(os.path.join(d, cmd[1])):
                    damaged_files(d)
            rows.append((what, *run(d, cmd)))
            print(f"{rows[-1][2]:3d}  {rows[-1][1]}\n     {rows[-1][3]}", file=sys.stderr)
    text = table(rows, code)
    print(text)
    if not args.no_report:
        replace_section(args.report, "bad-inputs", text)
    return 0


if __name__ == "__main__":
    sys.exit(main())
