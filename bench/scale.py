"""Large photos: encode and decode time and peak memory (RSS) at 2, 8 and 24 megapixels.

    python -m bench.scale --image samples/kodim23.png --mp 2,8,24 --bpp 1.0 --arch cpu
    python -m bench.scale --mp 24 --iterations 100 --out-csv bench/results/scale-24mp.csv
    python -m bench.scale --report-only

A bundled photo is upscaled (Pillow, Lanczos) to each size, so the timing is real though
the content is not native detail. Each encode and decode runs as its own `sad` process
(python -m sadcodec) so its peak RSS is its own (os.wait4); "sad timer" is the time `sad`
prints (API call to result: backend start, kernel loading, the work), "process" the whole
process (plus interpreter start-up and image reading and writing). The bare `import taichi;
ti.init()` process is timed in the same run, for the start-up ratio.

At 24 MP a full CPU encode takes hours on 2 cores; `--mp 24 --iterations 100` still goes
through every phase that allocates (initial build, densify/prune, the frozen phase's
weights, rate fit), so its peak RSS is the encoder's, at a lower quality. Writes
bench/results/scale.csv and generates bench/results/scale.md from it.
"""

from __future__ import annotations

import argparse
import os
import re
import sys
import tempfile
from pathlib import Path

from PIL import Image

from bench.benchlib import (
    ROOT,
    Recorder,
    output_args,
    report_head,
    run_process,
    settings_of,
    table,
    write_report,
)

COLUMNS = [
    ("size", "size"),
    ("pixels", "pixels"),
    ("sites", "sites"),
    ("bpp", "bpp"),
    ("psnr", "PSNR"),
    ("encode_s", "encode s (sad timer)"),
    ("encode_process_s", "encode process s"),
    ("encode_rss_mib", "encode peak RSS MiB"),
    ("decode_s", "decode s (sad timer)"),
    ("decode_process_s", "decode process s"),
    ("decode_rss_mib", "decode peak RSS MiB"),
]
FIELDS = [k for k, _ in COLUMNS] + ["bare_ti_init_s"]


def markdown(rows: list[dict], csv_path: Path) -> str:
    bare = ", ".join(sorted({r["bare_ti_init_s"] for r in rows}))
    about = (
        "The image (settings) upscaled with Lanczos; each encode and decode is its own `sad` "
        "process. Bare `ti.init` process: "
        f"{bare} s (median of 3)."
    )
    lines = report_head("Large photos: time and peak memory", "bench.scale", csv_path, rows, about)
    return "\n".join([*lines, "", *table(rows, COLUMNS)]) + "\n"


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--image", type=Path, default=ROOT / "samples" / "kodim23.png")
    ap.add_argument("--mp", default="2,8,24", help="comma list of megapixel sizes")
    ap.add_argument("--bpp", type=float, default=1.0)
    ap.add_argument("--arch", default="cpu")
    ap.add_argument("--threads", type=int, default=None)
    ap.add_argument("--effort", type=int, default=None)
    ap.add_argument(
        "--iterations", type=int, default=None, help="fit iterations (a memory check at 24 MP)"
    )
    output_args(ap, "scale")
    args = ap.parse_args(argv)
    if args.report_only:
        return write_report(args, lambda rows: markdown(rows, args.out_csv))

    py = sys.executable
    taichi_arch = "cuda" if args.arch == "cuda" else "cpu"
    bare = f"import taichi as ti; ti.init(arch=ti.{taichi_arch}, log_level=ti.ERROR)"
    bare_s = sorted(run_process([py, "-c", bare])[0] for _ in range(3))[1]
    src = Image.open(args.image).convert("RGB")
    extra = ["--arch", args.arch]
    if args.threads:
        extra += ["--threads", str(args.threads)]
    enc_extra = extra + (["--effort", str(args.effort)] if args.effort else [])
    enc_extra += ["--iterations", str(args.iterations)] if args.iterations else []
    rec = Recorder(args.out_csv, FIELDS, settings_of(args))
    with tempfile.TemporaryDirectory() as tmp:
        for mp in [float(v) for v in args.mp.split(",")]:
            aspect = src.width / src.height
            h = int(round((mp * 1e6 / aspect) ** 0.5))
            w = int(round(h * aspect))
            png = os.path.join(tmp, f"{mp:g}mp.png")
            src.resize((w, h), Image.Resampling.LANCZOS).save(png)
            sad = png[:-4] + ".sad"
            cmd = [py, "-m", "sadcodec", "encode", png, "-o", sad, "--bpp", str(args.bpp)]
            e_wall, e_rss, e_txt = run_process(cmd + enc_extra)
            m = re.search(
                r"(\d+) sites, (\d+) bytes, ([\d.]+) bpp, PSNR ([\d.]+) dB, "
                r"encode ([\d.]+) s",
                e_txt,
            )
            cmd = [py, "-m", "sadcodec", "decode", sad, "-o", png[:-4] + "-out.png"]
            d_wall, d_rss, d_txt = run_process(cmd + extra)
            d = re.search(r"decode ([\d.]+) s", d_txt)
            values = [
                f"{mp:g} MP",
                f"{w}x{h}",
                m.group(1),
                m.group(3),
                m.group(4),
                m.group(5),
                f"{e_wall:.1f}",
                f"{e_rss:.0f}",
                d.group(1),
                f"{d_wall:.2f}",
                f"{d_rss:.0f}",
                f"{bare_s:.2f}",
            ]
            rec.add(dict(zip(FIELDS, values, strict=True)))
            print(" | ".join(values), file=sys.stderr, flush=True)
    return write_report(args, lambda rows: markdown(rows, args.out_csv))


if __name__ == "__main__":
    sys.exit(main())
