"""Read any common image into one predictable array layout, and write arrays back out.

The encoder only understands uint8 (H, W, C) with C in {1, 3, 4}; everything odd about real
files (palettes, CMYK, EXIF rotation, 16-bit or float samples, animation) is settled here, once,
with a notice to the user whenever information is dropped. Bad files must surface as a one-line
SadError, never as a Pillow traceback.
"""

from __future__ import annotations

import io
import math
import os
import re
import struct
import warnings
from collections.abc import Callable, Iterator

import numpy as np
from PIL import Image, features

from sadcodec.atomic import atomic_write_bytes
from sadcodec.errors import SadError

__all__ = [
    "MAX_PIXELS",
    "MAX_SIDE",
    "NOTICE_16BIT",
    "load_image",
    "probe_image",
    "save_image",
]

MAX_PIXELS = 100_000_000
MAX_SIDE = 65535

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


# ----------------------------------------------------------------------------------- loading


def load_image(path: str | os.PathLike[str], notice: Notice | None = None) -> np.ndarray:
    """Decode ``path`` to a C-contiguous uint8 array of shape (H, W, C), C in {1, 3, 4}.

    ``notice`` receives one-line messages about information that was dropped (bit depth,
    extra frames); they are only sent once the whole decode has succeeded.
    """
    p = os.fspath(path)
    if not os.path.exists(p):
        raise SadError(f"cannot read '{p}': no such file")
    if os.path.isdir(p):
        raise SadError(f"cannot read '{p}': is a directory")
    notes: list[str] = []
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", Image.DecompressionBombWarning)
        img = _open(p)
        with img:
            try:
                arr = _decode(p, img, notes)
            except SadError:
                raise
            except Image.DecompressionBombError as exc:
                raise _too_large(p, exc) from None
            except MemoryError:
                raise SadError(f"cannot read '{p}': out of memory while decoding") from None
            except Exception:
                kind = img.format or "image"
                raise SadError(f"cannot read '{p}': corrupt or truncated {kind} file") from None
    if notice is not None:
        for note in notes:
            notice(note)
    return arr


def probe_image(path: str | os.PathLike[str]) -> tuple[int, int, int]:
    """The (height, width, channels) that ``load_image`` would return, from the file's
    header alone: no pixel is decoded, so a caller can refuse an image too large to encode
    before its pixels take any memory. Raises the SadError ``load_image`` would for a
    missing, unreadable, unidentified, empty or oversized file (MAX_PIXELS, MAX_SIDE);
    damage further into the file is only found by ``load_image``."""
    p = os.fspath(path)
    if not os.path.exists(p):
        raise SadError(f"cannot read '{p}': no such file")
    if os.path.isdir(p):
        raise SadError(f"cannot read '{p}': is a directory")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", Image.DecompressionBombWarning)
        with _open(p) as img:
            w, h = img.size
            _check_size(p, w, h)
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


def _open(p: str) -> Image.Image:
    """Identify the file (header only: nothing is decoded or allocated yet)."""
    try:
        return Image.open(p)
    except Image.DecompressionBombError as exc:
        raise _too_large(p, exc) from None
    except PermissionError:
        raise SadError(f"cannot read '{p}': permission denied") from None
    except Exception:
        try:
            empty = os.path.getsize(p) == 0
        except OSError:
            empty = False
        if empty:
            raise SadError(f"cannot read '{p}': file is empty") from None
        raise SadError(f"cannot read '{p}': {_unidentified(p)}") from None


_SIGNATURES = (
    (b"\x89PNG\r\n\x1a\n", "PNG"),
    (b"\xff\xd8\xff", "JPEG"),
    (b"GIF8", "GIF"),
    (b"BM", "BMP"),
    (b"II*\x00", "TIFF"),
    (b"MM\x00*", "TIFF"),
)


def _unidentified(p: str) -> str:
    """Why Pillow could not open a file, which it does not say: a zero width or height
    (Pillow refuses those while identifying), a damaged known format, or not an image."""
    try:
        with open(p, "rb") as f:
            head = f.read(26)
    except OSError:
        head = b""
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


def _decode(p: str, img: Image.Image, notes: list[str]) -> np.ndarray:
    """Pick the first frame, decode it and normalise it to the (H, W, C) uint8 layout."""
    _check_size(p, *img.size)
    frames = getattr(img, "n_frames", 1)
    if frames > 1:
        notes.append(f"input has {frames} frames; using the first")
        img.seek(0)
        _check_size(p, *img.size)
    rawmode = _rawmode(img)
    wide = rawmode is not None and rawmode.endswith((";16B", ";16L"))
    if wide and img.mode in ("RGB", "RGBA"):
        # Pillow has no 16-bit colour mode: it silently keeps only the high byte. Decode the
        # low bytes too, so that the reduction can round instead of truncating.
        arr = _decode_wide_color(p, img, rawmode)
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


def _decode_wide_color(p: str, img: Image.Image, rawmode: str) -> np.ndarray:
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
    out = _low_bytes(p, alt, notes)
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


def _low_bytes(p: str, alt: str, notes: list[str]) -> np.ndarray | None:
    """The file decoded again with the raw layout ``alt`` (uint8 (H, W, C)); None where
    Pillow has no such unpacker. The second image is closed before returning."""
    with Image.open(p) as other:
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

_FORMATS = {
    ".png": "PNG",
    ".jpg": "JPEG",
    ".jpeg": "JPEG",
    ".bmp": "BMP",
    ".tif": "TIFF",
    ".tiff": "TIFF",
    ".webp": "WEBP",
}


def _save_options(fmt: str) -> dict[str, object]:
    """Near-transparent defaults: this writes decoded codec output, so keep it faithful."""
    if fmt == "JPEG":
        return {"quality": 95, "subsampling": 0}
    if fmt == "WEBP":
        return {"lossless": True, "exact": True}  # keep RGB under alpha 0
    if fmt == "PNG":
        # zlib level 3 (Pillow's default is 6): much faster for a file a fraction of a
        # percent larger (docs/tuning.md, "Decoder start-up").
        return {"compress_level": 3}
    if fmt == "TIFF" and features.check("libtiff"):
        return {"compression": "tiff_deflate"}
    return {}


def save_image(path: str | os.PathLike[str], array: np.ndarray) -> None:
    """Write uint8 (H, W, C), C in {1, 3, 4}, in the format named by the extension, atomically.

    Encoding happens in memory first so that a failing encoder never touches the target.
    """
    p = os.fspath(path)
    ext = os.path.splitext(p)[1].lower()
    fmt = _FORMATS.get(ext)
    if fmt is None:
        known = ", ".join(_FORMATS)
        what = f"unknown image extension '{ext}'" if ext else "no file extension"
        raise SadError(f"cannot write '{p}': {what}; use one of {known}")
    arr = np.asarray(array)
    if arr.ndim == 2:
        arr = arr[..., None]
    if arr.dtype != np.uint8 or arr.ndim != 3 or arr.shape[2] not in (1, 3, 4):
        raise ValueError(f"save_image needs uint8 (H, W, 1|3|4), got {arr.dtype} {arr.shape}")
    if arr.shape[0] == 0 or arr.shape[1] == 0:
        raise SadError(f"cannot write '{p}': the image is empty ({arr.shape[1]}x{arr.shape[0]})")
    channels = arr.shape[2]
    if channels == 4 and fmt == "JPEG":
        raise SadError(f"cannot write '{p}': JPEG cannot store alpha; use .png")
    if channels == 4 and fmt == "BMP":
        # Pillow writes BI_RGB 32-bit, whose 4th byte readers (Pillow included) ignore.
        raise SadError(f"cannot write '{p}': BMP cannot store alpha reliably; use .png")
    if fmt == "WEBP" and not features.check("webp"):
        raise SadError(f"cannot write '{p}': WebP support is missing from Pillow; use .png")
    img = Image.fromarray(np.ascontiguousarray(arr[..., 0] if channels == 1 else arr))
    buf = io.BytesIO()
    try:
        img.save(buf, format=fmt, **_save_options(fmt))
    except Exception as exc:
        reason = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
        raise SadError(f"cannot write '{p}': {fmt} encoder failed: {reason}") from None
    atomic_write_bytes(p, buf.getvalue())
