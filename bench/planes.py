"""Where do a file's bits go, and how much could a better entropy coder save?

    python -m bench.planes FILE.sad [FILE.sad ...]
    python -m bench.planes --report-only

For each stored plane (docs/FORMAT.md): its zstd size in bits per site, its zeroth-order
entropy H0, and two cheap models a context coder could use, each as an entropy in bits per
site: conditioning on another field (the best of a few pairs), and predicting the value
from the spatially nearest of the previous 64 sites in stored order. The Morton gaps are
also compared with the bound for uniformly placed sites, log2(C(grid points, sites)) per
site. Conditional entropies from a few thousand samples are optimistic (small-sample bias),
so a saving they show is an upper bound. What a real context coder would pay, with no
tables in the file, is the ideal code length of an adaptive coder (Krichevsky-Trofimov
counts over the plane's alphabet), without and with the same context (four buckets): the "adaptive"
columns. For positions, the gain a density-aware coder (an occupancy tree) could have over
uniform placement is estimated from site counts in square blocks: the information in the
counts, less the cost of coding them (their zeroth-order entropy), best block size.
Writes one row per file and plane to bench/results/planes.csv and generates
bench/results/planes.md from it.
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
    "adaptive",
    "adaptive_ctx",
    "width",
    "height",
    "sites",
    "payload_bits_per_site",
    "gap_bits",
    "bound_bits",
    "density_gain",
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


def adaptive_bits(v: np.ndarray, ctx: np.ndarray | None = None) -> float:
    """Bits per symbol of an ideal adaptive coder with Krichevsky-Trofimov counts (+1/2)
    over the alphabet 0..2^width - 1 of v, one count table per context value."""
    v = v.astype(np.int64)
    size = 1 << max(1, int(v.max(initial=0)).bit_length())
    ctx = np.zeros(len(v), np.int64) if ctx is None else ctx.astype(np.int64)
    bits = 0.0
    for c in np.unique(ctx):
        counts = np.bincount(v[ctx == c], minlength=size)
        m = int(counts.sum())
        logp = sum(math.lgamma(k + 0.5) - math.lgamma(0.5) for k in counts if k)
        logp -= math.lgamma(m + 0.5 * size) - math.lgamma(0.5 * size)
        bits -= logp / math.log(2)
    return bits / max(len(v), 1)


def buckets(v: np.ndarray, k: int) -> np.ndarray:
    """v's values split into k equal ranges of its alphabet."""
    size = 1 << max(1, int(v.max(initial=0)).bit_length())
    return v.astype(np.int64) * k // size


def density_gain(x: np.ndarray, y: np.ndarray, width: int, height: int) -> float:
    """Bits per site a coder knowing the site density per block could save over uniform
    placement, net of coding the block counts; the best of 16, 32 and 64 px blocks."""
    n, best = len(x), -math.inf
    for size in (16, 32, 64):
        bw, bh = -(-width // size), -(-height // size)
        cells = (np.minimum(y // size, bh - 1) * bw + np.minimum(x // size, bw - 1)).astype(int)
        counts = np.bincount(cells, minlength=bw * bh)
        area = np.full((bh, bw), float(size * size))
        area[-1, :] = size * (height - size * (bh - 1))
        area[:, -1] *= (width - size * (bw - 1)) / size
        expect = n * area.ravel() / area.sum()
        hit = counts > 0
        info = float((counts[hit] * np.log2(counts[hit] / expect[hit])).sum())
        best = max(best, (info - entropy(counts) * len(counts)) / n)
    return best


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
    scale = 1 << spec.pos_frac_bits
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
        "density_gain": f"{density_gain(xs / scale, ys / scale, hdr.width, hdr.height):.2f}",
    }
    rows = []
    for name, plane in p.items():
        z = 8 * len(cctx.compress(plane.tobytes())) / n
        ctx = [
            f"H({name}|{c}>>{s}) {cond_entropy(plane, p[c] >> s):.2f}"
            for v, c, s in PAIRS
            if v == name and c in p
        ]
        pairs = [(c, sh) for v, c, sh in PAIRS if v == name and c in p]
        # Four context buckets: finer ones cost more in learning than they save.
        adaptive_ctx = f"{adaptive_bits(plane, buckets(p[pairs[0][0]], 4)):.2f}" if pairs else ""
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
                "adaptive": f"{adaptive_bits(plane):.2f}",
                "adaptive_ctx": adaptive_ctx,
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
            "| plane | zstd bits/site | H0 | nearest-previous residual H0 | conditioned on "
            "| adaptive | adaptive, conditioned |",
            "|---|---|---|---|---|---|---|",
        ]
        lines += [
            f"| {r['plane']} | {r['zstd_bits']} | {r['h0']} | {r['pred_h0']} | {r['conditioned']} "
            f"| {r.get('adaptive', '')} | {r.get('adaptive_ctx', '')} |"
            for r in rs
        ]
        tot_z = sum(float(r["zstd_bits"]) for r in rs)
        tot_h = sum(float(r["h0"]) for r in rs)
        adaptive = [r.get("adaptive", "") for r in rs]
        tot_a = f"{sum(float(a) for a in adaptive):.2f}" if all(adaptive) else ""
        best = [r.get("adaptive_ctx") or r.get("adaptive", "") for r in rs]
        tot_c = f"{sum(float(b) for b in best):.2f}" if all(best) else ""
        lines += [
            f"| total | {tot_z:.2f} | {tot_h:.2f} | | | {tot_a} | {tot_c} |",
            "",
            f"Positions: Morton gaps {f['gap_bits']} bits/site; uniform placement bound "
            f"{f['bound_bits']} bits/site; a density-aware coder could save "
            f"{f.get('density_gain') or '?'} bits/site (net of coding the density).",
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
