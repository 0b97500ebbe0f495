"""Same-run A/B of two checkouts of the codec: encode time and the written file, interleaved.

Each encode runs in its own process with the checkout on PYTHONPATH (so any two commits
can be compared, whatever their API), in the order old, new, old, new, ... per image and
rate, so a slow spell of the shared machine hits both alike. The encode is timed inside
the process around ``sadcodec.encode`` (Taichi start-up excluded); the report gives the
median per side, the new/old ratio and whether the files are byte-identical.

    git worktree add /tmp/old <commit>
    python -m bench.ab --old /tmp/old --new . --names kodim01,kodim05 --bpp 1 --repeats 3
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
from pathlib import Path

from bench.benchlib import (
    Recorder,
    code_label,
    image_paths,
    output_args,
    provenance,
    report_head,
    settings_of,
    table,
    write_report,
)

# The start of each child: imports, this checkout's kernels, the CPU backend.
KERNELS_SHIM = """
import hashlib, importlib.util, json, os, sys, time
import imageio.v3 as iio
import sadcodec
# A checkout whose kernels/ installs as sadcodec.kernels: load that folder, not whatever an
# installed (editable) sadcodec maps the name to.
root = os.getcwd()
kdir = os.path.join(root, "kernels")
if os.path.isdir(kdir) and not os.path.isdir(os.path.join(root, "sadcodec", "kernels")):
    spec = importlib.util.spec_from_file_location(
        "sadcodec.kernels", os.path.join(kdir, "__init__.py"), submodule_search_locations=[kdir]
    )
    mod = importlib.util.module_from_spec(spec)
    sys.modules["sadcodec.kernels"] = mod
    spec.loader.exec_module(mod)
sadcodec.init_backend("cpu")
"""
# What each child runs: one encode, timed around the call, its result as one JSON line.
CHILD = (
    KERNELS_SHIM
    + """
img = iio.imread(sys.argv[1])
t0 = time.perf_counter()
data = sadcodec.encode(img, float(sys.argv[2]))
secs = time.perf_counter() - t0
print(json.dumps({"seconds": secs, "bytes": len(data),
                  "sha256": hashlib.sha256(data).hexdigest(),
                  "code": os.path.dirname(sadcodec.__file__)}))
"""
)

COLUMNS = [
    ("image", "image"),
    ("bpp", "bpp"),
    ("old_s", "old s (median)"),
    ("new_s", "new s (median)"),
    ("ratio", "new / old"),
    ("identical", "same bytes"),
    ("runs", "runs each"),
]
FIELDS = [k for k, _ in COLUMNS] + ["old_runs", "new_runs", "old", "new"]


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


def describe(checkout: Path) -> str:
    """A checkout's code version in words (benchlib.provenance)."""
    prov = provenance(checkout.resolve())
    if prov["commit"] == "unknown":
        return str(checkout)
    return code_label({**prov, "dirty": str(prov["dirty"])})


def render(csv_path: Path):
    def report(rows: list[dict]) -> str:
        lines = report_head(
            "Same-run A/B: encode time",
            "bench.ab",
            csv_path,
            rows,
            "Encode seconds inside the process (start-up excluded), medians of the "
            "interleaved runs; old and new name the checkouts.",
        )
        sides = sorted({(r["old"], r["new"]) for r in rows})
        lines += ["", *[f"- old: {o}; new: {n}" for o, n in sides], ""]
        return "\n".join([*lines, *table(rows, COLUMNS)]) + "\n"

    return report


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--old", type=Path, required=False, help="checkout of the old code")
    ap.add_argument("--new", type=Path, default=Path("."), help="checkout of the new code")
    ap.add_argument("--images", type=Path, default=None, help="image folder (Kodak)")
    ap.add_argument("--names", default="kodim01,kodim05")
    ap.add_argument("--bpp", default="1")
    ap.add_argument("--repeats", type=int, default=3)
    output_args(ap, "ab")
    args = ap.parse_args()
    if args.report_only:
        return write_report(args, render(args.out_csv))
    if args.old is None:
        ap.error("--old is required")
    paths = image_paths(args.images, names=args.names)
    rec = Recorder(args.out_csv, FIELDS, settings_of(args, skip=("old", "new")))
    old_name, new_name = describe(args.old), describe(args.new)
    for path in paths:
        for bpp in (float(b) for b in args.bpp.split(",")):
            runs: dict[str, list[dict]] = {"old": [], "new": []}
            for _ in range(args.repeats):
                for side, checkout in (("old", args.old), ("new", args.new)):
                    runs[side].append(encode_in(checkout, path, bpp))
                    print(
                        f"{path.stem} {bpp:g} {side} {runs[side][-1]['seconds']:.1f} s",
                        file=sys.stderr,
                        flush=True,
                    )
            med = {s: statistics.median(r["seconds"] for r in runs[s]) for s in runs}
            hashes = {r["sha256"] for s in runs for r in runs[s]}
            rec.add(
                {
                    "image": path.stem,
                    "bpp": f"{bpp:g}",
                    "old_s": f"{med['old']:.1f}",
                    "new_s": f"{med['new']:.1f}",
                    "ratio": f"{med['new'] / med['old']:.3f}",
                    "identical": "yes" if len(hashes) == 1 else "no",
                    "runs": args.repeats,
                    "old_runs": " ".join(f"{r['seconds']:.1f}" for r in runs["old"]),
                    "new_runs": " ".join(f"{r['seconds']:.1f}" for r in runs["new"]),
                    "old": old_name,
                    "new": new_name,
                }
            )
    return write_report(args, render(args.out_csv))


if __name__ == "__main__":
    sys.exit(main())
