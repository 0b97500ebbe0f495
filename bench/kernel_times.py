"""Per-kernel times on one Kodak-sized scene: the numbers behind the encoder's stage
breakdown, measured in one process so they compare as ratios.

    python bench/kernel_times.py --image ../shared/data/kodak/kodim01.png --threads 2

Sites come from the encoder's own initialisation (9000 sites, about what 1 bpp holds),
or with --sites-from from a .sad file of the same image (fitted sites: softer, more
overlapping blends than the initial ones); each kernel runs --repeats times after a
warm-up and the median is reported. Writes a markdown table with --out.
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


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--image", type=Path, default=Path("../shared/data/kodak/kodim01.png"))
    ap.add_argument("--sites", type=int, default=9000)
    ap.add_argument("--sites-from", type=Path, default=None, help="a .sad file of --image")
    ap.add_argument("--threads", type=int, default=None)
    ap.add_argument("--repeats", type=int, default=7)
    ap.add_argument("--arch", default="cpu", help="cpu, cuda or auto")
    ap.add_argument("--out", type=Path, default=None)
    args = ap.parse_args()

    from sadcodec.backend import init_backend

    arch = init_backend(args.arch, args.threads)
    import taichi as ti

    from kernels import fit as kfit
    from kernels import render as krender
    from sadcodec import quantize
    from sadcodec.colour_ls import ColourNormal
    from sadcodec.fit import FitConfig, Fitter
    from sadcodec.init import init_sites
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
        return lambda: kfit.forward_backward(
            lanes, f.tab, f.params, f.target, grad, f.loss, f.s_inv, k, c, banded, stride
        )

    wts = np.empty((h, w, k), np.float32)
    kfit.blend_weights(f.lanes(), f.tab, f.params, wts, f.s_inv, k, c)
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
            lambda: kfit.colour_grad(f.lanes(), wts, f.params, f.target, f.grad, f.loss, k, c, 1),
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
    threads = args.threads or "all"
    lines = [
        f"{args.image.name} ({w}x{h}), {n} {origin}, K = {k}, backend {arch}, "
        f"threads: {threads}; "
        f"median of {args.repeats} runs after a warm-up.",
        "",
        "| kernel | ms |",
        "|---|---|",
    ]
    for name, fn in rows:
        lines.append(f"| {name} | {median_ms(fn, args.repeats):.1f} |")
        print(lines[-1], flush=True)
    print_and_write(lines, args.out)


if __name__ == "__main__":
    main()
