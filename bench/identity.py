"""Byte identity of encoded files: the sha256 of the .sad bytes for a fixed set of cases.

A pure restructuring of the encoder must give the same bytes; run this at the old and the
new commit and compare. It calls only the public API (``sadcodec.encode``), which every
version has, and imports nothing else of this repository (not even bench.benchlib), so the
same script measures both.

    python -m bench.identity --out /tmp/old.csv           # at the old commit
    python -m bench.identity --compare /tmp/old.csv       # at the new one

--images DIR is the Kodak folder (default ../shared/data/kodak from the repository root).
Each CSV row records the commit, whether the tree had uncommitted changes and the encode
settings of its case.

Cases: three full-size Kodak images at 0.25, 1 and 2 bpp at the default effort (about
half a minute each on 2 cores). The suite pins small cases the same way
(tests/test_identity.py).
"""

from __future__ import annotations

import argparse
import csv
import hashlib
import subprocess
import sys
import time
from pathlib import Path

import imageio.v3 as iio
import numpy as np

import sadcodec

ROOT = Path(__file__).resolve().parent.parent
KODAK_URL = "https://r0k.us/graphics/kodak/"
KODAK_NAMES = ("kodim01", "kodim05", "kodim23")
KODAK_RATES = (0.25, 1.0, 2.0)


def kodak_cases(folder: Path) -> list[tuple[str, np.ndarray, dict]]:
    out = []
    for name in KODAK_NAMES:
        path = folder / f"{name}.png"
        if not path.is_file():
            sys.exit(
                f"{path} not found. Put the 24 Kodak PhotoCD images kodim01.png .. kodim24.png "
                f"(public, e.g. from {KODAK_URL}) in {folder} (the default is "
                "../shared/data/kodak from the repository root), or give the folder with "
                "--images DIR."
            )
        img = iio.imread(path)
        out += [(f"{name}-{bpp:g}bpp", img, {"bpp": bpp}) for bpp in KODAK_RATES]
    return out


def commit() -> str:
    """HEAD's short sha, "-dirty" appended when tracked files differ from it."""
    try:
        rev = subprocess.run(
            ["git", "-C", str(ROOT), "rev-parse", "--short", "HEAD"],
            capture_output=True,
            text=True,
            check=True,
        ).stdout.strip()
        dirty = subprocess.run(
            ["git", "-C", str(ROOT), "status", "--porcelain", "--untracked-files=no"],
            capture_output=True,
            text=True,
            check=True,
        ).stdout.strip()
        return rev + ("-dirty" if dirty else "")
    except (OSError, subprocess.CalledProcessError):
        return "unknown"


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--images", type=Path, default=ROOT.parent / "shared" / "data" / "kodak")
    ap.add_argument("--out", type=Path, help="write the results as CSV")
    ap.add_argument("--compare", type=Path, help="a CSV of an earlier run to compare with")
    args = ap.parse_args()

    cases = kodak_cases(args.images)
    sadcodec.init_backend("cpu")
    rev = commit()
    rev, dirty = rev.removesuffix("-dirty"), rev.endswith("-dirty")
    rows = []
    for name, img, kw in cases:
        t0 = time.perf_counter()
        data = sadcodec.encode(img, **kw)
        secs = time.perf_counter() - t0
        row = {
            "case": name,
            "bytes": len(data),
            "sha256": hashlib.sha256(data).hexdigest(),
            "seconds": f"{secs:.1f}",
            "commit": rev,
            "dirty": str(dirty) if rev != "unknown" else "unknown",
            "settings": " ".join(f"{k}={v}" for k, v in sorted(kw.items())),
        }
        rows.append(row)
        print(f"{name:24s} {row['bytes']:7d} B  {row['sha256'][:16]}  {secs:6.1f} s", flush=True)
    if args.out:
        with open(args.out, "w", newline="") as f:
            wr = csv.DictWriter(f, fieldnames=list(rows[0]))
            wr.writeheader()
            wr.writerows(rows)
    if args.compare:
        with open(args.compare, newline="") as f:
            old = {r["case"]: r for r in csv.DictReader(f)}
        same = [r["case"] for r in rows if old.get(r["case"], {}).get("sha256") == r["sha256"]]
        diff = [r["case"] for r in rows if r["case"] in old and r["case"] not in same]
        print(
            f"identical: {len(same)} of {len(rows)} cases" + (f"; differ: {diff}" if diff else "")
        )
        if diff or len(same) < len(rows):
            sys.exit(1)


if __name__ == "__main__":
    main()
