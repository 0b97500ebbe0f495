"""Where do a file's bits go, and how much could a better entropy coder save?

    python bench/planes.py FILE.sad [FILE.sad ...] --out bench/results/planes.md

For each stored plane (docs/FORMAT.md): its zstd size in bits per site, its zeroth-order
entropy H0, and two cheap models a context coder could use, each as an entropy in bits per
site: conditioning on another field (the best of a few pairs), and predicting the value
from the spatially nearest of the previous 64 sites in stored order. The Morton gaps are
also compared with the bound for uniformly placed sites, log2(C(grid points, sites)) per
site. Conditional entropies from a few thousand samples are optimistic (small-sample bias),
so a saving they show is an upper bound.
"""

from __future__ import annotations

import argparse
import math
import sys
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from sadcodec import bitstream, container  # noqa: E402
from sadcodec.atomic import atomic_write_bytes  # noqa: E402

NAMES = ["gap3", "gap2", "gap1", "gap0", *bitstream.FIELDS, "Y", "Co", "Cg"]
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


def analyse(path: Path) -> list[str]:
    hdr, payload = container.read(path.read_bytes())
    n, spec = hdr.n_sites, hdr.spec
    q = bitstream.decode_payload(payload, n, hdr.channels, spec.col_bits)
    _, planes = bitstream._planes(q, spec.col_bits)
    names = NAMES[: len(planes)] if hdr.channels >= 3 else NAMES[:8] + ["c0", "c1"][: hdr.channels]
    cctx = bitstream._compressor()
    order = bitstream.spatial_order(q)
    xs = q["x"][order].astype(np.float64)
    ys = q["y"][order].astype(np.float64)
    nn = nearest_previous(xs, ys)
    p = dict(zip(names, planes, strict=True))
    rows = []
    tot_z = tot_h = 0.0
    for name, plane in p.items():
        z = 8 * len(cctx.compress(plane.tobytes())) / n
        h0 = entropy(plane)
        tot_z += z
        tot_h += h0
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
        rows.append(f"| {name} | {z:.2f} | {h0:.2f} | {pred} | {'; '.join(ctx)} |")
    grid = hdr.width * hdr.height * (1 << (2 * spec.pos_frac_bits))
    bound = (math.lgamma(grid + 1) - math.lgamma(n + 1) - math.lgamma(grid - n + 1)) / math.log(2)
    gaps = sum(8 * len(cctx.compress(p[g].tobytes())) / n for g in NAMES[:4])
    return [
        f"### {path.name}: {hdr.width}x{hdr.height}, {n} sites, "
        f"{8 * len(payload) / n:.2f} payload bits per site",
        "",
        "| plane | zstd bits/site | H0 | nearest-previous residual H0 | conditioned on |",
        "|---|---|---|---|---|",
        *rows,
        f"| total | {tot_z:.2f} | {tot_h:.2f} | | |",
        "",
        f"Positions: Morton gaps {gaps:.2f} bits/site; uniform placement bound "
        f"{bound / n:.2f} bits/site.",
        "",
    ]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("files", type=Path, nargs="+")
    ap.add_argument("--out", type=Path, default=None, help="markdown file to (re)write")
    args = ap.parse_args()
    lines = [line for f in args.files for line in analyse(f)]
    print("\n".join(lines))
    if args.out:
        cmd = "python bench/planes.py " + " ".join(f.name for f in args.files)
        text = "\n".join(["# Bits per site, plane by plane", "", f"`{cmd}`", "", *lines])
        atomic_write_bytes(str(args.out), text.encode("utf-8"))


if __name__ == "__main__":
    main()
