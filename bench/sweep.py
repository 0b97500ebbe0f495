"""Parameter sweep used to choose the encoder defaults (docs/tuning.md).

Fits three Kodak images downscaled 2x at 1 bpp and prints the PSNR of the written files.
Each ';'-separated configuration overrides FitConfig fields (`iterations=1600`,
`init_fraction=0.9`), learning rates (`lr_pos=0.3`) or quantization (`q_pos_frac_bits=3`):

    python -m bench.sweep "base; lr_pos=0.3; lr_t=0.01,lr_a=0.03" [BPP] [full] [NAMES]
    python -m bench.sweep --report-only

Every fit starts from the encoder's own settings for the rate (`encoder.fit_config`,
seed 0), so "base" is what `sad encode` does. BPP (default 1.0) is the target rate of
every fit; "full" fits the images at full size; NAMES is a comma list of Kodak stems
(default kodim05,kodim23,kodim13), read from --images DIR (default: the Kodak set in
../shared/data/kodak). Writes one row per configuration and image to
bench/results/sweep.csv and generates bench/results/sweep.md from it.
"""

from __future__ import annotations

import argparse
import ast
import sys
import time
from dataclasses import replace
from pathlib import Path

import numpy as np
from PIL import Image

import sadcodec
from bench.benchlib import (
    Recorder,
    image_paths,
    output_args,
    report_head,
    settings_of,
    write_report,
)
from sadcodec.fit import fit_to_budget
from sadcodec.settings import encode_settings

NAMES = ("kodim05", "kodim23", "kodim13")
FIELDS = ["config", "image", "psnr", "seconds"]


def load(path: Path, full: bool = False) -> np.ndarray:
    im = Image.open(path)
    if full:
        return np.asarray(im.convert("RGB"))
    return np.asarray(im.resize((im.width // 2, im.height // 2), Image.LANCZOS))


def run(label: str, overrides: dict, images: dict, bpp: float = 1.0) -> dict[str, tuple]:
    """image -> (PSNR of the written file, seconds) for one configuration."""
    out = {}
    for name, img in images.items():
        t0 = time.time()
        h, w, c = img.shape
        # What `sad encode --bpp BPP` fits with at the default effort, seed 0.
        s = encode_settings(w, h, c, bpp)
        spec, cfg = s.spec, s.fit
        for key, value in overrides.items():
            if key.startswith("lr_"):
                cfg.lr = {**cfg.lr, key[3:]: value}
            elif key.startswith("q_"):
                spec = type(spec)(**{**spec.__dict__, key[2:]: value})
            else:
                setattr(cfg, key, value)
        rate = replace(s, spec=spec, fit=cfg).rate_target()
        res = fit_to_budget(img.astype(np.float32) / 255, rate, spec, cfg)
        dec = sadcodec.decode(res.data).astype(np.float64)
        mse = np.mean((dec - img.astype(np.float64)) ** 2)
        out[name] = (10 * np.log10(255.0**2 / mse), time.time() - t0)  # the written file
    return out


def markdown(rows: list[dict], csv_path: Path) -> str:
    """Configurations x images: PSNR of the written file, the mean, the seconds taken."""
    images = list(dict.fromkeys(r["image"] for r in rows))
    configs = list(dict.fromkeys(r["config"] for r in rows))
    cell = {(r["config"], r["image"]): r for r in rows}
    lines = report_head(
        "Parameter sweep",
        "bench.sweep",
        csv_path,
        rows,
        "PSNR (dB) of the written file, as decoded; seconds for all images of a configuration. "
        "The rate, image size and names are in the settings.",
    )
    lines += [
        "",
        "| configuration | " + " | ".join(images) + " | mean | s |",
        "|---|" + "---|" * (len(images) + 2),
    ]
    for c in configs:
        rs = [cell[(c, i)] for i in images if (c, i) in cell]
        psnrs = [f"{float(cell[(c, i)]['psnr']):.2f}" if (c, i) in cell else "-" for i in images]
        mean = np.mean([float(r["psnr"]) for r in rs])
        secs = sum(float(r["seconds"]) for r in rs)
        lines.append(f"| `{c}` | " + " | ".join(psnrs) + f" | {mean:.2f} | {secs:.1f} |")
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("configs", nargs="?", help="';'-separated configurations, e.g. 'base; k=4'")
    ap.add_argument("bpp", nargs="?", type=float, default=1.0)
    ap.add_argument("size", nargs="?", default="half", choices=("half", "full"))
    ap.add_argument("names", nargs="?", default=",".join(NAMES))
    ap.add_argument("--images", type=Path, default=None, help="image folder (default: Kodak)")
    output_args(ap, "sweep")
    args = ap.parse_args(argv)
    if args.report_only:
        return write_report(args, lambda rows: markdown(rows, args.out_csv))
    if not args.configs:
        ap.error("give the configurations (or --report-only)")
    paths = image_paths(args.images, names=args.names)
    sadcodec.init_backend("cpu")
    images = {p.stem: load(p, args.size == "full") for p in paths}
    rec = Recorder(args.out_csv, FIELDS, settings_of(args, skip=("configs",)))
    for label in args.configs.split(";"):
        label = label.strip()
        overrides = {}
        for part in label.split(","):
            if "=" in part:
                key, value = part.split("=")
                overrides[key.strip()] = ast.literal_eval(value.strip())
        res = run(label, overrides, images, args.bpp)
        for name, (psnr, secs) in res.items():
            rec.add(
                {"config": label, "image": name, "psnr": f"{psnr:.3f}", "seconds": f"{secs:.1f}"}
            )
        cells = " ".join(f"{p:6.2f}" for p, _ in res.values())
        mean = np.mean([p for p, _ in res.values()])
        total = sum(s for _, s in res.values())
        print(f"{label:40s} {cells}  mean {mean:6.2f}  {total:5.1f}s", file=sys.stderr, flush=True)
    return write_report(args, lambda rows: markdown(rows, args.out_csv))


if __name__ == "__main__":
    sys.exit(main())
