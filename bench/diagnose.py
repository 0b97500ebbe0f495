"""Where sad's error is, against WebP at the same file size: by local texture and on edges.

For each image and rate, sad (default effort) and WebP (the highest quality within the same
whole-file budget) are decoded and their squared errors split by the decile of local
texture (the standard deviation of luminance in the 8x8 block around each pixel, deciles
over the image) and into edge pixels (the top 10% of gradient magnitude) and the rest.
The report gives, per rate, the mean PSNR of each part for both codecs and the gap
(sad - WebP, dB): which kind of content the gap comes from, and how it grows with the rate.
With --maps, it also writes error-map images at the highest rate of the run
(bench/results/diagnose-NAME-BPP.png: a central 256x256 crop of the original, sad's and
WebP's absolute error, side by side, the same gain for both).

    python -m bench.diagnose --names kodim01,kodim13,kodim19,kodim23 --bpp 0.5,1,2 \
        --maps kodim01,kodim23
"""

from __future__ import annotations

import argparse
import math
import sys
from pathlib import Path

import numpy as np
from PIL import Image

from bench.benchlib import (
    RESULTS,
    Recorder,
    budget_bytes,
    image_paths,
    output_args,
    pillow_codec,
    report_head,
    run_pillow,
    settings_of,
    write_report,
)

DECILES = 10
BLOCK = 8
EDGE_SHARE = 0.10
MAP_SIZE = 256
PARTS = [f"texture d{i + 1}" for i in range(DECILES)] + ["edges", "non-edges", "all"]
FIELDS = ["image", "bpp", "codec", "bytes"] + [p.replace(" ", "_") for p in PARTS]


def luminance(img: np.ndarray) -> np.ndarray:
    rgb = img[..., :3].astype(np.float64)
    return rgb @ np.array([0.299, 0.587, 0.114])


def local_std(lum: np.ndarray, size: int = BLOCK) -> np.ndarray:
    """Standard deviation of lum in the size x size window around each pixel (box sums by
    cumulative sums, windows clipped at the borders)."""
    h, w = lum.shape
    pad = size // 2

    def box(a: np.ndarray) -> np.ndarray:
        c = np.pad(a, ((1, 0), (1, 0))).cumsum(0).cumsum(1)
        y0 = np.clip(np.arange(h) - pad, 0, h)
        y1 = np.clip(np.arange(h) - pad + size, 0, h)
        x0 = np.clip(np.arange(w) - pad, 0, w)
        x1 = np.clip(np.arange(w) - pad + size, 0, w)
        s = c[y1][:, x1] - c[y0][:, x1] - c[y1][:, x0] + c[y0][:, x0]
        return s / ((y1 - y0)[:, None] * (x1 - x0)[None, :])

    m = box(lum)
    return np.sqrt(np.maximum(box(lum * lum) - m * m, 0.0))


def masks(img: np.ndarray) -> dict[str, np.ndarray]:
    """Boolean masks of the image's pixels for each part of the report."""
    lum = luminance(img)
    tex = local_std(lum)
    edges = np.quantile(tex, np.linspace(0, 1, DECILES + 1))
    out = {}
    for i in range(DECILES):
        hi = tex <= edges[i + 1] if i == DECILES - 1 else tex < edges[i + 1]
        out[PARTS[i]] = (tex >= edges[i]) & hi
    gy, gx = np.gradient(lum)
    mag = np.hypot(gx, gy)
    edge = mag >= np.quantile(mag, 1 - EDGE_SHARE)
    out["edges"], out["non-edges"] = edge, ~edge
    out["all"] = np.ones_like(edge)
    return out


def part_psnr(err2: np.ndarray, mask: np.ndarray) -> float:
    """PSNR over the masked pixels' RGB samples of a per-pixel summed squared error."""
    if not mask.any():
        return math.nan
    mse = float(err2[mask].mean()) / 3
    return math.inf if mse == 0 else 10 * math.log10(255.0**2 / mse)


def error_map(img: np.ndarray, sad: np.ndarray, webp: np.ndarray, path: Path) -> None:
    """Original | sad's |error| | WebP's |error|, the errors at 4x gain, as one PNG of the
    central MAP_SIZE x MAP_SIZE crop (the files stay small enough to keep in git)."""
    h, w = img.shape[:2]
    y0, x0 = max(0, (h - MAP_SIZE) // 2), max(0, (w - MAP_SIZE) // 2)
    crop = (slice(y0, y0 + MAP_SIZE), slice(x0, x0 + MAP_SIZE))
    img, sad, webp = img[crop], sad[crop], webp[crop]

    def err(out: np.ndarray) -> np.ndarray:
        e = np.abs(out[..., :3].astype(np.int16) - img[..., :3].astype(np.int16)).max(axis=2)
        return np.repeat(np.clip(e * 4, 0, 255).astype(np.uint8)[..., None], 3, axis=2)

    gap = np.full((img.shape[0], 8, 3), 255, np.uint8)
    row = np.concatenate([img[..., :3], gap, err(sad), gap, err(webp)], axis=1)
    Image.fromarray(row).save(path)


def render(csv_path: Path):
    def report(rows: list[dict]) -> str:
        lines = report_head(
            "Where the error is: sad against WebP at the same file size",
            "bench.diagnose",
            csv_path,
            rows,
            "PSNR (dB) of each part of the images, RGB, sad at the default effort and WebP "
            "(method 6) at the highest quality within the same whole-file budget. Texture "
            f"deciles: the standard deviation of luminance in the {BLOCK}x{BLOCK} window "
            f"around each pixel, d1 flattest; edges: the top {EDGE_SHARE:.0%} of gradient "
            "magnitude. Means over the images of each part's PSNR; gap = sad - WebP.",
        )
        for bpp in sorted({float(r["bpp"]) for r in rows}):
            at = [r for r in rows if float(r["bpp"]) == bpp]
            lines += ["", f"## {bpp:g} bpp ({len(at) // 2} images)", ""]
            lines += ["| part | sad | WebP | gap |", "|---|---|---|---|"]
            for part in PARTS:
                key = part.replace(" ", "_")
                s = np.mean([float(r[key]) for r in at if r["codec"] == "sad"])
                w = np.mean([float(r[key]) for r in at if r["codec"] == "webp"])
                lines.append(f"| {part} | {s:.2f} | {w:.2f} | {s - w:+.2f} |")
        images = sorted({r["image"] for r in rows})
        lines += ["", "## Per image, all pixels (gap sad - WebP, dB)", ""]
        rates = sorted({float(r["bpp"]) for r in rows})
        lines += ["| image | " + " | ".join(f"{b:g} bpp" for b in rates) + " |"]
        lines += ["|---|" + "---|" * len(rates)]
        for name in images:
            cells = []
            for b in rates:
                got = {
                    r["codec"]: float(r["all"])
                    for r in rows
                    if r["image"] == name and float(r["bpp"]) == b
                }
                cells.append(f"{got['sad'] - got['webp']:+.2f}" if len(got) == 2 else "")
            lines.append(f"| {name} | " + " | ".join(cells) + " |")
        pngs = sorted(Path(csv_path).parent.glob("diagnose-*.png"))
        if pngs:
            lines += ["", "## Error maps", ""]
            lines += [
                "A central 256x256 crop: the original, sad's and WebP's largest channel "
                "error at 4x gain, at the same file size.",
                "",
            ]
            lines += [f"![{p.stem}]({p.name})" for p in pngs]
        return "\n".join(lines) + "\n"

    return report


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--images", type=Path, default=None, help="image folder (Kodak)")
    ap.add_argument("--names", default="kodim01,kodim13,kodim19,kodim23")
    ap.add_argument("--bpp", default="0.5,1,2")
    ap.add_argument("--maps", default="", help="images to write error maps for")
    output_args(ap, "diagnose")
    args = ap.parse_args()
    if args.report_only:
        return write_report(args, render(args.out_csv))
    import sadcodec

    sadcodec.init_backend("cpu")
    webp = pillow_codec("webp")
    rec = Recorder(args.out_csv, FIELDS, settings_of(args, skip=("maps",)))
    maps = {n.strip() for n in args.maps.split(",") if n.strip()}
    rates = [float(b) for b in args.bpp.split(",")]
    for path in image_paths(args.images, names=args.names):
        img = np.asarray(Image.open(path).convert("RGB"))
        h, w = img.shape[:2]
        parts = masks(img)
        for bpp in rates:
            budget = budget_bytes(bpp, w, h)
            data = sadcodec.encode(img, bpp)
            outs = {"sad": (sadcodec.decode(data), len(data))}
            res = run_pillow(img, budget, webp, repeats=1)
            outs["webp"] = (res["decoded"], len(res["data"]))
            for codec, (out, nbytes) in outs.items():
                d = out[..., :3].astype(np.float64) - img.astype(np.float64)
                err2 = (d * d).sum(axis=2)
                row = {"image": path.stem, "bpp": f"{bpp:g}", "codec": codec, "bytes": nbytes}
                for part in PARTS:
                    row[part.replace(" ", "_")] = f"{part_psnr(err2, parts[part]):.3f}"
                rec.add(row)
            print(
                f"{path.stem} {bpp:g} bpp: sad {rec.rows[-2]['all']} dB, "
                f"webp {rec.rows[-1]['all']} dB",
                file=sys.stderr,
                flush=True,
            )
            if path.stem in maps and bpp == max(rates):
                out_png = RESULTS / f"diagnose-{path.stem}-{bpp:g}bpp.png"
                error_map(img, outs["sad"][0], outs["webp"][0], out_png)
    return write_report(args, render(args.out_csv))


if __name__ == "__main__":
    sys.exit(main())
