"""The `sad` command: encode, decode, info. A thin layer over the Python API.

Conventions (like cwebp / avifenc / cjxl): results go to files, progress and the one-line
summary go to stderr, stdout is only used by `sad info`. Every failure is one line, and
everything that can be checked (arguments, the input, the output path, the environment the
compute backend needs) is checked before the work starts. Exit statuses:

* 0: done;
* 1, ``sad: error: <message>``: an input, output or data error, a bad value (SadError),
  or an environment the backend cannot start in (no usable temporary directory, ulimit -f);
* 2, ``sad: error: <message> (see 'sad CMD --help')``: a usage error found by click;
  also 2, ``sad: internal error: <type>: <message>``: a bug (``SAD_DEBUG=1`` shows the
  traceback instead);
* 130, ``sad: interrupted``: Ctrl-C (SIGINT); 143, ``sad: terminated``: SIGTERM. Either way
  the cleanup runs: no temporary file is left and an existing output is untouched, unless
  the output had already been written in full, which the message then says
  (``sad: interrupted after writing 'x.sad' (the file is complete)``).

Output files are written atomically (sadcodec.atomic), so a failure never leaves a partial
file behind; a FIFO or a character device given as the output is written into, not replaced.
"""

from __future__ import annotations

import contextlib
import errno
import functools
import json
import math
import os
import signal
import stat
import sys
import threading
import time
from typing import BinaryIO

import click

from . import __version__
from .api import MAX_BPP, MAX_SEED
from .atomic import recording_writes
from .backend import preflight, shutdown
from .errors import RegionError, SadError, SadFormatError

_CHANNEL_NAMES = {1: "gray", 3: "RGB", 4: "RGBA"}
_IMAGE_EXTENSIONS = "png, jpg, webp, tif, bmp, ppm, pgm"
# imageload's, repeated so that `sad --help` and `sad info` need not import Pillow.
_FORMATS = ("png", "jpeg", "webp", "tiff", "bmp", "ppm", "pgm")
_JPEG_QUALITY = 95
# click >= 8.2 reports a bare `sad` as a usage error carrying the help text.
_NO_ARGS = getattr(click.exceptions, "NoArgsIsHelpError", ())


def _err(msg: str) -> None:
    click.echo(f"sad: error: {msg}", err=True)


def _one_line(what: object) -> str:
    """The first line of a message (or of an exception's text; its type when it has none)."""
    text = str(what).strip()
    return text.splitlines()[0] if text else type(what).__name__


def _notice(msg: str) -> None:
    """A notice on stderr, unless the command runs with --quiet."""
    ctx = click.get_current_context(silent=True)
    if ctx is not None and ctx.params.get("quiet"):
        return
    click.echo(f"sad: notice: {msg}", err=True)


def _verbose(msg: str) -> None:
    """A detail on stderr (settings, timings) when the command runs with --verbose."""
    ctx = click.get_current_context(silent=True)
    if ctx is not None and ctx.params.get("verbose"):
        click.echo(f"sad: {msg}", err=True)


# `-` as an input or output path is standard input or output; messages call them so.
STDIO = "-"
_STDIN = "<stdin>"
_STDOUT = "<stdout>"


def _shown(path: str, stream: str) -> str:
    """The name of an input or output in messages: the path, or <stdin> / <stdout>."""
    return stream if path == STDIO else path


def _stdin() -> BinaryIO:
    """Standard input as a binary stream; refused when closed or a terminal (a file is
    expected there, and an interactive terminal would wait for it forever)."""
    stream = sys.stdin
    if stream is None or stream.closed:
        raise SadError(f"cannot read '{_STDIN}': standard input is closed")
    if stream.isatty():
        raise SadError(
            f"cannot read '{_STDIN}': it is a terminal; redirect (< file) or pipe a file in"
        )
    return getattr(stream, "buffer", stream)


def _check_stdout() -> None:
    """Before any work: standard output can take a binary file (not closed, no terminal)."""
    stream = sys.stdout
    if stream is None or stream.closed:
        raise SadError(f"cannot write '{_STDOUT}': standard output is closed")
    if stream.isatty():
        raise SadError(
            f"cannot write '{_STDOUT}': it is a terminal; redirect (> file) or pipe the output"
        )


def _write_stdout(data: bytes) -> None:
    """Write a whole file to standard output at once, once it is complete (so a failure
    never leaves part of one in a pipe)."""
    stream = sys.stdout
    binary = getattr(stream, "buffer", stream)
    try:
        stream.flush()
        binary.write(data)
        binary.flush()
    except BrokenPipeError:
        raise  # the reader went away: _guarded exits quietly
    except OSError as exc:
        raise SadError(f"cannot write '{_STDOUT}': {exc.strerror or exc}") from None


def _debug() -> bool:
    return os.environ.get("SAD_DEBUG", "") not in ("", "0")


def _read_bytes(path: str) -> bytes:
    """A .sad file's bytes, reading only what its header declares (a file, pipe or device:
    endless or padded input is refused at once, container.read_stream). Unbuffered, so
    no read-ahead takes more than the one byte probed after the file either. ``-``:
    standard input, read the same way."""
    from .container import read_stream

    if path == STDIO:
        stdin = _stdin()
        try:
            return read_stream(stdin)
        except SadFormatError as exc:
            raise SadError(f"cannot read '{_STDIN}': {_one_line(exc)}") from None
        except OSError as exc:
            raise SadError(f"cannot read '{_STDIN}': {exc.strerror or exc}") from None
    try:
        with open(path, "rb", buffering=0) as f:
            return read_stream(f)
    except SadFormatError as exc:
        # A plain SadError: the message names the file already, so callers' _reading
        # (which prefixes format errors) leaves it as it is.
        raise SadError(f"cannot read '{path}': {_one_line(exc)}") from None
    except FileNotFoundError:
        raise SadError(f"cannot read '{path}': no such file") from None
    except IsADirectoryError:
        raise SadError(f"cannot read '{path}': is a directory") from None
    except PermissionError:
        raise SadError(f"cannot read '{path}': permission denied") from None
    except OSError as exc:
        raise SadError(f"cannot read '{path}': {exc.strerror or exc}") from None


@contextlib.contextmanager
def _reading(path: str):
    """Name the file in format errors: `cannot read 'x.sad': truncated file (...)`."""
    try:
        yield
    except SadFormatError as exc:
        raise SadFormatError(f"cannot read '{path}': {_one_line(exc)}") from None


def _image_format(path: str, fmt: str | None) -> str:
    """The output image's format (--format, else the extension; PNG on standard output),
    refused before any time is spent on a decode if unknown."""
    from .imageload import output_format

    return output_format(None if path == STDIO else path, fmt)


_INPUT_ERRORS = {
    errno.ENOENT: "no such file",
    errno.ENOTDIR: "no such file (a component of the path is not a directory)",
    errno.ELOOP: "too many levels of symbolic links",
    errno.ENAMETOOLONG: "file name too long",
    errno.EACCES: "permission denied",
    errno.EPERM: "permission denied",
}


def _check_input(path: str) -> None:
    """Refuse an input that cannot be opened, with the reason, before anything else.

    Only the path is looked up (a FIFO or device is not opened here); whether the file
    can be read is found when it is read, which reports "permission denied" the same way.
    """
    try:
        st = os.stat(path)
    except OSError as exc:
        reason = _INPUT_ERRORS.get(exc.errno) or exc.strerror or type(exc).__name__
        raise SadError(f"cannot read '{path}': {reason}") from None
    if stat.S_ISDIR(st.st_mode):
        raise SadError(f"cannot read '{path}': is a directory")


class _Terminated(KeyboardInterrupt):
    """SIGTERM, raised like Ctrl-C's KeyboardInterrupt so that every cleanup path runs."""


def _on_sigterm(signum: int, frame: object) -> None:
    raise _Terminated


@contextlib.contextmanager
def _sigterm_handled():
    """While a command runs, SIGTERM (kill, timeout, a container stopping) ends it as
    Ctrl-C does: cleanup, one line, exit 143, instead of dying with a temporary file left.
    Left alone when SIGTERM is ignored (as started by nohup-like tools) or set outside
    Python, and outside the main thread, where handlers cannot be set."""
    old = None
    if threading.current_thread() is threading.main_thread():
        current = signal.getsignal(signal.SIGTERM)
        if current is not None and current != signal.SIG_IGN:
            old = current
            signal.signal(signal.SIGTERM, _on_sigterm)
    try:
        yield
    finally:
        if old is not None:
            signal.signal(signal.SIGTERM, old)


def _interrupted(exc: BaseException, written: list[str]) -> None:
    """Say how the command was stopped, and whether its output is complete; exit 130/143."""
    what, code = ("terminated", 143) if isinstance(exc, _Terminated) else ("interrupted", 130)
    if written:
        click.echo(f"sad: {what} after writing '{written[-1]}' (the file is complete)", err=True)
    else:
        click.echo(f"sad: {what}", err=True)
    sys.exit(code)


# Progress written to a file or pipe: one line per stage and per tenth of the iterations.
_PLAIN_STEPS = 10


class _Progress:
    """Progress on stderr fed by the encoder's callback (iteration, PSNR, sites): a tqdm
    bar on a terminal; elsewhere (a log file, a pipe) plain lines, a few per encode, since
    a bar's carriage-return frames make a log unreadable."""

    def __init__(self, enabled: bool):
        self.enabled = enabled
        self.bar = None
        self.tty: bool | None = None
        self.line_at: tuple[str, int] | None = None  # (stage, tenth) of the last line

    def __call__(self, d: dict) -> None:
        if not self.enabled:
            return
        if self.tty is None:
            self.tty = bool(getattr(sys.stderr, "isatty", lambda: False)())
        postfix = f"PSNR {d['psnr']:.2f} dB, {d['sites']} sites"
        if not self.tty:
            self._line(d, postfix)
            return
        if self.bar is None:
            from tqdm import tqdm

            self.bar = tqdm(
                total=d["iterations"],
                unit="it",
                file=sys.stderr,
                leave=False,  # the summary line replaces it
                dynamic_ncols=True,
                desc=d.get("stage", "fit"),
                postfix=postfix,
                mininterval=0.2,
            )
        if d.get("stage") and d["stage"] != self.bar.desc:
            self.bar.set_description_str(d["stage"], refresh=False)
        self.bar.set_postfix_str(postfix, refresh=False)
        # update() (not a forced refresh) lets tqdm throttle redraws to a few per second.
        self.bar.update(max(0, d["iteration"] - self.bar.n))

    def _line(self, d: dict, postfix: str) -> None:
        """A plain line when the stage changes or a tenth more of the iterations is done."""
        stage = d.get("stage", "fit")
        total = max(1, d["iterations"])
        at = (stage, d["iteration"] * _PLAIN_STEPS // total)
        if self.line_at is not None and (at == self.line_at or stage == self.line_at[0] == "rate"):
            return  # (the rate fit reports each attempt at the last iteration: once is enough)
        self.line_at = at
        done = "" if stage == "rate" else f"{d['iteration']}/{total} iterations, "
        click.echo(f"{stage}: {done}{postfix}", err=True)

    def close(self) -> None:
        if self.bar is not None:
            self.bar.close()
            self.bar = None


def _guard(fn):
    """Turn every failure inside a command into one line on stderr and a non-zero exit."""

    @functools.wraps(fn)
    def run(*args, **kwargs):
        with recording_writes() as written:
            return _guarded(fn, written, *args, **kwargs)

    return run


def _guarded(fn, written: list[str], *args, **kwargs):
    """_guard's body; ``written`` lists the outputs written in full so far."""
    try:
        return fn(*args, **kwargs)
    except click.exceptions.ClickException:
        raise  # usage errors: formatted by main()
    except (click.exceptions.Exit, click.exceptions.Abort):
        raise
    except SadError as exc:
        _err(_one_line(exc))
        sys.exit(1)
    except KeyboardInterrupt as exc:  # Ctrl-C, or SIGTERM (_Terminated)
        _interrupted(exc, written)
    except BrokenPipeError:
        # `sad info x.sad | head -1`: the reader went away; nothing left to say.
        try:
            devnull = os.open(os.devnull, os.O_WRONLY)
            os.dup2(devnull, sys.stdout.fileno())
        except (OSError, ValueError, AttributeError):
            pass
        sys.exit(1)
    except MemoryError:
        _err("out of memory")
        sys.exit(1)
    except Exception as exc:  # a bug: still one line, unless debugging
        if _debug():
            raise
        msg = _one_line(exc) if str(exc).strip() else ""
        click.echo(f"sad: internal error: {type(exc).__name__}: {msg}", err=True)
        sys.exit(2)


_arch_option = click.option(
    "--arch",
    type=click.Choice(["auto", "cpu", "cuda"]),
    default="cpu",
    envvar="SAD_ARCH",
    show_default=True,
    show_envvar=True,
    help="Compute backend; auto uses CUDA when a usable GPU is present, else the CPU.",
)
_threads_option = click.option(
    "--threads",
    type=click.IntRange(min=1),
    default=None,
    show_default="all cores",
    help="CPU threads for the compute backend.",
)
# No -q: in codec command lines (cwebp, avifenc) -q is the quality.
_quiet_option = click.option(
    "--quiet", is_flag=True, help="Print nothing but errors (no progress, summary or notices)."
)
_verbose_option = click.option(
    "-v", "--verbose", is_flag=True, help="Also print the settings and the time of each step."
)
# Paths are checked by the commands themselves (_check_input, check_output_path): click's
# own readability check would make an unreadable file a usage error (exit 2) while a
# missing one is a file error (exit 1).
_PATH = click.Path(readable=False)
_EPILOG = (
    "Exit status: 0 done, 1 input/output/data error, 2 usage error (or internal error), "
    "130 interrupted (Ctrl-C), 143 terminated (SIGTERM)."
)


@click.group(context_settings={"help_option_names": ["-h", "--help"]}, epilog=_EPILOG)
@click.version_option(
    __version__, "-V", "--version", prog_name="sad", message="%(prog)s %(version)s"
)
def cli() -> None:
    """sad - the Soft Anisotropic Diagram image codec.

    \b
      sad encode photo.png -o photo.sad --bpp 1.0
      sad decode photo.sad -o out.png
      sad decode photo.sad -o big.png --scale 2
      sad info photo.sad
    """


def _size_option(value: str | None) -> int | None:
    """--size in bytes (settings.parse_size); a malformed one is a usage error."""
    if value is None:
        return None
    from .settings import parse_size

    try:
        return parse_size(value)
    except SadError:
        raise click.BadParameter(
            f"{value!r} is not a size: give bytes, or a number with a unit such as 50k or 1.5M"
        ) from None


@cli.command()
@click.argument("inputs", nargs=-1, required=True, type=_PATH, metavar="INPUT...")
@click.option(
    "-o",
    "--output",
    required=True,
    type=_PATH,
    help="Output .sad file; with several inputs (or ending in '/') a directory, created if "
    "missing, where each input's output is named after it (photo.png -> photo.sad).",
)
@click.option(
    "--bpp",
    type=float,
    default=None,  # None: 1.0, unless --size gives the budget
    help=f"Size budget in bits per pixel, header included (0 < bpp <= {MAX_BPP:g}).  "
    "[default: 1.0]",
)
@click.option(
    "--size",
    default=None,
    metavar="BYTES",
    callback=lambda ctx, param, value: _size_option(value),
    help="Size budget instead of --bpp: the file is at most BYTES, e.g. 50000, 50k, 1.5M "
    "(k, M: powers of 1000; Ki, Mi: of 1024).",
)
@click.option(
    "--metadata",
    type=click.Choice(["all", "icc", "none"]),
    default="icc",
    show_default=True,
    help="Metadata to keep, within the budget: icc, the ICC profile (colours stay right); "
    "all, EXIF too; none (samples are then taken as sRGB).",
)
@click.option(
    "--effort",
    type=click.IntRange(1, 9),
    default=None,
    show_default="6",
    help="Speed/quality trade-off: 1 fast .. 9 slow and better.",
)
@click.option(
    "--iterations",
    type=click.IntRange(1, 100_000),
    default=None,
    help="Fit iterations, instead of --effort.",
)
@click.option(
    "--seed",
    type=click.IntRange(0, MAX_SEED),
    default=0,
    show_default=True,
    help="Random seed; the same input, options and seed give the same file on the CPU.",
)
@click.option(
    "--max-memory",
    default=None,
    metavar="SIZE",
    show_default="75% of the machine's memory",
    help="Refuse an encode whose estimated peak memory is over SIZE: bytes, or with a unit "
    "(K, M, G, T: powers of 1024), e.g. 8G.",
)
@click.option(
    "--skip-existing",
    is_flag=True,
    help="Leave outputs that exist already: a rerun resumes where an interrupted one stopped.",
)
@click.option(
    "--cluster",
    default=None,
    metavar="ADDRESS|local:N",
    help="Encode on a Dask cluster: a scheduler's address (tcp://host:8786), or local:N to "
    "start N worker processes here. Needs pip install 'sadcodec[cluster]'.",
)
@_arch_option
@_threads_option
@_quiet_option
@_verbose_option
@click.option(
    "--json",
    "as_json",
    is_flag=True,
    help="Print the summary as JSON on stdout, even with --quiet (not with -o -).",
)
@_guard
def encode(
    inputs,
    output,
    bpp,
    size,
    metadata,
    effort,
    iterations,
    seed,
    max_memory,
    skip_existing,
    cluster,
    arch,
    threads,
    quiet,
    verbose,
    as_json,
):
    """Compress an image (PNG, JPEG, BMP, TIFF, GIF, WebP) to a .sad file, or several
    images to a directory (-o DIR/), here or on a cluster (--cluster).

    INPUT or -o may be - for standard input or output."""
    from . import api
    from .atomic import atomic_write_bytes, check_output_path
    from .imageload import load_image, probe_image, read_image_stream
    from .metadata import read_image_metadata

    if effort is not None and iterations is not None:
        raise click.UsageError("give --effort or --iterations, not both")
    if bpp is not None and size is not None:
        raise click.UsageError("give --bpp or --size, not both")
    if STDIO in inputs and len(inputs) > 1:
        raise click.UsageError("'-' (standard input) can only be the one input")
    if as_json and output == STDIO:
        raise click.UsageError("--json prints on stdout, where -o - writes the file")
    if len(inputs) > 1 or skip_existing or cluster is not None or output.endswith("/"):
        if as_json:
            raise click.UsageError("--json describes the encode of one input")
        from .batch import EncodeOptions

        options = EncodeOptions(
            bpp=bpp,
            size=size,
            seed=seed,
            effort=effort,
            iterations=iterations,
            max_memory=max_memory,
            metadata=metadata,
            arch=arch,
            threads=threads,
        )
        return _encode_many(inputs, output, options, skip_existing, cluster, quiet)
    (input,) = inputs
    src_name, dst_name = _shown(input, _STDIN), _shown(output, _STDOUT)
    if input != STDIO:
        _check_input(input)
    # The output before the long encode (and before standard input is read), not after.
    if output == STDIO:
        _check_stdout()
    else:
        check_output_path(None if input == STDIO else input, output)
    t0 = time.perf_counter()
    source = read_image_stream(_stdin(), _STDIN) if input == STDIO else input
    meta: dict = {}  # icc_profile, exif: known once the image is read

    def check(shape: tuple[int, ...]):
        try:
            return api.encode_settings(
                shape,
                bpp,
                size=size,
                seed=seed,
                effort=effort,
                iterations=iterations,
                max_memory=max_memory,
                **meta,
            )
        except SadError as exc:
            raise SadError(f"cannot encode '{src_name}': {_one_line(exc)}") from None

    # The size the header declares first: an image too large to encode (its memory
    # included) is refused before its pixels are decoded; then the decoded shape.
    check(probe_image(source, name=src_name))
    img = load_image(source, notice=_notice, name=src_name)
    kept = read_image_metadata(source, metadata, img.shape[2], notice=_notice)
    meta.update(icc_profile=kept.icc_profile, exif=kept.exif)
    settings = check(img.shape)
    read_seconds = time.perf_counter() - t0
    preflight()
    _verbose_settings(settings, seed, arch, threads)
    _announce_compile(arch, threads)
    progress = _Progress(not quiet)
    try:
        result = api.encode(
            img,
            bpp,
            seed=seed,
            effort=effort,
            iterations=iterations,
            arch=arch,
            threads=threads,
            progress=progress,
            stats=True,
            max_memory=max_memory,
            size=size,
            **meta,
        )
    finally:
        progress.close()
    t0 = time.perf_counter()
    if output == STDIO:
        _write_stdout(result.data)
    else:
        atomic_write_bytes(output, result.data)
    _verbose_timings(read_seconds, result, time.perf_counter() - t0)
    h, w, c = img.shape
    if as_json:
        click.echo(json.dumps(_encode_summary(src_name, dst_name, img.shape, result, settings)))
    if quiet or as_json:
        return
    click.echo(
        f"{os.path.basename(src_name)} -> {os.path.basename(dst_name)}: {w}x{h} "
        f"{_CHANNEL_NAMES[c]}, {result.sites} sites, {result.bytes} bytes, "
        f"{8 * result.bytes / (w * h):.3f} bpp, PSNR {result.psnr:.2f} dB, "
        f"encode {result.seconds:.1f} s",
        err=True,
    )


def _verbose_settings(settings, seed: int, arch: str, threads: int | None) -> None:
    """--verbose: what the encode will do, before it starts."""
    s = settings
    _verbose(
        f"settings: {s.width}x{s.height} {_CHANNEL_NAMES[s.channels]}, budget "
        f"{s.budget_bytes} bytes ({s.bpp:.4g} bpp), {s.fit.iterations} iterations, seed "
        f"{seed}, arch {arch}, threads {threads or os.cpu_count()}, estimated peak memory "
        f"{s.memory_bytes / 2**20:.0f} MiB"
    )


def _verbose_timings(read_seconds: float, result, write_seconds: float) -> None:
    """--verbose: where the time went (the encoder's stages, from EncodeResult)."""
    stages = ", ".join(f"{k} {v:.2f} s" for k, v in result.stage_seconds.items())
    _verbose(
        f"timings: read {read_seconds:.2f} s, encode {result.seconds:.2f} s ({stages}), "
        f"write {write_seconds:.2f} s"
    )


def _encode_summary(src: str, dst: str, shape: tuple[int, ...], result, settings) -> dict:
    """`encode --json`: the summary line's facts; psnr is null for an exact (infinite) one."""
    h, w, c = shape
    psnr = result.psnr if result.psnr is not None and math.isfinite(result.psnr) else None
    return {
        "input": src,
        "output": dst,
        "width": w,
        "height": h,
        "channels": c,
        "sites": result.sites,
        "bytes": result.bytes,
        "budget_bytes": settings.budget_bytes,
        "bpp": 8 * result.bytes / (w * h),
        "psnr": psnr,
        "iterations": result.iterations,
        "seconds": result.seconds,
    }


# Set by an encode whose kernels were not in Taichi's offline cache: once the process has
# shut Taichi down (which writes the cache), run() records that they are there now.
_cold_cache: list[str] = []
# A cold encode spends ~22 s more CPU time than a warm one (24.6 against 2.5 s user time,
# a 40x32 encode, `TI_OFFLINE_CACHE_FILE_PATH=<empty dir> /usr/bin/time sad encode ...`).
COMPILE_NOTICE = "compiling kernels (first run only, about 20 s)"


def _announce_compile(arch: str, threads: int | None) -> None:
    """Say once that this encode compiles its kernels first: the first run of this
    version does, silently otherwise (docs: README, "Kernel cache")."""
    from .backend import current_arch, init_backend, kernels_cached

    if current_arch() is not None:  # started in this process already (the API, tests)
        return
    chosen = init_backend(arch, threads)
    if not kernels_cached(chosen):
        _cold_cache.append(chosen)
        _notice(COMPILE_NOTICE)


class _RegionType(click.ParamType):
    """--region X,Y,W,H: four integers, W and H at least 1, X and Y at least 0 (whether
    the rectangle lies inside the output is checked once the output size is known)."""

    name = "X,Y,W,H"

    def convert(self, value, param, ctx):
        if isinstance(value, tuple):
            return value
        try:
            x, y, w, h = (int(v) for v in str(value).split(","))
        except ValueError:
            self.fail(f"{value!r} is not four integers X,Y,W,H (e.g. 0,0,512,512)", param, ctx)
        if w < 1 or h < 1 or x < 0 or y < 0:
            self.fail(f"{value!r}: W and H must be at least 1, X and Y at least 0", param, ctx)
        return x, y, w, h


def _encode_many(inputs, output, options, skip_existing, cluster, quiet) -> None:
    """`sad encode` of several inputs, into a directory (sadcodec.batch), here or on a
    cluster; exit 1 at the end if any file failed, the others encoded all the same."""
    from . import batch

    if STDIO in inputs or output == STDIO:
        raise click.UsageError(
            "'-' (standard input or output) is for one encode, not with an output directory, "
            "--skip-existing or --cluster"
        )
    if len(inputs) > 1 and not batch.names_directory(output) and not os.path.isdir(output):
        raise click.UsageError(
            f"with several inputs, -o names a directory: '{output}' is not one "
            "(end it with '/' to create it)"
        )
    spec = None
    if cluster is not None:
        try:
            spec = batch.parse_cluster(cluster)
        except SadError as exc:
            raise click.UsageError(_one_line(exc)) from None
    jobs = batch.plan_outputs(inputs, output)
    report = batch.TextReport(quiet, progress=lambda: _Progress(True))
    outcomes = batch.encode_files(
        jobs, options, skip_existing=skip_existing, cluster=spec, report=report
    )
    failed = sum(o.status == "failed" for o in outcomes)
    if failed:
        raise SadError(f"{failed} of {len(outcomes)} files failed")


@cli.command()
@click.argument("input", type=_PATH)
@click.option(
    "-o",
    "--output",
    required=True,
    type=_PATH,
    help=f"Output image, or - for stdout; the format follows the extension ({_IMAGE_EXTENSIONS}) "
    "unless --format names it (PNG on stdout).",
)
@click.option(
    "--format",
    "fmt",
    type=click.Choice(_FORMATS, case_sensitive=False),
    default=None,
    show_default="from the extension",
    help="Output format.",
)
@click.option(
    "--jpeg-quality",
    type=click.IntRange(0, 100),
    default=_JPEG_QUALITY,
    show_default=True,
    help="Quality of JPEG output (4:4:4 chroma).",
)
@click.option(
    "--webp-quality",
    type=click.IntRange(0, 100),
    default=None,
    show_default="lossless",
    help="Write lossy WebP at this quality instead of lossless WebP.",
)
@click.option(
    "--width",
    type=click.IntRange(min=1),
    default=None,
    show_default="stored",
    help="Output width; the height keeps the aspect ratio unless given.",
)
@click.option(
    "--height",
    type=click.IntRange(min=1),
    default=None,
    show_default="stored",
    help="Output height; the width keeps the aspect ratio unless given.",
)
@click.option(
    "--scale",
    type=click.FloatRange(min=0, min_open=True),
    default=None,
    show_default="1",
    help="Output size as a factor of the stored size (not with --width/--height).",
)
@click.option(
    "--region",
    type=_RegionType(),
    default=None,
    metavar="X,Y,W,H",
    help="Render only this rectangle of the output (in output pixels, with --scale, "
    "--width or --height applied): W x H pixels from column X, row Y; the same pixels as "
    "that crop of the whole output, at a cost that grows with the region.",
)
@_arch_option
@_threads_option
@_quiet_option
@_verbose_option
@_guard
def decode(
    input,
    output,
    fmt,
    jpeg_quality,
    webp_quality,
    width,
    height,
    scale,
    region,
    arch,
    threads,
    quiet,
    verbose,
):
    """Render a .sad file to an image, at its stored size or any other.

    INPUT or -o may be - for standard input or output."""
    from . import api
    from .atomic import atomic_write_bytes, check_output_path
    from .container import read_header
    from .imageload import check_output_format, image_bytes

    if scale is not None and (width is not None or height is not None):
        raise click.UsageError("--scale cannot be combined with --width/--height")
    src_name, dst_name = _shown(input, _STDIN), _shown(output, _STDOUT)
    if input != STDIO:
        _check_input(input)
    if output == STDIO:
        _check_stdout()
    else:
        check_output_path(None if input == STDIO else input, output)
    fmt = _image_format(output, fmt)
    t0 = time.perf_counter()
    data = _read_bytes(input)
    with _reading(src_name):
        hdr = read_header(data)
    check_output_format(fmt, hdr.channels, dst_name)
    read_seconds = time.perf_counter() - t0
    preflight()
    t0 = time.perf_counter()
    with _reading(src_name):
        try:
            img = api.decode(
                data,
                width=width,
                height=height,
                scale=scale,
                region=region,
                arch=arch,
                threads=threads,
            )
        except RegionError as exc:
            raise click.BadParameter(_one_line(exc), param_hint="'--region'") from None
        meta = api.read_metadata(data)  # an ICC profile, EXIF: written into the output
    seconds = time.perf_counter() - t0
    t0 = time.perf_counter()
    # The whole file is encoded in memory first: nothing is written if that fails.
    out = image_bytes(
        img,
        fmt,
        name=dst_name,
        jpeg_quality=jpeg_quality,
        webp_quality=webp_quality,
        **meta,
        notice=_notice,
    )
    if output == STDIO:
        _write_stdout(out)
    else:
        atomic_write_bytes(output, out)
    h, w = img.shape[:2]
    c = img.shape[2] if img.ndim == 3 else 1
    _verbose(
        f"decode: {hdr.width}x{hdr.height} stored, {hdr.n_sites} sites (K = {hdr.k}) -> "
        f"{w}x{h} {fmt.upper()}, {len(out)} bytes; read {read_seconds:.2f} s, render "
        f"{seconds:.2f} s, write {time.perf_counter() - t0:.2f} s"
    )
    if not quiet:
        click.echo(
            f"{os.path.basename(src_name)} -> {os.path.basename(dst_name)}: {w}x{h} "
            f"{_CHANNEL_NAMES[c]}, decode {seconds:.2f} s",
            err=True,
        )


@cli.command()
@click.argument("input", type=_PATH)
@click.option("--json", "as_json", is_flag=True, help="Print JSON instead of text.")
@_guard
def info(input, as_json):
    """Describe a .sad file without decoding it (does not start the compute backend).

    A file whose payload is damaged is still described, then reported as an error.
    INPUT may be - for standard input.
    """
    from .api import read_info

    name = _shown(input, _STDIN)
    if input != STDIO:
        _check_input(input)
    with _reading(name):
        d = read_info(_read_bytes(input))
    if as_json:
        click.echo(json.dumps(d, indent=2))
    else:
        _print_info(name, d)
    if d["checksum"] != "ok":  # describe what can be read, but say the file is damaged
        raise SadFormatError(f"cannot read '{name}': {d['checksum'].removeprefix('failed: ')}")


def _print_info(input: str, d: dict) -> None:
    q = d["quantization"]
    lines = [
        f"file:        {input}",
        f"format:      .sad {d['format_version']}",
        f"dimensions:  {d['width']}x{d['height']}, {d['channels']} channel(s) "
        f"({_CHANNEL_NAMES.get(d['channels'], '?')})",
        f"sites:       {d['sites']} (K = {d['k']} per pixel)",
        f"size:        {d['bytes']} bytes, {d['bpp']:.4f} bpp (payload {d['payload_bytes']} bytes)",
        f"position:    1/{int(round(1 / q['position_step_px']))} px grid",
        f"direction:   {q['theta_bits']} bits; anisotropy {q['anisotropy_bits']} bits "
        f"up to {q['anisotropy_max']:g}",
        f"radius:      {q['radius_bits']} bits from {q['radius_min_px']:g} px, "
        f"step {q['radius_step_px']:g} px",
        f"temperature: {q['temperature_bits']} bits from {q['temperature_min']:g}, "
        f"step {q['temperature_step']:g}",
        f"colour:      {q['colour_bits']} bits per channel",
        f"metadata:    {_metadata_line(d['metadata'])}",
        f"checksum:    {d['checksum']}",
    ]
    click.echo("\n".join(lines))


def _metadata_line(m: dict) -> str:
    """'ICC profile 3144 bytes (sRGB IEC61966-2.1), EXIF 1020 bytes', or what no metadata means."""
    parts = []
    if "icc_profile_bytes" in m:
        desc = m.get("icc_description")
        parts.append(f"ICC profile {m['icc_profile_bytes']} bytes" + (f" ({desc})" if desc else ""))
    if "exif_bytes" in m:
        parts.append(f"EXIF {m['exif_bytes']} bytes")
    return ", ".join(parts) or "none (colours are sRGB)"


def main() -> None:
    """Entry point; usage errors also come out as one line (with a pointer to --help)."""
    with _sigterm_handled():
        _main()


def _main() -> None:
    try:
        rc = cli.main(prog_name="sad", standalone_mode=False)
    except _NO_ARGS as exc:  # bare `sad`: show the help, as older click did
        click.echo(exc.ctx.get_help() if exc.ctx else "Usage: sad COMMAND ...", err=True)
        sys.exit(2)
    except click.UsageError as exc:
        cmd = exc.ctx.command_path if exc.ctx else "sad"
        _err(f"{_one_line(exc.format_message())} (see '{cmd} --help')")
        sys.exit(2)
    except click.ClickException as exc:
        _err(_one_line(exc.format_message()))
        sys.exit(exc.exit_code)
    except click.exceptions.Abort as exc:  # Ctrl-C or SIGTERM outside a command (click)
        _interrupted(exc.__cause__ or exc, [])
    sys.exit(rc if isinstance(rc, int) else 0)


def run() -> None:
    """The `sad` command (console script, `python -m sadcodec`): main(), then exit without
    the interpreter's teardown, which spends a noticeable part of a `sad decode` process
    unloading Taichi and its compiled kernels (docs/tuning.md, "Decoder start-up"). By
    then the output is complete and closed (or removed); streams are flushed and Taichi is
    shut down first, so its offline cache is still written. main() itself exits normally,
    for callers in Python (the tests)."""
    try:
        main()
        code = 0
    except SystemExit as exc:
        code = exc.code
    if code is None:
        code = 0
    elif not isinstance(code, int):
        print(code, file=sys.stderr)
        code = 1
    for stream in (sys.stdout, sys.stderr):
        with contextlib.suppress(Exception, KeyboardInterrupt):
            stream.flush()
    # A Ctrl-C now, once the command has finished, only skips writing Taichi's cache.
    with contextlib.suppress(Exception, KeyboardInterrupt):
        shutdown()
        if code == 0 and _cold_cache:
            from .backend import mark_kernels_cached

            mark_kernels_cached(_cold_cache[-1])
    os._exit(code)


if __name__ == "__main__":
    run()
