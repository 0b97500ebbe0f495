"""Fuzz the .sad reader: mutate, truncate and splice valid files and decode each result.

    nice -n 10 python -m bench.fuzz --seconds 900 --seed 1     # writes docs/robustness.md
    python -m bench.fuzz --count 2000 --no-report               # a quick look

Every input must end in a decoded uint8 image of the declared shape or in a SadError (the
one-line message users see). Anything else is a failure: another exception, a wrong
shape, a crash, more than --slow seconds or more than --max-rss-gb of memory. Failing
inputs are saved under --save-dir; the input being decoded is always in current.sad there,
so a crash or a hang (the watchdog ends the run after --hang seconds) leaves it behind.

CRCs stop most random damage at the first check, so most inputs get their checksums (and
often payload_len) recomputed after mutating: those reach the header validation and the
payload parser behind it. Rendering costs time proportional to the output pixels, so a
valid file whose mutated header declares more than --max-work pixels x K is rendered at a
reduced size (the same code at a smaller output) and counted as "rendered reduced".

bench/tests/test_fuzz.py runs the same mutations and oracle under hypothesis, briefly, in
the test suite. The report section records the code version (commit, uncommitted changes).
"""

from __future__ import annotations

import argparse
import collections
import datetime
import faulthandler
import math
import os
import platform
import random
import re
import resource
import shlex
import struct
import sys
import time
import traceback
import zlib

import numpy as np

import sadcodec
from bench.benchlib import ROOT, code_label, provenance
from bench.mdsection import replace_section
from sadcodec.errors import SadError

GOLDEN = os.path.join(ROOT, "tests", "golden")
HEAD = 47  # bytes covered by the header CRC, which follows them
HEADER_SIZE = HEAD + 4
PAYLOAD_LEN_AT = 43
MODES = ("raw", "crc", "crc+len")
KINDS = ("flip", "set", "insert", "delete", "truncate", "splice")
SPECIAL = (0x00, 0x01, 0x7F, 0x80, 0xFF)
MAX_WORK = 1 << 21  # output pixels x K rendered at the declared size (about 1 s on 2 cores)


def golden_files() -> list[bytes]:
    """The committed valid files every mutation starts from."""
    names = sorted(f for f in os.listdir(GOLDEN) if f.endswith(".sad"))
    out = []
    for name in names:
        with open(os.path.join(GOLDEN, name), "rb") as f:
            out.append(f.read())
    return out


def fix_checksums(data: bytes, fix_length: bool = False) -> bytes:
    """Recompute the CRCs (and payload_len) so that a mutation gets past them.

    The payload is taken to be everything between the header CRC and the last 4 bytes."""
    if len(data) < HEADER_SIZE + 4:
        return data
    buf = bytearray(data)
    if fix_length:
        struct.pack_into("<I", buf, PAYLOAD_LEN_AT, len(buf) - HEADER_SIZE - 4)
    struct.pack_into("<I", buf, HEAD, zlib.crc32(buf[:HEAD]))
    struct.pack_into("<I", buf, len(buf) - 4, zlib.crc32(buf[HEADER_SIZE:-4]))
    return bytes(buf)


def mutate(data: bytes, op: tuple[str, int, int], pool: list[bytes]) -> bytes:
    """Apply one mutation (kind, a, b); positions wrap around the input's length."""
    kind, a, b = op
    n = len(data)
    if kind == "insert":
        pos = a % (n + 1)
        return data[:pos] + bytes([b & 0xFF]) + data[pos:]
    if kind == "truncate":
        return data[: a % (n + 1)]
    if kind == "splice":  # this file's head, another valid file's tail
        other = pool[b % len(pool)]
        cut = a % (n + 1)
        return data[:cut] + other[min(cut, len(other)) :]
    if n == 0:
        return data
    pos = a % n
    if kind == "flip":
        return data[:pos] + bytes([data[pos] ^ (1 << (b & 7))]) + data[pos + 1 :]
    if kind == "set":
        return data[:pos] + bytes([b & 0xFF]) + data[pos + 1 :]
    if kind == "delete":
        return data[:pos] + data[pos + 1 + b % 8 :]
    raise ValueError(f"unknown mutation {kind}")


def make_input(data: bytes, ops, mode: str, pool: list[bytes]) -> bytes:
    for op in ops:
        data = mutate(data, op, pool)
    return data if mode == "raw" else fix_checksums(data, fix_length=mode == "crc+len")


def message_class(exc: BaseException) -> str:
    """An error message with its numbers and details blanked, to count kinds of refusal."""
    msg = re.sub(r"\{.*\}", "{...}", str(exc))
    msg = re.sub(r"does not decompress \(.*\)", "does not decompress (zstd: ...)", msg)
    msg = re.sub(r"flags 0x[0-9a-f]+", "flags N", msg)
    msg = re.sub(r"\b\d+x\d+\b", "NxN", msg)
    msg = re.sub(r"-?\d+(\.\d+)?", "N", msg)
    return f"{type(exc).__name__}: {msg}"


def render_args(info: dict, max_work: int) -> tuple[dict, tuple[int, ...]]:
    """Decode keyword arguments and the expected output shape, scaled down past max_work."""
    w, h, k = info["width"], info["height"], info["k"]
    if w * h * k > max_work:
        s = math.sqrt(max_work / (w * h * k))
        w, h = max(1, int(w * s)), max(1, int(h * s))
        return {"width": w, "height": h}, (h, w, info["channels"])
    return {}, (h, w, info["channels"])


def check(data: bytes, max_work: int = MAX_WORK) -> str:
    """Read and decode one input; return "decoded", "rendered reduced" or the SadError class.

    Any other exception, a wrong shape or dtype, or read_info and decode disagreeing,
    raises: those are bugs."""
    try:
        info = sadcodec.read_info(data)
    except SadError as exc:
        info, refused = None, message_class(exc)
    # A header read_info refuses must be refused by decode as well (1x1: nothing to spend).
    kwargs, shape = render_args(info, max_work) if info else ({"width": 1, "height": 1}, ())
    try:
        img = sadcodec.decode(data, **kwargs)
    except SadError as exc:
        if info is not None and info["checksum"] == "ok" and "checksum" in str(exc):
            raise AssertionError("read_info passed the checksums that decode refused") from exc
        return message_class(exc)
    if info is None:
        raise AssertionError(f"decode accepted a file read_info refuses ({refused})")
    if info["checksum"] != "ok":
        raise AssertionError(f"decode accepted a file with {info['checksum']}")
    if img.dtype != np.uint8 or img.shape != shape:
        raise AssertionError(f"decoded {img.dtype} {img.shape}, expected uint8 {shape}")
    return "rendered reduced" if kwargs else "decoded"


def random_ops(rng: random.Random, size: int, pool: list[bytes]) -> list[tuple[str, int, int]]:
    """1-4 mutations, half of them aimed at the header and the start of the payload."""
    ops = []
    for _ in range(min(4, 1 + int(rng.expovariate(1.0)))):
        kind = rng.choice(KINDS)
        pos = rng.randrange(HEADER_SIZE + 8) if rng.random() < 0.5 else rng.randrange(size + 1)
        value = rng.choice(SPECIAL) if rng.random() < 0.3 else rng.randrange(256)
        if kind == "splice":
            value = rng.randrange(len(pool))
        ops.append((kind, pos, value))
    return ops


def rss_bytes() -> int:
    """Peak resident set size of this process so far (ru_maxrss is in KiB on Linux)."""
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024


def run(args: argparse.Namespace) -> dict:
    """The mutation loop; returns the counts and everything flagged."""
    pool = golden_files()
    rng = random.Random(args.seed)
    os.makedirs(args.save_dir, exist_ok=True)
    current = os.path.join(args.save_dir, "current.sad")
    faulthandler.enable()  # a crash prints where it happened
    outcomes: collections.Counter[str] = collections.Counter()
    modes: collections.Counter[str] = collections.Counter()
    flagged: list[str] = []
    slowest = (0.0, "")
    rss_limit = int(args.max_rss_gb * (1 << 30))
    t_start = time.monotonic()
    n = 0
    while n < args.count and time.monotonic() - t_start < args.seconds:
        mode = rng.choices(MODES, weights=(1, 2, 2))[0]
        base = rng.choice(pool)
        data = make_input(base, random_ops(rng, len(base), pool), mode, pool)
        with open(current, "wb") as f:
            f.write(data)
        faulthandler.dump_traceback_later(args.hang, exit=True)
        t0 = time.perf_counter()
        try:
            outcome = check(data, args.max_work)
        except Exception as exc:
            first = str(exc).splitlines()[0] if str(exc) else ""
            outcome = f"FAILURE {type(exc).__name__}: {first}"
            path = os.path.join(args.save_dir, f"failure-{n}.sad")
            with open(path, "wb") as f:
                f.write(data)
            flagged.append(f"input {n} ({mode}): {outcome}, saved as {path}")
            if args.verbose:
                traceback.print_exc()
        finally:
            faulthandler.cancel_dump_traceback_later()
        dt = time.perf_counter() - t0
        slowest = max(slowest, (dt, f"input {n} ({mode}, {outcome})"))
        if dt > args.slow:
            flagged.append(f"input {n} ({mode}): took {dt:.1f} s ({outcome})")
        if rss_bytes() > rss_limit:
            flagged.append(f"input {n} ({mode}): peak RSS {rss_bytes() / 2**30:.2f} GiB")
            rss_limit = math.inf  # ru_maxrss only grows: report the first input past it
        outcomes[outcome] += 1
        modes[mode] += 1
        n += 1
        if args.verbose and n % 1000 == 0:
            print(f"{n} inputs, {time.monotonic() - t_start:.0f} s", file=sys.stderr)
    return {
        "inputs": n,
        "seconds": time.monotonic() - t_start,
        "outcomes": outcomes,
        "modes": modes,
        "flagged": flagged,
        "slowest": slowest,
        "peak_rss": rss_bytes(),
    }


def report(args: argparse.Namespace, res: dict, command: str, code: str = "") -> str:
    """The markdown summary for docs/robustness.md; `code` names the code version."""
    n = res["inputs"]
    failures = sum(c for o, c in res["outcomes"].items() if o.startswith("FAILURE"))
    lines = [
        "## Fuzzing the reader (`bench/fuzz.py`)",
        "",
        f"`{command}`, {datetime.date.today()}, code {code or 'not recorded'}, "
        f"{platform.machine()}, {os.cpu_count()} cores, Python {platform.python_version()}.",
        "",
        f"**{n} inputs in {res['seconds']:.0f} s; {failures} failures**; "
        f"{len(res['flagged'])} flagged (slower than {args.slow:g} s, peak RSS above "
        f"{args.max_rss_gb:g} GiB, or failing). Slowest input: {res['slowest'][0]:.2f} s "
        f"({res['slowest'][1]}); peak RSS of the whole run {res['peak_rss'] / 2**20:.0f} MiB.",
        "",
        "Inputs: the golden files with 1-4 mutations each (bit flips, byte sets, inserts, "
        "deletes, truncations, splices with another golden file), then checksums kept as "
        "they are (`raw`), recomputed (`crc`) or recomputed with `payload_len` set to the "
        "new length (`crc+len`): "
        + ", ".join(f"{m} {res['modes'][m]}" for m in MODES)
        + ". Files whose mutated header declares more than "
        f"{args.max_work} pixels x K are rendered at a reduced size (`rendered reduced`).",
        "",
        "| outcome | inputs | share |",
        "|---|---:|---:|",
    ]
    for outcome, count in res["outcomes"].most_common():
        lines.append(f"| {outcome.replace('|', '/')} | {count} | {100 * count / max(n, 1):.2f}% |")
    lines += ["", "Flagged inputs:" if res["flagged"] else "Flagged inputs: none."]
    lines += [f"- {f}" for f in res["flagged"][:50]]
    return "\n".join(lines)


def provenance_row() -> dict:
    """provenance() as CSV strings, the form code_label reads."""
    return {k: str(v) for k, v in provenance().items()}


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--seconds", type=float, default=60.0, help="stop after this long")
    ap.add_argument("--count", type=int, default=sys.maxsize, help="stop after this many inputs")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--slow", type=float, default=5.0, help="flag inputs slower than this (s)")
    ap.add_argument("--hang", type=float, default=120.0, help="abort the run after this (s)")
    ap.add_argument("--max-rss-gb", type=float, default=1.0, help="flag peak RSS above this")
    ap.add_argument("--limit-as-gb", type=float, default=8.0, help="address space cap (safety)")
    ap.add_argument("--max-work", type=int, default=MAX_WORK, help="pixels x K at full size")
    ap.add_argument("--save-dir", default=os.path.join(ROOT, "bench", "cache", "fuzz"))
    ap.add_argument("--report", default=os.path.join(ROOT, "docs", "robustness.md"))
    ap.add_argument("--no-report", action="store_true", help="print only")
    ap.add_argument("--threads", type=int, default=None)
    ap.add_argument("-v", "--verbose", action="store_true")
    args = ap.parse_args(argv)
    cap = int(args.limit_as_gb * (1 << 30))  # a runaway allocation fails here, not the machine
    resource.setrlimit(resource.RLIMIT_AS, (cap, cap))
    code = code_label(provenance_row())  # the code this run reads with, before it starts
    sadcodec.init_backend("cpu", args.threads)
    sadcodec.decode(golden_files()[0])  # compile the kernels before timing anything
    res = run(args)
    command = "python -m bench.fuzz " + shlex.join(sys.argv[1:] if argv is None else argv)
    text = report(args, res, command, code)
    print(text)
    if not args.no_report:
        replace_section(args.report, "fuzz", text)
    return 1 if any(o.startswith("FAILURE") for o in res["outcomes"]) else 0


if __name__ == "__main__":
    sys.exit(main())
