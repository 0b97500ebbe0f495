"""Quality against iterations: how far the default fit is from convergence (issue 4 asks
for the default to land within 0.2 dB of what 4x the iterations reach).

    python -m bench.converge --limit 2 --iterations 200,400,800,3200
    python -m bench.converge --names kodim01,kodim05 --iterations 1600,6400
    python -m bench.converge --report-only

Images come from --images DIR (default: the Kodak set in ../shared/data/kodak). Writes one
row per image and iteration count (encode s, PSNR of the decoded file, bpp) to
bench/results/converge.csv and generates bench/results/converge.md from it.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import imageio.v3 as iio
import numpy as np

from bench.benchlib import (
    Recorder,
    image_paths,
    output_args,
    settings_of,
    simple_report,
    write_report,
)

FIELDS = ["image", "iterations", "encode_s", "psnr", "bpp"]
COLUMNS = [
    ("image", "image"),
    ("iterations", "iterations"),
    ("encode_s", "encode s"),
    ("psnr", "PSNR"),
    ("bpp", "bpp"),
]


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--images", type=Path, default=None, help="image folder (default: Kodak)")
    ap.add_argument("--names", default=None, help="comma list of image stems (else --limit)")
    ap.add_argument("--limit", type=int, default=1)
    ap.add_argument("--bpp", type=float, default=1.0)
    ap.add_argument("--iterations", default="200,400,800,3200")
    output_args(ap, "converge")
    args = ap.parse_args(argv)
    render = simple_report(
        "Quality against iterations",
        "bench.converge",
        args.out_csv,
        COLUMNS,
        "PSNR (RGB, dB) of the decoded file; encode seconds are single runs.",
    )
    if args.report_only:
        return write_report(args, render)

    files = image_paths(args.images, args.limit, args.names)
    import sadcodec

    rec = Recorder(args.out_csv, FIELDS, settings_of(args))
    for f in files:
        img = iio.imread(f)
        h, w = img.shape[:2]
        for its in [int(v) for v in args.iterations.split(",")]:
            t0 = time.perf_counter()
            data = sadcodec.encode(img, args.bpp, iterations=its)
            sec = time.perf_counter() - t0
            d = sadcodec.decode(data).astype(np.float64) - img
            psnr = 10 * np.log10(255.0**2 / np.mean(d * d))
            row = rec.add(
                {
                    "image": f.stem,
                    "iterations": its,
                    "encode_s": f"{sec:.1f}",
                    "psnr": f"{psnr:.2f}",
                    "bpp": f"{8 * len(data) / (w * h):.3f}",
                }
            )
            print(" | ".join(str(row[k]) for k in FIELDS), file=sys.stderr, flush=True)
    return write_report(args, render)


if __name__ == "__main__":
    sys.exit(main())
