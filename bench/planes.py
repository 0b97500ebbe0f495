"""Where do a file's bits go, and how much could a better entropy coder save?

    python -m bench.planes FILE.sad [FILE.sad ...]
    python -m bench.planes --report-only

For each stored plane (docs/FORMAT.md): its zstd size in bits per site, its zeroth-order
entropy H0, and two cheap models a context coder could use, each as an entropy in bits per
site: conditioning on another field (the best of a few pairs), and predicting the value
from the spatially nearest of the previous 64 sites in stored order. The Morton gaps are
also compared with the bound for uniformly placed sites, log2(C(grid points, sites)) per
site. Conditional entropies from a few thousand samples are optimistic (small-sample bias),
so a saving they show is an upper bound. Writes one row per file and plane to
bench/results/planes.csv and generates bench/results/planes.md from it.
"""

from __future__ import annotations

import argparse
import math
import sys
from pathlib import Path

import numpy as np

from bench.benchlib import Recorder, output_args, report_head, settings_of, write_report

FIELDS = [
    "file",
    "plane",
    "zstd_bits",
    "h0",
    "pred_h0",
    "conditioned",
    "width",
    "height",
    "sites",
    "payload_bits_per_site",
    "gap_bits",
    "bound_bits",
]
GAPS = ["gap3", "gap2", "gap1", "gap0"]
# (plane, context plane, context shift): fields whose values might go together.
PAIRS = [
    ("theta", "a", 0),
    ("a", "t", 0),
    ("r", "t", 0),
    ("t", "a", 0),
    ("Co", "Y", 2),
    ("Cg", "Co", 2),
]
WINDOW = 64


def entropy(v: np.ndarray) -> float:
    counts = np.bincount(v.astype(np.int64) & 0xFF, minlength=256).astype(np.float64)
    p = counts[counts > 0] / max(len(v), 1)
    return max(0.0, float(-(p * np.log2(p)).sum()))


def cond_entropy(v: np.ndarray, ctx: np.ndarray) -> float:
    return sum(entropy(v[ctx == c]) * (ctx == c).sum() for c in np.unique(ctx)) / len(v)


def nearest_previous(x: np.ndarray, y: np.ndarray) -> np.ndarray:
    """Index of the nearest of the previous WINDOW sites (0 for the first)."""
    nn = np.zeros(len(x), dtype=np.int64)
    for i in range(1, len(x)):
        lo = max(0, i - WINDOW)
        d = (x[lo:i] - x[i]) ** 2 + (y[lo:i] - y[i]) ** 2
        nn[i] = lo + int(np.argmin(d))
    return nn


def analyse(path: Path) -> list[dict]:
    """One row per stored plane of a file; the file's facts repeated on each row."""
    from sadcodec import bitstream, container

    names_all = [*GAPS, *bitstream.FIELDS, "Y", "Co", "Cg"]
    hdr, payload = container.read(path.read_bytes())
    n, spec = hdr.n_sites, hdr.spec
    q = bitstream.decode_payload(payload, n, hdr.channels, spec.col_bits)
    _, planes = bitstream._planes(q, spec.col_bits)
    names = (
        names_all[: len(planes)]
        if hdr.channels >= 3
        else names_all[:8] + ["c0", "c1"][: hdr.channels]
    )
    cctx = bitstream._compressor()
    order = bitstream.spatial_order(q)
    xs = q["x"][order].astype(np.float64)
    ys = q["y"][order].astype(np.float64)
    nn = nearest_previous(xs, ys)
    p = dict(zip(names, planes, strict=True))
    grid = hdr.width * hdr.height * (1 << (2 * spec.pos_frac_bits))
    bound = (math.lgamma(grid + 1) - math.lgamma(n + 1) - math.lgamma(grid - n + 1)) / math.log(2)
    gaps = sum(8 * len(cctx.compress(p[g].tobytes())) / n for g in GAPS)
    facts = {
        "file": path.name,
        "width": hdr.width,
        "height": hdr.height,
        "sites": n,
        "payload_bits_per_site": f"{8 * len(payload) / n:.2f}",
        "gap_bits": f"{gaps:.2f}",
        "bound_bits": f"{bound / n:.2f}",
    }
    rows = []
    for name, plane in p.items():
        z = 8 * len(cctx.compress(plane.tobytes())) / n
        ctx = [
            f"H({name}|{c}>>{s}) {cond_entropy(plane, p[c] >> s):.2f}"
            for v, c, s in PAIRS
            if v == name and c in p
        ]
        pred = ""
        if not name.startswith("gap"):
            # residual modulo the plane's range, so wrap-around (theta, chroma) costs nothing
            mask = (1 << max(1, int(plane.max()).bit_length())) - 1
            res = (plane.astype(np.int64) - plane[nn].astype(np.int64)) & mask
            pred = f"{entropy(res):.2f}"
        rows.append(
            {
                **facts,
                "plane": name,
                "zstd_bits": f"{z:.2f}",
                "h0": f"{entropy(plane):.2f}",
                "pred_h0": pred,
                "conditioned": "; ".join(ctx),
            }
        )
    return rows


def markdown(rows: list[dict], csv_path: Path) -> str:
    """A section per file: its planes, totals, and the Morton gaps against the bound."""
    lines = report_head("Bits per site, plane by plane", "bench.planes", csv_path, rows)
    for name in dict.fromkeys(r["file"] for r in rows):
        rs = [r for r in rows if r["file"] == name]
        f = rs[0]
        lines += [
            "",
            f"### {name}: {f['width']}x{f['height']}, {f['sites']} sites, "
            f"{f['payload_bits_per_site']} payload bits per site",
            "",
            "| plane | zstd bits/site | H0 | nearest-previous residual H0 | conditioned on |",
            "|---|---|---|---|---|",
        ]
        lines += [
            f"| {r['plane']} | {r['zstd_bits']} | {r['h0']} | {r['pred_h0']} | {r['conditioned']} |"
            for r in rs
        ]
        tot_z = sum(float(r["zstd_bits"]) for r in rs)
        tot_h = sum(float(r["h0"]) for r in rs)
        lines += [
            f"| total | {tot_z:.2f} | {tot_h:.2f} | | |",
            "",
            f"Positions: Morton gaps {f['gap_bits']} bits/site; uniform placement bound "
            f"{f['bound_bits']} bits/site.",
        ]
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("files", type=Path, nargs="*", help=".sad files")
    output_args(ap, "planes")
    args = ap.parse_args(argv)
    if not args.report_only:
        if not args.files:
            ap.error("give one or more .sad files (or --report-only)")
        rec = Recorder(args.out_csv, FIELDS, settings_of(args))
        for f in args.files:
            for row in analyse(f):
                rec.add(row)
    return write_report(args, lambda rows: markdown(rows, args.out_csv))


if __name__ == "__main__":
    sys.exit(main())
