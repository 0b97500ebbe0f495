"""How exact and how fast are the decoder's top-K map builds on real files? (SAD.md
section 2; the SAD paper never measured it.)

    python -m bench.topk_recall FILE.sad [FILE.sad ...]
    python -m bench.topk_recall --report-only

For each file, the exact top-K (every site scored at every pixel) is the reference. Each
build variant is timed (median of --repeats) and measured against it: recall@K (share of
the exact K best the map holds), top-1 agreement, and the PSNR of the 8-bit render from
the map against the 8-bit render from the exact top-K (inf = identical pixels), plus the
share of pixels that differ at all. The tiled builds are exact by construction (tile
culling with conservative bounds), so for them the table checks that claim and times them.
Writes bench/results/topk-recall.csv and generates bench/results/topk-recall.md from it.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import numpy as np

from bench.benchlib import Recorder, output_args, settings_of, simple_report, write_report

FIELDS = ["file", "sites", "map", "build_ms", "recall", "top1", "psnr_vs_exact", "px_differing"]
COLUMNS = [
    ("file", "file"),
    ("sites", "sites"),
    ("map", "map"),
    ("build_ms", "build ms"),
    ("recall", "recall@K"),
    ("top1", "top-1"),
    ("psnr_vs_exact", "PSNR vs exact"),
    ("px_differing", "px differing"),
]

# (label, method, keyword arguments): the decoder's builds and variants of them.
VARIANTS = [
    ("tiled exact, levels 256/128/64/32/16/8 on Kodak (CPU fits' rebuilds)", "build_tiled", {}),
    (
        "tiled exact, tiles 512/128/32/8 (the levels until 2026-12-02)",
        "build_tiled",
        {"sizes": (512, 128, 32, 8)},
    ),
    ("tiled exact, tiles 128/32/8", "build_tiled", {"sizes": (128, 32, 8)}),
    ("tiled exact, tiles 64/16/4", "build_tiled", {"sizes": (64, 16, 4)}),
    ("tiled exact, tiles 128/32/8/4", "build_tiled", {"sizes": (128, 32, 8, 4)}),
    ("tiled exact, tiles 256/64/16", "build_tiled", {"sizes": (256, 64, 16)}),
    ("JFA: halving from S/2, 8-stencil, +1 step-1, no injection (CUDA decoder)", "build", {}),
    ("JFA before 2026-11-25: +2 step-1, inject 4", "build", {"inject": 4, "extra_passes": 2}),
    ("JFA inject 4", "build", {"inject": 4}),
    ("JFA +0 extra step-1 passes", "build", {"extra_passes": 0}),
    ("JFA +2 extra step-1 passes", "build", {"extra_passes": 2}),
    ("JFA halving from 128", "build", {"first_step": 128}),
    ("JFA halving from 64", "build", {"first_step": 64}),
    ("JFA 4-stencil", "build", {"stencil": 4}),
]


def recall(ids: np.ndarray, ref: np.ndarray) -> tuple[float, float]:
    """recall@K and top-1 agreement of map ids against the exact map ref (both H, W, K)."""
    k = ids.shape[-1]
    a = ids.reshape(-1, k)
    b = ref.reshape(-1, k)
    hit = (a[:, :, None] == b[:, None, :]).any(axis=1) & (b >= 0)
    return float(hit.sum() / (b >= 0).sum()), float((a[:, 0] == b[:, 0]).mean())


def against(img: np.ndarray, ref: np.ndarray) -> tuple[str, float]:
    """PSNR of a render against the exact render, and the share of pixels that differ."""
    img = img.astype(np.float64)
    mse = float(np.mean((img - ref) ** 2))
    psnr = "inf" if mse == 0 else f"{10 * np.log10(255.0**2 / mse):.1f}"
    return psnr, float((np.abs(img - ref).max(axis=2) > 0).mean())


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("files", nargs="*", type=Path, help=".sad files (Kodak images, say)")
    ap.add_argument("--threads", type=int, default=None)
    ap.add_argument("--repeats", type=int, default=3)
    output_args(ap, "topk-recall")
    args = ap.parse_args(argv)
    render_report = simple_report(
        "Top-K map builds against the exact top-K",
        "bench.topk_recall",
        args.out_csv,
        COLUMNS,
        "Build times are medians of `repeats` (settings) after one warm-up; recall@K and "
        "top-1 against the brute-force map; PSNR of the 8-bit render from the map against the "
        "render from the exact map (inf: identical). The CPU decoder row has no map: its time "
        "includes the blend.",
    )
    if args.report_only:
        return write_report(args, render_report)
    if not args.files:
        ap.error("give one or more .sad files (or --report-only)")

    from sadcodec.backend import init_backend

    init_backend("cpu", args.threads)
    import taichi as ti

    from sadcodec import decoder
    from sadcodec.kernels import render as krender
    from sadcodec.kernels import table as ktable
    from sadcodec.kernels.common import TABLE_COLS
    from sadcodec.topk import TopKMap, cull_tiles

    rec = Recorder(args.out_csv, FIELDS, settings_of(args))

    def add(*values) -> None:
        row = rec.add(dict(zip(FIELDS, values, strict=True)))
        print(" | ".join(str(row[k]) for k in FIELDS), file=sys.stderr, flush=True)

    for path in args.files:
        hdr, params = decoder.parse(path.read_bytes())
        n, cols = params.shape
        c = cols - 6
        w, h, k = hdr.width, hdr.height, hdr.k
        s_inv = 1.0 / max(w, h)
        p = ti.ndarray(ti.f32, shape=(n, cols))
        p.from_numpy(params.astype(np.float32))
        tab = ti.ndarray(ti.f32, shape=(n, TABLE_COLS))
        ktable.prepare(p, tab, n)
        out = ti.ndarray(ti.u8, shape=(h, w, c))

        def render(m: TopKMap, tab=tab, p=p, out=out, s_inv=s_inv, k=k, c=c) -> np.ndarray:
            krender.render(m.cur, tab, p, out, 1.0, 1.0, s_inv, k, c, 0)
            return out.to_numpy()

        t0 = time.perf_counter()
        ref_map = TopKMap(h, w, k)
        ref_map.exact(tab, n, s_inv)
        ti.sync()
        t_exact = time.perf_counter() - t0
        ref_ids = ref_map.to_numpy()
        ref_img = render(ref_map).astype(np.float64)
        add(path.name, n, "exact (brute force)", f"{1000 * t_exact:.0f}", 1, 1, "inf", 0)
        for label, method, kw in VARIANTS:
            times = []
            for _ in range(args.repeats + 1):
                m = TopKMap(h, w, k)
                t0 = time.perf_counter()
                ok = getattr(m, method)(tab, n, s_inv, **kw)
                assert ok is not False, f"{label} declined to build"
                ti.sync()
                times.append(time.perf_counter() - t0)
            rec_k, top1 = recall(m.to_numpy(), ref_ids)
            psnr, differ = against(render(m), ref_img)
            ms = 1000 * float(np.median(times[1:]))
            add(
                path.name,
                n,
                label,
                f"{ms:.0f}",
                f"{rec_k:.5f}",
                f"{top1:.5f}",
                psnr,
                f"{100 * differ:.3f}%",
            )
        # The CPU decoder: culled lists, then each pixel's top-K found and blended in one
        # kernel (no map): its time includes the blend, which the map rows above exclude.
        times = []
        for _ in range(args.repeats + 1):
            t0 = time.perf_counter()
            tiles = cull_tiles(tab, n, s_inv, w, h, k)
            assert tiles is not None, "culling declined"
            krender.render_tiled(out, *tiles.lists(), tab, p, *tiles.geometry(), k, c, 0)
            ti.sync()
            times.append(time.perf_counter() - t0)
        psnr, differ = against(out.to_numpy(), ref_img)
        ms = 1000 * float(np.median(times[1:]))
        label = (
            "CPU decoder: cull, then top-K and blend in one kernel "
            "(no map; time includes the blend)"
        )
        add(path.name, n, label, f"{ms:.0f}", "-", "-", psnr, f"{100 * differ:.3f}%")
    return write_report(args, render_report)


if __name__ == "__main__":
    sys.exit(main())
