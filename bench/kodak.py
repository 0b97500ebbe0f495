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
import csv
import datetime
import io
import math
import os
import platform
import shlex
import statistics
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
from PIL import Image

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


def psnr_rgb(a: np.ndarray, b: np.ndarray) -> float:
    """PSNR over all pixels and the 3 colour channels of two uint8 images."""
    d = a[..., :3].astype(np.float64) - b[..., :3].astype(np.float64)
    mse = float(np.mean(d * d))
    return math.inf if mse == 0 else 10 * math.log10(255.0**2 / mse)


def timed(fn, repeats: int = 1):
    """Call fn `repeats` times; return (last result, median seconds)."""
    times, out = [], None
    for _ in range(max(1, repeats)):
        t0 = time.perf_counter()
        out = fn()
        times.append(time.perf_counter() - t0)
    return out, statistics.median(times)


def jpeg_bytes(img: np.ndarray, quality: int) -> bytes:
    buf = io.BytesIO()
    Image.fromarray(img).save(buf, "JPEG", quality=quality, subsampling=2, optimize=True)
    return buf.getvalue()


def jpeg_decode(data: bytes) -> np.ndarray:
    with Image.open(io.BytesIO(data)) as im:
        im.load()
        return np.asarray(im.convert("RGB"))


def run_jpeg(img: np.ndarray, budget: int, args) -> dict:
    """Highest quality in 1..100 whose whole file fits the budget (binary search)."""
    lo, hi, best = 1, 100, None
    while lo <= hi:
        q = (lo + hi) // 2
        if len(jpeg_bytes(img, q)) <= budget:
            best, lo = q, q + 1
        else:
            hi = q - 1
    q = best if best is not None else 1  # quality 1 is over budget: record it as such
    data, enc_s = timed(lambda: jpeg_bytes(img, q), 3)
    out, dec_s = timed(lambda: jpeg_decode(data), 3)
    return {
        "data": data,
        "decoded": out,
        "encode_s": enc_s,
        "decode_s": dec_s,
        "sites": "",
        "quality": q,
    }


def load_sadcodec():
    """Import sadcodec, falling back to this checkout when it is not installed."""
    try:
        import sadcodec
    except ModuleNotFoundError:
        sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
        import sadcodec
    return sadcodec


def run_sad(img: np.ndarray, budget: int, args) -> dict:
    sadcodec = load_sadcodec()

    kw = {"bpp": args.bpp, "seed": args.seed, "arch": args.arch, "threads": args.threads}
    if args.effort is not None:
        kw["effort"] = args.effort
    if args.iterations is not None:
        kw["iterations"] = args.iterations
    data, enc_s = timed(lambda: sadcodec.encode(img, **kw))  # one run: encodes are long
    out, dec_s = timed(lambda: sadcodec.decode(data, arch=args.arch), args.repeats_decode)
    return {
        "data": data,
        "decoded": out,
        "encode_s": enc_s,
        "decode_s": dec_s,
        "sites": sadcodec.read_info(data)["sites"],
        "quality": "",
    }


def read_csv(path: Path) -> list[dict]:
    if not path.exists():
        return []
    with open(path, newline="") as f:
        return list(csv.DictReader(f))


def atomic_write(path: Path, text: str) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "w", newline="") as f:
            f.write(text)
        os.replace(tmp, path)
    except BaseException:
        os.unlink(tmp)
        raise


def write_csv(path: Path, rows: list[dict]) -> None:
    buf = io.StringIO()
    w = csv.DictWriter(buf, fieldnames=FIELDS, lineterminator="\n")
    w.writeheader()
    w.writerows(rows)
    atomic_write(path, buf.getvalue())


def machine_facts(with_taichi: bool) -> list[str]:
    import PIL

    u = platform.uname()
    facts = [
        f"CPU cores (os.cpu_count): {os.cpu_count()}",
        f"processor: {platform.processor() or u.machine}",
        f"system: {u.system} {u.release} {u.machine}",
        f"Python {platform.python_version()}, numpy {np.__version__}, Pillow {PIL.__version__}",
    ]
    if with_taichi:
        import taichi

        facts[-1] += f", taichi {'.'.join(map(str, taichi.__version__))}"
    return facts


def fmt(x: str, nd: int) -> str:
    return "" if x in ("", None) else f"{float(x):.{nd}f}"


def markdown(args, rows: list[dict], codecs: list[str], startup_s: float | None) -> str:
    cmd = " ".join(shlex.quote(a) for a in [Path(sys.executable).name] + sys.argv)
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

    runners = {"sad": run_sad, "jpeg": run_jpeg}
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
            budget = math.floor(args.bpp * w * h / 8)
            res = runners[c](img, budget, args)
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
            write_csv(args.out_csv, rows + extra)
            flag = "" if n <= budget else "  OVER BUDGET"
            print(
                f"{pth.stem} {c}: {8 * n / (w * h):.4f} bpp  {float(row['psnr_rgb']):.2f} dB  "
                f"enc {res['encode_s']:.3f} s  dec {res['decode_s']:.3f} s{flag}",
                file=sys.stderr,
                flush=True,
            )

    rows.sort(key=lambda r: (r["image"], codecs.index(r["codec"])))
    write_csv(args.out_csv, rows + extra)
    atomic_write(args.out_md, markdown(args, rows, codecs, startup_s))
    over = sum(r["within_budget"] != "True" for r in rows)
    print(f"wrote {args.out_csv} and {args.out_md}; {over} file(s) over budget", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
