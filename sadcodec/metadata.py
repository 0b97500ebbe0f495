"""An image's metadata that a .sad file keeps, and writing it back into decoded images.

``sad encode --metadata icc`` (the default) keeps the input's ICC profile, so colours
stay right: samples without a profile are sRGB (docs/FORMAT.md, "Colour"), and a wide-
gamut photo stored without its profile would show dull. ``all`` keeps EXIF too, ``none``
neither. EXIF is not kept unless asked for because it can hold what a user may not mean
to publish (a camera's serial number, GPS position); cwebp keeps nothing by default,
avifenc everything. XMP is not kept.

The pixels are turned upright when read (sadcodec.imageload), so the EXIF kept loses its
orientation tag, as Pillow's ``ImageOps.exif_transpose`` does. A profile that does not
describe the samples as stored (a CMYK profile once CMYK is converted to RGB, a gray one
once gray with alpha becomes RGBA) is dropped with a notice.
"""

from __future__ import annotations

import io
import os
import warnings
from collections.abc import Callable

from PIL import ExifTags, Image

from .container import (
    EXIF_BYTE_ORDERS,
    EXIF_PREFIX,
    MAX_EXIF_BYTES,
    MAX_ICC_BYTES,
    Metadata,
    check_icc_profile,
)
from .errors import SadError, SadFormatError

KEEP = ("all", "icc", "none")
DEFAULT_KEEP = "icc"
# Pillow's writers of these formats embed an ICC profile and EXIF (save(icc_profile=...,
# exif=...)); the others (BMP, PPM, ...) cannot hold them.
FORMATS_WITH_METADATA = ("PNG", "JPEG", "WEBP", "TIFF")
# The orientations sadcodec.imageload turns the pixels upright for (ImageOps.exif_transpose).
_TURNED = range(2, 9)

Notice = Callable[[str], None]


def read_image_metadata(
    source: str | os.PathLike[str] | bytes,
    keep: str = DEFAULT_KEEP,
    channels: int = 3,
    notice: Notice | None = None,
) -> Metadata:
    """The metadata to store for an image file (a path or its bytes) already read by
    ``imageload.load_image`` into ``channels`` channels: its ICC profile unless ``keep``
    is "none", its EXIF (JPEG, PNG, WebP) if "all". Only the file's header is read, but
    for a PNG whose EXIF follows the pixels. SadError for metadata too large for a .sad
    file (with what to do); a profile or EXIF that cannot be kept is dropped with a
    notice."""
    if keep not in KEEP:
        raise SadError(f"--metadata must be one of {', '.join(KEEP)}, got {keep!r}")
    if keep == "none":
        return Metadata()
    say = notice or (lambda msg: None)
    fp = io.BytesIO(source) if isinstance(source, bytes) else os.fspath(source)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", Image.DecompressionBombWarning)
        try:
            img = Image.open(fp)
        except Exception:  # load_image has read it: only a changed file gets here
            return Metadata()
        with img:
            icc = image_icc_profile(img, channels, say)
            exif = image_exif(img, say) if keep == "all" else None
            if keep == "all" and (img.info.get("xmp") or img.info.get("XML:com.adobe.xmp")):
                say("XMP metadata is not kept (.sad files keep an ICC profile and EXIF)")
    return Metadata(icc, exif)


def image_icc_profile(
    img: Image.Image, channels: int, say: Notice, drop_it: str = "--metadata none"
) -> bytes | None:
    """The ICC profile of a Pillow image, to store with its samples in ``channels``
    channels; None without one. SadError for a profile too large for a .sad file (which
    says how to go without it: ``drop_it``); one that does not describe the samples, or
    is malformed, is dropped with a notice."""
    icc = img.info.get("icc_profile")
    if not icc:
        return None
    icc = bytes(icc)
    if len(icc) > MAX_ICC_BYTES:
        raise SadError(
            f"the ICC profile is {len(icc)} bytes, more than a .sad file holds "
            f"({MAX_ICC_BYTES}); use {drop_it} (colours are then taken as sRGB)"
        )
    try:
        check_icc_profile(icc, channels)
    except SadFormatError as exc:
        well_formed = int.from_bytes(icc[:4], "big") == len(icc) >= 128 and icc[36:40] == b"acsp"
        if well_formed:  # for other samples than those stored
            space = icc[16:20].decode("latin-1").strip() or "unknown"
            stored = {1: "gray", 3: "RGB", 4: "RGBA"}.get(channels, "?")
            say(
                f"ICC profile for {space} samples dropped: the image is stored as {stored}, "
                "which it does not describe"
            )
        else:
            say(f"malformed ICC profile dropped ({exc})")
        return None
    return icc


def image_exif(
    img: Image.Image, say: Notice, upright: bool = True, drop_it: str = "--metadata icc"
) -> bytes | None:
    """The EXIF of a Pillow image (without the "Exif\\0\\0" prefix); None without it.
    ``upright``: the pixels stored were turned upright (imageload does it for files), so
    an orientation tag that turned them is removed; otherwise it is kept, as it describes
    the pixels as given. SadError for EXIF too large for a .sad file (which says how to go
    without it: ``drop_it``); unreadable EXIF is dropped with a notice."""
    raw = img.info.get("exif")
    if raw is None and img.format == "PNG":
        try:
            img.load()  # an eXIf chunk after the pixel data is read with them
        except Exception:
            return None
        raw = img.info.get("exif")
    if not raw:
        return None
    raw = bytes(raw)
    if raw.startswith(EXIF_PREFIX):
        raw = raw[len(EXIF_PREFIX) :]
    if raw[:4] not in EXIF_BYTE_ORDERS:
        say("unreadable EXIF dropped (no TIFF header)")
        return None
    try:
        exif = Image.Exif()
        exif.load(raw)
        if upright and exif.get(ExifTags.Base.Orientation) in _TURNED:
            del exif[ExifTags.Base.Orientation]  # the pixels were turned upright
            raw = exif.tobytes()[len(EXIF_PREFIX) :]
    except Exception:
        say("unreadable EXIF dropped")
        return None
    if len(raw) > MAX_EXIF_BYTES:
        raise SadError(
            f"the EXIF is {len(raw)} bytes, more than a .sad file holds ({MAX_EXIF_BYTES}); "
            f"use {drop_it} to keep only the ICC profile"
        )
    return raw


def save_options(
    fmt: str,
    channels: int,
    icc_profile: bytes | None = None,
    exif: bytes | None = None,
    notice: Notice | None = None,
) -> dict[str, bytes]:
    """The Pillow save() options that write a decoded file's metadata into an image of
    format ``fmt`` (Pillow's name) with ``channels`` channels; a notice for what that
    format cannot hold."""
    say = notice or (lambda msg: None)
    if not icc_profile and not exif:
        return {}
    if fmt not in FORMATS_WITH_METADATA:
        what = " and ".join(name for name, v in (("ICC profile", icc_profile), ("EXIF", exif)) if v)
        say(f"{fmt} output cannot hold the {what}; left out")
        return {}
    options: dict[str, bytes] = {}
    if icc_profile:
        if fmt == "WEBP" and channels == 1:
            # WebP has no gray: Pillow writes the samples as RGB, which a gray profile
            # does not describe.
            say("WebP output is RGB: the gray ICC profile is left out")
        else:
            options["icc_profile"] = icc_profile
    if exif:
        # Pillow writes JPEG's APP1 as given and strips the prefix for PNG and WebP.
        options["exif"] = exif if exif.startswith(EXIF_PREFIX) else EXIF_PREFIX + exif
    return options


def describe_icc(icc: bytes) -> str | None:
    """An ICC profile's description ("sRGB IEC61966-2.1"), through Pillow's ImageCms where
    Pillow has it; None where it does not or cannot read the profile."""
    try:
        from PIL import ImageCms

        text = ImageCms.getProfileDescription(ImageCms.ImageCmsProfile(io.BytesIO(icc)))
    except Exception:  # ImportError without LittleCMS, PyCMSError for a damaged profile
        return None
    return text.strip() or None
