"""Start-up cost: a bare `import taichi; ti.init()` process against whole `sad` processes
(decode and info of one file), medians of --repeats runs in the same run (issue 4 asks
that `sad decode` stay within 2x the bare process).

    python -m bench.startup FILE.sad [--arch cpu] [--repeats 5]
    python -m bench.startup --report-only

Writes bench/results/startup.csv and generates bench/results/startup.md from it.
"""

from __future__ import annotations

import argparse
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from bench.benchlib import Recorder, output_args, settings_of, simple_report, write_report

FIELDS = ["process", "seconds", "x_bare"]
COLUMNS = [("process", "process"), ("seconds", "seconds"), ("x_bare", "x bare")]


def wall(cmd: list[str]) -> float:
    t0 = time.perf_counter()
    subprocess.run(cmd, check=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    return time.perf_counter() - t0


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("file", type=Path, nargs="?", help="a .sad file (a Kodak image, say)")
    ap.add_argument("--arch", default="cpu")
    ap.add_argument("--repeats", type=int, default=5)
    output_args(ap, "startup")
    args = ap.parse_args(argv)
    render = simple_report(
        "Start-up cost",
        "bench.startup",
        args.out_csv,
        COLUMNS,
        "Wall seconds, median of `repeats` processes each (interleaved rounds), after one "
        "warm-up decode (offline cache filled); the file and arch are in the settings.",
    )
    if args.report_only:
        return write_report(args, render)
    if args.file is None:
        ap.error("give a .sad file (or --report-only)")

    py = sys.executable
    ti_arch = "cuda" if args.arch == "cuda" else "cpu"
    with tempfile.TemporaryDirectory() as tmp:
        out_png = str(Path(tmp) / "out.png")
        cmds = {
            f"bare `import taichi; ti.init(arch=ti.{ti_arch})`": [
                py,
                "-c",
                f"import taichi as ti; ti.init(arch=ti.{ti_arch}, log_level=ti.ERROR)",
            ],
            "`sad info`": [py, "-m", "sadcodec", "info", str(args.file)],
            "`sad decode` (to PNG)": [
                py,
                "-m",
                "sadcodec",
                "decode",
                str(args.file),
                "-o",
                out_png,
                "--arch",
                args.arch,
                "--quiet",
            ],
        }
        wall(list(cmds.values())[-1])  # fill Taichi's offline cache first
        # Interleaved rounds (each process once per round), so a busy spell on this shared
        # machine slows all of them alike instead of one command's whole block.
        runs: dict[str, list[float]] = {k: [] for k in cmds}
        for _ in range(args.repeats):
            for k, c in cmds.items():
                runs[k].append(wall(c))
        times = {k: statistics.median(v) for k, v in runs.items()}
    bare = next(iter(times.values()))
    rec = Recorder(args.out_csv, FIELDS, settings_of(args))
    for k, v in times.items():
        rec.add({"process": k, "seconds": f"{v:.2f}", "x_bare": f"{v / bare:.2f}"})
    return write_report(args, render)


if __name__ == "__main__":
    sys.exit(main())
