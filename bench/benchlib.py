"""Helpers shared by the Kodak benchmarks: kodak.py (one rate, sad vs JPEG) and rd.py
(rate-distortion curves, sad vs JPEG, WebP and AVIF).

Both scripts must measure the same way (budget, quality search, PSNR, timing, facts), so the
code that does it lives here once. Import it as ``bench.benchlib`` with the repository root on
``sys.path`` (the scripts put it there), which also makes ``import sadcodec`` find this checkout.
"""

from __future__ import annotations

import csv
import io
import math
import os
import platform
import shlex
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image


def budget_bytes(bpp: float, width: int, height: int) -> int:
    """The whole-file byte budget of an image at a target rate: floor(bpp * W * H / 8)."""
    return math.floor(bpp * width * height / 8)


def psnr_rgb(a: np.ndarray, b: np.ndarray) -> float:
    """PSNR over all pixels and the 3 colour channels of two uint8 images."""
    d = a[..., :3].astype(np.float64) - b[..., :3].astype(np.float64)
    mse = float(np.mean(d * d))
    return math.inf if mse == 0 else 10 * math.log10(255.0**2 / mse)


def timed(fn: Callable[[], Any], repeats: int = 1) -> tuple[Any, float]:
    """Call fn `repeats` times; return (last result, median seconds)."""
    times, out = [], None
    for _ in range(max(1, repeats)):
        t0 = time.perf_counter()
        out = fn()
        times.append(time.perf_counter() - t0)
    return out, statistics.median(times)


def best_quality(encode: Callable[[int], bytes], budget: int, lo: int, hi: int) -> tuple[int, bool]:
    """Highest quality in lo..hi whose encoded size fits the budget, by binary search.

    Returns (quality, fits). Sizes are assumed to grow with quality (true of libjpeg, libwebp
    and libavif up to rare one-step wobbles). When even `lo` is over budget it returns
    (lo, False) so the caller still records a file, flagged as over budget, never a silent gap.
    """
    best = None
    while lo <= hi:
        q = (lo + hi) // 2
        if len(encode(q)) <= budget:
            best, lo = q, q + 1
        else:
            hi = q - 1
    return (best, True) if best is not None else (lo, False)


@dataclass(frozen=True)
class PillowCodec:
    """A Pillow still-image codec searched over an integer quality range."""

    name: str
    format: str
    qmin: int
    qmax: int
    options: dict[str, Any] = field(default_factory=dict)

    def encode(self, img: np.ndarray, quality: int) -> bytes:
        buf = io.BytesIO()
        Image.fromarray(img).save(buf, self.format, quality=quality, **self.options)
        return buf.getvalue()

    def settings(self) -> str:
        """The options as one CSV field, so --resume never mixes differently encoded rows."""
        return " ".join(f"{k}={v}" for k, v in sorted(self.options.items()))


def pillow_codec(name: str, avif_speed: int = 6) -> PillowCodec:
    """JPEG (libjpeg-turbo, 4:2:0, optimized Huffman), lossy WebP at its slowest, best method,
    and AVIF (libavif, 4:2:0) at `avif_speed` (Pillow's default 6; 0 is ~35x slower)."""
    if name == "jpeg":
        return PillowCodec("jpeg", "JPEG", 1, 100, {"subsampling": 2, "optimize": True})
    if name == "webp":
        return PillowCodec("webp", "WEBP", 0, 100, {"lossless": False, "method": 6})
    if name == "avif":
        return PillowCodec("avif", "AVIF", 0, 100, {"subsampling": "4:2:0", "speed": avif_speed})
    raise ValueError(f"no Pillow codec {name!r}")


def pillow_decode(data: bytes) -> np.ndarray:
    with Image.open(io.BytesIO(data)) as im:
        im.load()
        return np.asarray(im.convert("RGB"))


def run_pillow(img: np.ndarray, budget: int, codec: PillowCodec, repeats: int = 3) -> dict:
    """Encode at the highest quality that fits the budget; time encode and decode (medians)."""
    q, _ = best_quality(lambda q: codec.encode(img, q), budget, codec.qmin, codec.qmax)
    data, enc_s = timed(lambda: codec.encode(img, q), repeats)
    out, dec_s = timed(lambda: pillow_decode(data), repeats)
    return {
        "data": data,
        "decoded": out,
        "encode_s": enc_s,
        "decode_s": dec_s,
        "sites": "",
        "quality": q,
    }


def load_sadcodec():
    """Import sadcodec only when a sad cell runs: importing it starts Taichi, slow to load."""
    import sadcodec

    return sadcodec


def sad_kwargs(args) -> dict:
    """The sadcodec.encode options given on the command line (effort/iterations only if set)."""
    kw = {"seed": args.seed, "arch": args.arch, "threads": args.threads}
    if args.effort is not None:
        kw["effort"] = args.effort
    if args.iterations is not None:
        kw["iterations"] = args.iterations
    return kw


def run_sad(img: np.ndarray, bpp: float, args) -> dict:
    """One sadcodec encode (they are long) and the median of --repeats-decode decodes."""
    sadcodec = load_sadcodec()
    kw = sad_kwargs(args)
    data, enc_s = timed(lambda: sadcodec.encode(img, bpp=bpp, **kw))
    out, dec_s = timed(lambda: sadcodec.decode(data, arch=args.arch), args.repeats_decode)
    return {
        "data": data,
        "decoded": out,
        "encode_s": enc_s,
        "decode_s": dec_s,
        "sites": sadcodec.read_info(data)["sites"],
        "quality": "",
    }


def read_csv(path: Path) -> list[dict]:
    if not path.exists():
        return []
    with open(path, newline="") as f:
        return list(csv.DictReader(f))


def atomic_write(path: Path, text: str) -> None:
    """Write via a temporary file and rename, so an interrupted run never leaves half a file."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "w", newline="") as f:
            f.write(text)
        os.replace(tmp, path)
    except BaseException:
        os.unlink(tmp)
        raise


def write_csv(path: Path, rows: list[dict], fields: list[str]) -> None:
    buf = io.StringIO()
    w = csv.DictWriter(buf, fieldnames=fields, lineterminator="\n")
    w.writeheader()
    w.writerows(rows)
    atomic_write(path, buf.getvalue())


def command_line() -> str:
    """The command as typed, for the report header, so a result can be reproduced."""
    return " ".join(shlex.quote(a) for a in [Path(sys.executable).name] + sys.argv)


def machine_facts(with_taichi: bool, extra: Iterable[str] = ()) -> list[str]:
    """CPU, OS and library versions; `extra` lines (other libraries) are appended as given."""
    import PIL

    u = platform.uname()
    facts = [
        f"CPU cores (os.cpu_count): {os.cpu_count()}",
        f"processor: {platform.processor() or u.machine}",
        f"system: {u.system} {u.release} {u.machine}",
        f"Python {platform.python_version()}, numpy {np.__version__}, Pillow {PIL.__version__}",
    ]
    if with_taichi:
        import taichi

        facts[-1] += f", taichi {'.'.join(map(str, taichi.__version__))}"
    return facts + list(extra)


def fmt(x: str | float | None, nd: int) -> str:
    return "" if x in ("", None) else f"{float(x):.{nd}f}"


def print_and_write(lines: list[str], out: Path | None) -> None:
    """Print a benchmark's report and, given a path, write it there (atomically)."""
    text = "\n".join(lines)
    print(text)
    if out:
        atomic_write(Path(out), text + "\n")


def run_process(cmd: list[str]) -> tuple[float, float, str]:
    """(wall seconds, peak RSS MiB, stdout + stderr) of one child process (os.wait4, so the
    RSS is the child's own); raises if it fails."""
    t0 = time.perf_counter()
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    _, status, usage = os.wait4(proc.pid, 0)
    wall = time.perf_counter() - t0
    out, err = proc.stdout.read(), proc.stderr.read()
    if os.waitstatus_to_exitcode(status) != 0:
        raise RuntimeError(f"{cmd}: {err.strip()[-500:]}")
    return wall, usage.ru_maxrss / 1024.0, out + err
