"""The public Python API; the CLI is a thin layer over it.

Arguments are checked before any work starts, and every bad one raises ``SadError`` with
a one-line message: a value out of range (NaN, infinite, negative, too large) a plain
``SadError``, a value of the wrong type (``None``, a string for a number, a bool) a
``SadTypeError``, which is both a ``SadError`` and a ``TypeError``.

A .sad file is given to ``decode`` and ``read_info`` as a path (``str`` or
``os.PathLike``: the file is read, no further than its header declares) or as its bytes
(``bytes``, ``bytearray``, ``memoryview``); anything else is a ``SadTypeError``.
"""

from __future__ import annotations

import contextlib
import math
import numbers
import os
from collections.abc import Callable

import numpy as np

from . import container
from .backend import current_arch, init_backend
from .errors import SadError, SadFormatError, SadTypeError
from .settings import MAX_BPP, MAX_SEED, EncodeSettings

__all__ = [
    "MAX_BPP",
    "MAX_SEED",
    "decode",
    "encode",
    "encode_settings",
    "read_info",
    "read_metadata",
]

Progress = Callable[[dict], None]
FileSource = str | os.PathLike | bytes | bytearray | memoryview


def encode_settings(
    shape: tuple[int, ...],
    bpp: float | None = None,
    *,
    size: int | str | None = None,
    seed: int = 0,
    effort: int | None = None,
    iterations: int | None = None,
    max_memory: int | str | None = None,
    icc_profile: bytes | None = None,
    exif: bytes | None = None,
) -> EncodeSettings:
    """Validate encode arguments for an image of this shape ((H, W) or (H, W, C)) and
    return the settings an encode would use (budget, grids, iterations, estimated peak
    memory); raises SadError. Cheap: does not start the compute backend."""
    from .settings import encode_settings as make

    h, w, c = _image_shape(shape)
    return make(
        w,
        h,
        c,
        bpp,
        size=size,
        effort=effort,
        iterations=iterations,
        seed=seed,
        max_memory=max_memory,
        icc_profile=icc_profile,
        exif=exif,
    )


def encode(
    image: np.ndarray,
    bpp: float | None = None,
    *,
    size: int | str | None = None,
    icc_profile: bytes | None = None,
    exif: bytes | None = None,
    seed: int = 0,
    effort: int | None = None,
    iterations: int | None = None,
    arch: str | None = None,
    threads: int | None = None,
    progress: bool | Progress = False,
    stats: bool = False,
    max_memory: int | str | None = None,
):
    """Compress a uint8 image (H, W) or (H, W, C), C in {1, 3, 4}, to .sad bytes whose
    size is at most ``bpp * W * H / 8`` (``bpp`` default 1.0), or at most ``size`` bytes
    (an int, or a string such as "50k" or "1.5M": k, M powers of 1000, Ki, Mi of 1024;
    not with ``bpp``). ``icc_profile`` (the colour space of the samples; without one they
    are sRGB) and ``exif`` (with or without the "Exif\\0\\0" prefix of Pillow's
    ``info["exif"]``; its orientation tag should describe the pixels as given) are stored
    in the file, within the same size. ``arch``: "cpu", "cuda", "auto", or None for the
    backend already started in this process (the CPU if none). With ``stats`` the result
    is an ``EncodeResult`` (data, psnr, sites, iterations, seconds) instead of the bytes;
    measuring the PSNR costs a decode. ``max_memory``: refuse (SadError, before any work)
    when the encode's estimated peak memory is over this many bytes (an int, or a string
    such as "8G"); default: 75% of the machine's memory (settings.DEFAULT_MEMORY_SHARE)."""
    from .encoder import as_image, encode_image

    img = as_image(image)
    settings = encode_settings(
        img.shape,
        bpp,
        size=size,
        seed=seed,
        effort=effort,
        iterations=iterations,
        max_memory=max_memory,
        icc_profile=icc_profile,
        exif=exif,
    )
    _check_threads(threads)
    init_backend(arch, threads)
    cb = progress if callable(progress) else None
    result = encode_image(img, settings, progress=cb, measure=stats)
    return result if stats else result.data


def decode(
    data: FileSource,
    *,
    width: int | None = None,
    height: int | None = None,
    scale: float | None = None,
    region: tuple[int, int, int, int] | None = None,
    arch: str | None = None,
    threads: int | None = None,
) -> np.ndarray:
    """Render a .sad file (a path, or its bytes) to uint8 (H, W, C), C in {3, 4}, or
    (H, W) for a greyscale (one-channel) file, as Pillow and imageio give greyscale
    (``np.atleast_3d`` makes it (H, W, 1)); at the stored size or another resolution:
    ``width`` and/or ``height`` (integers; one alone keeps the aspect ratio) or ``scale``
    (a positive factor), not both.

    ``region=(x, y, w, h)``: only that rectangle of the output, in output pixels (h rows
    of w), the same pixels as the same crop of the whole output; on the CPU its cost
    grows with the region, not the output (the limits apply to the region). A region
    that is empty or not inside the output raises ``RegionError`` (a SadError)."""
    from .container import read_header
    from .decoder import check_decode_cost, output_size, parse
    from .render import render_params

    width = _check_side("width", width)
    height = _check_side("height", height)
    scale = _check_scale(scale)
    region = _check_region(region)
    if scale is not None and (width is not None or height is not None):
        raise SadError("--scale cannot be combined with --width/--height")
    _check_threads(threads)
    buf, name = _file_data(data, "decode")
    # Validate the file and the size before starting the backend; the least a decode of
    # this many sites can cost is checked before the payload is even parsed.
    with _naming(name):
        hdr = read_header(buf)
        on_cpu = current_arch() == "cpu" or (current_arch() is None and arch in (None, "cpu"))
        out_w, out_h = output_size(hdr, width, height, scale, region)
        if region is not None and not on_cpu:
            # CUDA cuts a region from the whole output (render_params): its limits apply.
            output_size(hdr, width, height, scale)
        if on_cpu:  # (the render checks again as it culls; CUDA has no such model)
            area = (out_w, out_h) if region is None else region[2:]
            check_decode_cost(*area, hdr.k, hdr.channels, hdr.n_sites, region=bool(region))
        hdr, params = parse(buf)
    init_backend(arch, threads)
    img = render_params(params, hdr.width, hdr.height, out_w, out_h, hdr.k, region=region)
    return img[..., 0] if img.shape[2] == 1 else img


def read_info(data: FileSource) -> dict:
    """Describe a .sad file (a path, or its bytes) without starting Taichi: header fields,
    bpp, checksum status. A file given as bytes whose payload is damaged is described,
    its damage in "checksum"; a path is read no further than its header declares, so a
    truncated or padded file is refused when read (SadFormatError)."""
    buf, name = _file_data(data, "read_info")
    with _naming(name):
        hdr = container.read_header(buf)
    status = "ok"
    meta = container.Metadata()
    try:
        meta = container.read_metadata(buf)
    except Exception as exc:  # report, do not raise: info must describe damaged files too
        status = f"failed: {exc}"
    s = hdr.spec
    return {
        "format_version": f"{hdr.version[0]}.{hdr.version[1]}",
        "width": hdr.width,
        "height": hdr.height,
        "channels": hdr.channels,
        "sites": hdr.n_sites,
        "k": hdr.k,
        "bytes": len(buf),
        "bpp": 8 * len(buf) / (hdr.width * hdr.height),
        "payload_bytes": hdr.payload_bytes,
        "metadata": _describe_metadata(meta),
        "quantization": {
            "position_step_px": 1 / (1 << s.pos_frac_bits),
            "theta_bits": s.theta_bits,
            "anisotropy_bits": s.a_bits,
            "anisotropy_max": s.a_max,
            "radius_bits": s.r_bits,
            "radius_min_px": s.r_min,
            "radius_step_px": s.r_step,
            "temperature_bits": s.t_bits,
            "temperature_min": s.t_min,
            "temperature_step": s.t_step,
            "colour_bits": s.col_bits,
        },
        "checksum": status,
    }


def read_metadata(data: FileSource) -> dict[str, bytes]:
    """A .sad file's metadata (a path, or its bytes) as Pillow's ``save`` takes it:
    "icc_profile" (the colour space of the samples; absent: sRGB) and "exif" (with the
    "Exif\\0\\0" prefix of Pillow's ``info["exif"]``), each only when the file has it, so
    ``Image.fromarray(decode(f)).save("x.png", **read_metadata(f))`` keeps them. The
    whole file is checked (SadFormatError if damaged); does not start Taichi."""
    buf, name = _file_data(data, "read_metadata")
    with _naming(name):
        meta = container.read_metadata(buf)
    out = {}
    if meta.icc_profile:
        out["icc_profile"] = meta.icc_profile
    if meta.exif:
        out["exif"] = container.EXIF_PREFIX + meta.exif
    return out


def _describe_metadata(meta: container.Metadata) -> dict:
    """read_info's "metadata": the bytes of each entry present (and the ICC profile's
    description where Pillow can read it); empty without metadata."""
    out: dict = {}
    if meta.icc_profile:
        from .metadata import describe_icc

        out["icc_profile_bytes"] = len(meta.icc_profile)
        out["icc_description"] = describe_icc(meta.icc_profile)
    if meta.exif:
        out["exif_bytes"] = len(meta.exif)
    return out


# ------------------------------------------------------------------------ arguments


def _file_data(source: object, func: str) -> tuple[bytes, str | None]:
    """A .sad file's bytes and, when it was read from a path, that path (for messages)."""
    if isinstance(source, bytes):
        return source, None
    if isinstance(source, (bytearray, memoryview)):
        return bytes(source), None
    if isinstance(source, (str, os.PathLike)):
        name = os.fsdecode(os.fspath(source))
        return _read_path(source, name), name
    raise SadTypeError(
        f"{func}() takes a .sad file as a path (str, os.PathLike) or its bytes (bytes, "
        f"bytearray, memoryview), got {type(source).__name__}"
    )


def _read_path(path: str | os.PathLike, name: str) -> bytes:
    """The file's bytes, no further than its header declares (container.read_path)."""
    try:
        return container.read_path(path)
    except SadFormatError as exc:
        raise SadFormatError(f"cannot read '{name}': {exc}") from None
    except FileNotFoundError:
        raise SadError(f"cannot read '{name}': no such file") from None
    except IsADirectoryError:
        raise SadError(f"cannot read '{name}': is a directory") from None
    except PermissionError:
        raise SadError(f"cannot read '{name}': permission denied") from None
    except (OSError, ValueError) as exc:  # ValueError: a NUL byte in the path
        reason = getattr(exc, "strerror", None) or str(exc) or type(exc).__name__
        raise SadError(f"cannot read '{name}': {reason}") from None


@contextlib.contextmanager
def _naming(name: str | None):
    """Name the file in format errors of a file read from a path."""
    try:
        yield
    except SadFormatError as exc:
        if name is None or str(exc).startswith("cannot read '"):
            raise
        raise SadFormatError(f"cannot read '{name}': {exc}") from None


def _is_int(value: object) -> bool:
    return isinstance(value, numbers.Integral) and not isinstance(value, bool)


def _image_shape(shape: object) -> tuple[int, int, int]:
    """(H, W, C) from an image shape (H, W) or (H, W, C); SadError if it is not one."""
    what = f"shape must be (H, W) or (H, W, C) with C in 1, 3, 4, got {shape!r}"
    try:
        dims = tuple(shape)  # type: ignore[arg-type]
    except TypeError:
        raise SadTypeError(what) from None
    if len(dims) not in (2, 3) or not all(_is_int(d) for d in dims):
        raise SadTypeError(what)
    h, w = int(dims[0]), int(dims[1])
    c = int(dims[2]) if len(dims) == 3 else 1
    if c not in container.CHANNELS:
        raise SadError(what)
    if h < 0 or w < 0:
        raise SadError(what)
    if h == 0 or w == 0:
        raise SadError(f"image has zero size ({w}x{h})")
    if h > container.MAX_SIDE or w > container.MAX_SIDE:
        raise SadError(f"image too large ({w}x{h}); the limit is {container.MAX_SIDE} per side")
    return h, w, c


def _check_side(name: str, value: object) -> int | None:
    """An output width or height: None or an integer (its range is output_size's)."""
    if value is None:
        return None
    if not _is_int(value):
        raise SadTypeError(f"--{name} must be a positive integer, got {value!r}")
    return int(value)


def _check_region(value: object) -> tuple[int, int, int, int] | None:
    """An output region: None or four integers (x, y, w, h); whether it lies inside the
    output is output_size's to check."""
    if value is None:
        return None
    shown = repr(value)
    if len(shown) > 60 or "\n" in shown:
        shown = f"a {type(value).__name__}"
    what = f"region must be four integers (x, y, width, height), got {shown}"
    if isinstance(value, (str, bytes)):
        raise SadTypeError(what)
    try:
        parts = tuple(value)  # type: ignore[arg-type]
    except TypeError:
        raise SadTypeError(what) from None
    if len(parts) != 4 or not all(_is_int(v) for v in parts):
        raise SadTypeError(what)
    x, y, w, h = (int(v) for v in parts)
    return x, y, w, h


def _check_scale(value: object) -> float | None:
    """An output scale: None or a real number, as a float (its range is output_size's;
    an integer beyond a float's range is infinite)."""
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, numbers.Real):
        raise SadTypeError(f"--scale must be a positive number, got {value!r}")
    try:
        return float(value)
    except OverflowError:
        return math.inf


def _check_threads(value: object) -> None:
    msg = f"--threads must be a positive integer, got {value!r}"
    if value is None:
        return
    if not _is_int(value):
        raise SadTypeError(msg)
    if value < 1:
        raise SadError(msg)
