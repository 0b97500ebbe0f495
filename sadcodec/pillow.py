"""A Pillow plugin for .sad files, and through it imageio v3's Pillow plugin.

``import sadcodec.pillow`` registers the format with Pillow (importing ``sadcodec`` alone
does not: it would make every ``import sadcodec`` load Pillow)::

    import sadcodec.pillow
    from PIL import Image

    im = Image.open("photo.sad")              # mode L, RGB or RGBA; decoded on load()
    im.thumbnail((256, 256))                  # draft(): rendered at the smaller size directly
    im.save("photo.png")
    Image.open("photo.png").save("again.sad", bpp=0.5, effort=4)

    import imageio.v3 as iio
    img = iio.imread("photo.sad")             # uint8 (H, W) for greyscale, else (H, W, C)
    iio.imwrite("copy.sad", img, bpp=1.0)

Saving takes the keywords of ``sadcodec.encode`` (``bpp`` (default 1.0), ``effort``,
``iterations``, ``seed``, ``max_memory``, ``arch``, ``threads``, ...); others are ignored,
as Pillow's own writers ignore options they do not know. Any image mode is accepted and
stored as greyscale, RGB or RGBA as ``sad encode`` stores a file of that mode (16-bit
samples are rounded to 8 bits, with a warning). Errors are ``sadcodec.SadError``, one
line, as everywhere in sadcodec.

Metadata goes both ways, as ``sad encode``/``sad decode`` keep it. An opened file's
``info`` has "icc_profile" and "exif" when the file stores them (``sadcodec.read_metadata``),
so ``Image.open("photo.sad").save("photo.png")`` writes the profile back (EXIF, as with
Pillow's own formats, when ``exif=im.info["exif"]`` is given). A save stores the image's
ICC profile (``im.info["icc_profile"]``) by default and its EXIF on request: the keyword
``metadata`` is "icc" (default), "all" (EXIF too) or "none", as ``sad encode
--metadata``; ``icc_profile=`` and ``exif=`` (bytes, or a ``PIL.Image.Exif``) given to
``save`` are stored as given. The metadata counts in the file's size.

The picture is rendered at its stored size, or after ``draft(mode, size)`` at the
smallest size no smaller than ``size`` (a .sad file renders at any resolution; Pillow's
``thumbnail`` asks for it).
"""

from __future__ import annotations

import inspect
import math
import warnings
from collections.abc import Callable
from typing import IO

from PIL import Image, ImageFile

from . import api, container
from .errors import SadError

__all__ = ["SadImageFile", "register"]

FORMAT = "SAD"
EXTENSION = ".sad"
_MODES = {1: "L", 3: "RGB", 4: "RGBA"}
# The keywords a save passes on to sadcodec.encode; the rest of Pillow's save options
# (and the encode's own progress/stats, which a save has no use for) are not passed.
_ENCODE_KEYWORDS = frozenset(inspect.signature(api.encode).parameters) - {
    "image",
    "progress",
    "stats",
}


def _accept(prefix: bytes) -> bool:
    return prefix[:4] == container.MAGIC


def _tiles(size: tuple[int, int]) -> list:
    """One tile over the image: it marks the image as not yet loaded (load() renders it;
    no Pillow decoder is involved). A named tuple from Pillow 11 on, a tuple before."""
    tile = getattr(ImageFile, "_Tile", None)
    args = (FORMAT, (0, 0, *size), 0, None)
    return [tile(*args) if tile is not None else args]


class SadImageFile(ImageFile.ImageFile):
    """A .sad file opened by Pillow: the whole file is read (no further than its header
    declares) and checked at open; the sites are rendered on ``load()``."""

    format = FORMAT
    format_description = "Soft Anisotropic Diagram image"

    def _open(self) -> None:
        assert self.fp is not None
        self._sad_data = container.read_stream(self.fp)
        hdr = container.read_header(self._sad_data)
        self._mode = _MODES[hdr.channels]
        self._size = (hdr.width, hdr.height)
        self._sad_stored = (hdr.width, hdr.height)
        self.tile = _tiles(self._size)
        self.info.update(api.read_metadata(self._sad_data))

    def draft(
        self, mode: str | None, size: tuple[int, int] | None
    ) -> tuple[str, tuple[int, int, float, float]] | None:
        """Render at the smallest size no smaller than ``size`` (the aspect ratio kept)
        instead of the stored size; ``mode`` is ignored. Only before load()."""
        if size is None or not self.tile or self.size != self._sad_stored:
            return None
        w, h = self._sad_stored
        scale = max(size[0] / w, size[1] / h)
        if not 0 < scale < 1:
            return None
        self._size = (max(1, math.ceil(w * scale)), max(1, math.ceil(h * scale)))
        self.tile = _tiles(self._size)
        return self.mode, (0, 0, *self._size)

    def load(self):  # noqa: ANN201 (Pillow's own signature: PixelAccess or None)
        if self.tile:
            if self._size == self._sad_stored:
                arr = api.decode(self._sad_data)
            else:
                arr = api.decode(self._sad_data, width=self._size[0], height=self._size[1])
            self.im = Image.fromarray(arr).im
            self.tile = []
            self.readonly = 0
        return Image.Image.load(self)


def _save(im: Image.Image, fp: IO[bytes], filename: str | bytes) -> None:
    from .imageload import image_to_array

    options = {k: v for k, v in im.encoderinfo.items() if k in _ENCODE_KEYWORDS}
    notes: list[str] = []
    image = image_to_array(im, notice=notes.append)
    options.update(_metadata(im, image.shape[2], notes.append))
    for note in notes:
        warnings.warn(note, stacklevel=3)  # the line that called Image.save
    fp.write(api.encode(image, **options))


def _metadata(
    im: Image.Image, channels: int, notice: Callable[[str], None]
) -> dict[str, bytes | None]:
    """The icc_profile and exif a save stores: those given to save() as given (None or
    b"": none); else, by ``metadata`` ("icc" by default, as ``sad encode --metadata``),
    the image's ICC profile (unless "none") and its EXIF ("all" only), taken from
    ``im.info`` and checked as ``sad encode`` checks a file's (the pixels are stored as
    they are, so the EXIF keeps its orientation)."""
    from .metadata import DEFAULT_KEEP, KEEP, image_exif, image_icc_profile

    given = im.encoderinfo
    keep = given.get("metadata", DEFAULT_KEEP)
    if keep not in KEEP:
        raise SadError(f"metadata must be one of {', '.join(KEEP)}, got {keep!r}")
    out: dict[str, bytes | None] = {}
    if "icc_profile" in given:
        out["icc_profile"] = given["icc_profile"]
    elif keep != "none":
        out["icc_profile"] = image_icc_profile(im, channels, notice, 'metadata="none"')
    if "exif" in given:
        exif = given["exif"]
        out["exif"] = exif.tobytes() if isinstance(exif, Image.Exif) else exif
    elif keep == "all":
        out["exif"] = image_exif(im, notice, upright=False, drop_it='metadata="icc"')
    return out


def register() -> None:
    """Register .sad with Pillow, and with imageio as a format of its Pillow plugin (done
    on import; calling it again changes nothing)."""
    Image.register_open(FORMAT, SadImageFile, _accept)
    Image.register_save(FORMAT, _save)
    Image.register_extension(FORMAT, EXTENSION)
    _register_imageio()


def _register_imageio() -> None:
    """Name .sad among imageio's extensions, handled by its "pillow" plugin. imageio finds
    the plugin for an extension it does not know by trying every plugin in turn, and on
    that path drops the extension of a write to bytes (``extension=".sad"``), which then
    fails; a known extension goes straight to the Pillow plugin."""
    try:
        from imageio.config import FileExtension, known_extensions
    except ImportError:  # imageio is optional for the Pillow plugin itself
        return
    formats = known_extensions.setdefault(EXTENSION, [])
    if not any("pillow" in f.priority for f in formats):
        formats.insert(
            0,
            FileExtension(
                extension=EXTENSION,
                priority=["pillow"],
                name=FORMAT,
                description=SadImageFile.format_description,
            ),
        )


register()
