"""The top-K approximation inside the encoder: K, injection and the refresh stencil.

    python -m bench.topk_fit [--bpp 1.0] [--names kodim01,kodim05] [--images DIR]
    python -m bench.topk_fit --report-only

Each variant changes one setting of the fit from the step-1 refresh (K = 8, 4 random
sites injected per refresh pass, 4-neighbour stencil, a refresh every 6 iterations: the
GPU's default; the CPU's is an exact rebuild every 12, the last row) and encodes full-size
Kodak images under the same budget. Reported per image: the decoded file's PSNR
and size (the RD effect; the decoder's map is exact, so only the fit differs), encode time,
and how exact the map the fit kept was after its last refresh before the geometry froze
(70% of the run; the map was last rebuilt exactly after the last densify/prune round at
60%, then kept by step-1 refresh passes while the sites moved): recall@K and top-1
agreement against the brute-force top-K of the sites it was refreshed for. One seed;
timings are single runs on a shared machine. Images come from --images DIR (default: the
Kodak set in ../shared/data/kodak). Writes bench/results/topk-fit.csv and generates
bench/results/topk-fit.md from it.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import numpy as np
from PIL import Image

from bench.benchlib import (
    Recorder,
    image_paths,
    output_args,
    psnr_rgb,
    settings_of,
    simple_report,
    write_report,
)
from bench.topk_recall import recall

FIELDS = ["image", "variant", "sites", "bpp", "psnr", "encode_s", "recall", "top1"]
COLUMNS = [
    ("image", "image"),
    ("variant", "variant"),
    ("sites", "sites"),
    ("bpp", "bpp"),
    ("psnr", "PSNR dB"),
    ("encode_s", "encode s"),
    ("recall", "map recall@K"),
    ("top1", "map top-1"),
]

# (label, FitConfig overrides)
# The GPU path (run here on the CPU): the map kept by step-1 jump-flooding passes.
STEP1 = {"kernels": "gpu"}
VARIANTS = [
    ("step-1 refresh: K = 8, inject 4, 4-stencil", STEP1),
    ("K = 4", {**STEP1, "k": 4}),
    ("K = 16", {**STEP1, "k": 16}),
    ("no injection", {**STEP1, "inject": 0}),
    ("8-stencil refresh", {**STEP1, "refresh_stencil": 8}),
    ("exact rebuild every 12 iterations (CPU default)", {}),
]


def map_recall(ids: np.ndarray, params: np.ndarray, k: int) -> tuple[float, float]:
    """recall@K and top-1 of a map against the brute-force top-K of these sites."""
    import taichi as ti

    from sadcodec.kernels import table as ktable
    from sadcodec.kernels.common import TABLE_COLS
    from sadcodec.topk import TopKMap

    h, w = ids.shape[:2]
    n, cols = params.shape
    p = ti.ndarray(ti.f32, shape=(n, cols))
    p.from_numpy(np.ascontiguousarray(params, dtype=np.float32))
    tab = ti.ndarray(ti.f32, shape=(n, TABLE_COLS))
    ktable.prepare(p, tab, n)
    ref = TopKMap(h, w, k)
    ref.exact(tab, n, 1.0 / max(w, h))
    return recall(ids, ref.to_numpy())


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--bpp", type=float, default=1.0)
    ap.add_argument("--images", type=Path, default=None, help="image folder (default: Kodak)")
    ap.add_argument("--names", default="kodim01,kodim05", help="comma list of image stems")
    ap.add_argument("--variants", default=None, help="comma list of variant numbers (0-based)")
    output_args(ap, "topk-fit")
    args = ap.parse_args(argv)
    render = simple_report(
        "The top-K approximation inside the encoder",
        "bench.topk_fit",
        args.out_csv,
        COLUMNS,
        "Each variant changes one setting of the fit's top-K map (see bench/topk_fit.py); "
        "PSNR and size of the decoded file, encode time (one run), and recall@K / top-1 of "
        "the map the fit kept at the freeze against the brute-force top-K.",
    )
    if args.report_only:
        return write_report(args, render)
    paths = image_paths(args.images, names=args.names)

    import sadcodec
    from sadcodec.fit import MapSnapshot, fit_to_budget
    from sadcodec.settings import encode_settings

    sadcodec.init_backend("cpu")
    chosen = VARIANTS
    if args.variants:
        chosen = [VARIANTS[int(i)] for i in args.variants.split(",")]
    rec = Recorder(args.out_csv, FIELDS, settings_of(args))
    for path in paths:
        name = path.stem
        img = np.asarray(Image.open(path).convert("RGB"))
        h, w, c = img.shape
        for label, over in chosen:
            s = encode_settings(w, h, c, args.bpp)
            cfg = s.fit
            for key, value in over.items():
                setattr(cfg, key, value)
            snap = MapSnapshot()
            t0 = time.perf_counter()
            res = fit_to_budget(
                img.astype(np.float32) / 255, s.rate_target(), s.spec, cfg, hooks=snap
            )
            secs = time.perf_counter() - t0
            psnr = psnr_rgb(sadcodec.decode(res.data), img)
            ids, params = snap.ids, snap.sites
            rec_k, top1 = map_recall(ids, params, cfg.k)
            row = rec.add(
                {
                    "image": name,
                    "variant": label,
                    "sites": len(res.params),
                    "bpp": f"{8 * len(res.data) / (w * h):.4f}",
                    "psnr": f"{psnr:.2f}",
                    "encode_s": f"{secs:.1f}",
                    "recall": f"{rec_k:.5f}",
                    "top1": f"{top1:.5f}",
                }
            )
            print(" | ".join(str(row[k]) for k in FIELDS), file=sys.stderr, flush=True)
    return write_report(args, render)


if __name__ == "__main__":
    sys.exit(main())
