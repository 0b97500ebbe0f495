"""Start-up cost: a bare `import taichi; ti.init()` process against whole `sad` processes
(decode and info of one file), medians of --repeats runs in the same run (issue 4 asks
that `sad decode` stay within 2x the bare process).

    python bench/startup.py FILE.sad [--arch cpu] [--repeats 5] [--out bench/results/startup.md]
"""

from __future__ import annotations

import argparse
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench.benchlib import print_and_write  # noqa: E402


def wall(cmd: list[str]) -> float:
    t0 = time.perf_counter()
    subprocess.run(cmd, check=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    return time.perf_counter() - t0


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("file", type=Path)
    ap.add_argument("--arch", default="cpu")
    ap.add_argument("--repeats", type=int, default=5)
    ap.add_argument("--out", type=Path, default=None)
    args = ap.parse_args()

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
                "-q",
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
    lines = [
        f"{args.file.name}, --arch {args.arch}; wall seconds, median of {args.repeats} "
        "processes each (interleaved rounds), after one warm-up decode (offline cache filled).",
        "",
        "| process | seconds | x bare |",
        "|---|---|---|",
    ]
    lines += [f"| {k} | {v:.2f} | {v / bare:.2f} |" for k, v in times.items()]
    print_and_write(lines, args.out)


if __name__ == "__main__":
    main()
