"""Kodak rate/distortion benchmark: sadcodec against Pillow JPEG at one target bpp.

Run from the repository root:

    python bench/kodak.py --bpp 1.0                       # all 24 images, sad and jpeg
    python bench/kodak.py --codecs jpeg --limit 3 \\
        --out-md /tmp/k.md --out-csv /tmp/k.csv           # quick check, no Taichi needed
    python bench/kodak.py --bpp 1.0 --resume              # continue an interrupted run

For every image x codec cell it records file bytes, bpp, PSNR-RGB, encode and decode
seconds and whether the file fits the budget (floor(bpp * W * H / 8) bytes). The CSV is
rewritten after every cell, so a crash loses nothing and --resume skips finished cells.
The markdown report (per-image table, per-codec summary, machine facts) is written at the
end, atomically.
"""

from __future__ import annotations

import argparse
import datetime
import statistics
import sys
from pathlib import Path

import numpy as np
from PIL import Image

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench.benchlib import (  # noqa: E402
    atomic_write,
    budget_bytes,
    command_line,
    fmt,
    load_sadcodec,
    machine_facts,
    pillow_codec,
    psnr_rgb,
    read_csv,
    run_pillow,
    run_sad,
    timed,
    write_csv,
)

FIELDS = [
    "image",
    "codec",
    "target_bpp",
    "bytes",
    "bpp",
    "psnr_rgb",
    "encode_s",
    "decode_s",
    "within_budget",
    "sites",
    "quality",
]
CODECS = ("sad", "jpeg")


def markdown(args, rows: list[dict], codecs: list[str], startup_s: float | None) -> str:
    cmd = command_line()
    out = [
        f"# Kodak at {args.bpp:g} bpp: {' vs '.join(codecs)}",
        "",
        f"Command: `{cmd}`  ",
        f"Date: {datetime.datetime.now().isoformat(timespec='seconds')}",
        "",
        "Machine:",
        "",
    ]
    out += [f"- {f}" for f in machine_facts("sad" in codecs)]
    if startup_s is not None:
        out.append(f"- Taichi start-up (import + `init_backend`, once): {startup_s:.2f} s")
    out += [
        "",
        "Budget per image: floor(bpp * W * H / 8) bytes. PSNR-RGB over all pixels and "
        "3 channels. Times are wall-clock seconds on a shared machine: sad encode is one run, "
        f"sad decode the median of {args.repeats_decode}, JPEG encode/decode the median of 3. "
        "`*` marks a file over budget.",
        "",
        "## Per image",
        "",
    ]
    cell = {(r["image"], r["codec"]): r for r in rows}
    images = sorted({r["image"] for r in rows})
    head = ["image"] + [f"{c} {h}" for c in codecs for h in ("bpp", "PSNR", "enc s", "dec s")]
    out += ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for name in images:
        line = [name]
        for c in codecs:
            r = cell.get((name, c))
            if r is None:
                line += ["-"] * 4
                continue
            star = "" if r["within_budget"] == "True" else "*"
            line += [
                fmt(r["bpp"], 4) + star,
                fmt(r["psnr_rgb"], 2),
                fmt(r["encode_s"], 3),
                fmt(r["decode_s"], 3),
            ]
        out.append("| " + " | ".join(line) + " |")
    out += [
        "",
        "## Summary",
        "",
        "| codec | images | mean bpp | max bpp | mean PSNR | median enc s | median dec s "
        "| over budget |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for c in codecs:
        rs = [r for r in rows if r["codec"] == c]
        if not rs:
            continue
        col = {k: [float(r[k]) for r in rs] for k in ("bpp", "psnr_rgb", "encode_s", "decode_s")}
        over = sum(r["within_budget"] != "True" for r in rs)
        out.append(
            f"| {c} | {len(rs)} | {statistics.mean(col['bpp']):.4f} | "
            f"{max(col['bpp']):.4f} | {statistics.mean(col['psnr_rgb']):.2f} | "
            f"{statistics.median(col['encode_s']):.3f} | "
            f"{statistics.median(col['decode_s']):.3f} | {over} |"
        )
    return "\n".join(out) + "\n"


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--images", type=Path, default=Path("../shared/data/kodak"))
    p.add_argument("--bpp", type=float, default=1.0)
    p.add_argument("--limit", type=int, default=None, help="first N images by sorted name")
    p.add_argument("--codecs", default="sad,jpeg", help="comma list of: sad, jpeg")
    p.add_argument("--effort", type=int, default=None)
    p.add_argument("--iterations", type=int, default=None)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--arch", default="cpu", help="sadcodec backend: cpu, cuda or auto")
    p.add_argument("--threads", type=int, default=None, help="sadcodec CPU threads")
    p.add_argument("--out-md", type=Path, default=Path("docs/kodak-1bpp.md"))
    p.add_argument("--out-csv", type=Path, default=Path("bench/results/kodak-1bpp.csv"))
    p.add_argument("--resume", action="store_true", help="reuse cells already in the CSV")
    p.add_argument("--repeats-decode", type=int, default=3)
    args = p.parse_args(argv)

    codecs = [c.strip() for c in args.codecs.split(",") if c.strip()]
    bad = [c for c in codecs if c not in CODECS]
    if bad or not codecs:
        p.error(f"unknown codec(s) {bad}; choose from {', '.join(CODECS)}")
    paths = sorted(args.images.glob("*.png"))[: args.limit]
    if not paths:
        p.error(f"no .png images in {args.images}")

    # --resume: keep every earlier row at this bpp; cells of this run are reused, not redone.
    old = read_csv(args.out_csv) if args.resume else []
    old = [r for r in old if float(r["target_bpp"]) == args.bpp]
    done = {(r["image"], r["codec"]): r for r in old}
    wanted = {(pth.stem, c) for pth in paths for c in codecs}
    rows = [done[k] for k in sorted(wanted & done.keys())]
    extra = [r for r in old if (r["image"], r["codec"]) not in wanted]

    startup_s = None
    if "sad" in codecs:
        # Importing sadcodec imports Taichi, so time the import and init_backend together.
        _, startup_s = timed(lambda: load_sadcodec().init_backend(args.arch, args.threads))
        print(f"taichi start-up {startup_s:.2f} s", file=sys.stderr, flush=True)

    runners = {
        "sad": lambda img, budget: run_sad(img, args.bpp, args),
        "jpeg": lambda img, budget: run_pillow(img, budget, pillow_codec("jpeg")),
    }
    for pth in paths:
        img = None
        for c in codecs:
            if (pth.stem, c) in done:
                print(f"{pth.stem} {c}: reused from CSV", file=sys.stderr, flush=True)
                continue
            if img is None:
                with Image.open(pth) as im:
                    img = np.asarray(im.convert("RGB"))
            h, w = img.shape[:2]
            budget = budget_bytes(args.bpp, w, h)
            res = runners[c](img, budget)
            n = len(res["data"])
            row = {
                "image": pth.stem,
                "codec": c,
                "target_bpp": args.bpp,
                "bytes": n,
                "bpp": f"{8 * n / (w * h):.6f}",
                "psnr_rgb": f"{psnr_rgb(img, res['decoded']):.4f}",
                "encode_s": f"{res['encode_s']:.4f}",
                "decode_s": f"{res['decode_s']:.4f}",
                "within_budget": str(n <= budget),
                "sites": res["sites"],
                "quality": res["quality"],
            }
            rows.append(row)
            write_csv(args.out_csv, rows + extra, FIELDS)
            flag = "" if n <= budget else "  OVER BUDGET"
            print(
                f"{pth.stem} {c}: {8 * n / (w * h):.4f} bpp  {float(row['psnr_rgb']):.2f} dB  "
                f"enc {res['encode_s']:.3f} s  dec {res['decode_s']:.3f} s{flag}",
                file=sys.stderr,
                flush=True,
            )

    rows.sort(key=lambda r: (r["image"], codecs.index(r["codec"])))
    write_csv(args.out_csv, rows + extra, FIELDS)
    atomic_write(args.out_md, markdown(args, rows, codecs, startup_s))
    over = sum(r["within_budget"] != "True" for r in rows)
    print(f"wrote {args.out_csv} and {args.out_md}; {over} file(s) over budget", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
