"""Kodak rate/distortion benchmark: sadcodec against Pillow JPEG at one target bpp.

Run from the repository root:

    python -m bench.kodak --bpp 1.0                       # all 24 images, sad and jpeg
    python -m bench.kodak --codecs jpeg --limit 3 \\
        --out-csv /tmp/k.csv                              # quick check, no Taichi needed
    python -m bench.kodak --bpp 1.0 --resume              # continue an interrupted run
    python -m bench.kodak --report-only                   # regenerate the report from the CSV

Images come from --images DIR (default: the Kodak set in ../shared/data/kodak). For every
image x codec cell it records file bytes, bpp, PSNR-RGB, encode and decode seconds and
whether the file fits the budget (floor(bpp * W * H / 8) bytes), with the code version and
settings that produced it (benchlib.PROVENANCE_FIELDS). The CSV (bench/results/
kodak-<bpp>bpp.csv) is rewritten after every cell, so a crash loses nothing; --resume reuses
a finished cell only when its commit, uncommitted-changes hash and settings match this run.
The markdown report (per-image table, per-codec summary, provenance) is generated from the
CSV at the end, beside it.
"""

from __future__ import annotations

import argparse
import statistics
import sys
from pathlib import Path

import numpy as np
from PIL import Image

from bench.benchlib import (
    PROVENANCE_FIELDS,
    RESULTS,
    budget_bytes,
    fmt,
    image_paths,
    load_sadcodec,
    machine_line,
    pillow_codec,
    provenance,
    psnr_rgb,
    read_csv,
    report_head,
    reusable,
    run_pillow,
    run_sad,
    sad_settings,
    stamp,
    timed,
    write_csv,
    write_report,
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
    "startup_s",
    *PROVENANCE_FIELDS,
]
CODECS = ("sad", "jpeg")


def markdown(rows: list[dict], csv_path: Path) -> str:
    """The report, from the CSV's rows alone: one section per target rate."""
    codecs = [c for c in CODECS if any(r["codec"] == c for r in rows)]
    bpps = sorted({float(r["target_bpp"]) for r in rows})
    rates = ", ".join(f"{b:g}" for b in bpps)
    out = report_head(
        f"Kodak at {rates} bpp: {' vs '.join(codecs)}",
        "bench.kodak",
        csv_path,
        rows,
        "Budget per image: floor(bpp * W * H / 8) bytes. PSNR-RGB over all pixels and "
        "3 channels. Times are wall-clock seconds on a shared machine: sad encode is one run, "
        "sad decode the median of `repeats_decode` runs (settings), JPEG (4:2:0, "
        "optimize=True, the highest quality that fits) encode/decode the median of 3. "
        "`*` marks a file over budget.",
    )
    startup = [float(r["startup_s"]) for r in rows if r.get("startup_s")]
    if startup:
        out.append(
            f"\nTaichi start-up (import + `init_backend`, once per run): median "
            f"{statistics.median(startup):.2f} s."
        )
    for b in bpps:
        at = [r for r in rows if float(r["target_bpp"]) == b]
        out += ["", f"## Per image at {b:g} bpp" if len(bpps) > 1 else "## Per image", ""]
        cell = {(r["image"], r["codec"]): r for r in at}
        images = sorted({r["image"] for r in at})
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
            f"## Summary at {b:g} bpp" if len(bpps) > 1 else "## Summary",
            "",
            "| codec | images | mean bpp | max bpp | mean PSNR | median enc s | median dec s "
            "| over budget |",
            "|---|---|---|---|---|---|---|---|",
        ]
        for c in codecs:
            rs = [r for r in at if r["codec"] == c]
            if not rs:
                continue
            col = {
                k: [float(r[k]) for r in rs] for k in ("bpp", "psnr_rgb", "encode_s", "decode_s")
            }
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
    p.add_argument("--images", type=Path, default=None, help="image folder (default: Kodak)")
    p.add_argument("--bpp", type=float, default=1.0)
    p.add_argument("--limit", type=int, default=None, help="first N images by sorted name")
    p.add_argument("--codecs", default="sad,jpeg", help="comma list of: sad, jpeg")
    p.add_argument("--effort", type=int, default=None)
    p.add_argument("--iterations", type=int, default=None)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--arch", default="cpu", help="sadcodec backend: cpu, cuda or auto")
    p.add_argument("--threads", type=int, default=None, help="sadcodec CPU threads")
    p.add_argument("--out-csv", type=Path, default=None, help="default results/kodak-<bpp>bpp.csv")
    p.add_argument("--out-md", type=Path, default=None, help="default: the CSV's path, .md")
    p.add_argument("--resume", action="store_true", help="reuse matching cells of the CSV")
    p.add_argument("--report-only", action="store_true", help="regenerate the report only")
    p.add_argument("--repeats-decode", type=int, default=3)
    args = p.parse_args(argv)
    if args.out_csv is None:
        args.out_csv = RESULTS / f"kodak-{args.bpp:g}bpp.csv"
    if args.report_only:
        return write_report(args, lambda rows: markdown(rows, args.out_csv))

    codecs = [c.strip() for c in args.codecs.split(",") if c.strip()]
    bad = [c for c in codecs if c not in CODECS]
    if bad or not codecs:
        p.error(f"unknown codec(s) {bad}; choose from {', '.join(CODECS)}")
    paths = image_paths(args.images, args.limit)

    prov, machine = provenance(), machine_line()
    settings = {"sad": sad_settings(args), "jpeg": pillow_codec("jpeg").settings()}
    # --resume: reuse wanted cells measured by the same code with the same settings; keep
    # every row outside this run (other images, codecs, rates) as it is.
    old = read_csv(args.out_csv) if args.resume else []
    wanted = {(pth.stem, c) for pth in paths for c in codecs}

    def key(r: dict) -> tuple[str, str] | None:
        return (r["image"], r["codec"]) if float(r["target_bpp"]) == args.bpp else None

    done = {key(r): r for r in old if key(r) in wanted and reusable(r, prov, settings[r["codec"]])}
    extra = [r for r in old if key(r) not in wanted]
    rows = [done[k] for k in sorted(done)]
    if old:
        print(f"{len(done)} cell(s) reused from {args.out_csv}", file=sys.stderr)

    startup_s = None
    if any(k[1] == "sad" for k in wanted - done.keys()):
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
                "target_bpp": f"{args.bpp:g}",
                "bytes": n,
                "bpp": f"{8 * n / (w * h):.6f}",
                "psnr_rgb": f"{psnr_rgb(img, res['decoded']):.4f}",
                "encode_s": f"{res['encode_s']:.4f}",
                "decode_s": f"{res['decode_s']:.4f}",
                "within_budget": str(n <= budget),
                "sites": res["sites"],
                "quality": res["quality"],
                "startup_s": f"{startup_s:.3f}" if c == "sad" else "",
            }
            rows.append(stamp(row, prov, settings[c], machine))
            write_csv(args.out_csv, rows + extra, FIELDS)
            flag = "" if n <= budget else "  OVER BUDGET"
            print(
                f"{pth.stem} {c}: {8 * n / (w * h):.4f} bpp  {float(row['psnr_rgb']):.2f} dB  "
                f"enc {res['encode_s']:.3f} s  dec {res['decode_s']:.3f} s{flag}",
                file=sys.stderr,
                flush=True,
            )

    everything = rows + extra
    everything.sort(key=lambda r: (float(r["target_bpp"]), r["image"], r["codec"] != "sad"))
    write_csv(args.out_csv, everything, FIELDS)
    write_report(args, lambda rows: markdown(rows, args.out_csv))
    over = sum(r["within_budget"] != "True" for r in rows)
    print(f"{over} file(s) over budget in this run", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
