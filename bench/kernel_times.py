"""Per-kernel times on one Kodak-sized scene: the numbers behind the encoder's stage
breakdown, measured in one process so they compare as ratios.

    python -m bench.kernel_times --threads 2                # kodim01 of the Kodak folder
    python -m bench.kernel_times --image PNG --sites-from FILE.sad
    python -m bench.kernel_times --report-only

--image defaults to kodim01.png of the Kodak set in ../shared/data/kodak. Sites come from
the encoder's own initialisation (9000 sites, about what 1 bpp holds), or with --sites-from
from a .sad file of the same image (fitted sites: softer, more overlapping blends than the
initial ones); each kernel runs --repeats times after a warm-up and the median is
reported. Writes bench/results/kernel-times.csv and generates bench/results/kernel-times.md.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import imageio.v3 as iio
import numpy as np

from bench.benchlib import (
    KODAK,
    Recorder,
    kodak_image,
    output_args,
    report_head,
    settings_of,
    table,
    write_report,
)

FIELDS = ["kernel", "ms", "image", "size", "sites", "origin", "k", "backend", "threads"]


def markdown(rows: list[dict], csv_path: Path) -> str:
    runs = sorted(
        {
            (r["image"], r["size"], r["sites"], r["origin"], r["k"], r["backend"], r["threads"])
            for r in rows
        }
    )
    about = " ".join(
        f"{im} ({size}), {n} {origin}, K = {k}, backend {arch}, threads: {threads}."
        for im, size, n, origin, k, arch, threads in runs
    )
    about += " Median of `repeats` runs after a warm-up (settings)."
    lines = report_head("Kernel times", "bench.kernel_times", csv_path, rows, about)
    return "\n".join([*lines, "", *table(rows, [("kernel", "kernel"), ("ms", "ms")])]) + "\n"


def median_ms(fn, repeats: int) -> float:
    import taichi as ti

    fn()
    ti.sync()
    times = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        fn()
        ti.sync()
        times.append(time.perf_counter() - t0)
    return 1000 * float(np.median(times))


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--image", type=Path, default=KODAK / "kodim01.png")
    ap.add_argument("--sites", type=int, default=9000)
    ap.add_argument("--sites-from", type=Path, default=None, help="a .sad file of --image")
    ap.add_argument("--threads", type=int, default=None)
    ap.add_argument("--repeats", type=int, default=7)
    ap.add_argument("--arch", default="cpu", help="cpu, cuda or auto")
    output_args(ap, "kernel-times")
    args = ap.parse_args(argv)
    if args.report_only:
        return write_report(args, lambda rows: markdown(rows, args.out_csv))
    kodak_image(args.image)

    from sadcodec.backend import init_backend

    arch = init_backend(args.arch, args.threads)
    import taichi as ti

    from sadcodec import quantize
    from sadcodec.colour_ls import ColourNormal
    from sadcodec.fit import FitConfig, Fitter
    from sadcodec.init import init_sites
    from sadcodec.kernels import colour as kcolour
    from sadcodec.kernels import gradient as kgrad
    from sadcodec.kernels import render as krender
    from sadcodec.topk import TopKMap

    img = iio.imread(args.image)[..., :3].astype(np.float32) / 255.0
    h, w, c = img.shape
    if args.sites_from is not None:
        from sadcodec import decoder

        sites = decoder.parse(args.sites_from.read_bytes())[1].astype(np.float32)
        origin = f"sites from {args.sites_from.name}"
    else:
        sites = init_sites(img, args.sites, np.random.default_rng(0))
        origin = "initial sites"
    f = Fitter(img, len(sites) + 64, FitConfig())
    f.set_bounds(quantize.QuantSpec())
    f.set_sites(sites)
    f.full_build()
    n, k = f.n, f.cfg.k
    atomic_grad = ti.ndarray(ti.f32, shape=(1, f.cap, f.p))

    def fb(banded: bool, stride: int = 1, sorted_map: bool = False):
        # The CPU fit reads the slot-stable copy of the map (Fitter.lanes); a GPU the map.
        grad = f.grad if banded else atomic_grad
        lanes = f.map.cur if sorted_map or not banded else f.lanes()
        kern = kgrad.forward_backward_bands if banded else kgrad.forward_backward_atomic
        return lambda: kern(
            lanes, f.tab, f.params, f.target, grad, f.loss, f.s_inv, stride, 0, k, c
        )

    wts = np.empty((h, w, k), np.float32)
    kcolour.blend_weights(f.lanes(), f.tab, f.params, wts, f.s_inv, k, c)
    normal = ColourNormal(f.lanes(), wts, img, n)
    colours = f.params.to_numpy()[:n, 6:]

    def stable_copy():
        f.map.version += 1  # as after a refresh: the copy is remade
        f.lanes()

    def build():
        TopKMap(h, w, k).build(f.tab, n, f.s_inv)

    out = ti.ndarray(ti.u8, shape=(h, w, c))
    rows = [
        ("forward+backward, CPU bands (default)", fb(True)),
        ("forward+backward, CPU bands, checkerboard (the fit's early steps)", fb(True, 2)),
        ("forward+backward, CPU bands, map sorted by logit (not slot-stable)", fb(True, 1, True)),
        ("forward+backward, atomics (GPU path)", fb(False)),
        ("slot-stable copy of the map (CPU, after each refresh)", stable_copy),
        (
            "colour step, per-pixel kernel, CPU bands (the CPU's before)",
            lambda: kcolour.colour_grad_bands(
                f.lanes(), wts, f.params, f.target, f.grad, f.loss, k, c
            ),
        ),
        (
            "colour step, normal equations (frozen phase, CPU)",
            lambda: normal.loss_and_grad(colours),
        ),
        (
            "normal equations: build A, b (once a frozen phase)",
            lambda: ColourNormal(f.lanes(), wts, img, n),
        ),
        ("top-K refresh: one step-1 pass, 4-stencil", lambda: f.map.refresh(f.tab, n, f.s_inv)),
        ("site statistics (densify/prune)", lambda: f.site_stats(None)),
        ("top-K build from scratch, jump flooding (CUDA decoder)", build),
        (
            "render (decoder)",
            lambda: krender.render(f.map.cur, f.tab, f.params, out, 1.0, 1.0, f.s_inv, k, c, 0),
        ),
    ]
    if arch == "cpu":
        rows.insert(
            len(rows) - 1,
            (
                "top-K exact tiled build (CPU fits' rebuilds)",
                lambda: TopKMap(h, w, k).build_tiled(f.tab, n, f.s_inv),
            ),
        )
    rec = Recorder(args.out_csv, FIELDS, settings_of(args))
    for name, fn in rows:
        ms = median_ms(fn, args.repeats)
        rec.add(
            {
                "kernel": name,
                "ms": f"{ms:.1f}",
                "image": args.image.name,
                "size": f"{w}x{h}",
                "sites": n,
                "origin": origin,
                "k": k,
                "backend": arch,
                "threads": args.threads or "all",
            }
        )
        print(f"{name}: {ms:.1f} ms", file=sys.stderr, flush=True)
    return write_report(args, lambda rows: markdown(rows, args.out_csv))


if __name__ == "__main__":
    sys.exit(main())
