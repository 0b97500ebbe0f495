"""Photographs at their own size: encode time per megapixel, CPU time, peak memory and
PSNR, one checkout or two interleaved (issue 26).

    git worktree add /tmp/old <commit>
    python -m bench.photos --old /tmp/old --new . --bpp 1
    python -m bench.photos --old /tmp/old --new . --crop 1400x1000 --repeats 3
    python -m bench.photos --new . --names clic2025_7e49 --upscale 12

Images: the PNGs of --images DIR (default ../shared/data/photos), all or those whose names
start with one of --names (a comma list). --crop WxH fits a centred crop (W x H for a
landscape image, H x W for a portrait one); --upscale MP resizes the image (Lanczos) to
about MP megapixels first.

Each encode runs in its own process with the checkout on PYTHONPATH (bench.ab's child:
any two commits can be compared), old then new for each repeat, so a slow spell of the
shared machine hits both alike. Inside the process: the encode's wall seconds around
``sadcodec.encode`` (Taichi start-up excluded), its CPU seconds (all threads; steadier
than wall time on a busy machine), the process's peak RSS when the encode returns, and
the PSNR of the written file as decoded. The report gives the median per side, the new
side's time over the old and its PSNR change.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path

from PIL import Image

from bench.ab import KERNELS_SHIM, describe
from bench.benchlib import (
    ROOT,
    Recorder,
    output_args,
    report_head,
    settings_of,
    table,
    write_report,
)

PHOTOS = ROOT.parent / "shared" / "data" / "photos"

# One encode, then what it cost and the PSNR of its file, as one JSON line.
CHILD = (
    KERNELS_SHIM
    + """
import resource
import numpy as np
img = iio.imread(sys.argv[1])
t0, c0 = time.perf_counter(), time.process_time()
data = sadcodec.encode(img, float(sys.argv[2]))
secs, cpu = time.perf_counter() - t0, time.process_time() - c0
rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0
dec = sadcodec.decode(data)
d = dec.astype(np.float64) - img.astype(np.float64)
psnr = 10 * np.log10(255.0**2 / np.mean(d * d))
print(json.dumps({"seconds": secs, "cpu": cpu, "rss_mib": rss, "psnr": psnr,
                  "bytes": len(data), "sha256": hashlib.sha256(data).hexdigest()}))
"""
)

COLUMNS = [
    ("image", "image"),
    ("size", "size"),
    ("bpp", "bpp"),
    ("side", "code"),
    ("s_per_mp", "s / MP"),
    ("seconds", "encode s"),
    ("cpu_s", "CPU s"),
    ("rss_mib", "peak RSS MiB"),
    ("psnr", "PSNR dB"),
    ("time_ratio", "time / old"),
    ("psnr_change", "PSNR - old"),
    ("runs", "runs"),
]
DERIVED = ("time_ratio", "psnr_change")  # computed by the report from the old row
FIELDS = [k for k, _ in COLUMNS if k not in DERIVED] + ["all_seconds", "all_cpu", "code"]


def prepare(path: Path, crop: str | None, upscale: float | None, tmp: Path) -> Path:
    """The image to encode: ``path`` itself, or its crop or upscaled copy in ``tmp``."""
    if not crop and not upscale:
        return path
    im = Image.open(path).convert("RGB")
    if upscale:
        aspect = im.width / im.height
        h = int(round((upscale * 1e6 / aspect) ** 0.5))
        im = im.resize((int(round(h * aspect)), h), Image.Resampling.LANCZOS)
    if crop:
        cw, ch = (int(v) for v in crop.lower().split("x"))
        if im.height > im.width:
            cw, ch = ch, cw
        cw, ch = min(cw, im.width), min(ch, im.height)
        x, y = (im.width - cw) // 2, (im.height - ch) // 2
        im = im.crop((x, y, x + cw, y + ch))
    out = tmp / f"{path.stem}-{im.width}x{im.height}.png"
    im.save(out)
    return out


def encode_in(checkout: Path, image: Path, bpp: float) -> dict:
    env = {**os.environ, "PYTHONPATH": str(checkout.resolve())}
    out = subprocess.run(
        [sys.executable, "-c", CHILD, str(image.resolve()), str(bpp)],
        env=env,
        capture_output=True,
        text=True,
        check=True,
        cwd=checkout,
    ).stdout
    return json.loads(out.strip().splitlines()[-1])


def render(csv_path: Path):
    def report(rows: list[dict]) -> str:
        lines = report_head(
            "Photographs: encode time, memory and PSNR",
            "bench.photos",
            csv_path,
            rows,
            "Medians of the interleaved runs: encode seconds inside the process (start-up "
            "excluded) and per megapixel, CPU seconds of all threads, peak RSS when the "
            "encode returns, PSNR of the written file as decoded.",
        )
        old = {(r["image"], r["size"], r["bpp"]): r for r in rows if r["side"] == "old"}
        shown = []
        for r in rows:
            o = old.get((r["image"], r["size"], r["bpp"])) if r["side"] == "new" else None
            ratio = f"{float(r['seconds']) / float(o['seconds']):.3f}" if o else ""
            change = f"{float(r['psnr']) - float(o['psnr']):+.2f}" if o else ""
            shown.append({**r, "time_ratio": ratio, "psnr_change": change})
        codes = sorted({(r["side"], r["code"]) for r in rows})
        lines += ["", *[f"- {side}: {code}" for side, code in codes], ""]
        return "\n".join([*lines, *table(shown, COLUMNS)]) + "\n"

    return report


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--old", type=Path, default=None, help="checkout of the old code")
    ap.add_argument("--new", type=Path, default=Path("."), help="checkout of the new code")
    ap.add_argument("--images", type=Path, default=PHOTOS, help="folder of PNG photographs")
    ap.add_argument("--names", default=None, help="comma list of file name prefixes")
    ap.add_argument("--bpp", default="1")
    ap.add_argument("--crop", default=None, help="centred crop WxH (e.g. 1400x1000)")
    ap.add_argument("--upscale", type=float, default=None, help="resize to about MP megapixels")
    ap.add_argument("--repeats", type=int, default=1)
    output_args(ap, "photos")
    args = ap.parse_args(argv)
    if args.report_only:
        return write_report(args, render(args.out_csv))
    paths = sorted(args.images.glob("*.png"))
    if args.names:
        wanted = [n.strip() for n in args.names.split(",") if n.strip()]
        paths = [p for p in paths if any(p.name.startswith(n) for n in wanted)]
    if not paths:
        sys.exit(f"no matching .png in {args.images}")
    sides = [("old", args.old), ("new", args.new)] if args.old else [("new", args.new)]
    names = {side: describe(checkout) for side, checkout in sides}
    rec = Recorder(args.out_csv, FIELDS, settings_of(args, skip=("old", "new")))
    with tempfile.TemporaryDirectory() as tmp:
        for path in paths:
            image = prepare(path, args.crop, args.upscale, Path(tmp))
            with Image.open(image) as im:
                w, h = im.size
            for bpp in (float(b) for b in args.bpp.split(",")):
                runs: dict[str, list[dict]] = {side: [] for side, _ in sides}
                for _ in range(args.repeats):
                    for side, checkout in sides:
                        r = encode_in(checkout, image, bpp)
                        runs[side].append(r)
                        print(
                            f"{path.stem} {w}x{h} {bpp:g} {side}: {r['seconds']:.1f} s, "
                            f"CPU {r['cpu']:.1f} s, {r['rss_mib']:.0f} MiB, "
                            f"{r['psnr']:.2f} dB",
                            file=sys.stderr,
                            flush=True,
                        )
                for side, _ in sides:
                    rs = runs[side]
                    secs = statistics.median(r["seconds"] for r in rs)
                    rec.add(
                        {
                            "image": path.stem,
                            "size": f"{w}x{h}",
                            "bpp": f"{bpp:g}",
                            "side": side,
                            "s_per_mp": f"{secs / (w * h / 1e6):.1f}",
                            "seconds": f"{secs:.1f}",
                            "cpu_s": f"{statistics.median(r['cpu'] for r in rs):.1f}",
                            "rss_mib": f"{max(r['rss_mib'] for r in rs):.0f}",
                            "psnr": f"{statistics.median(r['psnr'] for r in rs):.2f}",
                            "runs": len(rs),
                            "all_seconds": " ".join(f"{r['seconds']:.1f}" for r in rs),
                            "all_cpu": " ".join(f"{r['cpu']:.1f}" for r in rs),
                            "code": names[side],
                        }
                    )
    return write_report(args, render(args.out_csv))


if __name__ == "__main__":
    sys.exit(main())
