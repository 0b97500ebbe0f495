"""Fit a fixed number of sites to images, with no budget and no quantization (the SAD
paper's headline setting: 50,000 sites on Kodak, 46.0 dB in 2.2 s), and print PSNR
against time.

    python bench/fit_sites.py --images ../shared/data/kodak --sites 50000 \
        --iterations 2000 --arch cuda --out docs/fit-50k.md

Kernels are compiled (or loaded from the offline cache) by a short warm-up fit first, so
the times are the fit itself (initialisation included); start-up and warm-up are printed
separately. PSNR is RGB on the 8-bit scale, of the float render the last step saw.
"""

from __future__ import annotations

import argparse
import math
import time
from pathlib import Path

import imageio.v3 as iio
import numpy as np


def run_fit(
    img: np.ndarray, sites: int, iterations: int, every: int, seed: int, overrides: dict
) -> list[tuple[int, float, float]]:
    """(iteration, seconds since the start, PSNR) every ``every`` iterations."""
    import taichi as ti

    from sadcodec import quantize
    from sadcodec.fit import FitConfig, Fitter
    from sadcodec.init import init_sites

    cfg = FitConfig(iterations=iterations, seed=seed)
    for key, val in overrides.items():
        if key in cfg.lr:
            cfg.lr[key] = val
        else:
            setattr(cfg, key, type(getattr(cfg, key))(val))
    t0 = time.perf_counter()
    f = Fitter(img, sites, cfg)
    f.set_bounds(quantize.QuantSpec())
    f.set_sites(init_sites(img, sites, np.random.default_rng(seed)))
    f.full_build()
    ti.sync()
    rows = [(0, time.perf_counter() - t0, float("nan"))]
    decay_from = int(cfg.decay_from * iterations)
    for it in range(iterations):
        if it < decay_from:
            scale = 1.0
        else:
            frac = (it - decay_from) / max(1, iterations - decay_from)
            scale = cfg.final_lr + (1 - cfg.final_lr) * 0.5 * (1 + math.cos(math.pi * frac))
        f.step(scale, None, refresh=(it % f.refresh_interval() == 0))
        if (it + 1) % every == 0 or it == iterations - 1:
            rows.append((it + 1, time.perf_counter() - t0, f.psnr(f.last_loss())))
    return rows


def parse_overrides(text: str) -> dict:
    """'pos=0.1,refresh_every=3' -> {'pos': 0.1, 'refresh_every': 3.0}."""
    out = {}
    for item in filter(None, text.split(",")):
        key, _, val = item.partition("=")
        out[key.strip()] = float(val)
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--images", type=Path, default=Path("../shared/data/kodak"))
    ap.add_argument("--names", default=None, help="comma list of image stems (else --limit)")
    ap.add_argument("--limit", type=int, default=None)
    ap.add_argument("--sites", type=int, default=50000)
    ap.add_argument("--iterations", type=int, default=2000)
    ap.add_argument("--every", type=int, default=250)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--set", default="", help="FitConfig/lr overrides, e.g. pos=0.1,t=0.01")
    ap.add_argument("--arch", default="cpu", help="cpu, cuda or auto")
    ap.add_argument("--threads", type=int, default=None)
    ap.add_argument("--out", type=Path, default=None)
    args = ap.parse_args()
    overrides = parse_overrides(args.set)

    t0 = time.perf_counter()
    from sadcodec.backend import init_backend

    arch = init_backend(args.arch, args.threads)
    startup = time.perf_counter() - t0
    files = sorted(args.images.glob("*.png"))
    if args.names:
        files = [f for f in files if f.stem in args.names.split(",")]
    files = files[: args.limit]
    t0 = time.perf_counter()
    warm_img = iio.imread(files[0])[..., :3].astype(np.float32) / 255.0
    run_fit(warm_img, min(args.sites, 2000), 12, 12, args.seed, overrides)
    warm = time.perf_counter() - t0

    results = {}
    for f in files:
        img = iio.imread(f)[..., :3].astype(np.float32) / 255.0
        results[f.stem] = run_fit(
            img, args.sites, args.iterations, args.every, args.seed, overrides
        )
        _, sec, p = results[f.stem][-1]
        print(f"{f.stem}: {p:.2f} dB in {sec:.2f} s", flush=True)
    checkpoints = [r[0] for r in next(iter(results.values()))[1:]]
    head = " | ".join(f"{i} its" for i in checkpoints)
    lines = [
        f"{args.sites} sites, {args.iterations} iterations, backend {arch}, overrides "
        f"{overrides or 'none'}; start-up {startup:.2f} s, kernel warm-up {warm:.2f} s (not "
        "counted). Each cell: PSNR dB @ seconds since the fit began (init included).",
        "",
        f"| image | {head} |",
        "|---|" + "---|" * len(checkpoints),
    ]
    for name, rows in results.items():
        lines.append(
            f"| {name} | " + " | ".join(f"{p:.2f} @ {s:.2f}" for _, s, p in rows[1:]) + " |"
        )
    mean_p = [np.mean([r[j][2] for r in results.values()]) for j in range(1, len(checkpoints) + 1)]
    mean_s = [np.mean([r[j][1] for r in results.values()]) for j in range(1, len(checkpoints) + 1)]
    lines.append(
        "| **mean** | "
        + " | ".join(f"**{p:.2f} @ {s:.2f}**" for p, s in zip(mean_p, mean_s, strict=True))
        + " |"
    )
    text = "\n".join(lines)
    print(text, flush=True)
    if args.out:
        args.out.parent.mkdir(parents=True, exist_ok=True)
        args.out.write_text(text + "\n")


if __name__ == "__main__":
    main()
