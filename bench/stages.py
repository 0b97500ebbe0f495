"""Encode time by stage: where the encoder spends its time, so the next optimisation is
chosen from data (issue 4).

    python -m bench.stages --limit 2 --bpp 1.0
    python -m bench.stages --report-only

Images come from --images DIR (default: the Kodak set in ../shared/data/kodak). Writes one
row per image (seconds per stage, iterations, PSNR, bpp) to bench/results/stages.csv and
generates bench/results/stages.md from it. The first image of a process also pays kernel
compilation (or offline-cache loading), reported as "start-up"; later images do not.
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
    report_head,
    settings_of,
    table,
    write_report,
)

STAGES = ["init", "prepare", "topk", "forward_backward", "optimizer", "densify_prune", "rate_fit"]
FIELDS = ["image", "total_s", "iterations", *STAGES, "other", "psnr", "bpp", "backend", "startup_s"]
COLUMNS = [
    ("image", "image"),
    ("total_s", "total s"),
    ("iterations", "iters"),
    *[(s, s) for s in STAGES],
    ("other", "other"),
    ("psnr", "PSNR"),
    ("bpp", "bpp"),
]


def psnr(a: np.ndarray, b: np.ndarray) -> float:
    d = a.astype(np.float64) - b.astype(np.float64)
    return float(10 * np.log10(255.0**2 / np.mean(d * d)))


def markdown(rows: list[dict], csv_path: Path) -> str:
    starts = sorted({(r["backend"], r["startup_s"]) for r in rows})
    runs = [f"Backend: {b}. Start-up (import, Taichi init): {s} s" for b, s in starts]
    about = "; ".join(runs) + (
        "; the first encode of a run also loads or compiles the kernels. Seconds per stage."
    )
    lines = report_head("Encode time by stage", "bench.stages", csv_path, rows, about)
    return "\n".join([*lines, "", *table(rows, COLUMNS)]) + "\n"


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--images", type=Path, default=None, help="image folder (default: Kodak)")
    ap.add_argument("--limit", type=int, default=2)
    ap.add_argument("--bpp", type=float, default=1.0)
    ap.add_argument("--iterations", type=int, default=None)
    ap.add_argument("--effort", type=int, default=None)
    ap.add_argument("--threads", type=int, default=None)
    ap.add_argument("--arch", default="cpu", help="cpu, cuda or auto")
    output_args(ap, "stages")
    args = ap.parse_args(argv)
    if args.report_only:
        return write_report(args, lambda rows: markdown(rows, args.out_csv))
    files = image_paths(args.images, args.limit)

    t0 = time.perf_counter()
    import sadcodec
    from sadcodec.backend import init_backend
    from sadcodec.encoder import as_image, encode_image
    from sadcodec.fit import FitHooks
    from sadcodec.settings import encode_settings

    arch = init_backend(args.arch, args.threads)
    startup = time.perf_counter() - t0

    rec = Recorder(args.out_csv, FIELDS, settings_of(args))
    for f in files:
        img = iio.imread(f)
        t1 = time.perf_counter()
        img = as_image(img)
        s = encode_settings(
            img.shape[1], img.shape[0], img.shape[2], args.bpp,
            effort=args.effort, iterations=args.iterations,
        )
        # Exact stage times on a GPU too: a device sync after each stage.
        res = encode_image(img, s, hooks=FitHooks(sync_stages=True))
        data = res.data
        total = time.perf_counter() - t1
        out = sadcodec.decode(data)
        st = res.stage_seconds
        other = total - sum(st.get(s, 0.0) for s in STAGES)
        h, w = img.shape[:2]
        row = {
            "image": f.stem,
            "total_s": f"{total:.1f}",
            "iterations": res.iterations,
            **{s: f"{st.get(s, 0.0):.1f}" for s in STAGES},
            "other": f"{other:.1f}",
            "psnr": f"{psnr(out, img):.2f}",
            "bpp": f"{8 * len(data) / (w * h):.3f}",
            "backend": arch,
            "startup_s": f"{startup:.2f}",
        }
        rec.add(row)
        print(" | ".join(str(row[k]) for k, _ in COLUMNS), file=sys.stderr, flush=True)
    return write_report(args, lambda rows: markdown(rows, args.out_csv))


if __name__ == "__main__":
    sys.exit(main())
