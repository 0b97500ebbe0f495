"""The top-K approximation inside the encoder: K, injection and the refresh stencil.

    python bench/topk_fit.py [--bpp 1.0] [--images kodim01,kodim05] [--out FILE.md]

Each variant changes one setting of the fit from the step-1 refresh (K = 8, 4 random
sites injected per refresh pass, 4-neighbour stencil, a refresh every 6 iterations: the
GPU's default; the CPU's is an exact rebuild every 12, the last row) and encodes full-size
Kodak images under the same budget. Reported per image: the decoded file's PSNR
and size (the RD effect; the decoder's map is exact, so only the fit differs), encode time,
and how exact the map the fit kept was after its last refresh before the geometry froze
(70% of the run; the map was last rebuilt exactly after the last densify/prune round at
60%, then kept by step-1 refresh passes while the sites moved): recall@K and top-1
agreement against the brute-force top-K of the sites it was refreshed for. One seed;
timings are single runs on a shared machine.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import numpy as np
from PIL import Image

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench.benchlib import budget_bytes, command_line, print_and_write, psnr_rgb  # noqa: E402
from bench.topk_recall import recall  # noqa: E402

KODAK = Path(__file__).resolve().parent.parent.parent / "shared" / "data" / "kodak"

# (label, FitConfig overrides)
STEP1 = {"refresh_exact": False}
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

    from kernels import table as ktable
    from kernels.common import TABLE_COLS
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


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--bpp", type=float, default=1.0)
    ap.add_argument("--images", default="kodim01,kodim05")
    ap.add_argument("--variants", default=None, help="comma list of variant numbers (0-based)")
    ap.add_argument("--out", type=Path, default=None)
    args = ap.parse_args()

    import sadcodec
    from sadcodec import encoder
    from sadcodec.fit import FitConfig, fit_to_budget

    sadcodec.init_backend("cpu")
    chosen = VARIANTS
    if args.variants:
        chosen = [VARIANTS[int(i)] for i in args.variants.split(",")]
    lines = [
        f"`{command_line()}`",
        "",
        "| image | variant | sites | bpp | PSNR dB | encode s | map recall@K | map top-1 |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for name in args.images.split(","):
        img = np.asarray(Image.open(KODAK / f"{name}.png").convert("RGB"))
        h, w, c = img.shape
        spec = encoder.choose_spec(w, h, args.bpp)
        for label, over in chosen:
            cfg = FitConfig(iterations=encoder.effort_iterations(encoder.DEFAULT_EFFORT, args.bpp))
            for key, value in over.items():
                setattr(cfg, key, value)
            cfg.snapshot_map = True
            t0 = time.perf_counter()
            res = fit_to_budget(
                img.astype(np.float32) / 255,
                budget_bytes(args.bpp, w, h),
                encoder.make_writer(w, h, c, cfg.k, spec),
                spec,
                cfg,
                estimate=encoder.make_estimator(w, h, spec),
            )
            secs = time.perf_counter() - t0
            psnr = psnr_rgb(sadcodec.decode(res.data), img)
            ids, params = res.map_at_freeze
            rec, top1 = map_recall(ids, params, cfg.k)
            lines.append(
                f"| {name} | {label} | {len(res.params)} | {8 * len(res.data) / (w * h):.4f} | "
                f"{psnr:.2f} | {secs:.1f} | {rec:.5f} | {top1:.5f} |"
            )
            print(lines[-1], flush=True)
    print_and_write(lines, args.out)


if __name__ == "__main__":
    main()
