"""Helpers shared by the benchmarks: where images and results live, what every CSV row
records about the code and settings that produced it, and the measuring code that kodak.py
(one rate, sad vs JPEG) and rd.py (rate-distortion curves, sad vs JPEG, WebP and AVIF) must
share (budget, quality search, PSNR, timing).

Run the benchmarks as modules from the repository root (``python -m bench.rd``); the
package needs no ``sys.path`` changes and imports the installed ``sadcodec``.

Every benchmark writes one CSV under bench/results/ (``--out-csv``) and generates its
markdown report from that CSV alone (``--out-md``, by default beside it; ``--report-only``
regenerates it without measuring), so a report is never edited by hand. Each row carries
``PROVENANCE_FIELDS``: the commit, whether the tree had uncommitted changes and a hash of
them, the settings that produced the row, when and on what machine.
"""

from __future__ import annotations

import argparse
import collections
import csv
import datetime
import hashlib
import importlib.metadata
import io
import math
import os
import platform
import shlex
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image

ROOT = Path(__file__).resolve().parent.parent
RESULTS = ROOT / "bench" / "results"
# The Kodak set lives outside the repository: ../shared/data/kodak from its root.
KODAK = ROOT.parent / "shared" / "data" / "kodak"
KODAK_URL = "https://r0k.us/graphics/kodak/"

# Columns every benchmark CSV row ends with.
PROVENANCE_FIELDS = ["commit", "dirty", "diff", "settings", "measured", "machine"]
# What a tree's "uncommitted changes" cover: everything tracked or untracked (not ignored)
# except the benchmarks' own outputs and prose, which a run rewrites as it goes.
CODE_PATHSPEC = [".", ":(exclude)bench/results", ":(exclude)docs", ":(exclude,glob)**/*.md"]


# ---------------------------------------------------------------- images


def kodak_folder(path: Path | str | None = None) -> Path:
    """The image folder (default: the Kodak set); exits with what to put where when it is
    missing or holds no PNG."""
    folder = Path(path) if path is not None else KODAK
    if folder.is_dir() and any(folder.glob("*.png")):
        return folder
    what = "does not exist" if not folder.is_dir() else "has no .png images"
    default = folder.resolve() == KODAK.resolve()
    lines = [f"{folder} {what}."]
    if default:
        lines.append(
            "The benchmarks read the 24 Kodak PhotoCD images kodim01.png .. kodim24.png "
            f"(768x512, public) from {KODAK} (../shared/data/kodak from the repository "
            f"root). Download them, e.g. from {KODAK_URL}, into that folder, or give "
            "another folder of PNGs with --images DIR."
        )
    else:
        lines.append(
            "Give a folder of .png images with --images DIR (the default is the Kodak set, "
            f"kodim01.png .. kodim24.png, in {KODAK}; it can be obtained from {KODAK_URL})."
        )
    sys.exit("\n".join(lines))


def image_paths(
    folder: Path | str | None, limit: int | None = None, names: str | None = None
) -> list[Path]:
    """The PNGs of a folder (checked by kodak_folder) by sorted name: the comma list of
    stems `names` if given, else the first `limit`; exits if a named image is missing."""
    files = sorted(kodak_folder(folder).glob("*.png"))
    if names:
        wanted = [n.strip() for n in names.split(",") if n.strip()]
        by_stem = {f.stem: f for f in files}
        missing = [n for n in wanted if n not in by_stem]
        if missing:
            sys.exit(f"no {', '.join(m + '.png' for m in missing)} in {files[0].parent}")
        return [by_stem[n] for n in wanted]
    return files[:limit]


def kodak_image(path: Path | str) -> Path:
    """One image file; a missing one in the default Kodak folder gets kodak_folder's message."""
    path = Path(path)
    if not path.is_file():
        kodak_folder(path.parent)  # exits if the folder is missing or empty
        sys.exit(f"{path} not found")
    return path


# ---------------------------------------------------------------- provenance


def _git(root: Path, *args: str) -> bytes:
    return subprocess.run(
        ["git", "-C", str(root), *args], capture_output=True, check=True, timeout=60
    ).stdout


def provenance(root: Path = ROOT) -> dict[str, Any]:
    """The code a run measures: {"commit": short sha, "dirty": bool, "diff": hash}.

    "dirty" is whether tracked files differ from HEAD or untracked (not ignored) files
    exist, outside bench/results/, docs/ and *.md (the outputs); "diff" is the first 12 hex
    digits of the sha256 of those changes (`git diff HEAD` and the untracked files' names
    and contents), "" when clean. Without git or outside a checkout: commit and dirty are
    "unknown"."""
    try:
        commit = _git(root, "rev-parse", "--short", "HEAD").decode().strip()
        diff = _git(root, "diff", "HEAD", "--binary", "--", *CODE_PATHSPEC)
        others = _git(
            root, "ls-files", "-z", "--others", "--exclude-standard", "--", *CODE_PATHSPEC
        )
    except (OSError, subprocess.SubprocessError):
        return {"commit": "unknown", "dirty": "unknown", "diff": ""}
    h = hashlib.sha256(diff)
    untracked = sorted(n for n in others.split(b"\0") if n)
    for name in untracked:
        h.update(b"\0untracked\0" + name + b"\0")
        try:
            h.update((root / os.fsdecode(name)).read_bytes())
        except OSError:
            h.update(b"unreadable")
    dirty = bool(diff or untracked)
    return {"commit": commit, "dirty": dirty, "diff": h.hexdigest()[:12] if dirty else ""}


def code_label(row: dict) -> str:
    """The code version of a row in words: `abc1234`, with its diff hash when dirty."""
    commit = row.get("commit") or ""
    if not commit:
        return "not recorded"
    if commit == "unknown":
        return "unknown (not a git checkout, or no git)"
    if row.get("dirty") == "True":
        return f"`{commit}` + uncommitted changes (diff {row.get('diff') or '?'})"
    return f"`{commit}` (clean tree)"


def reusable(row: dict, prov: dict, settings: str) -> bool:
    """Whether --resume may keep a row: same commit, same dirty flag, same diff hash (so a
    dirty tree matches only an identical set of changes) and the same settings. An unknown
    code version never matches."""
    return (
        prov["commit"] != "unknown"
        and row.get("commit") == prov["commit"]
        and row.get("dirty") == str(prov["dirty"])
        and (row.get("diff") or "") == prov["diff"]
        and row.get("settings") == settings
    )


def machine_line(extra: Iterable[str] = ()) -> str:
    """The machine and library versions in one CSV field (taichi from its metadata, so
    this does not start it)."""
    import PIL

    u = platform.uname()
    libs = [
        f"Python {platform.python_version()}",
        f"numpy {np.__version__}",
        f"Pillow {PIL.__version__}",
    ]
    try:
        libs.append(f"taichi {importlib.metadata.version('taichi')}")
    except importlib.metadata.PackageNotFoundError:
        pass
    cpu = f"{os.cpu_count()} cores, {platform.processor() or u.machine}"
    return "; ".join([cpu, f"{u.system} {u.release}", ", ".join([*libs, *extra])])


def now() -> str:
    return datetime.datetime.now().isoformat(timespec="seconds")


def stamp(row: dict, prov: dict, settings: str, machine: str) -> dict:
    """Append the provenance columns to a row (in place) and return it."""
    row.update(
        {
            "commit": prov["commit"],
            "dirty": str(prov["dirty"]),
            "diff": prov["diff"],
            "settings": settings,
            "measured": now(),
            "machine": machine,
        }
    )
    return row


def settings_of(args: argparse.Namespace, skip: Iterable[str] = ()) -> str:
    """A run's options as one CSV field, `name=value` sorted, without the output paths."""
    drop = {"out_csv", "out_md", "out_png", "report_only", "resume", *skip}
    given = vars(args)
    if "images" in given and given["images"] is None:  # the default folder, by its path
        given = {**given, "images": KODAK}
    items = sorted((k, v) for k, v in given.items() if k not in drop)
    return " ".join(f"{k}={_show(v)}" for k, v in items)


def _show(v: Any) -> str:
    if isinstance(v, list | tuple):
        return ",".join(f"{x:g}" if isinstance(x, float) else str(x) for x in v)
    if isinstance(v, Path):  # from the repository root (.. for the Kodak folder)
        return os.path.relpath(v.resolve(), ROOT)
    return str(v)


def provenance_lines(rows: list[dict], group: Callable[[dict], str] | None = None) -> list[str]:
    """Markdown bullets: the code versions, settings, machines and dates of the rows, with
    how many rows each covers. `group` labels a row's settings (default: the column)."""
    group = group or (lambda r: f"`{r.get('settings') or 'not recorded'}`")
    n = len(rows)

    def counted(label: str, values: list[str]) -> list[str]:
        c = collections.Counter(values)
        if len(c) == 1:
            return [f"- {label}: {next(iter(c))}" + (f"; all {n} rows" if n > 1 else "")]
        return [f"- {label}:"] + [f"  - {v}: {k} of {n} rows" for v, k in c.most_common()]

    out = counted("Code", [code_label(r) for r in rows])
    out += counted("Settings", [group(r) for r in rows])
    out += counted("Machine", [r.get("machine") or "not recorded" for r in rows])
    dates = sorted(r["measured"] for r in rows if r.get("measured"))
    if dates:
        span = dates[0] if dates[0] == dates[-1] else f"{dates[0]} to {dates[-1]}"
        out.append(f"- Measured: {span}")
    return out


# ---------------------------------------------------------------- results: CSV and report


def output_args(ap: argparse.ArgumentParser, name: str) -> None:
    """--out-csv (default bench/results/NAME.csv), --out-md (default: beside the CSV) and
    --report-only (regenerate the report from the CSV, measure nothing)."""
    ap.add_argument("--out-csv", type=Path, default=RESULTS / f"{name}.csv")
    ap.add_argument("--out-md", type=Path, default=None, help="default: the CSV's path, .md")
    ap.add_argument(
        "--report-only", action="store_true", help="regenerate the report from the CSV only"
    )


def report_path(args: argparse.Namespace) -> Path:
    return args.out_md if args.out_md is not None else args.out_csv.with_suffix(".md")


class Recorder:
    """Rows of one run, stamped with provenance and rewritten to the CSV after each one
    (atomically), so an interrupted run keeps what it measured."""

    def __init__(
        self, path: Path, fields: list[str], settings: str, machine: str | None = None
    ) -> None:
        self.path = Path(path)
        self.fields = [f for f in fields if f not in PROVENANCE_FIELDS] + PROVENANCE_FIELDS
        self.settings = settings
        self.prov = provenance()
        self.machine = machine or machine_line()
        self.rows: list[dict] = []

    def add(self, row: dict) -> dict:
        self.rows.append(stamp(row, self.prov, self.settings, self.machine))
        write_csv(self.path, self.rows, self.fields)
        return row


def write_report(args: argparse.Namespace, render: Callable[[list[dict]], str]) -> int:
    """Read the CSV back, render the report from its rows alone, write it atomically and
    print it. Exits when the CSV is missing or empty (--report-only before a run)."""
    rows = read_csv(args.out_csv)
    if not rows:
        sys.exit(f"{args.out_csv}: no results to report (run without --report-only first)")
    text = render(rows)
    out = report_path(args)
    atomic_write(out, text)
    print(text, end="")
    print(f"wrote {_rel(args.out_csv)} and {_rel(out)}", file=sys.stderr)
    return 0


def _rel(path: Path) -> str:
    try:
        return str(Path(path).resolve().relative_to(Path.cwd()))
    except ValueError:
        return str(path)


def report_head(
    title: str, module: str, csv_path: Path, rows: list[dict], about: str = ""
) -> list[str]:
    """The top of a generated report: title, where it comes from, provenance, about."""
    out = [
        f"# {title}",
        "",
        f"Generated by `python -m {module}` from `{_shown(csv_path)}` ({len(rows)} rows; "
        f"`python -m {module} --report-only` regenerates it). Do not edit by hand.",
        "",
        *provenance_lines(rows),
    ]
    return out + (["", about] if about else [])


def _shown(path: Path) -> str:
    try:
        return str(Path(path).resolve().relative_to(ROOT))
    except ValueError:
        return str(path)


def table(rows: list[dict], columns: list[tuple[str, str]]) -> list[str]:
    """A markdown table of the rows: (CSV field, header) per column, values as stored."""
    out = ["| " + " | ".join(h for _, h in columns) + " |", "|" + "---|" * len(columns)]
    for r in rows:
        out.append(
            "| " + " | ".join(str(r.get(k, "")).replace("|", "/") for k, _ in columns) + " |"
        )
    return out


def simple_report(
    title: str, module: str, csv_path: Path, columns: list[tuple[str, str]], about: str = ""
) -> Callable[[list[dict]], str]:
    """A report renderer: report_head, then one table of the given columns."""

    def render(rows: list[dict]) -> str:
        lines = report_head(title, module, csv_path, rows, about)
        return "\n".join([*lines, "", *table(rows, columns)]) + "\n"

    return render


# ---------------------------------------------------------------- measuring


def budget_bytes(bpp: float, width: int, height: int) -> int:
    """The whole-file byte budget of an image at a target rate: floor(bpp * W * H / 8)."""
    return math.floor(bpp * width * height / 8)


def psnr_rgb(a: np.ndarray, b: np.ndarray) -> float:
    """PSNR over all pixels and the 3 colour channels of two uint8 images."""
    d = a[..., :3].astype(np.float64) - b[..., :3].astype(np.float64)
    mse = float(np.mean(d * d))
    return math.inf if mse == 0 else 10 * math.log10(255.0**2 / mse)


def timed(fn: Callable[[], Any], repeats: int = 1) -> tuple[Any, float]:
    """Call fn `repeats` times; return (last result, median seconds)."""
    times, out = [], None
    for _ in range(max(1, repeats)):
        t0 = time.perf_counter()
        out = fn()
        times.append(time.perf_counter() - t0)
    return out, statistics.median(times)


def best_quality(encode: Callable[[int], bytes], budget: int, lo: int, hi: int) -> tuple[int, bool]:
    """Highest quality in lo..hi whose encoded size fits the budget, by binary search.

    Returns (quality, fits). Sizes are assumed to grow with quality (true of libjpeg, libwebp
    and libavif up to rare one-step wobbles). When even `lo` is over budget it returns
    (lo, False) so the caller still records a file, flagged as over budget, never a silent gap.
    """
    best = None
    while lo <= hi:
        q = (lo + hi) // 2
        if len(encode(q)) <= budget:
            best, lo = q, q + 1
        else:
            hi = q - 1
    return (best, True) if best is not None else (lo, False)


@dataclass(frozen=True)
class PillowCodec:
    """A Pillow still-image codec searched over an integer quality range."""

    name: str
    format: str
    qmin: int
    qmax: int
    options: dict[str, Any] = field(default_factory=dict)
    library: str = ""

    def encode(self, img: np.ndarray, quality: int) -> bytes:
        buf = io.BytesIO()
        Image.fromarray(img).save(buf, self.format, quality=quality, **self.options)
        return buf.getvalue()

    def settings(self) -> str:
        """The library and options as one CSV field, so --resume never mixes differently
        encoded rows."""
        opts = " ".join(f"{k}={v}" for k, v in sorted(self.options.items()))
        return f"{self.library} {opts}".strip()


def pillow_codec(name: str, avif_speed: int = 6) -> PillowCodec:
    """JPEG (libjpeg-turbo, 4:2:0, optimized Huffman), lossy WebP at its slowest, best method,
    and AVIF (libavif, 4:2:0) at `avif_speed` (Pillow's default 6; 0 is ~35x slower)."""
    if name == "jpeg":
        opts = {"subsampling": 2, "optimize": True}
        return PillowCodec("jpeg", "JPEG", 1, 100, opts, _library("libjpeg_turbo"))
    if name == "webp":
        opts = {"lossless": False, "method": 6}
        return PillowCodec("webp", "WEBP", 0, 100, opts, _library("webp"))
    if name == "avif":
        opts = {"subsampling": "4:2:0", "speed": avif_speed}
        return PillowCodec("avif", "AVIF", 0, 100, opts, _library("avif"))
    raise ValueError(f"no Pillow codec {name!r}")


def _library(feature: str) -> str:
    """`lib=NAME-VERSION` of a Pillow codec library, as Pillow reports it."""
    from PIL import features

    try:
        version = features.version(feature)
    except ValueError:
        version = None
    return f"lib={feature}-{version or 'unknown'}"


def pillow_decode(data: bytes) -> np.ndarray:
    with Image.open(io.BytesIO(data)) as im:
        im.load()
        return np.asarray(im.convert("RGB"))


def run_pillow(img: np.ndarray, budget: int, codec: PillowCodec, repeats: int = 3) -> dict:
    """Encode at the highest quality that fits the budget; time encode and decode (medians)."""
    q, _ = best_quality(lambda q: codec.encode(img, q), budget, codec.qmin, codec.qmax)
    data, enc_s = timed(lambda: codec.encode(img, q), repeats)
    out, dec_s = timed(lambda: pillow_decode(data), repeats)
    return {
        "data": data,
        "decoded": out,
        "encode_s": enc_s,
        "decode_s": dec_s,
        "sites": "",
        "quality": q,
    }


def load_sadcodec():
    """Import sadcodec only when a sad cell runs: importing it starts Taichi, slow to load."""
    import sadcodec

    return sadcodec


def sad_kwargs(args) -> dict:
    """The sadcodec.encode options given on the command line (effort/iterations only if set)."""
    kw = {"seed": args.seed, "arch": args.arch, "threads": args.threads}
    if args.effort is not None:
        kw["effort"] = args.effort
    if args.iterations is not None:
        kw["iterations"] = args.iterations
    return kw


def sad_settings(args) -> str:
    """sad's settings as one CSV field: the encode options (effort/iterations "default"
    when not given) and the decode repeats, which shape the timings."""
    return (
        f"seed={args.seed} effort={args.effort or 'default'} "
        f"iterations={args.iterations or 'default'} arch={args.arch} "
        f"threads={args.threads or 'all'} repeats_decode={args.repeats_decode}"
    )


def run_sad(img: np.ndarray, bpp: float, args) -> dict:
    """One sadcodec encode (they are long) and the median of --repeats-decode decodes."""
    sadcodec = load_sadcodec()
    kw = sad_kwargs(args)
    data, enc_s = timed(lambda: sadcodec.encode(img, bpp=bpp, **kw))
    out, dec_s = timed(lambda: sadcodec.decode(data, arch=args.arch), args.repeats_decode)
    return {
        "data": data,
        "decoded": out,
        "encode_s": enc_s,
        "decode_s": dec_s,
        "sites": sadcodec.read_info(data)["sites"],
        "quality": "",
    }


# ---------------------------------------------------------------- files and processes


def read_csv(path: Path) -> list[dict]:
    if not Path(path).exists():
        return []
    with open(path, newline="") as f:
        return list(csv.DictReader(f))


def atomic_write(path: Path, text: str) -> None:
    """Write via a temporary file and rename, so an interrupted run never leaves half a file."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "w", newline="", encoding="utf-8") as f:
            f.write(text)
        os.replace(tmp, path)
    except BaseException:
        os.unlink(tmp)
        raise


def write_csv(path: Path, rows: list[dict], fields: list[str]) -> None:
    """Rewrite a CSV atomically; columns a row lacks are left empty, others dropped."""
    buf = io.StringIO()
    w = csv.DictWriter(buf, fieldnames=fields, lineterminator="\n", extrasaction="ignore")
    w.writeheader()
    w.writerows(rows)
    atomic_write(path, buf.getvalue())


def command_line() -> str:
    """The command as typed (`python -m bench.NAME ...` for a module run)."""
    spec = getattr(sys.modules.get("__main__"), "__spec__", None)
    head = ["python", "-m", spec.name] if spec is not None else ["python", *sys.argv[:1]]
    return shlex.join(head + sys.argv[1:])


def fmt(x: str | float | None, nd: int) -> str:
    return "" if x in ("", None) else f"{float(x):.{nd}f}"


def run_process(cmd: list[str]) -> tuple[float, float, str]:
    """(wall seconds, peak RSS MiB, stdout + stderr) of one child process (os.wait4, so the
    RSS is the child's own); raises if it fails."""
    t0 = time.perf_counter()
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    _, status, usage = os.wait4(proc.pid, 0)
    wall = time.perf_counter() - t0
    out, err = proc.stdout.read(), proc.stderr.read()
    if os.waitstatus_to_exitcode(status) != 0:
        raise RuntimeError(f"{cmd}: {err.strip()[-500:]}")
    return wall, usage.ru_maxrss / 1024.0, out + err
