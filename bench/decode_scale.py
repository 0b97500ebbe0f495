"""Decode time and peak memory of large files, without encoding large images first.

    python -m bench.decode_scale FILE.sad --mp 2,8,24
    python -m bench.decode_scale --report-only

A large file is made as a mosaic of gx x gy copies of FILE's sites (a Kodak image encoded
at 1 bpp, say), each copy shifted by the image size (and jittered, see mosaic) and the
whole re-quantized and written as one .sad file: the site density and per-pixel work of
the original at 2, 8 or 24 megapixels (the bpp comes out lower than the original's, as
the copies' shape planes still repeat). (Encoding 24 MP on this 2-core CPU takes about an
hour; bench/scale.py does that end to end.) For each mosaic: a `sad decode` process to
PNG (wall time and peak RSS via os.wait4, the median of --repeats), and the in-process
decode once kernels are loaded (`sadcodec.decode` called --repeats + 1 times in this
process, the first dropped, median of the rest). Writes bench/results/decode-scale.csv and
generates bench/results/decode-scale.md from it.
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

from bench.benchlib import (
    Recorder,
    output_args,
    report_head,
    run_process,
    settings_of,
    table,
    write_report,
)

COLUMNS = [
    ("size", "size"),
    ("pixels", "pixels"),
    ("sites", "sites"),
    ("bpp", "bpp"),
    ("inprocess_s", "in-process decode s"),
    ("process_s", "`sad decode` process s"),
    ("x_bare", "process / bare ti.init"),
    ("rss_mib", "peak RSS MiB"),
]
FIELDS = [k for k, _ in COLUMNS] + ["source", "bare_ti_init_s"]


def markdown(rows: list[dict], csv_path: Path) -> str:
    srcs = "; ".join(sorted({r["source"] for r in rows}))
    bare = ", ".join(sorted({r["bare_ti_init_s"] for r in rows}))
    about = (
        f"Mosaics of {srcs}, CPU; bare `ti.init` process {bare} s (median of `repeats`, settings)."
    )
    lines = report_head("Decoding large files", "bench.decode_scale", csv_path, rows, about)
    return "\n".join([*lines, "", *table(rows, COLUMNS)]) + "\n"


def mosaic(data: bytes, gx: int, gy: int) -> bytes:
    from sadcodec import decoder, settings, writer

    hdr, params = decoder.parse(data)
    w, h = hdr.width * gx, hdr.height * gy
    rng = np.random.default_rng(0)
    step = 1.0 / ((1 << hdr.spec.col_bits) - 1)
    tiles = []
    for j in range(gy):
        for i in range(gx):
            p = params.copy()
            if tiles:
                # Copies jittered by up to half a pixel and one colour level, so the entropy
                # coder cannot just reference the first copy: bits per site stay realistic.
                p[:, :2] += rng.uniform(-0.5, 0.5, (len(p), 2)).astype(np.float32)
                p[:, 6:] += step * rng.integers(-1, 2, p[:, 6:].shape).astype(np.float32)
                p[:, 6:] = np.clip(p[:, 6:], 0.0, 1.0)
            p[:, 0] = np.clip(p[:, 0] + i * hdr.width, i * hdr.width, (i + 1) * hdr.width - 0.01)
            p[:, 1] = np.clip(p[:, 1] + j * hdr.height, j * hdr.height, (j + 1) * hdr.height - 0.01)
            tiles.append(p)
    spec = settings.choose_spec(w, h)
    return writer.make_writer(w, h, hdr.channels, hdr.k, spec)(np.concatenate(tiles))


def grid_for(mp: float, w: int, h: int) -> tuple[int, int]:
    t = mp * 1e6 / (w * h)
    gy = max(1, round(t**0.5))
    return max(1, round(t / gy)), gy


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("file", type=Path, nargs="?", help="a .sad file (a Kodak image, say)")
    ap.add_argument("--mp", default="2,8,24")
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--threads", type=int, default=None)
    output_args(ap, "decode-scale")
    args = ap.parse_args(argv)
    if args.report_only:
        return write_report(args, lambda rows: markdown(rows, args.out_csv))
    if args.file is None:
        ap.error("give a .sad file (or --report-only)")
    import sadcodec

    sadcodec.init_backend("cpu", args.threads)
    src = args.file.read_bytes()
    info = sadcodec.read_info(src)
    py = sys.executable
    bare = "import taichi as ti; ti.init(arch=ti.cpu, log_level=ti.ERROR)"
    bare_s = statistics.median(run_process([py, "-c", bare])[0] for _ in range(args.repeats))
    extra = ["--threads", str(args.threads)] if args.threads else []
    source = f"{args.file.name} ({info['width']}x{info['height']}, {info['sites']} sites)"
    rec = Recorder(args.out_csv, FIELDS, settings_of(args))
    with tempfile.TemporaryDirectory() as tmp:
        for mp in [float(v) for v in args.mp.split(",")]:
            gx, gy = grid_for(mp, info["width"], info["height"])
            data = mosaic(src, gx, gy)
            big = sadcodec.read_info(data)
            path = os.path.join(tmp, f"{mp:g}mp.sad")
            Path(path).write_bytes(data)
            times = []
            for _ in range(args.repeats + 1):
                t0 = time.perf_counter()
                sadcodec.decode(data)
                times.append(time.perf_counter() - t0)
            cmd = [py, "-m", "sadcodec", "decode", path, "-o", path[:-4] + ".png", "--quiet"]
            runs = [run_process(cmd + extra) for _ in range(args.repeats)]
            wall = statistics.median(r[0] for r in runs)
            rss = max(r[1] for r in runs)
            bpp = 8 * len(data) / (big["width"] * big["height"])
            values = [
                f"{mp:g} MP",
                f"{big['width']}x{big['height']}",
                big["sites"],
                f"{bpp:.3f}",
                f"{statistics.median(times[1:]):.2f}",
                f"{wall:.2f}",
                f"{wall / bare_s:.1f}x",
                f"{rss:.0f}",
                source,
                f"{bare_s:.2f}",
            ]
            rec.add(dict(zip(FIELDS, values, strict=True)))
            print(" | ".join(map(str, values)), file=sys.stderr, flush=True)
    return write_report(args, lambda rows: markdown(rows, args.out_csv))


if __name__ == "__main__":
    sys.exit(main())
