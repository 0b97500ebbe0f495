"""Metadata: the ICC profile and EXIF a .sad file keeps (docs/FORMAT.md, "Metadata").

The container is checked against FORMAT.md's layout with hand-built blocks (every
malformed one refused, the reader's bounds holding); encodes go through the API and the
real `sad` entry point in-process, on 40x32 images fitted 30 iterations (about 0.2 s each).
"""

from __future__ import annotations

import io
import json
import struct
import sys
import zlib

import numpy as np
import pytest
from PIL import Image, ImageCms
from test_format import make_file

import sadcodec
from sadcodec import cli, container, settings
from sadcodec.errors import SadError, SadFormatError, SadTypeError

W, H = 40, 32
FAST = ["--iterations", "30"]
ICC = ImageCms.ImageCmsProfile(ImageCms.createProfile("sRGB")).tobytes()


def exif_bytes(orientation: int | None = None) -> bytes:
    """EXIF as Pillow's info["exif"] holds it ("Exif\\0\\0" + TIFF), with a camera make."""
    exif = Image.Exif()
    exif[0x010F] = "TestCam"
    if orientation is not None:
        exif[0x0112] = orientation
    return exif.tobytes()


EXIF = exif_bytes()


def with_space(icc: bytes, space: bytes) -> bytes:
    """The profile with another data colour space signature (bytes 16..19)."""
    return icc[:16] + space + icc[20:]


def image(mode: str = "RGB") -> np.ndarray:
    y, x = np.mgrid[0:H, 0:W]
    img = np.stack([x * 6, y * 7, 200 - (x + y) * 2], axis=2).clip(0, 255).astype(np.uint8)
    img[(x - 26) ** 2 + (y - 12) ** 2 < 49] = [230, 40, 30]
    return img[..., 0] if mode == "L" else img


def run(args, capsys, monkeypatch):
    """`sad ARGS` in-process; (exit code, stdout, stderr)."""
    monkeypatch.setattr(sys, "argv", ["sad", *map(str, args)])
    code = 0
    try:
        cli.main()
    except SystemExit as exc:
        code = exc.code if isinstance(exc.code, int) else 1
    out, err = capsys.readouterr()
    return code, out, err


# -- the container ---------------------------------------------------------------------


def entry(tag: bytes, data: bytes) -> bytes:
    return tag + struct.pack("<I", len(data)) + data


def craft(entries: bytes, *, length: int | None = None, minor: int = 1, flags: int = 1) -> bytes:
    """A file with this metadata block, laid out by FORMAT.md: header (flags, minor, CRC
    fixed), the length, the entries, a CRC of both, then a valid 1.0 file's payload."""
    plain, _ = make_file()
    head = bytearray(plain[:47])
    head[5], head[16] = minor, flags
    head += struct.pack("<I", zlib.crc32(head))
    block = struct.pack("<I", len(entries) if length is None else length) + entries
    block += struct.pack("<I", zlib.crc32(block))
    return bytes(head) + block + plain[51:]


def test_a_file_without_metadata_is_the_1_0_file():
    plain, _ = make_file()
    assert plain[4:6] == b"\x01\x00" and plain[16] == 0
    assert container.with_metadata(plain, container.Metadata()) == plain
    assert container.read_metadata(plain).empty


def test_metadata_round_trip_and_layout():
    plain, _ = make_file()
    meta = container.Metadata(ICC, EXIF[6:])
    data = container.with_metadata(plain, meta)
    assert data == craft(entry(b"ICCP", ICC) + entry(b"EXIF", EXIF[6:]))  # FORMAT.md's layout
    assert len(data) == len(plain) + meta.block_bytes() == len(plain) + 8 + 8 + 588 + 8 + 34
    hdr, payload = container.read(data)
    assert (hdr.version, hdr.flags) == ((1, 1), 1)
    assert payload == container.read(plain)[1]
    assert container.read_metadata(data) == meta
    assert container.read_stream(io.BytesIO(data)) == data
    assert container.with_metadata(data, container.Metadata()) == plain
    assert sadcodec.read_metadata(data) == {"icc_profile": ICC, "exif": EXIF}
    assert container.read_metadata(craft(entry(b"EXIF", EXIF[6:]))).icc_profile is None


BAD_ICC_SIZE = struct.pack(">I", 589) + ICC[4:]
BAD_SIGNATURE = ICC[:36] + b"xxxx" + ICC[40:]
SHORT_ICC = struct.pack(">I", 100) + ICC[4:100]
CORRUPT = [
    (entry(b"XMP ", b"<x/>" * 4), "unknown metadata entry"),
    (entry(b"EXIF", EXIF[6:]) + entry(b"ICCP", ICC), "repeated or out of order"),
    (entry(b"ICCP", ICC) + entry(b"ICCP", ICC), "repeated or out of order"),
    (entry(b"ICCP", ICC)[:-1], "longer than the metadata"),
    (entry(b"ICCP", ICC) + b"EXI", "truncated metadata entry"),
    (entry(b"ICCP", BAD_ICC_SIZE), "not an ICC profile"),
    (entry(b"ICCP", BAD_SIGNATURE), "not an ICC profile"),
    (entry(b"ICCP", SHORT_ICC), "ICC profile of 100 bytes"),
    (entry(b"ICCP", with_space(ICC, b"GRAY")), "ICC profile for 'GRAY' samples"),
    (entry(b"ICCP", with_space(ICC, b"CMYK")), "ICC profile for 'CMYK' samples"),
    (entry(b"EXIF", b"JFIF\x00\x00\x00\x00"), "TIFF header"),
    (entry(b"EXIF", b"II*\x00" + bytes(65524)), "EXIF of 65528 bytes"),
]


@pytest.mark.parametrize("entries, match", CORRUPT, ids=[m for _, m in CORRUPT])
def test_malformed_metadata_is_refused(entries, match):
    data = craft(entries)
    for read in (container.read, sadcodec.decode, sadcodec.read_metadata):
        with pytest.raises(SadFormatError, match=match) as exc:
            read(data)
        assert "corrupt file" in str(exc.value) and "\n" not in str(exc.value)


def test_metadata_flags_and_lengths_are_checked():
    good = entry(b"ICCP", ICC)
    cases = [
        (craft(good, minor=0), "unknown flags 0x1 for a version 1.0 file"),
        (craft(good, flags=3), "unknown flags 0x3"),
        (craft(good, length=15), "metadata length 15 out of range"),
        (craft(good, length=container.MAX_METADATA + 1), "metadata length 4259848"),
        (craft(good, length=len(good) + 1), "truncated file|unexpected bytes"),
        (craft(good)[:60], r"truncated file \(metadata incomplete\)"),
        (craft(good)[:54], r"truncated file \(header incomplete\)"),
        (craft(good) + b"\0", "unexpected bytes after the payload"),
    ]
    for data, match in cases:
        with pytest.raises(SadFormatError, match=match):
            container.read(data)
    flipped = bytearray(craft(good))
    flipped[100] ^= 4
    with pytest.raises(SadFormatError, match="metadata checksum mismatch"):
        container.read(bytes(flipped))
    # A reader that knows flag bit 0 reads it in any later 1.x (FORMAT.md, Compatibility).
    assert container.read_metadata(craft(good, minor=7)).icc_profile == ICC


class Counting(io.RawIOBase):
    """A stream of data, then endless zeros; counts what was read."""

    def __init__(self, data: bytes):
        self.data, self.pos = data, 0

    def readable(self) -> bool:
        return True

    def readinto(self, b) -> int:
        chunk = self.data[self.pos : self.pos + len(b)].ljust(len(b), b"\0")
        b[: len(chunk)] = chunk
        self.pos += len(chunk)
        return len(chunk)


def test_a_huge_declared_metadata_length_is_refused_before_reading_it():
    f = Counting(craft(b"", length=1 << 31)[:55])
    with pytest.raises(SadFormatError, match="metadata length 2147483648 out of range"):
        container.read_stream(f)
    assert f.pos == 55  # the header, its CRC and the length: nothing of the block
    f = Counting(craft(entry(b"ICCP", ICC)))
    with pytest.raises(SadFormatError, match="unexpected bytes after the payload"):
        container.read_stream(f)
    assert f.pos == len(craft(entry(b"ICCP", ICC))) + 1


# -- the budget ------------------------------------------------------------------------


def test_metadata_bytes_come_out_of_the_fits_budget():
    s = settings.encode_settings(W, H, 3, 6.0, icc_profile=ICC, exif=EXIF)
    block = 8 + 8 + len(ICC) + 8 + len(EXIF) - 6  # the prefix is not stored
    assert s.budget_bytes == 6 * W * H // 8
    assert s.fit_budget_bytes == s.budget_bytes - block
    assert s.rate_target().budget_bytes == s.fit_budget_bytes
    assert s.metadata == container.Metadata(ICC, EXIF[6:])
    plain = settings.encode_settings(W, H, 3, 6.0)
    assert plain.fit_budget_bytes == plain.budget_bytes


def test_metadata_larger_than_the_budget_is_refused_with_a_way_out():
    with pytest.raises(SadError, match="metadata .*--metadata none") as exc:
        sadcodec.encode_settings((H, W, 3), 2.0, icc_profile=ICC)
    assert "ICC profile 588 bytes" in str(exc.value) and "\n" not in str(exc.value)
    sadcodec.encode_settings((H, W, 3), 2.0)  # the same budget without it is fine


@pytest.mark.parametrize(
    "kwargs, kind, match",
    [
        ({"icc_profile": "sRGB"}, SadTypeError, "icc_profile must be bytes"),
        ({"exif": 5}, SadTypeError, "exif must be bytes"),
        ({"icc_profile": b"\0" * 200}, SadError, "cannot store the metadata: not an ICC"),
        ({"icc_profile": with_space(ICC, b"GRAY")}, SadError, "'GRAY' samples"),
        ({"exif": b"Exif\0\0garbage!"}, SadError, "TIFF header"),
    ],
)
def test_bad_metadata_arguments(kwargs, kind, match):
    with pytest.raises(kind, match=match) as exc:
        sadcodec.encode(image(), 6.0, iterations=1, **kwargs)
    assert type(exc.value) is kind


def test_api_round_trip_within_the_budget():
    img = image()
    data = sadcodec.encode(img, 6.0, iterations=30, icc_profile=ICC, exif=EXIF)
    assert len(data) <= 6 * W * H // 8
    assert sadcodec.read_info(data)["format_version"] == "1.1"
    assert sadcodec.read_metadata(data) == {"icc_profile": ICC, "exif": EXIF}
    plain = container.with_metadata(data, container.Metadata())
    assert np.array_equal(sadcodec.decode(data), sadcodec.decode(plain))
    # The gray profile of a gray image is kept too.
    gray_icc = with_space(ICC, b"GRAY")
    data = sadcodec.encode(image("L"), 6.0, iterations=30, icc_profile=gray_icc)
    assert sadcodec.read_metadata(data) == {"icc_profile": gray_icc}


# -- sad encode / decode / info --------------------------------------------------------


@pytest.fixture
def photo(tmp_path):
    """A PNG with an sRGB ICC profile and EXIF saying "rotate 90° clockwise to show"."""
    path = tmp_path / "photo.png"
    Image.fromarray(image()).save(path, icc_profile=ICC, exif=exif_bytes(orientation=6))
    return path


def encode(photo, tmp_path, capsys, monkeypatch, *args) -> tuple[bytes, str]:
    out = tmp_path / "photo.sad"
    args = ["encode", photo, "-o", out, "--bpp", "6", *FAST, *args]
    code, _, err = run(args, capsys, monkeypatch)
    assert code == 0, err
    data = out.read_bytes()
    assert len(data) <= 6 * W * H // 8  # the metadata within the budget
    return data, err


def test_icc_profile_is_kept_by_default_and_written_back(photo, tmp_path, capsys, monkeypatch):
    data, _ = encode(photo, tmp_path, capsys, monkeypatch)
    assert sadcodec.read_metadata(data) == {"icc_profile": ICC}  # EXIF only when asked
    code, out, _ = run(["info", tmp_path / "photo.sad"], capsys, monkeypatch)
    assert code == 0 and "metadata:    ICC profile 588 bytes (sRGB built-in)" in out
    code, out, _ = run(["info", tmp_path / "photo.sad", "--json"], capsys, monkeypatch)
    meta = json.loads(out)["metadata"]
    assert meta == {"icc_profile_bytes": 588, "icc_description": "sRGB built-in"}
    for ext in ("png", "jpg", "webp", "tif"):
        dst = tmp_path / f"out.{ext}"
        code, _, err = run(["decode", tmp_path / "photo.sad", "-o", dst], capsys, monkeypatch)
        assert code == 0, err
        with Image.open(dst) as im:
            assert im.info.get("icc_profile") == ICC, ext
            assert im.size == (H, W)  # turned upright when read


def test_exif_round_trip_with_metadata_all(photo, tmp_path, capsys, monkeypatch):
    data, _ = encode(photo, tmp_path, capsys, monkeypatch, "--metadata", "all")
    kept = Image.Exif()
    kept.load(sadcodec.read_metadata(data)["exif"])
    # The pixels were turned upright: the orientation tag went with the turn.
    assert kept[0x010F] == "TestCam" and 0x0112 not in kept
    for ext in ("png", "jpg", "webp", "tif"):
        dst = tmp_path / f"out.{ext}"
        code, _, err = run(["decode", tmp_path / "photo.sad", "-o", dst], capsys, monkeypatch)
        assert code == 0, err
        with Image.open(dst) as im:
            exif = im.getexif()
            assert exif[0x010F] == "TestCam" and exif.get(0x0112, 1) == 1, ext
            assert im.info.get("icc_profile") == ICC, ext
    code, out, _ = run(["info", tmp_path / "photo.sad"], capsys, monkeypatch)
    assert "ICC profile 588 bytes (sRGB built-in), EXIF" in out


def test_metadata_none_drops_both(photo, tmp_path, capsys, monkeypatch):
    data, _ = encode(photo, tmp_path, capsys, monkeypatch, "--metadata", "none")
    assert data[4:6] == b"\x01\x00" and sadcodec.read_metadata(data) == {}
    code, out, _ = run(["info", tmp_path / "photo.sad"], capsys, monkeypatch)
    assert "metadata:    none (colours are sRGB)" in out
    dst = tmp_path / "out.png"
    assert run(["decode", tmp_path / "photo.sad", "-o", dst], capsys, monkeypatch)[0] == 0
    with Image.open(dst) as im:
        assert "icc_profile" not in im.info and "exif" not in im.info


def test_formats_without_metadata_say_so(photo, tmp_path, capsys, monkeypatch):
    encode(photo, tmp_path, capsys, monkeypatch)
    dst = tmp_path / "out.bmp"
    code, _, err = run(["decode", tmp_path / "photo.sad", "-o", dst], capsys, monkeypatch)
    assert code == 0 and "notice: BMP output cannot hold the ICC profile; left out" in err


def test_a_profile_that_no_longer_fits_the_samples_is_dropped(tmp_path, capsys, monkeypatch):
    """A CMYK JPEG is read as RGB: its CMYK profile does not describe those samples."""
    src = tmp_path / "cmyk.jpg"
    Image.fromarray(image()).convert("CMYK").save(src, icc_profile=with_space(ICC, b"CMYK"))
    data, err = encode(src, tmp_path, capsys, monkeypatch)
    assert "ICC profile for CMYK samples dropped: the image is stored as RGB" in err
    assert sadcodec.read_metadata(data) == {}


def test_metadata_too_large_for_the_budget(photo, tmp_path, capsys, monkeypatch):
    args = ["encode", photo, "-o", tmp_path / "x.sad", "--bpp", "2", *FAST]
    code, _, err = run(args, capsys, monkeypatch)
    assert code == 1 and "--metadata none" in err and err.count("\n") == 1
    assert not (tmp_path / "x.sad").exists()
    assert run([*args, "--metadata", "none"], capsys, monkeypatch)[0] == 0
