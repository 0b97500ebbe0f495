"""Fuzz the .sad reader with structure-aware mutations of valid files, each in a watched
worker process, and report what became of them.

    nice -n 15 python -m bench.fuzz --structured --count 100000 --seed 1  # docs/robustness.md
    python -m bench.fuzz --structured --count 2000 --no-report            # a quick look
    python -m bench.fuzz --structured --seed 1 --case 4242                # one case again
    python -m bench.fuzz --seconds 900 --seed 1       # byte mutations of the goldens only

Inputs (bench/fuzzcases.py): a pool of valid files (the goldens, files written by this
checkout's encoder at several rates and channel counts, and hand-made files at the
format's edges) is parsed into its levels (bench/sadfile.py: header fields, payload flags,
size table, zstd frames, planes, sites) and one level is mutated per input: header fields
to their limits and past them, flags and size-table entries, plane bytes recompressed
into valid frames, sites out of range or out of order, frames swapped, cut, extended or
hand-made, n_sites and plane lengths that disagree; plus unstructured byte damage. The
file is then written with a consistent payload_len and CRCs, or with one of them wrong on
purpose, so that most inputs get past the checksums into the validation behind them.
Input i of --seed s depends on (s, i) alone: --case replays it.

Oracle: every input ends in a decoded uint8 image of the declared shape (rendered at a
reduced size when its header declares more than --max-work pixels x K) or in a SadError;
inputs that only re-encode their base file (another layout, zstd level or minor version)
must read exactly as the base does. Anything else is a failure: another exception, a
crash of the worker, more than --case-timeout seconds, or a peak RSS over --max-rss-gb
(the address space is capped at --limit-as-gb as well). Failing inputs are saved under
--save-dir, and the input being decoded is always in current.sad there.

bench/tests/test_fuzz.py runs a few hundred structured inputs and the byte mutations
under hypothesis in the test suite. The report section records the code version.
"""

from __future__ import annotations

import argparse
import collections
import datetime
import math
import multiprocessing as mp
import os
import platform
import re
import resource
import shlex
import sys
import time
import traceback

import numpy as np

import sadcodec
from bench import fuzzcases as fc
from bench.benchlib import ROOT, code_label, provenance
from bench.fuzzcases import (  # noqa: F401  (the byte-level names, as before)
    HEAD,
    HEADER_SIZE,
    KINDS,
    MODES,
    PAYLOAD_LEN_AT,
    SPECIAL,
    fix_checksums,
    golden_files,
    make_input,
    mutate,
    random_ops,
)
from bench.mdsection import replace_section
from sadcodec.errors import SadError

MAX_WORK = 1 << 21  # output pixels x K rendered at the declared size (about 1 s on 2 cores)
MAX_WORK_STRUCTURED = 1 << 18  # the same for --structured, where big headers are frequent
DECODED = ("decoded", "rendered reduced")


# ---------------------------------------------------------------- the oracle


def message_class(exc: BaseException) -> str:
    """An error message with its numbers and details blanked, to count kinds of refusal."""
    msg = re.sub(r"\{.*\}", "{...}", str(exc))
    msg = re.sub(r"does not decompress \(.*\)", "does not decompress (zstd: ...)", msg)
    msg = re.sub(r"flags 0x[0-9a-f]+", "flags N", msg)
    msg = re.sub(r"\b\d+x\d+\b", "NxN", msg)
    msg = re.sub(r"-?\d+(\.\d+)?(e[+-]?\d+)?", "N", msg)
    return f"{type(exc).__name__}: {msg}"


def render_args(info: dict, max_work: int) -> tuple[dict, tuple[int, ...]]:
    """Decode keyword arguments and the expected output shape, scaled down past max_work."""
    w, h, k = info["width"], info["height"], info["k"]
    if w * h * k > max_work:
        s = math.sqrt(max_work / (w * h * k))
        w, h = max(1, int(w * s)), max(1, int(h * s))
        return {"width": w, "height": h}, _shape(h, w, info["channels"])
    return {}, _shape(h, w, info["channels"])


def _shape(h: int, w: int, channels: int) -> tuple[int, ...]:
    """The shape sadcodec.decode gives: (H, W) for greyscale, else (H, W, C)."""
    return (h, w) if channels == 1 else (h, w, channels)


CHECKSUM_REFUSAL = re.compile(r"(header|payload) checksum mismatch")


def check_image(data: bytes, max_work: int = MAX_WORK) -> tuple[str, np.ndarray | None]:
    """Read and decode one input: ("decoded" or "rendered reduced", the image) or (the
    SadError's message class, None).

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
        if info is not None and info["checksum"] == "ok" and CHECKSUM_REFUSAL.search(str(exc)):
            raise AssertionError("read_info passed the checksums that decode refused") from exc
        return message_class(exc), None
    if info is None:
        raise AssertionError(f"decode accepted a file read_info refuses ({refused})")
    if info["checksum"] != "ok":
        raise AssertionError(f"decode accepted a file with {info['checksum']}")
    if img.dtype != np.uint8 or img.shape != shape:
        raise AssertionError(f"decoded {img.dtype} {img.shape}, expected uint8 {shape}")
    return ("rendered reduced" if kwargs else "decoded"), img


def check(data: bytes, max_work: int = MAX_WORK) -> str:
    """check_image's outcome alone."""
    return check_image(data, max_work)[0]


class BaseReads:
    """What each pool file reads as, for the inputs that must read the same."""

    def __init__(self, pool: list[fc.Base], max_work: int):
        self.pool, self.max_work, self.cache = pool, max_work, {}

    def __getitem__(self, i: int) -> tuple[str, np.ndarray | None]:
        if i not in self.cache:
            self.cache[i] = check_image(self.pool[i].data, self.max_work)
        return self.cache[i]

    def read_all(self) -> list[str]:
        return [self[i][0] for i in range(len(self.pool))]


def check_case(case: fc.Case, bases: BaseReads) -> str:
    """check_image on a structured input, and for one that only re-encodes its base file,
    the base's outcome and pixels."""
    outcome, img = check_image(case.data, bases.max_work)
    if case.same:
        want, want_img = bases[case.base]
        if outcome != want:
            raise AssertionError(f"read as {outcome!r}, its base file as {want!r}")
        if img is not None and not np.array_equal(img, want_img):
            raise AssertionError("decoded to other pixels than its base file")
    return outcome


def stage(outcome: str) -> str:
    """Where the reader stopped an input, from its message class."""
    if outcome in DECODED:
        return "decoded"
    if not outcome.startswith("Sad"):
        return "failure"
    msg = outcome.lower()
    rules = (
        (
            "container",
            (
                "bad magic",
                "unsupported .sad version",
                "truncated file",
                "checksum mismatch",
                "after the payload",
            ),
        ),
        (
            "header",
            (
                "invalid ",
                "image too large",
                "unknown flags",
                "payload too large",
                "cannot fit in",
                "quantization settings",
                "position precision",
            ),
        ),
        (
            "payload",
            (
                "payload flags",
                "stream table",
                "add up",
                "decompress",
                "wrong size",
                "declares",
                "zstd frame",
                "empty payload",
            ),
        ),
        ("sites", ("out of range", "morton", "colour")),
    )
    for name, words in rules:
        if any(w in msg for w in words):
            return name
    return "other"


STAGES = ("container", "header", "payload", "sites", "other", "decoded", "failure")


# ---------------------------------------------------------------- the worker


def peak_rss() -> int:
    """Peak resident set size of this process's own memory so far: VmHWM, which starts
    afresh at exec. (ru_maxrss would not: a worker spawned by a large parent, such as the
    test suite, would report the parent's peak.) ru_maxrss where /proc is missing."""
    try:
        with open("/proc/self/status") as f:
            for line in f:
                if line.startswith("VmHWM:"):
                    return int(line.split()[1]) * 1024
    except OSError:
        pass
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024


def worker(conn, opts: dict, items, start: int, stop: int) -> None:
    """Run inputs start.. in this process and send one message per input; return (exit)
    after an input that pushed the peak RSS over the bound, so that the next is measured
    in a fresh process. With items None, build the pool, send it and return."""
    cap = int(opts["limit_as_gb"] * (1 << 30))  # a runaway allocation fails here
    resource.setrlimit(resource.RLIMIT_AS, (cap, cap))
    sadcodec.init_backend("cpu", opts["threads"])
    if items is None:
        conn.send(("pool", fc.pool_items(encoded=opts["encoded"])))
        return
    pool = fc.load_pool(items)
    bases = BaseReads(pool, opts["max_work"])
    bases.read_all()  # compile the kernels and cache the reference reads before timing
    conn.send(("ready", peak_rss()))
    current = os.path.join(opts["save_dir"], "current.sad")
    for i in range(start, stop):
        try:
            case = fc.make_case(pool, opts["seed"], i, opts["levels"])
        except Exception as exc:
            msg = f"GENERATOR ERROR {type(exc).__name__}: {exc}"
            detail = traceback.format_exc()
            conn.send(("case", i, "?", "?", "?", msg, 0.0, peak_rss(), False, detail))
            continue
        with open(current, "wb") as f:
            f.write(case.data)
        detail = ""
        before = peak_rss()
        t0 = time.perf_counter()
        try:
            outcome = check_case(case, bases)
        except Exception as exc:
            first = str(exc).splitlines()[0] if str(exc) else ""
            outcome = f"FAILURE {type(exc).__name__}: {first}"
            detail = traceback.format_exc()
        dt = time.perf_counter() - t0
        rss = peak_rss()
        raised = rss > before  # this input, not its making, set the peak
        msg = ("case", i, case.level, case.mutator, case.wrap, outcome, dt, rss, raised, detail)
        conn.send(msg)
        if rss > opts["max_rss"]:
            conn.send(("bye", i))
            return


# ---------------------------------------------------------------- the supervisor


class Run:
    """Counts of a run, and what it flagged."""

    def __init__(self):
        self.outcomes: collections.Counter[str] = collections.Counter()
        self.levels: collections.Counter[tuple[str, str]] = collections.Counter()
        self.mutators: collections.Counter[tuple[str, str]] = collections.Counter()
        self.refusals: dict[str, collections.Counter[str]] = collections.defaultdict(
            collections.Counter
        )
        self.wraps: collections.Counter[str] = collections.Counter()
        self.failures: list[tuple[str, str]] = []  # (kind, text)
        self.slow: list[str] = []
        self.slowest = (0.0, "")
        self.peak_rss = 0
        self.peak_input = "a fresh worker"
        self.restarts = 0
        self.inputs = 0
        self.seconds = 0.0

    def add(self, i: int, level: str, name: str, wrap: str, outcome: str, dt: float) -> str:
        self.inputs += 1
        self.outcomes[outcome] += 1
        st = stage(outcome)
        self.levels[level, st] += 1
        self.mutators[name, st] += 1
        if st not in ("decoded", "failure"):
            self.refusals[name][outcome] += 1
        self.wraps[wrap] += 1
        label = f"input {i} ({level}/{name}, {wrap})"
        self.slowest = max(self.slowest, (dt, f"{label}: {outcome}"))
        return label


def save_failure(args, pool, i: int, data: bytes | None = None) -> str:
    """Write input i to the save directory (made again from its seed when not given)."""
    if data is None:
        data = fc.make_case(pool, args.seed, i, args.levels).data
    path = os.path.join(args.save_dir, f"failure-s{args.seed}-{i}.sad")
    with open(path, "wb") as f:
        f.write(data)
    return os.path.relpath(path, ROOT)


def supervise(args, items, target=worker) -> Run:
    """Hand inputs 0..--count to worker processes, one at a time, under the time and memory
    bounds; a hung or crashed worker costs its input (a failure) and is replaced."""
    ctx = mp.get_context("spawn")
    opts = {
        "seed": args.seed,
        "levels": args.levels,
        "max_work": args.max_work,
        "max_rss": int(args.max_rss_gb * (1 << 30)),
        "limit_as_gb": args.limit_as_gb,
        "threads": args.threads,
        "save_dir": args.save_dir,
        "encoded": args.structured,
    }
    pool = fc.load_pool(items)
    run = Run()
    t_start = time.monotonic()
    nxt, proc, conn = 0, None, None

    def fail(kind: str, i: int, what: str, data: bytes | None = None, detail: str = "") -> None:
        saved = ""
        if kind != "GENERATOR":
            saved = f"; saved as `{save_failure(args, pool, i, data)}`"
        run.failures.append((kind, f"input {i}: {what}{saved}"))
        if args.verbose:
            print(f"input {i}: {what}{saved}\n{detail}", file=sys.stderr)

    def stop_worker() -> None:
        if proc is not None and proc.is_alive():
            proc.kill()
        if proc is not None:
            proc.join()

    try:
        while nxt < args.count and time.monotonic() - t_start < args.seconds:
            if proc is None:
                here, there = ctx.Pipe(duplex=False)
                proc = ctx.Process(target=target, args=(there, opts, items, nxt, args.count))
                proc.start()
                there.close()
                conn = here
                try:
                    if not conn.poll(args.startup_timeout):
                        raise RuntimeError(f"a worker did not start in {args.startup_timeout} s")
                    tag, rss = conn.recv()
                except (EOFError, OSError) as exc:
                    raise RuntimeError("a worker died while starting") from exc
                if rss > opts["max_rss"]:
                    mib = rss / 2**20
                    raise RuntimeError(f"a fresh worker uses {mib:.0f} MiB, over --max-rss-gb")
                if rss > run.peak_rss:
                    run.peak_rss, run.peak_input = rss, "a fresh worker"
            if not conn.poll(args.case_timeout):
                case = fc.make_case(pool, args.seed, nxt, args.levels)
                run.add(nxt, case.level, case.mutator, case.wrap, "HANG", args.case_timeout)
                fail(
                    "HANG",
                    nxt,
                    f"HANG: no result in {args.case_timeout:g} s ({case.level}/"
                    f"{case.mutator}, {case.wrap})",
                    case.data,
                )
                stop_worker()
                proc, nxt = None, nxt + 1
                run.restarts += 1
                continue
            try:
                msg = conn.recv()
            except (EOFError, OSError):
                proc.join(10)
                code = proc.exitcode
                case = fc.make_case(pool, args.seed, nxt, args.levels)
                run.add(nxt, case.level, case.mutator, case.wrap, "CRASH", 0.0)
                how = f"signal {-code}" if code is not None and code < 0 else f"exit {code}"
                what = f"{case.level}/{case.mutator}, {case.wrap}"
                fail("CRASH", nxt, f"CRASH: the worker died ({how}) in {what}", case.data)
                stop_worker()
                proc, nxt = None, nxt + 1
                run.restarts += 1
                continue
            if msg[0] == "bye":
                stop_worker()
                proc = None
                run.restarts += 1
                continue
            _, i, level, name, wrap, outcome, dt, rss, raised, detail = msg
            assert i == nxt, (i, nxt)
            read_as = outcome
            over = raised and rss > opts["max_rss"]
            if over and not outcome.startswith(("FAILURE", "GENERATOR")):
                outcome = "MEMORY"
            label = run.add(i, level, name, wrap, outcome, dt)
            if raised and rss > run.peak_rss:
                run.peak_rss, run.peak_input = rss, f"{label}: {read_as}"
            if outcome == "MEMORY":
                fail(
                    "MEMORY",
                    i,
                    f"{label} raised the worker's peak RSS to {rss / 2**30:.2f} GiB ({read_as})",
                )
            elif outcome.startswith(("FAILURE", "GENERATOR")):
                fail(outcome.split()[0], i, f"{label}: {outcome}", None, detail)
            if dt > args.slow:
                run.slow.append(f"{label}: {dt:.1f} s ({outcome})")
            nxt += 1
            if args.verbose and nxt % 1000 == 0:
                rate = nxt / (time.monotonic() - t_start)
                print(
                    f"{nxt} inputs, {time.monotonic() - t_start:.0f} s, {rate:.1f}/s, "
                    f"{len(run.failures)} failures",
                    file=sys.stderr,
                )
    finally:
        stop_worker()
    run.seconds = time.monotonic() - t_start
    return run


def build_pool(args) -> list[tuple[str, bytes]]:
    """The pool, made in a worker process (the encoder starts Taichi there, not here)."""
    if not args.structured:
        return fc.golden_items()
    ctx = mp.get_context("spawn")
    here, there = ctx.Pipe(duplex=False)
    opts = {"limit_as_gb": args.limit_as_gb, "threads": args.threads, "encoded": True}
    proc = ctx.Process(target=worker, args=(there, opts, None, 0, 0))
    proc.start()
    there.close()
    try:
        if not here.poll(args.startup_timeout):
            raise RuntimeError("the pool was not made in time")
        tag, items = here.recv()
    finally:
        proc.join(30)
        if proc.is_alive():
            proc.kill()
            proc.join()
    return items


# ---------------------------------------------------------------- the report


def pct(part: int, whole: int) -> str:
    return f"{100 * part / max(whole, 1):.1f}%"


def report(args, run: Run, items, command: str, code: str = "") -> str:
    """The markdown section of docs/robustness.md."""
    n = run.inputs
    failures = len(run.failures)
    rate = n / max(run.seconds, 1e-9)
    kinds = collections.Counter(kind for kind, _ in run.failures)
    names = [name for name, _ in items]
    encoded = sum(1 for x in names if x.startswith("enc-"))
    made = sum(1 for x in names if x.startswith("made-"))
    lines = [
        "## Fuzzing the reader (`bench/fuzz.py`)",
        "",
        f"`{command}`, {datetime.date.today()}, code {code or 'not recorded'}, "
        f"{platform.machine()}, {os.cpu_count()} cores, Python {platform.python_version()}.",
        "",
        f"**{n} inputs in {run.seconds:.0f} s ({rate:.1f} inputs/s); {failures} failures**"
        + (" (" + ", ".join(f"{k} {v}" for k, v in kinds.most_common()) + ")" if kinds else "")
        + f". Each input ran in a worker process bounded to {args.case_timeout:g} s and "
        f"{args.max_rss_gb:g} GiB peak RSS (address space capped at {args.limit_as_gb:g} GiB); "
        f"{run.restarts} worker restarts. Slowest input {run.slowest[0]:.2f} s "
        f"({run.slowest[1]}); peak worker RSS {run.peak_rss / 2**20:.0f} MiB "
        f"({run.peak_input}); "
        f"{len(run.slow)} inputs slower than {args.slow:g} s.",
        "",
        f"Inputs start from {len(items)} valid files: the {len(names) - encoded - made} "
        f"goldens, {encoded} written by this checkout's encoder and {made} made by hand at the "
        "format's edges (`bench/fuzzcases.py`, `ENCODED` and `CRAFTED`; split and "
        "single-frame payloads, 1, 3 and 4 channels). Each input changes one level of a "
        "parsed file (`bench/sadfile.py`) and is written again with payload_len and both "
        "CRCs consistent, or with one of them wrong on purpose: "
        + ", ".join(f"{w} {c}" for w, c in run.wraps.most_common())
        + f" (raw, crc and crc+len are the byte level's). Headers declaring more than "
        f"{args.max_work} pixels x K are rendered at a reduced size (`rendered reduced`). "
        "Inputs that only re-encode their base file (layout, zstd level, declared sizes, "
        "delta coding, minor version) must read exactly as it does, pixels included.",
        "",
        "Where the reader stopped each input, by level: container (magic, version, lengths, "
        "CRCs), header validation, payload structure (flags, size table, zstd frames, "
        "plane sizes), site values (ranges, Morton order, colours), or decoded:",
        "",
        "| level | mutated | inputs | container | header | payload | sites | decoded | failures |",
        "|---|---|---:|---:|---:|---:|---:|---:|---:|",
    ]

    def row(counter, key) -> list[str]:
        total = sum(counter[key, s] for s in STAGES)
        cells = [str(total)]
        cells += [
            pct(counter[key, s], total)
            for s in ("container", "header", "payload", "sites", "decoded")
        ]
        return cells + [str(counter[key, "failure"])]

    for level, (_, what) in fc.LEVELS.items():
        if any(run.levels[level, s] for s in STAGES):
            lines.append(f"| {level} | {what} | " + " | ".join(row(run.levels, level)) + " |")
    other = sum(c for (_, s), c in run.levels.items() if s == "other")
    lines += [
        "",
        f"(Refusals whose message names no stage: {other}.) By mutator, with its most "
        "frequent refusal:",
        "",
        "| mutator | level | what it does | inputs | container | header | payload | sites "
        "| decoded | failures | most frequent refusal |",
        "|---|---|---|---:|---:|---:|---:|---:|---:|---:|---|",
    ]
    for name, (level, what, _) in fc.MUTATORS.items():
        if not any(run.mutators[name, s] for s in STAGES):
            continue
        top = run.refusals[name].most_common(1)
        top_text = top[0][0].replace("SadFormatError: ", "").replace("|", "/") if top else ""
        lines.append(
            f"| `{name}` | {level} | {what} | "
            + " | ".join(row(run.mutators, name))
            + f" | {top_text} |"
        )
    lines += [
        "",
        f"All outcomes ({len(run.outcomes)} classes; numbers in messages shown as N):",
        "",
        "| outcome | inputs | share |",
        "|---|---:|---:|",
    ]
    for outcome, count in run.outcomes.most_common():
        if count:
            lines.append(f"| {outcome.replace('|', '/')} | {count} | {pct(count, n)} |")
    lines += ["", "Failures:" if run.failures else "Failures: none."]
    lines += [f"- {text}" for _, text in run.failures[:50]]
    if len(run.failures) > 50:
        lines.append(f"- ... and {len(run.failures) - 50} more")
    if run.slow:
        lines += ["", f"Inputs slower than {args.slow:g} s (not failures; the machine is shared):"]
        lines += [f"- {s}" for s in run.slow[:20]]
    return "\n".join(lines)


def provenance_row() -> dict:
    """provenance() as CSV strings, the form code_label reads."""
    return {k: str(v) for k, v in provenance().items()}


def replay(args) -> int:
    """Make one input again and check it here, printing its outcome (or the traceback)."""
    sadcodec.init_backend("cpu", args.threads)
    items = fc.pool_items(encoded=args.structured) if args.structured else fc.golden_items()
    pool = fc.load_pool(items)
    case = fc.make_case(pool, args.seed, args.case, args.levels)
    path = save_failure(args, pool, args.case, case.data)
    print(
        f"input {args.case}: {case.level}/{case.mutator}, {case.wrap}, base "
        f"{pool[case.base].name}, {len(case.data)} bytes, saved as {path}"
    )
    print(check_case(case, BaseReads(pool, args.max_work)))
    return 0


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument(
        "--structured",
        action="store_true",
        help="every level on the full pool (default: byte mutations of goldens)",
    )
    ap.add_argument(
        "--levels", default=None, help=f"comma-separated subset of {','.join(fc.LEVELS)}"
    )
    ap.add_argument(
        "--seconds",
        type=float,
        default=None,
        help="stop after this long (default 60 s, unlimited with --count)",
    )
    ap.add_argument("--count", type=int, default=None, help="stop after this many inputs")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--case", type=int, default=None, help="replay this one input and stop")
    ap.add_argument(
        "--case-timeout",
        type=float,
        default=60.0,
        help="per-input time bound (s): a slower input is a failure",
    )
    ap.add_argument("--slow", type=float, default=5.0, help="list inputs slower than this (s)")
    ap.add_argument(
        "--max-rss-gb",
        type=float,
        default=2.0,
        help="per-input memory bound: a worker's peak RSS above it is a failure",
    )
    ap.add_argument("--limit-as-gb", type=float, default=8.0, help="worker address space cap")
    ap.add_argument("--startup-timeout", type=float, default=600.0)
    ap.add_argument("--max-work", type=int, default=None, help="pixels x K at full size")
    ap.add_argument("--save-dir", default=os.path.join(ROOT, "bench", "cache", "fuzz"))
    ap.add_argument("--report", default=os.path.join(ROOT, "docs", "robustness.md"))
    ap.add_argument("--no-report", action="store_true", help="print only")
    ap.add_argument("--threads", type=int, default=None)
    ap.add_argument("-v", "--verbose", action="store_true")
    args = ap.parse_args(argv)
    levels = args.levels.split(",") if args.levels else None
    if levels and not set(levels) <= set(fc.LEVELS):
        ap.error(f"--levels: choose from {', '.join(fc.LEVELS)}")
    args.levels = tuple(levels or (fc.LEVELS if args.structured else ("bytes",)))
    if args.max_work is None:
        args.max_work = MAX_WORK_STRUCTURED if args.structured else MAX_WORK
    if args.seconds is None:
        args.seconds = math.inf if args.count is not None else 60.0
    if args.count is None:
        args.count = sys.maxsize
    os.makedirs(args.save_dir, exist_ok=True)
    if args.case is not None:
        return replay(args)
    code = code_label(provenance_row())  # the code this run reads with, before it starts
    items = build_pool(args)
    run = supervise(args, items)
    command = "python -m bench.fuzz " + shlex.join(sys.argv[1:] if argv is None else argv)
    end = code_label(provenance_row())
    if end != code:  # workers started after a change read the new code
        code = f"{code} at the start, {end} at the end"
    text = report(args, run, items, command, code)
    print(text)
    if not args.no_report:
        replace_section(args.report, "fuzz", text)
    return 1 if run.failures else 0


if __name__ == "__main__":
    sys.exit(main())
