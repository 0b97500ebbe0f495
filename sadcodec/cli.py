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
import os
import signal
import stat
import sys
import threading
import time

import click

from . import __version__
from .api import MAX_BPP, MAX_SEED
from .atomic import recording_writes
from .backend import preflight, shutdown
from .errors import SadError, SadFormatError

_CHANNEL_NAMES = {1: "gray", 3: "RGB", 4: "RGBA"}
_IMAGE_EXTENSIONS = "png, jpg, bmp, tif, webp"
# click >= 8.2 reports a bare `sad` as a usage error carrying the help text.
_NO_ARGS = getattr(click.exceptions, "NoArgsIsHelpError", ())


def _err(msg: str) -> None:
    click.echo(f"sad: error: {msg}", err=True)


def _one_line(what: object) -> str:
    """The first line of a message (or of an exception's text; its type when it has none)."""
    text = str(what).strip()
    return text.splitlines()[0] if text else type(what).__name__


def _notice(msg: str) -> None:
    click.echo(f"sad: notice: {msg}", err=True)


def _debug() -> bool:
    return os.environ.get("SAD_DEBUG", "") not in ("", "0")


def _read_bytes(path: str) -> bytes:
    """A .sad file's bytes, reading only what its header declares (a file, pipe or device:
    endless or padded input is refused at once, container.read_stream). Unbuffered, so
    no read-ahead takes more than the one byte probed after the file either."""
    from .container import read_stream

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


def _check_image_extension(path: str) -> None:
    """Refuse an output format save_image cannot write before spending time on a decode."""
    from . import imageload

    formats = getattr(imageload, "_FORMATS", None)
    ext = os.path.splitext(path)[1].lower()
    if formats is not None and ext not in formats:
        what = f"unknown image extension '{ext}'" if ext else "no file extension"
        raise SadError(f"cannot write '{path}': {what}; use one of {', '.join(formats)}")


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


class _Progress:
    """A tqdm bar on stderr fed by the encoder's progress callback (iteration, PSNR, sites)."""

    def __init__(self, enabled: bool):
        self.enabled = enabled
        self.bar = None

    def __call__(self, d: dict) -> None:
        if not self.enabled:
            return
        postfix = f"PSNR {d['psnr']:.2f} dB, {d['sites']} sites"
        if self.bar is None:
            from tqdm import tqdm

            tty = getattr(sys.stderr, "isatty", lambda: False)()
            self.bar = tqdm(
                total=d["iterations"],
                unit="it",
                file=sys.stderr,
                leave=False,  # the summary line replaces it
                dynamic_ncols=True,
                desc=d.get("stage", "fit"),
                postfix=postfix,
                # A log file gets a frame every few seconds, not a flood of \r updates.
                mininterval=0.2 if tty else 5.0,
            )
        if d.get("stage") and d["stage"] != self.bar.desc:
            self.bar.set_description_str(d["stage"], refresh=False)
        self.bar.set_postfix_str(postfix, refresh=False)
        # update() (not a forced refresh) lets tqdm throttle redraws to a few per second.
        self.bar.update(max(0, d["iteration"] - self.bar.n))

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
_quiet_option = click.option(
    "-q", "--quiet", is_flag=True, help="Print nothing but errors (no progress, no summary)."
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


@cli.command()
@click.argument("input", type=_PATH)
@click.option("-o", "--output", required=True, type=_PATH, help="Output .sad file.")
@click.option(
    "--bpp",
    type=float,
    default=1.0,
    show_default=True,
    help=f"Size budget in bits per pixel, header included (0 < bpp <= {MAX_BPP:g}).",
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
@_arch_option
@_threads_option
@_quiet_option
@_guard
def encode(input, output, bpp, effort, iterations, seed, max_memory, arch, threads, quiet):
    """Compress an image (PNG, JPEG, BMP, TIFF, GIF, WebP) to a .sad file."""
    from . import api
    from .atomic import atomic_write_bytes, check_output_path
    from .imageload import load_image, probe_image

    if effort is not None and iterations is not None:
        raise click.UsageError("give --effort or --iterations, not both")
    _check_input(input)
    check_output_path(input, output)  # before the long encode, not after it

    def check(shape: tuple[int, ...]) -> None:
        try:
            api.encode_settings(
                shape, bpp, seed=seed, effort=effort, iterations=iterations, max_memory=max_memory
            )
        except SadError as exc:
            raise SadError(f"cannot encode '{input}': {_one_line(exc)}") from None

    # The size the header declares first: an image too large to encode (its memory
    # included) is refused before its pixels are decoded; then the decoded shape.
    check(probe_image(input))
    img = load_image(input, notice=_notice)
    check(img.shape)
    preflight()
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
        )
    finally:
        progress.close()
    atomic_write_bytes(output, result.data)
    if quiet:
        return
    h, w, c = img.shape
    click.echo(
        f"{os.path.basename(input)} -> {os.path.basename(output)}: {w}x{h} "
        f"{_CHANNEL_NAMES[c]}, {result.sites} sites, {result.bytes} bytes, "
        f"{8 * result.bytes / (w * h):.3f} bpp, PSNR {result.psnr:.2f} dB, "
        f"encode {result.seconds:.1f} s",
        err=True,
    )


@cli.command()
@click.argument("input", type=_PATH)
@click.option(
    "-o",
    "--output",
    required=True,
    type=_PATH,
    help=f"Output image; the format follows the extension ({_IMAGE_EXTENSIONS}).",
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
@_arch_option
@_threads_option
@_quiet_option
@_guard
def decode(input, output, width, height, scale, arch, threads, quiet):
    """Render a .sad file to an image, at its stored size or any other."""
    from . import api
    from .atomic import check_output_path
    from .imageload import save_image

    if scale is not None and (width is not None or height is not None):
        raise click.UsageError("--scale cannot be combined with --width/--height")
    _check_input(input)
    check_output_path(input, output)
    _check_image_extension(output)
    data = _read_bytes(input)
    preflight()
    t0 = time.perf_counter()
    with _reading(input):
        img = api.decode(data, width=width, height=height, scale=scale, arch=arch, threads=threads)
    seconds = time.perf_counter() - t0
    save_image(output, img)
    if not quiet:
        h, w, c = img.shape
        click.echo(
            f"{os.path.basename(input)} -> {os.path.basename(output)}: {w}x{h} "
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
    """
    from .api import read_info

    _check_input(input)
    with _reading(input):
        d = read_info(_read_bytes(input))
    if as_json:
        click.echo(json.dumps(d, indent=2))
    else:
        _print_info(input, d)
    if d["checksum"] != "ok":  # describe what can be read, but say the file is damaged
        raise SadFormatError(f"cannot read '{input}': {d['checksum'].removeprefix('failed: ')}")


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
        f"checksum:    {d['checksum']}",
    ]
    click.echo("\n".join(lines))


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
    os._exit(code)


if __name__ == "__main__":
    run()
