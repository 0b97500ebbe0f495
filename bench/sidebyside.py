"""The same crop of one image as sad, JPEG, WebP and AVIF draw it at the same file size.

    python -m bench.sidebyside --image kodim05 --bpp 0.5 --crop 256,192,192,192
    python -m bench.sidebyside --report-only      # regenerate the report from the CSV

The whole image is encoded once per codec within the same budget, floor(bpp * W * H / 8)
bytes for the whole file, as bench.rd does: sad to the rate (default effort), JPEG, WebP
and AVIF through Pillow at the highest quality whose file fits. The picture
(bench/results/sidebyside.png, ``--out-png``) puts the crop X,Y,W,H of the original and of
each decoded image side by side, enlarged ``--zoom`` times (nearest neighbour, so every
pixel stays visible), each labelled with the codec, the file's real bpp and the PSNR and
SSIM of the whole image. The CSV (bench/results/sidebyside.csv) has one row per codec;
the report is generated from it alone (``--report-only``), the picture only by a run,
since it needs the decoded pixels.
"""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path

import numpy as np
from PIL import Image, ImageDraw, ImageFont, features

from bench.benchlib import (
    KODAK,
    RESULTS,
    Recorder,
    budget_bytes,
    fmt,
    kodak_image,
    output_args,
    pillow_codec,
    psnr_rgb,
    report_head,
    run_pillow,
    run_sad,
    settings_of,
    write_report,
)

FIELDS = [
    "image",
    "codec",
    "target_bpp",
    "budget",
    "bytes",
    "bpp",
    "psnr_rgb",
    "ssim",
    "quality",
    "sites",
    "encode_s",
    "crop",
]
PILLOW_CODECS = ("jpeg", "webp", "avif")
NAMES = {"original": "original", "sad": "sad", "jpeg": "JPEG", "webp": "WebP", "avif": "AVIF"}
GAP = 8  # white pixels between panels
LABEL_PX = 15  # label font size; two lines of it under each panel


def parse_crop(text: str) -> tuple[int, int, int, int]:
    """X,Y,W,H in pixels of the stored image (W, H > 0)."""
    try:
        x, y, w, h = (int(v) for v in text.split(","))
    except ValueError:
        raise argparse.ArgumentTypeError(f"need X,Y,W,H (four integers), got {text!r}") from None
    if x < 0 or y < 0 or w <= 0 or h <= 0:
        raise argparse.ArgumentTypeError(f"need X, Y >= 0 and W, H > 0, got {text!r}")
    return x, y, w, h


def check_crop(crop: tuple[int, int, int, int], width: int, height: int) -> None:
    """Exit when the crop does not lie inside a width x height image."""
    x, y, w, h = crop
    if x + w > width or y + h > height:
        sys.exit(f"--crop {x},{y},{w},{h} is outside the {width}x{height} image")


def label(row: dict) -> list[str]:
    """The two lines under a panel: codec and real bpp; PSNR and SSIM of the whole image."""
    name = NAMES[row["codec"]]
    if row["codec"] == "original":
        return [name, row["image"]]
    return [
        f"{name}  {float(row['bpp']):.3f} bpp",
        f"{float(row['psnr_rgb']):.2f} dB  SSIM {float(row['ssim']):.3f}",
    ]


def picture(
    panels: list[tuple[np.ndarray, list[str]]], crop: tuple[int, int, int, int], zoom: int
) -> Image.Image:
    """The crop of each (image, label lines) side by side, enlarged `zoom` times by
    nearest neighbour, the label under it, on white."""
    x, y, w, h = crop
    font = ImageFont.load_default(size=LABEL_PX)
    text_h = 2 * (LABEL_PX + 4) + 4
    pw, ph = w * zoom, h * zoom
    out = Image.new("RGB", (len(panels) * pw + (len(panels) - 1) * GAP, ph + text_h), "white")
    draw = ImageDraw.Draw(out)
    for i, (img, lines) in enumerate(panels):
        part = np.ascontiguousarray(img[y : y + h, x : x + w, :3])
        tile = Image.fromarray(part).resize((pw, ph), Image.Resampling.NEAREST)
        left = i * (pw + GAP)
        out.paste(tile, (left, 0))
        for j, line in enumerate(lines):
            draw.text((left + 2, ph + 4 + j * (LABEL_PX + 4)), line, fill="black", font=font)
    return out


def save_png(image: Image.Image, path: Path) -> None:
    """Write the picture atomically (a temporary file renamed into place)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp.png")
    image.save(tmp, optimize=True)
    os.replace(tmp, path)


def render(csv_path: Path, png_path: Path, md_path: Path):
    def report(rows: list[dict]) -> str:
        first = rows[0]
        crop = first["crop"]
        lines = report_head(
            "Side by side: the same crop at the same file size",
            "bench.sidebyside",
            csv_path,
            rows,
            f"{first['image']} at {float(first['target_bpp']):g} bpp: every file within "
            f"{first['budget']} bytes, floor(bpp * W * H / 8), the whole file. sad encodes "
            "to the rate with the settings above (effort None: the default); JPEG (4:2:0, "
            "optimize), WebP (lossy, method 6) and AVIF (4:2:0, avif_speed above) through "
            "Pillow at the highest quality whose file fits. PSNR (RGB) and SSIM "
            "(scikit-image, Gaussian window sigma 1.5) are of the whole image; the picture "
            f"shows the crop x,y,w,h = {crop}.",
        )
        lines += [
            "",
            *_table(rows),
            "",
            f"![side by side]({os.path.relpath(png_path.resolve(), md_path.resolve().parent)})",
        ]
        return "\n".join(lines) + "\n"

    return report


def _table(rows: list[dict]) -> list[str]:
    out = [
        "| codec | bytes | bpp | PSNR (dB) | SSIM | quality | encode s |",
        "|---|---|---|---|---|---|---|",
    ]
    for r in rows:
        out.append(
            f"| {NAMES.get(r['codec'], r['codec'])} | {r['bytes']} | {fmt(r['bpp'], 4)} | "
            f"{fmt(r['psnr_rgb'], 2)} | {fmt(r['ssim'], 4)} | {r['quality'] or '-'} | "
            f"{fmt(r['encode_s'], 2)} |"
        )
    return out


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--images", type=Path, default=None, help="image folder (default: Kodak)")
    ap.add_argument("--image", default="kodim05", help="image name, without .png")
    ap.add_argument("--bpp", type=float, default=0.5, help="target rate of the whole file")
    ap.add_argument("--crop", type=parse_crop, default=(256, 192, 192, 192), help="X,Y,W,H")
    ap.add_argument("--zoom", type=int, default=2, help="enlargement of the crop (nearest)")
    ap.add_argument("--effort", type=int, default=None, help="sadcodec effort 1..9")
    ap.add_argument("--iterations", type=int, default=None, help="sadcodec fit iterations")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--arch", default="cpu", help="sadcodec backend: cpu, cuda or auto")
    ap.add_argument("--threads", type=int, default=None, help="sadcodec CPU threads")
    ap.add_argument("--avif-speed", type=int, default=6, help="libavif speed 0..10 (Pillow's 6)")
    ap.add_argument("--out-png", type=Path, default=RESULTS / "sidebyside.png")
    output_args(ap, "sidebyside")
    args = ap.parse_args(argv)
    md_path = args.out_md if args.out_md is not None else args.out_csv.with_suffix(".md")
    args.out_md = md_path
    report = render(args.out_csv, args.out_png, md_path)
    if args.report_only:
        return write_report(args, report)
    if not (args.bpp > 0 and 1 <= args.zoom <= 8):
        ap.error("need --bpp > 0 and --zoom in 1..8")
    from bench.rd import ssim_rgb  # needs scikit-image (the bench extra)

    path = kodak_image(Path(args.images or KODAK) / f"{args.image}.png")
    with Image.open(path) as im:
        img = np.asarray(im.convert("RGB"))
    h, w = img.shape[:2]
    check_crop(args.crop, w, h)
    budget = budget_bytes(args.bpp, w, h)
    codecs = ["sad"] + [c for c in PILLOW_CODECS if c != "avif" or features.check("avif")]
    args.repeats_decode = 1  # run_sad's decode timing, not reported here
    rec = Recorder(args.out_csv, FIELDS, settings_of(args, skip=("repeats_decode",)))
    panels = [(img, label({"codec": "original", "image": args.image}))]
    for codec in codecs:
        print(f"{args.image} {args.bpp:g} bpp: {codec} ...", file=sys.stderr, flush=True)
        if codec == "sad":
            res = run_sad(img, args.bpp, args)
        else:
            res = run_pillow(img, budget, pillow_codec(codec, args.avif_speed), repeats=1)
        dec, n = res["decoded"], len(res["data"])
        if n > budget:
            sys.exit(f"{codec}: {n} bytes, over the budget of {budget}")
        row = rec.add(
            {
                "image": args.image,
                "codec": codec,
                "target_bpp": f"{args.bpp:g}",
                "budget": budget,
                "bytes": n,
                "bpp": f"{8 * n / (w * h):.6f}",
                "psnr_rgb": f"{psnr_rgb(img, dec):.4f}",
                "ssim": f"{ssim_rgb(img, dec):.5f}",
                "quality": res["quality"],
                "sites": res["sites"],
                "encode_s": f"{res['encode_s']:.3f}",
                "crop": ",".join(str(v) for v in args.crop),
            }
        )
        panels.append((dec, label(row)))
    save_png(picture(panels, args.crop, args.zoom), args.out_png)
    return write_report(args, report)


if __name__ == "__main__":
    sys.exit(main())
