"""Kodak rate-distortion benchmark: sadcodec against JPEG, WebP and AVIF at several rates.

Run from the repository root (needs the bench extra: pip install -e '.[bench]'):

    python -m bench.rd                                    # 24 images x 0.25,0.5,1,2 bpp, all codecs
    python -m bench.rd --resume                           # continue an interrupted run
    python -m bench.rd --limit 1 --bpp 0.5,1 --iterations 50 --out-csv /tmp/rd.csv  # quick check
    python -m bench.rd --report-only                      # regenerate report and plot from the CSV

Images come from --images DIR (default: the Kodak set in ../shared/data/kodak). Every image x
rate x codec cell gets a real file within floor(bpp * W * H / 8) bytes: sad encodes to the
rate, JPEG/WebP/AVIF use the highest quality whose whole file fits (binary search). Each cell
records bytes, bpp, PSNR-RGB, SSIM and encode/decode seconds, with the code version and the
settings that produced it (benchlib.PROVENANCE_FIELDS). The CSV (bench/results/kodak-rd.csv)
is rewritten after every cell, so a crash loses nothing; --resume reuses a finished cell only
when its commit, uncommitted-changes hash and settings match this run (failed cells are
retried). At the end the markdown report (mean table, Bjontegaard delta rates of sad against
each codec, problem cells, provenance) and an RD plot of the mean curves are generated from
the CSV alone, beside it.
"""

from __future__ import annotations

import argparse
import importlib.metadata
import importlib.util
import math
import os
import statistics
import sys
from collections.abc import Sequence
from pathlib import Path

import numpy as np
from PIL import Image, features

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
    "ssim",
    "encode_s",
    "decode_s",
    "within_budget",
    "quality",
    "sites",
    "error",
    "startup_s",
    *PROVENANCE_FIELDS,
]
CODECS = ("sad", "jpeg", "webp", "avif")
BD_METHOD = (
    "Bjontegaard (VCEG-M33): per image, log10(rate) is fitted as a cubic polynomial of PSNR "
    "(least squares; degree n-1 when a curve has n < 4 points) for each codec, the gap is "
    "integrated over the PSNR range both curves cover, and 10^mean_gap - 1 is that image's "
    "BD-rate; the table gives the mean (and median) of the per-image values. Negative: sad "
    "needs fewer bits for the same PSNR. BD-PSNR is the same with the axes swapped (dB, "
    "positive: sad better). BD-rate (SSIM) is the same with SSIM in place of PSNR. Rates "
    "are the real file bpp, over-budget files included."
)

Key = tuple[str, str, float]


# ---------------------------------------------------------------- Bjontegaard delta


def _mean_gap(
    x_ref: Sequence[float], y_ref: Sequence[float], x_test: Sequence[float], y_test: Sequence[float]
) -> float | None:
    """Mean of y_test(x) - y_ref(x) over the x range both cover, each y a polynomial fit of
    degree min(3, n - 1); None when the ranges do not overlap or a curve is too short."""
    fits, ranges = [], []
    for x, y in ((x_ref, y_ref), (x_test, y_test)):
        x, y = np.asarray(x, np.float64), np.asarray(y, np.float64)
        ok = np.isfinite(x) & np.isfinite(y)
        x, y = x[ok], y[ok]
        if len(np.unique(x)) < 2:
            return None
        # Polynomial.fit scales x to [-1, 1] first, which keeps the cubic well conditioned.
        fits.append(np.polynomial.Polynomial.fit(x, y, min(3, len(x) - 1)).integ())
        ranges.append((x.min(), x.max()))
    lo, hi = max(r[0] for r in ranges), min(r[1] for r in ranges)
    if hi <= lo:
        return None
    area_ref = fits[0](hi) - fits[0](lo)
    area_test = fits[1](hi) - fits[1](lo)
    return float((area_test - area_ref) / (hi - lo))


def bd_rate(
    rate_ref: Sequence[float],
    psnr_ref: Sequence[float],
    rate_test: Sequence[float],
    psnr_test: Sequence[float],
) -> float | None:
    """Bjontegaard delta rate of `test` against `ref` in percent: how much more rate (negative:
    less) test needs for the same PSNR, averaged over the PSNR range both curves cover."""
    gap = _mean_gap(psnr_ref, np.log10(rate_ref), psnr_test, np.log10(rate_test))
    return None if gap is None else (10**gap - 1) * 100


def bd_psnr(
    rate_ref: Sequence[float],
    psnr_ref: Sequence[float],
    rate_test: Sequence[float],
    psnr_test: Sequence[float],
) -> float | None:
    """Bjontegaard delta PSNR of `test` against `ref` in dB at the same rate."""
    return _mean_gap(np.log10(rate_ref), psnr_ref, np.log10(rate_test), psnr_test)


# ---------------------------------------------------------------- rows and summaries


def ok(row: dict) -> bool:
    """A cell that produced a file and a measurement (over budget or not)."""
    return not row.get("error") and row.get("bytes", "") != ""


def split_resume(
    old: list[dict], wanted: set[Key], settings: dict[str, str], prov: dict
) -> tuple[dict[Key, dict], list[dict]]:
    """Rows of an earlier CSV to reuse (wanted cells without error, measured by the same code
    with the same settings: benchlib.reusable) and rows to keep untouched (cells outside this
    run). Stale or failed wanted cells are dropped: redone."""
    done, extra = {}, []
    for r in old:
        key = (r["image"], r["codec"], float(r["target_bpp"]))
        if key not in wanted:
            extra.append(r)
        elif ok(r) and reusable(r, prov, settings.get(r["codec"], "")):
            done[key] = r
    return done, extra


def curves(
    rows: list[dict], metric: str = "psnr_rgb"
) -> dict[tuple[str, str], tuple[list[float], list[float]]]:
    """(image, codec) -> (bpp list, metric list) over the measured rates."""
    out: dict[tuple[str, str], tuple[list[float], list[float]]] = {}
    for r in rows:
        if ok(r):
            bpp, quality = out.setdefault((r["image"], r["codec"]), ([], []))
            bpp.append(float(r["bpp"]))
            quality.append(float(r[metric]))
    return out


def bd_per_image(
    rows: list[dict], test: str, ref: str, metric: str = "psnr_rgb"
) -> dict[str, tuple[float | None, ...]]:
    """image -> (BD-rate %, BD-metric) of `test` against `ref` (the metric PSNR-RGB in dB,
    or SSIM); None where undefined."""
    c = curves(rows, metric)
    images = sorted({r["image"] for r in rows})
    out = {}
    for im in images:
        if (im, test) in c and (im, ref) in c:
            (rt, pt), (rr, pr) = c[(im, test)], c[(im, ref)]
            out[im] = (bd_rate(rr, pr, rt, pt), bd_psnr(rr, pr, rt, pt))
        else:
            out[im] = (None, None)
    return out


def mean_curve(
    rows: list[dict], codec: str, bpps: list[float], metric: str = "psnr_rgb"
) -> tuple[list[float], list[float]]:
    """Mean bpp and mean metric per target rate over the images measured there."""
    xs, ys = [], []
    for b in bpps:
        rs = [r for r in rows if r["codec"] == codec and float(r["target_bpp"]) == b and ok(r)]
        if rs:
            xs.append(statistics.mean(float(r["bpp"]) for r in rs))
            ys.append(statistics.mean(float(r[metric]) for r in rs))
    return xs, ys


def plot(path: Path, rows: list[dict], codecs: list[str], bpps: list[float], title: str) -> None:
    """Mean RD curves of all codecs, bpp on x, PSNR-RGB (left) and SSIM (right) on y
    (matplotlib, no display)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, 2, figsize=(12, 5))
    for ax, metric, label in zip(
        axes, ("psnr_rgb", "ssim"), ("PSNR-RGB (dB)", "SSIM"), strict=True
    ):
        for c in codecs:
            xs, ys = mean_curve(rows, c, bpps, metric)
            if xs:
                ax.plot(xs, ys, marker="o", label=c)
        ax.set_xlabel("bits per pixel (real file size)")
        ax.set_ylabel(label)
        ax.grid(True, alpha=0.3)
        ax.legend()
    fig.suptitle(title)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp.png")
    fig.savefig(tmp, dpi=120, bbox_inches="tight")
    plt.close(fig)
    os.replace(tmp, path)


def codec_versions() -> list[str]:
    """Versions of the metric and plot packages, for the machine column (the codec
    libraries' versions are in each Pillow codec's settings)."""
    out = []
    for name in ("scikit-image", "matplotlib"):
        try:
            out.append(f"{name} {importlib.metadata.version(name)}")
        except importlib.metadata.PackageNotFoundError:
            pass
    return out


def present(rows: list[dict]) -> tuple[list[str], list[float]]:
    """The codecs (in CODECS order) and target rates the rows cover."""
    codecs = [c for c in CODECS if any(r["codec"] == c for r in rows)]
    return codecs, sorted({float(r["target_bpp"]) for r in rows})


def behind(rows: list[dict], others: list[str], bpps: list[float]) -> list[str]:
    """Report lines: per codec and target rate, the images where sad's file scores under
    that codec's (same image, same budget), in PSNR and in SSIM."""
    cell = {(r["image"], r["codec"], float(r["target_bpp"])): r for r in rows if ok(r)}
    images = sorted({r["image"] for r in rows})
    out = [
        "",
        "## Where sad is behind",
        "",
        "Images whose sad file scores under the other codec's at the same budget (PSNR-RGB; "
        "SSIM), by target rate; the count is out of the images both measured.",
        "",
        "| sad under | bpp | PSNR: count | PSNR: images | SSIM: count | SSIM: images |",
        "|---|---|---|---|---|---|",
    ]
    for c in others:
        for b in bpps:
            pairs = [
                (im, cell[(im, "sad", b)], cell[(im, c, b)])
                for im in images
                if (im, "sad", b) in cell and (im, c, b) in cell
            ]
            cols = []
            for metric in ("psnr_rgb", "ssim"):
                under = [im for im, s, o in pairs if float(s[metric]) < float(o[metric])]
                names = ", ".join(im.removeprefix("kodim") for im in under) or "-"
                cols += [f"{len(under)} of {len(pairs)}", names]
            out.append(f"| {c} | {b:g} | " + " | ".join(cols) + " |")
    return out


def markdown(rows: list[dict], csv_path: Path, png_path: Path, md_path: Path) -> str:
    """The report, from the CSV's rows alone: provenance, mean table, BD-rates, per-image
    BD-rates, problem cells, the plot."""
    codecs, bpps = present(rows)
    out = report_head(
        f"Kodak rate-distortion: {', '.join(codecs)}",
        "bench.rd",
        csv_path,
        rows,
        "Budget per image and rate: floor(bpp * W * H / 8) bytes, the whole file. sad: "
        "`sadcodec.encode(img, bpp, ...)` with the settings above, one encode, decode the "
        "median of `repeats_decode`. JPEG (Pillow, libjpeg-turbo, 4:2:0, optimize=True), WebP "
        "(lossy, method=6) and AVIF (4:2:0, speed as in its settings) at the highest quality "
        "whose file fits the budget (binary search over quality); their encode and decode times "
        "are medians of 3. PSNR-RGB: MSE over all pixels and 3 channels of the 8-bit output. "
        "SSIM: scikit-image `structural_similarity` on RGB (Gaussian window sigma 1.5, "
        "data_range 255, mean over channels). Times are wall-clock seconds on a shared machine.",
    )
    startup = [float(r["startup_s"]) for r in rows if r.get("startup_s")]
    if startup:
        out.append(
            f"\nTaichi start-up (import + `init_backend`, once per run): median "
            f"{statistics.median(startup):.2f} s."
        )
    absent = [c for c in CODECS if c not in codecs]
    if absent:
        out.append(
            f"\nNo {', '.join(absent)} cells in the CSV (not asked for with --codecs, or, for "
            "AVIF, a Pillow without AVIF support)."
        )
    out += [
        "",
        "## Means per codec and rate",
        "",
        "| codec | target bpp | images | mean bpp | max bpp | mean PSNR | mean SSIM "
        "| median enc s | median dec s | over budget | failed |",
        "|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    for c in codecs:
        for b in bpps:
            cell = [r for r in rows if r["codec"] == c and float(r["target_bpp"]) == b]
            if not cell:
                continue
            good = [r for r in cell if ok(r)]
            over = sum(r["within_budget"] != "True" for r in good)
            failed = len(cell) - len(good)
            if not good:
                out.append(f"| {c} | {b:g} | 0 | | | | | | | 0 | {failed} |")
                continue
            col = {
                k: [float(r[k]) for r in good]
                for k in ("bpp", "psnr_rgb", "ssim", "encode_s", "decode_s")
            }
            out.append(
                f"| {c} | {b:g} | {len(good)} | {statistics.mean(col['bpp']):.4f} | "
                f"{max(col['bpp']):.4f} | {statistics.mean(col['psnr_rgb']):.2f} | "
                f"{statistics.mean(col['ssim']):.4f} | {statistics.median(col['encode_s']):.3f} | "
                f"{statistics.median(col['decode_s']):.3f} | {over} | {failed} |"
            )
    others = [c for c in codecs if c != "sad"]
    per_image = {c: bd_per_image(rows, "sad", c) for c in others} if "sad" in codecs else {}
    per_image_ssim = {c: bd_per_image(rows, "sad", c, "ssim") for c in per_image}
    if per_image:
        out += [
            "",
            "## BD-rate of sad against each codec",
            "",
            BD_METHOD,
            "",
            "| sad vs | mean BD-rate | median BD-rate | mean BD-PSNR | mean BD-rate (SSIM) "
            "| median BD-rate (SSIM) | images used |",
            "|---|---|---|---|---|---|---|",
        ]
        for c, vals in per_image.items():
            rates = [v[0] for v in vals.values() if v[0] is not None]
            dbs = [v[1] for v in vals.values() if v[1] is not None]
            srates = [v[0] for v in per_image_ssim[c].values() if v[0] is not None]
            ssim_cells = (
                f"{statistics.mean(srates):+.1f}% | {statistics.median(srates):+.1f}%"
                if srates
                else "n/a | n/a"
            )
            if not rates:
                out.append(f"| {c} | n/a | n/a | n/a | {ssim_cells} | 0 of {len(vals)} |")
                continue
            out.append(
                f"| {c} | {statistics.mean(rates):+.1f}% | {statistics.median(rates):+.1f}% | "
                f"{statistics.mean(dbs):+.2f} dB | {ssim_cells} | {len(rates)} of {len(vals)} |"
            )
        out += [
            "",
            "Per image (BD-rate %; n/a: the PSNR ranges do not overlap or a curve has "
            "fewer than 2 points):",
            "",
        ]
        out += [
            "| image | " + " | ".join(f"vs {c}" for c in per_image) + " |",
            "|---|" + "---|" * len(per_image),
        ]
        for im in sorted({r["image"] for r in rows}):
            cells = []
            for vals in per_image.values():
                v = vals[im][0]
                cells.append("n/a" if v is None else f"{v:+.1f}")
            out.append(f"| {im} | " + " | ".join(cells) + " |")
    if "sad" in codecs and others:
        out += behind(rows, others, bpps)
    out += ["", "## Over-budget and failed cells", ""]
    bad = [r for r in rows if not ok(r) or r["within_budget"] != "True"]
    if not bad:
        out.append(f"None: all {len(rows)} cells produced a file within its budget.")
    for r in bad:
        what = (
            f"failed: {r['error']}"
            if not ok(r)
            else f"over budget: {r['bytes']} bytes, {fmt(r['bpp'], 4)} bpp "
            f"(quality {r['quality'] or '-'})"
        )
        out.append(f"- {r['image']} {r['codec']} at {float(r['target_bpp']):g} bpp: {what}")
    rel = os.path.relpath(Path(png_path).resolve(), Path(md_path).resolve().parent)
    out += ["", "## RD curves (means over images)", "", f"![RD plot]({rel})"]
    return "\n".join(out) + "\n"


# ---------------------------------------------------------------- measuring


def ssim_rgb(a: np.ndarray, b: np.ndarray) -> float:
    """SSIM of two uint8 RGB images (Wang et al. settings), mean over the 3 channels."""
    from skimage.metrics import structural_similarity

    return float(
        structural_similarity(
            a[..., :3],
            b[..., :3],
            channel_axis=2,
            data_range=255,
            gaussian_weights=True,
            sigma=1.5,
            use_sample_covariance=False,
        )
    )


def measure(img: np.ndarray, name: str, codec: str, bpp: float, args) -> dict:
    """Encode, decode and score one cell; an exception becomes a failed row, not a crash."""
    h, w = img.shape[:2]
    budget = budget_bytes(bpp, w, h)
    row = {"image": name, "codec": codec, "target_bpp": f"{bpp:g}"}
    try:
        if codec == "sad":
            res = run_sad(img, bpp, args)
        else:
            res = run_pillow(img, budget, pillow_codec(codec, args.avif_speed))
        dec = res["decoded"]
        if dec.shape[:2] != img.shape[:2] or dec.ndim != 3 or dec.shape[2] < 3:
            raise ValueError(f"decoded shape {dec.shape} != {img.shape}")
        n = len(res["data"])
        row.update(
            {
                "bytes": n,
                "bpp": f"{8 * n / (w * h):.6f}",
                "psnr_rgb": f"{psnr_rgb(img, dec):.4f}",
                "ssim": f"{ssim_rgb(img, dec):.5f}",
                "encode_s": f"{res['encode_s']:.4f}",
                "decode_s": f"{res['decode_s']:.4f}",
                "within_budget": str(n <= budget),
                "quality": res["quality"],
                "sites": res["sites"],
                "error": "",
            }
        )
    except Exception as exc:  # record and go on: one bad cell must not cost a long run
        row["error"] = f"{type(exc).__name__}: {exc}".replace("\n", " ")[:300]
    return row


def parse_bpps(text: str) -> list[float]:
    bpps = sorted({float(x) for x in text.split(",") if x.strip()})
    if not bpps or any(not math.isfinite(b) or b <= 0 for b in bpps):
        raise argparse.ArgumentTypeError(f"need positive rates, got {text!r}")
    return bpps


def report(args: argparse.Namespace) -> int:
    """Generate the plot and the markdown report from the CSV alone."""
    md = args.out_md if args.out_md is not None else args.out_csv.with_suffix(".md")
    png = args.out_png if args.out_png is not None else md.with_suffix(".png")

    def render(rows: list[dict]) -> str:
        codecs, bpps = present(rows)
        n = len({r["image"] for r in rows})
        plot(png, rows, codecs, bpps, f"mean of {n} image(s)")
        return markdown(rows, args.out_csv, png, md)

    args.out_md = md
    return write_report(args, render)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--images", type=Path, default=None, help="image folder (default: Kodak)")
    p.add_argument(
        "--bpp",
        type=parse_bpps,
        default=[0.25, 0.5, 1.0, 2.0],
        help="comma list of target rates (default 0.25,0.5,1,2)",
    )
    p.add_argument("--limit", type=int, default=None, help="first N images by sorted name")
    p.add_argument("--codecs", default=",".join(CODECS), help="comma list of: " + ", ".join(CODECS))
    p.add_argument("--effort", type=int, default=None, help="sadcodec effort 1..9")
    p.add_argument("--iterations", type=int, default=None, help="sadcodec fit iterations")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--arch", default="cpu", help="sadcodec backend: cpu, cuda or auto")
    p.add_argument("--threads", type=int, default=None, help="sadcodec CPU threads")
    p.add_argument("--avif-speed", type=int, default=6, help="libavif speed 0..10 (Pillow's 6)")
    p.add_argument("--repeats-decode", type=int, default=3, help="sad decodes timed (median)")
    p.add_argument("--resume", action="store_true", help="reuse matching finished cells")
    p.add_argument("--report-only", action="store_true", help="regenerate report and plot only")
    p.add_argument("--out-csv", type=Path, default=RESULTS / "kodak-rd.csv")
    p.add_argument("--out-md", type=Path, default=None, help="default: the CSV's path, .md")
    p.add_argument("--out-png", type=Path, default=None, help="default: the report's path, .png")
    args = p.parse_args(argv)

    missing = [m for m in ("skimage", "matplotlib") if importlib.util.find_spec(m) is None]
    if missing:  # checked first: a long run must not die at the end for want of a plot
        p.error(f"missing {', '.join(missing)}: pip install -e '.[bench]' (or make bench-rd)")
    if args.report_only:
        return report(args)
    codecs = [c.strip() for c in args.codecs.split(",") if c.strip()]
    bad = [c for c in codecs if c not in CODECS]
    if bad or not codecs:
        p.error(f"unknown codec(s) {bad}; choose from {', '.join(CODECS)}")
    if "avif" in codecs and not features.check("avif"):
        codecs.remove("avif")
        print("AVIF skipped: Pillow was built without AVIF support", file=sys.stderr)
    if not codecs:
        p.error("no codec left to run")
    paths = image_paths(args.images, args.limit)
    bpps = args.bpp

    prov, machine = provenance(), machine_line(codec_versions())
    settings = {c: pillow_codec(c, args.avif_speed).settings() for c in codecs if c != "sad"}
    settings["sad"] = sad_settings(args)
    wanted = {(pth.stem, c, b) for pth in paths for c in codecs for b in bpps}
    old = read_csv(args.out_csv) if args.resume else []
    done, extra = split_resume(old, wanted, settings, prov)
    rows = list(done.values())
    if old:
        print(f"{len(done)} cell(s) reused from {args.out_csv}", file=sys.stderr)

    startup_s = None
    if any(c == "sad" for _, c, _ in wanted - done.keys()):
        # Importing sadcodec imports Taichi, so time the import and init_backend together.
        _, startup_s = timed(lambda: load_sadcodec().init_backend(args.arch, args.threads))
        print(f"taichi start-up {startup_s:.2f} s", file=sys.stderr, flush=True)

    for pth in paths:
        img = None
        for b in bpps:
            for c in codecs:
                if (pth.stem, c, b) in done:
                    continue
                if img is None:
                    with Image.open(pth) as im:
                        img = np.asarray(im.convert("RGB"))
                row = measure(img, pth.stem, c, b, args)
                row["startup_s"] = f"{startup_s:.3f}" if c == "sad" else ""
                rows.append(stamp(row, prov, settings[c], machine))
                write_csv(args.out_csv, rows + extra, FIELDS)
                if row["error"]:
                    msg = f"FAILED {row['error']}"
                else:
                    msg = (
                        f"{float(row['bpp']):.4f} bpp  {float(row['psnr_rgb']):.2f} dB  "
                        f"SSIM {float(row['ssim']):.4f}  q {row['quality'] or '-'}  "
                        f"enc {float(row['encode_s']):.3f} s  "
                        f"dec {float(row['decode_s']):.3f} s"
                        + ("" if row["within_budget"] == "True" else "  OVER BUDGET")
                    )
                print(f"{pth.stem} {b:g} {c}: {msg}", file=sys.stderr, flush=True)

    order = {c: i for i, c in enumerate(CODECS)}
    everything = rows + extra
    everything.sort(key=lambda r: (r["image"], float(r["target_bpp"]), order.get(r["codec"], 9)))
    write_csv(args.out_csv, everything, FIELDS)
    report(args)
    over = sum(ok(r) and r["within_budget"] != "True" for r in rows)
    failed = sum(not ok(r) for r in rows)
    print(f"this run: {over} file(s) over budget, {failed} cell(s) failed", file=sys.stderr)
    return 1 if over or failed else 0


if __name__ == "__main__":
    sys.exit(main())
