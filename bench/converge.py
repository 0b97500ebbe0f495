"""Quality against iterations: how far the default fit is from convergence (issue 4 asks
for the default to land within 0.2 dB of what 4x the iterations reach).

    python bench/converge.py --images ../shared/data/kodak --limit 2 --iterations 200,400,800,3200

Prints a markdown table (image, iterations, encode s, PSNR of the decoded file, bpp) and
writes it with --out.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import imageio.v3 as iio
import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench.benchlib import print_and_write  # noqa: E402


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--images", type=Path, default=Path("../shared/data/kodak"))
    ap.add_argument("--names", default=None, help="comma list of image stems (else --limit)")
    ap.add_argument("--limit", type=int, default=1)
    ap.add_argument("--bpp", type=float, default=1.0)
    ap.add_argument("--iterations", default="200,400,800,3200")
    ap.add_argument("--out", type=Path, default=None)
    args = ap.parse_args()

    import sadcodec

    files = sorted(args.images.glob("*.png"))
    if args.names:
        files = [f for f in files if f.stem in args.names.split(",")]
    else:
        files = files[: args.limit]
    lines = ["| image | iterations | encode s | PSNR | bpp |", "|---|---|---|---|---|"]
    for f in files:
        img = iio.imread(f)
        h, w = img.shape[:2]
        for its in [int(v) for v in args.iterations.split(",")]:
            t0 = time.perf_counter()
            data = sadcodec.encode(img, args.bpp, iterations=its)
            sec = time.perf_counter() - t0
            d = sadcodec.decode(data).astype(np.float64) - img
            psnr = 10 * np.log10(255.0**2 / np.mean(d * d))
            lines.append(
                f"| {f.stem} | {its} | {sec:.1f} | {psnr:.2f} | {8 * len(data) / (w * h):.3f} |"
            )
            print(lines[-1], flush=True)
    print_and_write(lines, args.out)


if __name__ == "__main__":
    main()
