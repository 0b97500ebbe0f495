"""Fit a fixed number of sites to images, with no budget and no quantization (the SAD
paper's headline setting: 50,000 sites on Kodak, 46.0 dB in 2.2 s), and print PSNR
against time.

    python -m bench.fit_sites --sites 50000 --iterations 2000 --arch cuda
    python -m bench.fit_sites --report-only

Kernels are compiled (or loaded from the offline cache) by a short warm-up fit first, so
the times are the fit itself (initialisation included); start-up and warm-up are printed
separately. PSNR is RGB on the 8-bit scale, of the float render the last step saw.
Images come from --images DIR (default: the Kodak set in ../shared/data/kodak). Writes one
row per image and checkpoint to bench/results/fit-sites.csv and generates
bench/results/fit-sites.md from it.
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
    write_report,
)

FIELDS = ["image", "iteration", "seconds", "psnr", "backend", "startup_s", "warmup_s"]


def run_fit(
    img: np.ndarray, sites: int, iterations: int, every: int, seed: int, overrides: dict
) -> list[tuple[int, float, float]]:
    """(iteration, seconds since the start, PSNR) every ``every`` iterations."""
    import taichi as ti

    from sadcodec import quantize
    from sadcodec.fit import FitConfig, Fitter, Schedule
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
    sched = Schedule.of(cfg)
    for it in range(iterations):
        f.step(sched.lr_scale(it), None, refresh=(it % f.refresh_interval() == 0))
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


def markdown(rows: list[dict], csv_path: Path) -> str:
    """PSNR @ seconds per image and checkpoint, and the mean over images."""
    images = list(dict.fromkeys(r["image"] for r in rows))
    checkpoints = sorted({int(r["iteration"]) for r in rows})
    cell = {(r["image"], int(r["iteration"])): r for r in rows}
    runs = sorted({(r["backend"], r["startup_s"], r["warmup_s"]) for r in rows})
    about = " ".join(
        f"Backend {b}; start-up {s} s, kernel warm-up {w} s (not counted)." for b, s, w in runs
    )
    about += (
        " Sites, iterations and overrides (`set`) are in the settings. Each cell: PSNR dB @ "
        "seconds since the fit began (init included)."
    )
    lines = report_head("Fitting a fixed number of sites", "bench.fit_sites", csv_path, rows, about)
    lines += [
        "",
        "| image | " + " | ".join(f"{i} its" for i in checkpoints) + " |",
        "|---|" + "---|" * len(checkpoints),
    ]
    for name in images:
        cells = []
        for i in checkpoints:
            r = cell.get((name, i))
            cells.append(f"{float(r['psnr']):.2f} @ {float(r['seconds']):.2f}" if r else "-")
        lines.append(f"| {name} | " + " | ".join(cells) + " |")
    means = []
    for i in checkpoints:
        rs = [cell[(n, i)] for n in images if (n, i) in cell]
        p = np.mean([float(r["psnr"]) for r in rs])
        s = np.mean([float(r["seconds"]) for r in rs])
        means.append(f"**{p:.2f} @ {s:.2f}**")
    lines.append("| **mean** | " + " | ".join(means) + " |")
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--images", type=Path, default=None, help="image folder (default: Kodak)")
    ap.add_argument("--names", default=None, help="comma list of image stems (else --limit)")
    ap.add_argument("--limit", type=int, default=None)
    ap.add_argument("--sites", type=int, default=50000)
    ap.add_argument("--iterations", type=int, default=2000)
    ap.add_argument("--every", type=int, default=250)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--set", default="", help="FitConfig/lr overrides, e.g. pos=0.1,t=0.01")
    ap.add_argument("--arch", default="cpu", help="cpu, cuda or auto")
    ap.add_argument("--threads", type=int, default=None)
    output_args(ap, "fit-sites")
    args = ap.parse_args(argv)
    if args.report_only:
        return write_report(args, lambda rows: markdown(rows, args.out_csv))
    overrides = parse_overrides(args.set)
    files = image_paths(args.images, args.limit, args.names)

    t0 = time.perf_counter()
    from sadcodec.backend import init_backend

    arch = init_backend(args.arch, args.threads)
    startup = time.perf_counter() - t0
    t0 = time.perf_counter()
    warm_img = iio.imread(files[0])[..., :3].astype(np.float32) / 255.0
    run_fit(warm_img, min(args.sites, 2000), 12, 12, args.seed, overrides)
    warm = time.perf_counter() - t0

    rec = Recorder(args.out_csv, FIELDS, settings_of(args))
    for f in files:
        img = iio.imread(f)[..., :3].astype(np.float32) / 255.0
        rows = run_fit(img, args.sites, args.iterations, args.every, args.seed, overrides)
        for it, sec, p in rows[1:]:
            rec.add(
                {
                    "image": f.stem,
                    "iteration": it,
                    "seconds": f"{sec:.3f}",
                    "psnr": f"{p:.3f}",
                    "backend": arch,
                    "startup_s": f"{startup:.2f}",
                    "warmup_s": f"{warm:.2f}",
                }
            )
        _, sec, p = rows[-1]
        print(f"{f.stem}: {p:.2f} dB in {sec:.2f} s", file=sys.stderr, flush=True)
    return write_report(args, lambda rows: markdown(rows, args.out_csv))


if __name__ == "__main__":
    sys.exit(main())
