"""Encode time by stage: where the encoder spends its time, so the next optimisation is
chosen from data (issue 4).

    python bench/stages.py --images ../shared/data/kodak --limit 2 --bpp 1.0

Prints a markdown table (per image: seconds per stage, iterations, PSNR, bpp) and, with
--out, writes it to a file. The first image of a process also pays kernel compilation
(or offline-cache loading), reported as "start-up"; later images do not.
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

STAGES = ["init", "prepare", "topk", "forward_backward", "optimizer", "densify_prune", "rate_fit"]


def psnr(a: np.ndarray, b: np.ndarray) -> float:
    d = a.astype(np.float64) - b.astype(np.float64)
    return float(10 * np.log10(255.0**2 / np.mean(d * d)))


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--images", type=Path, default=Path("../shared/data/kodak"))
    ap.add_argument("--limit", type=int, default=2)
    ap.add_argument("--bpp", type=float, default=1.0)
    ap.add_argument("--iterations", type=int, default=None)
    ap.add_argument("--effort", type=int, default=None)
    ap.add_argument("--threads", type=int, default=None)
    ap.add_argument("--arch", default="cpu", help="cpu, cuda or auto")
    ap.add_argument("--out", type=Path, default=None)
    args = ap.parse_args()

    t0 = time.perf_counter()
    import sadcodec
    from sadcodec.backend import init_backend
    from sadcodec.encoder import encode_array

    arch = init_backend(args.arch, args.threads)
    startup = time.perf_counter() - t0

    files = sorted(args.images.glob("*.png"))[: args.limit]
    cols = ["image", "total s", "iters", *STAGES, "other", "PSNR", "bpp"]
    rows = []
    for f in files:
        img = iio.imread(f)
        t1 = time.perf_counter()
        data, res = encode_array(
            img, args.bpp, effort=args.effort, iterations=args.iterations, profile=True
        )
        total = time.perf_counter() - t1
        out = sadcodec.decode(data)
        st = res.stage_seconds
        other = total - sum(st.get(s, 0.0) for s in STAGES)
        h, w = img.shape[:2]
        rows.append(
            [f.stem, f"{total:.1f}", str(res.iterations)]
            + [f"{st.get(s, 0.0):.1f}" for s in STAGES]
            + [f"{other:.1f}", f"{psnr(out, img):.2f}", f"{8 * len(data) / (w * h):.3f}"]
        )
        print(" | ".join(rows[-1]), flush=True)
    lines = [
        f"Backend: {arch}. Start-up (import, Taichi init): {startup:.2f} s; the first "
        "encode also loads or compiles the kernels.",
        "",
        "| " + " | ".join(cols) + " |",
        "|" + "---|" * len(cols),
    ]
    lines += ["| " + " | ".join(r) + " |" for r in rows]
    print_and_write(lines, args.out)


if __name__ == "__main__":
    main()
