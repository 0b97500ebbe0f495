"""Read any common image into one predictable array layout, and write arrays back out.

The encoder only understands uint8 (H, W, C) with C in {1, 3, 4}; everything odd about real
files (palettes, CMYK, EXIF rotation, 16-bit or float samples, animation) is settled here, once,
with a notice to the user whenever information is dropped. Bad files must surface as a one-line
SadError, never as a Pillow traceback. An image is read from a path or from its bytes (standard
input: ``read_image_stream`` reads a stream no further than MAX_STREAM_BYTES).

Pillow is used directly rather than through imageio's Pillow plugin, for measured reasons
(docs/DESIGN.md, "Image I/O"): the size checks and the 16-bit and CMYK handling need the
Pillow image before its pixels are decoded, and writing through imageio costs every
`sad decode` process its import.
"""

from __future__ import annotations

import io
import math
import os
import re
import struct
import warnings
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import BinaryIO

import numpy as np
from PIL import Image, features

from sadcodec.atomic import atomic_write_bytes
from sadcodec.errors import SadError

__all__ = [
    "FORMATS",
    "MAX_PIXELS",
    "MAX_SIDE",
    "MAX_STREAM_BYTES",
    "NOTICE_16BIT",
    "check_output_format",
    "image_bytes",
    "image_to_array",
    "load_image",
    "output_format",
    "probe_image",
    "read_image_stream",
    "save_image",
]

MAX_PIXELS = 100_000_000
MAX_SIDE = 65535
# An image read from a stream is held in memory whole (Pillow needs to seek in it). The
# largest uncompressed file the pixel limit admits, MAX_PIXELS of 16-bit RGBA (800 MB),
# fits under this; anything longer is refused after reading one byte past it.
MAX_STREAM_BYTES = 1 << 30

# Pillow warns above this and refuses above twice this; the warning is silenced during our own
# opens and replaced by the explicit check in _check_size, the error becomes a SadError.
Image.MAX_IMAGE_PIXELS = MAX_PIXELS

NOTICE_16BIT = "16-bit input reduced to 8 bits per channel"
# Wide (16-bit, 32-bit, float) samples are reduced to 8 bits this many samples at a time,
# so the temporaries stay a few MB at any image size: a 10000x10000 16-bit RGBA image
# held several full-size uint32/int64 copies (over 6 GB) when reduced at once.
BAND_SAMPLES = 1 << 20
_SUPPORTED = "PNG, JPEG, BMP, TIFF, GIF, WebP"
_16BIT_MODES = ("I;16", "I;16L", "I;16B", "I;16N", "I")

Notice = Callable[[str], None]
Source = str | os.PathLike | bytes | bytearray | memoryview


# ----------------------------------------------------------------------------------- loading


@dataclass(frozen=True)
class _Input:
    """An image to read: a path, or a file's bytes (``data``); ``name`` is for messages."""

    name: str
    path: str | None = None
    data: bytes | None = None

    def open(self) -> Image.Image:
        """Identify the file (header only). Raises what Pillow raises."""
        if self.data is not None:
            return Image.open(io.BytesIO(self.data))
        return Image.open(self.path)

    def head(self, n: int) -> bytes:
        if self.data is not None:
            return self.data[:n]
        try:
            with open(self.path, "rb") as f:
                return f.read(n)
        except OSError:
            return b""

    def empty(self) -> bool:
        if self.data is not None:
            return not self.data
        try:
            return os.path.getsize(self.path) == 0
        except OSError:
            return False


def _input(source: Source, name: str | None) -> _Input:
    """What to read, refusing a missing path or a directory with the usual messages."""
    if isinstance(source, (bytes, bytearray, memoryview)):
        return _Input(name or "<bytes>", data=bytes(source))
    p = os.fspath(source)
    shown = name or p
    if not os.path.exists(p):
        raise SadError(f"cannot read '{shown}': no such file")
    if os.path.isdir(p):
        raise SadError(f"cannot read '{shown}': is a directory")
    return _Input(shown, path=p)


def read_image_stream(f: BinaryIO, name: str = "<stdin>") -> bytes:
    """An image file's bytes from a binary stream (standard input), refused with a SadError
    once it is longer than MAX_STREAM_BYTES (read no further than one byte past that)."""
    parts: list[bytes] = []
    size = 0
    try:
        while size <= MAX_STREAM_BYTES:
            chunk = f.read(min(1 << 20, MAX_STREAM_BYTES + 1 - size))
            if not chunk:
                break
            parts.append(chunk)
            size += len(chunk)
    except OSError as exc:
        raise SadError(f"cannot read '{name}': {exc.strerror or exc}") from None
    if size > MAX_STREAM_BYTES:
        raise SadError(
            f"cannot read '{name}': input is longer than {MAX_STREAM_BYTES} bytes, the most "
            "read from a stream (give a file instead)"
        )
    return b"".join(parts)


def load_image(
    source: Source, notice: Notice | None = None, *, name: str | None = None
) -> np.ndarray:
    """Decode an image (a path, or a file's bytes) to a C-contiguous uint8 array of shape
    (H, W, C), C in {1, 3, 4}; ``name`` stands for the file in messages (default: the path,
    or ``<bytes>``).

    ``notice`` receives one-line messages about information that was dropped (bit depth,
    extra frames); they are only sent once the whole decode has succeeded.
    """
    src = _input(source, name)
    notes: list[str] = []
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", Image.DecompressionBombWarning)
        img = _open(src)
        with img:
            try:
                arr = _decode(src, img, notes)
            except SadError:
                raise
            except Image.DecompressionBombError as exc:
                raise _too_large(src.name, exc) from None
            except MemoryError:
                raise SadError(f"cannot read '{src.name}': out of memory while decoding") from None
            except Exception:
                kind = img.format or "image"
                raise SadError(
                    f"cannot read '{src.name}': corrupt or truncated {kind} file"
                ) from None
    if notice is not None:
        for note in notes:
            notice(note)
    return arr


def probe_image(source: Source, *, name: str | None = None) -> tuple[int, int, int]:
    """The (height, width, channels) that ``load_image`` would return, from the file's
    header alone: no pixel is decoded, so a caller can refuse an image too large to encode
    before its pixels take any memory. Raises the SadError ``load_image`` would for a
    missing, unreadable, unidentified, empty or oversized file (MAX_PIXELS, MAX_SIDE);
    damage further into the file is only found by ``load_image``."""
    src = _input(source, name)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", Image.DecompressionBombWarning)
        with _open(src) as img:
            w, h = img.size
            _check_size(src.name, w, h)
            orientation = 1
            # A PNG's getexif() decodes the whole image when no eXIf chunk came before
            # the pixels: then the orientation is not known yet (it rarely is there).
            if img.format != "PNG" or "exif" in img.info:
                try:
                    from PIL import ExifTags

                    orientation = img.getexif().get(ExifTags.Base.Orientation, 1)
                except Exception:
                    pass
            if orientation in (5, 6, 7, 8):  # a quarter turn: load_image swaps the sides
                w, h = h, w
            return h, w, _channels(img)


def image_to_array(img: Image.Image, notice: Notice | None = None) -> np.ndarray:
    """A Pillow image of any mode, its pixels as they are (no EXIF rotation), in the
    uint8 (H, W, C) layout ``load_image`` gives (C in {1, 3, 4}). For images already in
    memory (the Pillow plugin's save); their size is the encoder's to check."""
    notes: list[str] = []
    img.load()
    arr = _to_array(img, notes)
    if notice is not None:
        for note in notes:
            notice(note)
    return np.ascontiguousarray(arr)


def _channels(img: Image.Image) -> int:
    """The channel count _to_array gives an image of this mode (1, 3 or 4)."""
    mode = img.mode
    if mode in _16BIT_MODES or mode == "F":
        return 1
    transparent = img.has_transparency_data
    if mode in ("1", "L") and not transparent:
        return 1
    if mode == "RGBA" or (mode == "RGB" and not transparent):
        return len(mode)
    return 4 if transparent or _has_alpha(img) or mode in ("La", "PA") else 3


def _open(src: _Input) -> Image.Image:
    """Identify the file (header only: nothing is decoded or allocated yet)."""
    try:
        return src.open()
    except Image.DecompressionBombError as exc:
        raise _too_large(src.name, exc) from None
    except PermissionError:
        raise SadError(f"cannot read '{src.name}': permission denied") from None
    except Exception:
        if src.empty():
            raise SadError(f"cannot read '{src.name}': file is empty") from None
        raise SadError(f"cannot read '{src.name}': {_unidentified(src.head(26))}") from None


_SIGNATURES = (
    (b"\x89PNG\r\n\x1a\n", "PNG"),
    (b"\xff\xd8\xff", "JPEG"),
    (b"GIF8", "GIF"),
    (b"BM", "BMP"),
    (b"II*\x00", "TIFF"),
    (b"MM\x00*", "TIFF"),
)


def _unidentified(head: bytes) -> str:
    """Why Pillow could not open a file (from its first 26 bytes), which it does not say: a
    zero width or height (Pillow refuses those while identifying), a damaged known format,
    or not an image."""
    size = None
    if head.startswith(b"\x89PNG") and head[12:16] == b"IHDR" and len(head) >= 24:
        size = struct.unpack(">II", head[16:24])
    elif head.startswith(b"GIF8") and len(head) >= 10:
        size = struct.unpack("<HH", head[6:10])
    elif head.startswith(b"BM") and len(head) >= 26:
        w, h = struct.unpack("<ii", head[18:26])
        size = (w, abs(h))  # a negative height means rows stored top-down
    if size is not None and 0 in size:
        return f"image has zero size ({size[0]}x{size[1]})"
    for signature, kind in _SIGNATURES:
        if head.startswith(signature):
            return f"corrupt or unsupported {kind} file"
    return f"not a supported image ({_SUPPORTED})"


def _too_large(p: str, exc: Exception) -> SadError:
    """Pillow's bomb guard fired before we saw the size; reuse its pixel count."""
    m = re.search(r"\((\d+) pixels\)", str(exc))
    size = f"{int(m.group(1))} pixels" if m else "too many pixels"
    return SadError(f"cannot read '{p}': image is too large ({size}; the limit is {MAX_PIXELS})")


def _check_size(p: str, w: int, h: int) -> None:
    """Refuse empty and oversized images before any pixel memory is allocated."""
    if w <= 0 or h <= 0:
        raise SadError(f"cannot read '{p}': image has zero size ({w}x{h})")
    if w * h > MAX_PIXELS or w > MAX_SIDE or h > MAX_SIDE:
        raise SadError(
            f"cannot read '{p}': image is too large ({w}x{h} = {w * h} pixels; the limit is "
            f"{MAX_PIXELS} pixels and {MAX_SIDE} per side)"
        )


def _decode(src: _Input, img: Image.Image, notes: list[str]) -> np.ndarray:
    """Pick the first frame, decode it and normalise it to the (H, W, C) uint8 layout."""
    _check_size(src.name, *img.size)
    frames = getattr(img, "n_frames", 1)
    if frames > 1:
        notes.append(f"input has {frames} frames; using the first")
        img.seek(0)
        _check_size(src.name, *img.size)
    rawmode = _rawmode(img)
    wide = rawmode is not None and rawmode.endswith((";16B", ";16L"))
    if wide and img.mode in ("RGB", "RGBA"):
        # Pillow has no 16-bit colour mode: it silently keeps only the high byte. Decode the
        # low bytes too, so that the reduction can round instead of truncating.
        arr = _decode_wide_color(src, img, rawmode)
        notes.append(NOTICE_16BIT)
        return arr
    img.load()
    return _to_array(_orient(img, notes), notes)


def _rawmode(img: Image.Image) -> str | None:
    """The raw sample layout of the pending decode (only known before ``load``)."""
    tiles = getattr(img, "tile", None) or []
    if not tiles:
        return None
    args = tiles[0][3]
    raw = args[0] if isinstance(args, tuple) and args else args
    return raw if isinstance(raw, str) else None


def _with_rawmode(img: Image.Image, rawmode: str) -> None:
    """Make the pending decode unpack with another raw layout of the same bit width."""
    tiles = []
    for tile in img.tile:
        args = tile[3]
        new_args = (rawmode, *args[1:]) if isinstance(args, tuple) else rawmode
        tiles.append(tile._replace(args=new_args))
    img.tile = tiles


def _decode_wide_color(src: _Input, img: Image.Image, rawmode: str) -> np.ndarray:
    """Reduce 16-bit colour to 8 bits by rounding, from two decodes of the same file.

    The filters / compression act on whole bytes, so decoding again with the opposite byte
    order unpacks exactly the low bytes. LA;16 has no such twin, but the byte-preserving
    RGBA unpacker has the same 32-bit width and yields (L hi, L lo, A hi, A lo).
    """
    notes: list[str] = []
    if rawmode == "LA;16B":
        alt = "RGBA"
    elif rawmode.endswith("B"):
        alt = rawmode[:-1] + "L"
    else:
        alt = rawmode[:-1] + "B"
    # The low bytes go straight into the output array, then each band of rows is combined
    # with its high bytes and rounded in place: besides the output, only one decoded image
    # and one band are held at a time (no full-size copy through tobytes, no 32-bit array).
    out = _low_bytes(src, alt, notes)
    img.load()
    high = _orient(img, notes)
    if out is None or out.shape[:2] != (high.height, high.width):
        return np.array(high)  # high bytes only: truncated, not rounded; a fallback
    for rows in _bands(out.shape):
        lo = out[rows]
        if rawmode == "LA;16B":
            lum = (lo[..., 0].astype(np.uint32) << 8) | lo[..., 1]
            alpha = (lo[..., 2].astype(np.uint32) << 8) | lo[..., 3]
            wide = np.stack([lum, lum, lum, alpha], axis=-1)
        else:
            wide = (_rows(high, rows).astype(np.uint32) << 8) | lo
        out[rows] = _round16_samples(wide)
    return out


def _low_bytes(src: _Input, alt: str, notes: list[str]) -> np.ndarray | None:
    """The file decoded again with the raw layout ``alt`` (uint8 (H, W, C)); None where
    Pillow has no such unpacker. The second image is closed before returning."""
    with src.open() as other:
        if getattr(other, "n_frames", 1) > 1:
            other.seek(0)
        try:
            _with_rawmode(other, alt)
            other.load()
        except (ValueError, OSError):
            return None
        low = _orient(other, notes)
        out = np.empty((low.height, low.width, len(low.getbands())), np.uint8)
        for rows in _bands(out.shape):
            out[rows] = _rows(low, rows).reshape(out[rows].shape)
        return out


def _rows(img: Image.Image, rows: slice) -> np.ndarray:
    """A band of rows of a decoded image as an array (a copy of that band only)."""
    return np.asarray(img.crop((0, rows.start, img.width, rows.stop)))


def _bands(shape: tuple[int, ...]) -> Iterator[slice]:
    """Slices of rows of an array of this shape, about BAND_SAMPLES samples each."""
    per_row = max(1, math.prod(shape[1:]))
    step = max(1, BAND_SAMPLES // per_row)
    for y in range(0, shape[0], step):
        yield slice(y, min(shape[0], y + step))


def _round16_samples(values: np.ndarray) -> np.ndarray:
    """round(v / 257) for v clipped to [0, 65535], in integers (no ties are possible)."""
    v = np.clip(values, 0, 65535).astype(np.uint32)
    return ((v + 128) // 257).astype(np.uint8)


def _round16(values: np.ndarray) -> np.ndarray:
    """_round16_samples over a whole array, a band of rows at a time; C-contiguous."""
    out = np.empty(values.shape, np.uint8)
    for rows in _bands(values.shape):
        out[rows] = _round16_samples(values[rows])
    return out


def _orient(img: Image.Image, notes: list[str]) -> Image.Image:
    """Apply the EXIF orientation so pixels are upright, as every viewer shows them."""
    # Imported here: reading needs them, `sad decode` (writing only) is spared the import.
    from PIL import ExifTags, ImageOps

    try:
        orientation = img.getexif().get(ExifTags.Base.Orientation, 1)
        if orientation in (None, 1):
            return img
        out = ImageOps.exif_transpose(img)
    except Exception:
        notes.append("ignoring unreadable EXIF orientation")
        return img
    return img if out is None else out


def _to_array(img: Image.Image, notes: list[str]) -> np.ndarray:
    """Map every Pillow mode onto C=1 (gray), 3 (RGB) or 4 (RGBA) uint8 samples."""
    mode = img.mode
    if mode in _16BIT_MODES:
        notes.append(NOTICE_16BIT)
        return _round16(np.asarray(img))[..., None]
    if mode == "F":
        return _from_float(np.asarray(img), notes)[..., None]
    transparent = img.has_transparency_data
    if mode == "1":
        img = img.convert("L")
        mode = "L"
    if mode == "L" and not transparent:
        return np.array(img, dtype=np.uint8)[..., None]
    if mode not in ("RGB", "RGBA") or (mode == "RGB" and transparent):
        if mode in ("La", "PA"):
            img = img.convert("LA" if mode == "La" else "RGBA")
        img = img.convert("RGBA" if transparent or _has_alpha(img) else "RGB")
    return np.array(img, dtype=np.uint8)


def _has_alpha(img: Image.Image) -> bool:
    """Whether the mode itself carries an alpha band (LA, RGBa, ...)."""
    return any(b in ("A", "a") for b in img.getbands())


def _from_float(values: np.ndarray, notes: list[str]) -> np.ndarray:
    """Float samples are either [0, 1] or [0, 255]: guess from the maximum finite sample
    (NaN and -inf count as 0, +inf as the top), clip, quantise; in float64, a band of rows
    at a time."""
    top = 1.0
    for rows in _bands(values.shape):
        band = values[rows]
        if bool((band[np.isfinite(band)] > 1.0).any()):
            top = 255.0
            break
    notes.append(
        f"floating-point input clipped to [0, {top:g}] and converted to 8 bits per channel"
    )
    out = np.empty(values.shape, np.uint8)
    for rows in _bands(values.shape):
        v = np.nan_to_num(values[rows].astype(np.float64), nan=0.0, posinf=np.inf, neginf=0.0)
        out[rows] = np.rint(np.clip(v, 0.0, top) * (255.0 / top)).astype(np.uint8)
    return out


# ----------------------------------------------------------------------------------- saving

# Output formats by the name `--format` takes, and the extensions that name them.
FORMATS = ("png", "jpeg", "webp", "tiff", "bmp", "ppm", "pgm")
_EXTENSIONS = {
    ".png": "png",
    ".jpg": "jpeg",
    ".jpeg": "jpeg",
    ".bmp": "bmp",
    ".tif": "tiff",
    ".tiff": "tiff",
    ".webp": "webp",
    ".ppm": "ppm",
    ".pgm": "pgm",
}
_PILLOW_FORMAT = {
    "png": "PNG",
    "jpeg": "JPEG",
    "webp": "WEBP",
    "tiff": "TIFF",
    "bmp": "BMP",
    "ppm": "PPM",
    "pgm": "PPM",
}
# Near-transparent by default: this writes decoded codec output, so keep it faithful.
JPEG_QUALITY = 95


def output_format(path: str | os.PathLike[str] | None, fmt: str | None = None) -> str:
    """The format to write (one of FORMATS): ``fmt`` when given, else the one the path's
    extension names, else PNG when there is no path (standard output). SadError for an
    unknown format or extension."""
    p = None if path is None else os.fspath(path)
    if fmt is not None:
        f = fmt.lower()
        if f not in FORMATS:
            shown = p if p is not None else "<stdout>"
            raise SadError(
                f"cannot write '{shown}': unknown format '{fmt}'; use one of {', '.join(FORMATS)}"
            )
        return f
    if p is None:
        return "png"
    ext = os.path.splitext(p)[1].lower()
    if ext not in _EXTENSIONS:
        what = f"unknown image extension '{ext}'" if ext else "no file extension"
        raise SadError(
            f"cannot write '{p}': {what}; use one of {', '.join(_EXTENSIONS)} (or --format)"
        )
    return _EXTENSIONS[ext]


def check_output_format(fmt: str, channels: int, name: str) -> None:
    """Refuse, before any work, an image of ``channels`` that format ``fmt`` cannot hold."""
    if channels == 4 and fmt in ("jpeg", "ppm", "pgm"):
        raise SadError(f"cannot write '{name}': {fmt.upper()} cannot store alpha; use .png")
    if channels == 4 and fmt == "bmp":
        # Pillow writes BI_RGB 32-bit, whose 4th byte readers (Pillow included) ignore.
        raise SadError(f"cannot write '{name}': BMP cannot store alpha reliably; use .png")
    if channels != 1 and fmt == "pgm":
        raise SadError(
            f"cannot write '{name}': PGM stores greyscale only and the image has colour; "
            "use .ppm or .png"
        )
    if fmt == "webp" and not features.check("webp"):
        raise SadError(f"cannot write '{name}': WebP support is missing from Pillow; use .png")


def _save_options(fmt: str, jpeg_quality: int, webp_quality: int | None) -> dict[str, object]:
    """Pillow's save options for a format: faithful unless a lossy quality is asked for."""
    if fmt == "jpeg":
        # 4:4:4 at every quality: a decoded image's colour edges are as sharp as its luma.
        return {"quality": jpeg_quality, "subsampling": 0}
    if fmt == "webp":
        if webp_quality is not None:
            return {"quality": webp_quality}
        return {"lossless": True, "exact": True}  # keep RGB under alpha 0
    if fmt == "png":
        # zlib level 3 (Pillow's default is 6): much faster for a file a fraction of a
        # percent larger (docs/tuning.md, "Decoder start-up").
        return {"compress_level": 3}
    if fmt == "tiff" and features.check("libtiff"):
        return {"compression": "tiff_deflate"}
    return {}


def _check_quality(name: str, option: str, value: int | None) -> None:
    if value is not None and not (
        isinstance(value, int) and not isinstance(value, bool) and 0 <= value <= 100
    ):
        raise SadError(f"cannot write '{name}': {option} must be an integer in 0..100")


def image_bytes(
    array: np.ndarray,
    fmt: str,
    *,
    name: str = "<output>",
    jpeg_quality: int = JPEG_QUALITY,
    webp_quality: int | None = None,
    icc_profile: bytes | None = None,
    exif: bytes | None = None,
    notice: Notice | None = None,
) -> bytes:
    """Encode uint8 (H, W) or (H, W, C), C in {1, 3, 4}, as a file of format ``fmt`` (one
    of FORMATS), in memory. JPEG at ``jpeg_quality`` (4:4:4); WebP lossless unless
    ``webp_quality`` is given; PPM is always colour (greyscale is widened), PGM greyscale
    only. ``name`` stands for the output in messages. ``icc_profile`` and ``exif`` (as
    ``sadcodec.read_metadata`` gives them) are embedded in PNG, JPEG, WebP and TIFF;
    ``notice`` hears what a format cannot hold (sadcodec.metadata.save_options)."""
    if fmt not in _PILLOW_FORMAT:
        raise SadError(f"cannot write '{name}': unknown format '{fmt}'")
    _check_quality(name, "JPEG quality", jpeg_quality)
    _check_quality(name, "WebP quality", webp_quality)
    arr = np.asarray(array)
    if arr.ndim == 2:
        arr = arr[..., None]
    if arr.dtype != np.uint8 or arr.ndim != 3 or arr.shape[2] not in (1, 3, 4):
        raise ValueError(f"save_image needs uint8 (H, W, 1|3|4), got {arr.dtype} {arr.shape}")
    if arr.shape[0] == 0 or arr.shape[1] == 0:
        raise SadError(f"cannot write '{name}': the image is empty ({arr.shape[1]}x{arr.shape[0]})")
    channels = arr.shape[2]
    check_output_format(fmt, channels, name)
    if fmt == "ppm" and channels == 1:
        arr = np.repeat(arr, 3, axis=2)
        channels = 3
    img = Image.fromarray(np.ascontiguousarray(arr[..., 0] if channels == 1 else arr))
    buf = io.BytesIO()
    pillow_fmt = _PILLOW_FORMAT[fmt]
    from .metadata import save_options

    options = _save_options(fmt, jpeg_quality, webp_quality)
    options |= save_options(pillow_fmt, channels, icc_profile, exif, notice)
    try:
        img.save(buf, format=pillow_fmt, **options)
    except Exception as exc:
        reason = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
        raise SadError(f"cannot write '{name}': {pillow_fmt} encoder failed: {reason}") from None
    return buf.getvalue()


def save_image(
    path: str | os.PathLike[str],
    array: np.ndarray,
    fmt: str | None = None,
    *,
    jpeg_quality: int = JPEG_QUALITY,
    webp_quality: int | None = None,
    icc_profile: bytes | None = None,
    exif: bytes | None = None,
    notice: Notice | None = None,
) -> None:
    """Write uint8 (H, W) or (H, W, C), C in {1, 3, 4}, atomically, in format ``fmt`` or
    the one the extension names (``output_format``); options as ``image_bytes``.

    Encoding happens in memory first so that a failing encoder never touches the target.
    """
    p = os.fspath(path)
    data = image_bytes(
        array,
        output_format(p, fmt),
        name=p,
        jpeg_quality=jpeg_quality,
        webp_quality=webp_quality,
        icc_profile=icc_profile,
        exif=exif,
        notice=notice,
    )
    atomic_write_bytes(p, data)
