"""The `sad` command: encode, decode, info. A thin layer over the Python API."""

from __future__ import annotations

import json
import math
import os
import sys
import time

import click
import numpy as np

from . import __version__
from .errors import SadError

_CHANNEL_NAMES = {1: "gray", 3: "RGB", 4: "RGBA"}


def _err(msg: str) -> None:
    click.echo(f"sad: error: {msg}", err=True)


def _psnr(a: np.ndarray, b: np.ndarray) -> float:
    d = a.astype(np.float64) - b.astype(np.float64)
    mse = float(np.mean(d * d))
    return math.inf if mse == 0 else 10 * math.log10(255.0**2 / mse)


def _read_bytes(path: str) -> bytes:
    try:
        with open(path, "rb") as f:
            return f.read()
    except FileNotFoundError:
        raise SadError(f"cannot read '{path}': no such file") from None
    except IsADirectoryError:
        raise SadError(f"cannot read '{path}': is a directory") from None
    except PermissionError:
        raise SadError(f"cannot read '{path}': permission denied") from None
    except OSError as exc:
        raise SadError(f"cannot read '{path}': {exc.strerror}") from None


class _Progress:
    """A tqdm bar on stderr fed by the encoder's progress callback."""

    def __init__(self, enabled: bool):
        self.enabled = enabled
        self.bar = None

    def __call__(self, d: dict) -> None:
        if not self.enabled:
            return
        if self.bar is None:
            from tqdm import tqdm

            self.bar = tqdm(
                total=d["iterations"],
                unit="it",
                file=sys.stderr,
                leave=False,
                dynamic_ncols=True,
                desc="fit",
            )
        self.bar.set_description(d["stage"])
        self.bar.n = d["iteration"]
        self.bar.set_postfix(psnr=f"{d['psnr']:.2f}", sites=d["sites"], refresh=False)
        self.bar.refresh()

    def close(self) -> None:
        if self.bar is not None:
            self.bar.close()


def _guard(fn):
    """Turn every failure into one line on stderr and a non-zero exit."""

    def run(*args, **kwargs):
        try:
            return fn(*args, **kwargs)
        except SadError as exc:
            _err(str(exc).splitlines()[0] if str(exc) else type(exc).__name__)
            sys.exit(1)
        except KeyboardInterrupt:
            click.echo("sad: interrupted", err=True)
            sys.exit(130)
        except MemoryError:
            _err("out of memory")
            sys.exit(1)
        except Exception as exc:  # a bug: still one line, unless debugging
            if os.environ.get("SAD_DEBUG"):
                raise
            msg = str(exc).splitlines()[0] if str(exc) else ""
            click.echo(f"sad: internal error: {type(exc).__name__}: {msg}", err=True)
            sys.exit(2)

    run.__name__ = fn.__name__
    run.__doc__ = fn.__doc__
    return run


_arch_option = click.option(
    "--arch",
    type=click.Choice(["auto", "cpu", "cuda"]),
    default="cpu",
    show_default=True,
    help="Compute backend; auto picks CUDA when a usable GPU is present.",
)
_threads_option = click.option(
    "--threads", type=click.IntRange(min=1), default=None, help="CPU threads (default: all cores)."
)
_quiet_option = click.option("-q", "--quiet", is_flag=True, help="No progress or summary.")


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(__version__, prog_name="sad")
def cli() -> None:
    """sad - the Soft Anisotropic Diagram image codec.

    \b
      sad encode photo.png -o photo.sad --bpp 1.0
      sad decode photo.sad -o out.png
      sad info photo.sad
    """


@cli.command()
@click.argument("input", type=click.Path(dir_okay=True))
@click.option("-o", "--output", required=True, type=click.Path(), help="Output .sad file.")
@click.option(
    "--bpp",
    type=float,
    default=1.0,
    show_default=True,
    help="Budget in bits per pixel: 8 x file bytes / (W x H), header included.",
)
@click.option(
    "--effort",
    type=click.IntRange(1, 9),
    default=None,
    help="1 (fast) .. 9 (slow, better); default 4.",
)
@click.option(
    "--iterations",
    type=click.IntRange(1, 100_000),
    default=None,
    help="Iterations of the fit (overrides --effort).",
)
@click.option(
    "--seed",
    type=int,
    default=0,
    show_default=True,
    help="Random seed; same input, options and seed give the same file on the CPU.",
)
@_arch_option
@_threads_option
@_quiet_option
@_guard
def encode(input, output, bpp, effort, iterations, seed, arch, threads, quiet):
    """Fit sites to an image (PNG, JPEG, BMP, TIFF) and write a .sad file."""
    from . import api
    from .atomic import atomic_write_bytes, check_output_path
    from .imageload import load_image

    if not (math.isfinite(bpp) and 0 < bpp <= 64):
        raise SadError(f"--bpp must be a number in (0, 64], got {bpp:g}")
    if effort is not None and iterations is not None:
        raise SadError("give --effort or --iterations, not both")
    img = load_image(input, notice=lambda m: click.echo(f"sad: notice: {m}", err=True))
    check_output_path(input, output)
    progress = _Progress(not quiet)
    t0 = time.perf_counter()
    try:
        data = api.encode(
            img,
            bpp,
            seed=seed,
            effort=effort,
            iterations=iterations,
            arch=arch,
            threads=threads,
            progress=progress,
        )
    finally:
        progress.close()
    seconds = time.perf_counter() - t0
    atomic_write_bytes(output, data)
    if not quiet:
        h, w, c = img.shape
        out = api.decode(data, arch=arch, threads=threads)
        info = api.read_info(data)
        click.echo(
            f"{os.path.basename(input)} -> {os.path.basename(output)}: {w}x{h} "
            f"{_CHANNEL_NAMES[c]}, {info['sites']} sites, {len(data)} bytes, "
            f"{8 * len(data) / (w * h):.4f} bpp, PSNR {_psnr(out, img):.2f} dB, "
            f"encode {seconds:.1f} s",
            err=True,
        )


@cli.command()
@click.argument("input", type=click.Path())
@click.option(
    "-o",
    "--output",
    required=True,
    type=click.Path(),
    help="Output image; format by extension (png, jpg, bmp, tif, webp).",
)
@click.option(
    "--width",
    type=click.IntRange(min=1),
    default=None,
    help="Output width (height follows the aspect ratio unless given).",
)
@click.option(
    "--height",
    type=click.IntRange(min=1),
    default=None,
    help="Output height (width follows the aspect ratio unless given).",
)
@click.option("--scale", type=float, default=None, help="Output size as a factor of the stored.")
@_arch_option
@_threads_option
@_quiet_option
@_guard
def decode(input, output, width, height, scale, arch, threads, quiet):
    """Render a .sad file to an image, at its size or another resolution."""
    from . import api
    from .atomic import check_output_path
    from .imageload import save_image

    if scale is not None and (width is not None or height is not None):
        raise SadError("give --scale or --width/--height, not both")
    data = _read_bytes(input)
    check_output_path(input, output)
    t0 = time.perf_counter()
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
@click.argument("input", type=click.Path())
@click.option("--json", "as_json", is_flag=True, help="Machine-readable output.")
@_guard
def info(input, as_json):
    """Describe a .sad file (does not start the compute backend)."""
    from .api import read_info

    d = read_info(_read_bytes(input))
    if as_json:
        click.echo(json.dumps(d, indent=2))
    else:
        _print_info(input, d)
    if d["checksum"] != "ok":  # describe what can be read, but say the file is damaged
        raise SadError(d["checksum"].removeprefix("failed: "))


def _print_info(input: str, d: dict) -> None:
    q = d["quantization"]
    lines = [
        f"file:        {input}",
        f"format:      .sad {d['format_version']}",
        f"dimensions:  {d['width']}x{d['height']}, {d['channels']} channel(s) "
        f"({_CHANNEL_NAMES[d['channels']]})",
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
    try:
        rc = cli.main(prog_name="sad", standalone_mode=False)
    except click.UsageError as exc:
        cmd = exc.ctx.command_path if exc.ctx else "sad"
        _err(f"{exc.format_message()} (see '{cmd} --help')")
        sys.exit(2)
    except click.ClickException as exc:
        _err(exc.format_message())
        sys.exit(exc.exit_code)
    except click.exceptions.Abort:
        click.echo("sad: interrupted", err=True)
        sys.exit(130)
    sys.exit(rc if isinstance(rc, int) else 0)


if __name__ == "__main__":
    main()
