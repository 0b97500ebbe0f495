"""load_image / save_image: every odd input becomes uint8 (H, W, C) or a one-line SadError."""

from __future__ import annotations

import struct
import time
import warnings
import zlib
from pathlib import Path

import numpy as np
import pytest
from PIL import Image, features

from sadcodec import imageload
from sadcodec.errors import SadError
from sadcodec.imageload import MAX_PIXELS, NOTICE_16BIT, load_image, probe_image, save_image

# ------------------------------------------------------------------ hand-built files


def _chunk(kind: bytes, data: bytes) -> bytes:
    crc = zlib.crc32(kind + data) & 0xFFFFFFFF
    return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", crc)


def _png(width: int, height: int, depth: int, color_type: int, raw_rows: bytes) -> bytes:
    ihdr = struct.pack(">IIBBBBB", width, height, depth, color_type, 0, 0, 0)
    return (
        b"\x89PNG\r\n\x1a\n"
        + _chunk(b"IHDR", ihdr)
        + _chunk(b"IDAT", zlib.compress(raw_rows))
        + _chunk(b"IEND", b"")
    )


def _png16(values: np.ndarray) -> bytes:
    """A 16-bit PNG (gray, gray+alpha, RGB or RGBA by channel count), filter type 0."""
    a = np.asarray(values, dtype=">u2")
    if a.ndim == 2:
        a = a[:, :, None]
    h, w, c = a.shape
    color_type = {1: 0, 2: 4, 3: 2, 4: 6}[c]
    rows = b"".join(b"\x00" + a[y].tobytes() for y in range(h))
    return _png(w, h, 16, color_type, rows)


def _header_only_png(width: int, height: int) -> bytes:
    """Declares any size but carries almost no data: decoding it would be the bug."""
    return _png(width, height, 8, 2, b"\x00" * 16)


def _tiff_rgb16(values: np.ndarray) -> bytes:
    """Minimal little-endian uncompressed 16-bit RGB TIFF (Pillow cannot write one)."""
    a = np.ascontiguousarray(values, dtype="<u2")
    h, w, _ = a.shape
    pixels = a.tobytes()
    n_tags = 10
    ifd_at = 8
    bps_at = ifd_at + 2 + 12 * n_tags + 4
    data_at = bps_at + 6
    tags = [
        (256, 4, 1, w),  # ImageWidth
        (257, 4, 1, h),  # ImageLength
        (258, 3, 3, bps_at),  # BitsPerSample -> 16,16,16
        (259, 3, 1, 1),  # Compression: none
        (262, 3, 1, 2),  # Photometric: RGB
        (273, 4, 1, data_at),  # StripOffsets
        (277, 3, 1, 3),  # SamplesPerPixel
        (278, 4, 1, h),  # RowsPerStrip
        (279, 4, 1, len(pixels)),  # StripByteCounts
        (284, 3, 1, 1),  # PlanarConfiguration: chunky
    ]
    out = b"II*\x00" + struct.pack("<I", ifd_at) + struct.pack("<H", n_tags)
    for tag, typ, count, value in tags:
        packed = struct.pack("<HH", value, 0) if typ == 3 else struct.pack("<I", value)
        out += struct.pack("<HHI", tag, typ, count) + packed
    out += struct.pack("<I", 0) + struct.pack("<HHH", 16, 16, 16)
    assert len(out) == data_at
    return out + pixels


def _load(path: Path) -> tuple[np.ndarray, list[str]]:
    notes: list[str] = []
    arr = load_image(path, notes.append)
    assert arr.dtype == np.uint8 and arr.ndim == 3 and arr.flags.c_contiguous
    # The header alone tells the shape the decode gives (every test below checks it).
    assert probe_image(path) == arr.shape
    return arr, notes


def _noise(h: int, w: int, c: int, seed: int = 0) -> np.ndarray:
    return np.random.default_rng(seed).integers(0, 256, (h, w, c), dtype=np.uint8)


# ------------------------------------------------------------------ plain modes


def test_rgb_png(tmp_path: Path) -> None:
    src = _noise(5, 7, 3)
    Image.fromarray(src).save(tmp_path / "a.png")
    arr, notes = _load(tmp_path / "a.png")
    assert arr.shape == (5, 7, 3)
    np.testing.assert_array_equal(arr, src)
    assert notes == []


def test_grayscale_is_one_channel(tmp_path: Path) -> None:
    src = _noise(4, 6, 1)[..., 0]
    Image.fromarray(src).save(tmp_path / "g.png")
    arr, _ = _load(tmp_path / "g.png")
    assert arr.shape == (4, 6, 1)
    np.testing.assert_array_equal(arr[..., 0], src)


def test_gray_looking_rgb_keeps_three_channels(tmp_path: Path) -> None:
    src = np.repeat(_noise(3, 3, 1), 3, axis=2)
    Image.fromarray(src).save(tmp_path / "g3.png")
    arr, _ = _load(tmp_path / "g3.png")
    assert arr.shape == (3, 3, 3)


def test_bilevel_becomes_gray(tmp_path: Path) -> None:
    img = Image.new("1", (4, 2), 0)
    img.putpixel((1, 0), 1)
    img.save(tmp_path / "b.png")
    arr, _ = _load(tmp_path / "b.png")
    assert arr.shape == (2, 4, 1)
    assert arr[0, 1, 0] == 255 and arr[0, 0, 0] == 0


def test_rgba(tmp_path: Path) -> None:
    src = _noise(3, 4, 4)
    Image.fromarray(src).save(tmp_path / "a.png")
    arr, _ = _load(tmp_path / "a.png")
    assert arr.shape == (3, 4, 4)
    np.testing.assert_array_equal(arr, src)


def test_gray_alpha_expands_to_rgba(tmp_path: Path) -> None:
    Image.new("LA", (3, 2), (100, 50)).save(tmp_path / "la.png")
    arr, _ = _load(tmp_path / "la.png")
    assert arr.shape == (2, 3, 4)
    assert arr[1, 2].tolist() == [100, 100, 100, 50]


def test_palette_without_transparency_is_rgb(tmp_path: Path) -> None:
    img = Image.new("P", (3, 2), 1)
    img.putpalette([10, 20, 30, 40, 50, 60])
    img.putpixel((0, 0), 0)
    img.save(tmp_path / "p.png")
    arr, _ = _load(tmp_path / "p.png")
    assert arr.shape == (2, 3, 3)
    assert arr[0, 0].tolist() == [10, 20, 30]
    assert arr[1, 2].tolist() == [40, 50, 60]


def test_palette_with_transparency_is_rgba(tmp_path: Path) -> None:
    img = Image.new("P", (3, 2), 1)
    img.putpalette([10, 20, 30, 40, 50, 60])
    img.putpixel((0, 0), 0)
    img.save(tmp_path / "pt.png", transparency=0)
    arr, _ = _load(tmp_path / "pt.png")
    assert arr.shape == (2, 3, 4)
    assert arr[0, 0, 3] == 0
    assert arr[1, 2].tolist() == [40, 50, 60, 255]


def test_cmyk_jpeg_becomes_rgb(tmp_path: Path) -> None:
    Image.new("CMYK", (16, 16), (0, 255, 255, 0)).save(tmp_path / "c.jpg", quality=95)
    assert Image.open(tmp_path / "c.jpg").mode == "CMYK"
    arr, _ = _load(tmp_path / "c.jpg")
    assert arr.shape == (16, 16, 3)
    assert np.abs(arr[8, 8].astype(int) - [255, 0, 0]).max() <= 8


def test_exif_orientation_6_rotates_clockwise(tmp_path: Path) -> None:
    # Stored 64 wide x 32 high, red 16x16 block in the stored top-left corner.
    src = np.zeros((32, 64, 3), dtype=np.uint8)
    src[:16, :16] = (255, 0, 0)
    exif = Image.Exif()
    exif[0x0112] = 6  # rotate 90 degrees clockwise to display
    Image.fromarray(src).save(tmp_path / "r.jpg", exif=exif, quality=95, subsampling=0)
    arr, _ = _load(tmp_path / "r.jpg")
    assert arr.shape == (64, 32, 3)  # width and height swapped
    # Clockwise: the stored top-left corner ends up top-right.
    assert np.abs(arr[1, 30].astype(int) - [255, 0, 0]).max() <= 20
    assert arr[1, 1].max() <= 20
    assert arr[62, 30].max() <= 20


# ------------------------------------------------------------------ deep / odd samples


def test_16bit_gray_png_rounds_with_notice(tmp_path: Path) -> None:
    vals = np.array([[0, 128, 129, 511], [257, 32896, 65407, 65535]], dtype=np.uint16)
    (tmp_path / "g16.png").write_bytes(_png16(vals))
    arr, notes = _load(tmp_path / "g16.png")
    assert arr.shape == (2, 4, 1)
    np.testing.assert_array_equal(arr[..., 0], [[0, 0, 1, 2], [1, 128, 255, 255]])
    assert notes == [NOTICE_16BIT]


def test_16bit_rgb_png_rounds_not_truncates(tmp_path: Path) -> None:
    vals = np.random.default_rng(1).integers(0, 65536, (3, 5, 3)).astype(np.uint16)
    vals[0, 0] = (511, 128, 65535)  # truncation would give (1, 0, 255)
    (tmp_path / "c16.png").write_bytes(_png16(vals))
    arr, notes = _load(tmp_path / "c16.png")
    assert arr.shape == (3, 5, 3)
    np.testing.assert_array_equal(arr, np.rint(vals / 257.0).astype(np.uint8))
    assert arr[0, 0].tolist() == [2, 0, 255]
    assert NOTICE_16BIT in notes


@pytest.mark.parametrize("channels", [2, 4])
def test_16bit_png_with_alpha(tmp_path: Path, channels: int) -> None:
    vals = np.random.default_rng(2).integers(0, 65536, (2, 3, channels)).astype(np.uint16)
    (tmp_path / "a16.png").write_bytes(_png16(vals))
    arr, notes = _load(tmp_path / "a16.png")
    assert arr.shape == (2, 3, 4)
    want = np.rint(vals / 257.0).astype(np.uint8)
    if channels == 2:
        want = want[..., [0, 0, 0, 1]]
    np.testing.assert_array_equal(arr, want)
    assert notes == [NOTICE_16BIT]


def test_16bit_gray_tiff(tmp_path: Path) -> None:
    vals = np.array([[0, 511, 65535]], dtype=np.uint16)
    Image.fromarray(vals).save(tmp_path / "g16.tif")
    arr, notes = _load(tmp_path / "g16.tif")
    np.testing.assert_array_equal(arr[..., 0], [[0, 2, 255]])
    assert notes == [NOTICE_16BIT]


def test_16bit_rgb_tiff(tmp_path: Path) -> None:
    vals = np.random.default_rng(3).integers(0, 65536, (3, 4, 3)).astype(np.uint16)
    vals[0, 0] = (511, 128, 65535)
    (tmp_path / "c16.tif").write_bytes(_tiff_rgb16(vals))
    arr, notes = _load(tmp_path / "c16.tif")
    assert arr.shape == (3, 4, 3)
    np.testing.assert_array_equal(arr, np.rint(vals / 257.0).astype(np.uint8))
    assert notes == [NOTICE_16BIT]


def test_float_tiff_unit_range(tmp_path: Path) -> None:
    vals = np.array([[0.0, 0.25, 1.0], [-0.5, 0.5, np.nan]], dtype=np.float32)
    Image.fromarray(vals).save(tmp_path / "f.tif")
    arr, notes = _load(tmp_path / "f.tif")
    assert arr.shape == (2, 3, 1)
    np.testing.assert_array_equal(arr[..., 0], [[0, 64, 255], [0, 128, 0]])
    assert len(notes) == 1 and "floating-point" in notes[0] and "[0, 1]" in notes[0]


def test_float_tiff_byte_range(tmp_path: Path) -> None:
    vals = np.array([[0.0, 100.4, 300.0, -3.0]], dtype=np.float32)
    Image.fromarray(vals).save(tmp_path / "f.tif")
    arr, notes = _load(tmp_path / "f.tif")
    np.testing.assert_array_equal(arr[..., 0], [[0, 100, 255, 0]])
    assert "[0, 255]" in notes[0]


def test_animated_gif_uses_first_frame(tmp_path: Path) -> None:
    colors = [(255, 0, 0), (0, 255, 0), (0, 0, 255)]
    frames = [Image.new("RGB", (4, 3), c) for c in colors]
    frames[0].save(tmp_path / "anim.gif", save_all=True, append_images=frames[1:], duration=50)
    arr, notes = _load(tmp_path / "anim.gif")
    assert arr.shape == (3, 4, 3)
    assert arr[1, 1].tolist() == [255, 0, 0]
    assert notes == ["input has 3 frames; using the first"]


def test_notice_is_optional(tmp_path: Path) -> None:
    (tmp_path / "g16.png").write_bytes(_png16(np.full((2, 2), 65535, dtype=np.uint16)))
    assert load_image(tmp_path / "g16.png").max() == 255


# ------------------------------------------------------------------ refused inputs


def test_missing_file(tmp_path: Path) -> None:
    with pytest.raises(SadError, match="no such file"):
        load_image(tmp_path / "nope.png")


def test_directory(tmp_path: Path) -> None:
    with pytest.raises(SadError, match="is a directory"):
        load_image(tmp_path)


def test_unreadable_file(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Runs even as root: the mapping of Pillow's PermissionError is what is tested."""
    (tmp_path / "a.png").write_bytes(b"x")

    def denied(*_args: object, **_kwargs: object) -> None:
        raise PermissionError(13, "Permission denied")

    monkeypatch.setattr(Image, "open", denied)
    with pytest.raises(SadError, match="cannot read .*: permission denied"):
        load_image(tmp_path / "a.png")


def test_random_bytes(tmp_path: Path) -> None:
    p = tmp_path / "noise.png"
    p.write_bytes(np.random.default_rng(0).bytes(2000))
    with pytest.raises(SadError, match="not a supported image") as info:
        load_image(p)
    assert str(p) in str(info.value) and "\n" not in str(info.value)


def test_empty_file(tmp_path: Path) -> None:
    (tmp_path / "e.png").write_bytes(b"")
    with pytest.raises(SadError, match="cannot read .*empty"):
        load_image(tmp_path / "e.png")


def test_truncated_png(tmp_path: Path) -> None:
    Image.fromarray(_noise(64, 64, 3)).save(tmp_path / "t.png")
    data = (tmp_path / "t.png").read_bytes()
    (tmp_path / "t.png").write_bytes(data[: len(data) // 2])
    with pytest.raises(SadError, match="corrupt or truncated PNG"):
        load_image(tmp_path / "t.png")


ZERO_SIZE = {
    "z.png": (_header_only_png(0, 5), "0x5"),
    "z2.png": (_header_only_png(7, 0), "7x0"),
    "z.gif": (b"GIF89a" + struct.pack("<HHBBB", 0, 5, 0, 0, 0) + b";", "0x5"),
    "z.bmp": (b"BM" + struct.pack("<IHHIIii", 54, 0, 0, 54, 40, 3, 0) + bytes(28), "3x0"),
}


@pytest.mark.parametrize("name", list(ZERO_SIZE))
def test_zero_size_refused(tmp_path: Path, name: str) -> None:
    # Pillow cannot write a 0-pixel image, so the header is built by hand; Pillow itself
    # rejects it while identifying the file without saying why, so the header is read again.
    data, size = ZERO_SIZE[name]
    (tmp_path / name).write_bytes(data)
    with pytest.raises(SadError, match=rf"cannot read .*: image has zero size \({size}\)$"):
        load_image(tmp_path / name)


def test_damaged_known_format_is_named(tmp_path: Path) -> None:
    (tmp_path / "bad.png").write_bytes(b"\x89PNG\r\n\x1a\n" + bytes(40))
    with pytest.raises(SadError, match=r"'\S+bad.png': corrupt or unsupported PNG file$"):
        load_image(tmp_path / "bad.png")


def test_huge_declared_size_refused_quickly(tmp_path: Path) -> None:
    (tmp_path / "bomb.png").write_bytes(_header_only_png(100_000, 100_000))
    start = time.perf_counter()
    with pytest.raises(SadError, match="too large") as info:
        load_image(tmp_path / "bomb.png")
    assert time.perf_counter() - start < 2.0
    assert "10000000000" in str(info.value) and str(MAX_PIXELS) in str(info.value)


def test_above_limit_but_below_pillow_error_refused(tmp_path: Path) -> None:
    (tmp_path / "big.png").write_bytes(_header_only_png(12_000, 10_000))
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # Pillow's DecompressionBombWarning must not leak
        with pytest.raises(SadError, match=r"12000x10000 = 120000000 pixels"):
            load_image(tmp_path / "big.png")


def test_probe_reads_the_header_only(tmp_path: Path) -> None:
    """The declared size, before any pixel is decoded: the encoder checks its memory
    against it (a 97 KB PNG declaring 65535x1525 pixels took over 6 GB in the fit)."""
    (tmp_path / "wide.png").write_bytes(_header_only_png(65535, 1525))
    start = time.perf_counter()
    assert probe_image(tmp_path / "wide.png") == (1525, 65535, 3)
    assert time.perf_counter() - start < 0.5
    with pytest.raises(SadError, match="corrupt or truncated PNG"):
        load_image(tmp_path / "wide.png")  # the data is missing: decoding would find out
    (tmp_path / "bomb.png").write_bytes(_header_only_png(100_000, 100_000))
    with pytest.raises(SadError, match="too large"):
        probe_image(tmp_path / "bomb.png")
    for name, message in (("missing.png", "no such file"), (".", "is a directory")):
        with pytest.raises(SadError, match=message):
            probe_image(tmp_path / name)
    (tmp_path / "empty.png").write_bytes(b"")
    with pytest.raises(SadError, match="file is empty"):
        probe_image(tmp_path / "empty.png")


@pytest.mark.parametrize("channels", [1, 2, 4])
def test_wide_samples_are_reduced_in_bands(tmp_path: Path, channels: int) -> None:
    """16-bit input becomes 8 bits a band of rows at a time: the traced allocations stay
    near the uint8 output (a 10000x10000 16-bit RGBA PNG took over 6 GB to load when it
    was reduced at once, in uint32/int64 copies of the whole image)."""
    import tracemalloc

    h, w = 1500, 2000
    vals = np.random.default_rng(5).integers(0, 65536, (h, w, channels)).astype(np.uint16)
    (tmp_path / "w.png").write_bytes(_png16(vals[..., 0] if channels == 1 else vals))
    want = ((vals.astype(np.uint32) + 128) // 257).astype(np.uint8)
    tracemalloc.start()
    try:
        arr = load_image(tmp_path / "w.png")
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    if channels == 2:  # gray + alpha expands to RGBA
        want = want[..., [0, 0, 0, 1]]
    np.testing.assert_array_equal(arr, want)
    # Measured: 20-29 MiB traced (the output, bands of 2^20 samples in uint32 and the
    # file's rows); 57 MiB (gray), 205-228 MiB (RGBA, gray + alpha) when reduced at once.
    assert imageload.BAND_SAMPLES == 1 << 20
    assert peak < 3 * arr.nbytes + (20 << 20), (peak, arr.nbytes)


def test_float_samples_are_reduced_in_bands(tmp_path: Path, monkeypatch) -> None:
    """A float image larger than a band: the same result as one pass over all of it."""
    monkeypatch.setattr(imageload, "BAND_SAMPLES", 1000)
    vals = np.random.default_rng(6).uniform(-0.5, 1.4, (90, 70)).astype(np.float32)
    vals[3, 4], vals[50, 60], vals[80, 1] = np.nan, np.inf, -np.inf
    Image.fromarray(vals, mode="F").save(tmp_path / "f.tif")
    arr, notes = _load(tmp_path / "f.tif")
    v = np.nan_to_num(vals.astype(np.float64), nan=0.0, posinf=np.inf, neginf=0.0)
    want = np.rint(np.clip(v, 0.0, 255.0)).astype(np.uint8)  # max > 1: the [0, 255] range
    np.testing.assert_array_equal(arr[..., 0], want)
    assert notes == ["floating-point input clipped to [0, 255] and converted to 8 bits per channel"]


def test_too_wide_refused(tmp_path: Path) -> None:
    (tmp_path / "wide.png").write_bytes(_header_only_png(70_000, 2))
    with pytest.raises(SadError, match="65535 per side"):
        load_image(tmp_path / "wide.png")


# ------------------------------------------------------------------ saving


@pytest.mark.parametrize("ext", [".png", ".tif", ".bmp"])
@pytest.mark.parametrize("channels", [1, 3, 4])
def test_save_round_trip(tmp_path: Path, ext: str, channels: int) -> None:
    src = _noise(6, 5, channels, seed=channels)
    out = tmp_path / f"out{ext}"
    if ext == ".bmp" and channels == 4:
        with pytest.raises(SadError, match="BMP cannot store alpha"):
            save_image(out, src)
        assert not out.exists()
        return
    save_image(out, src)
    arr, _ = _load(out)
    np.testing.assert_array_equal(arr, src)
    assert sorted(p.name for p in tmp_path.iterdir()) == [out.name]


@pytest.mark.skipif(not features.check("webp"), reason="Pillow built without WebP")
def test_save_webp_lossless(tmp_path: Path) -> None:
    src = _noise(6, 5, 4)
    save_image(tmp_path / "o.webp", src)
    np.testing.assert_array_equal(load_image(tmp_path / "o.webp"), src)


def test_save_jpeg_rgb(tmp_path: Path) -> None:
    src = np.full((8, 8, 3), (200, 100, 50), dtype=np.uint8)
    save_image(tmp_path / "o.JPG", src)
    arr, _ = _load(tmp_path / "o.JPG")
    assert arr.shape == (8, 8, 3)
    assert np.abs(arr.astype(int) - src).max() <= 4


def test_save_jpeg_with_alpha_refused(tmp_path: Path) -> None:
    with pytest.raises(SadError, match=r"JPEG cannot store alpha; use \.png"):
        save_image(tmp_path / "o.jpg", _noise(2, 2, 4))
    assert list(tmp_path.iterdir()) == []


def test_save_unknown_extension_refused(tmp_path: Path) -> None:
    with pytest.raises(SadError, match=r"unknown image extension '\.xyz'.*\.png") as info:
        save_image(tmp_path / "o.xyz", _noise(2, 2, 3))
    assert ".tiff" in str(info.value)
    with pytest.raises(SadError, match="no file extension"):
        save_image(tmp_path / "noext", _noise(2, 2, 3))
    assert list(tmp_path.iterdir()) == []


def test_save_replaces_existing_file(tmp_path: Path) -> None:
    out = tmp_path / "o.png"
    out.write_bytes(b"old")
    save_image(out, _noise(3, 3, 3))
    np.testing.assert_array_equal(load_image(out), _noise(3, 3, 3))


def test_save_missing_directory(tmp_path: Path) -> None:
    with pytest.raises(SadError, match="does not exist"):
        save_image(tmp_path / "nodir" / "o.png", _noise(2, 2, 3))


def test_save_rejects_wrong_dtype(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="uint8"):
        save_image(tmp_path / "o.png", np.zeros((2, 2, 3), dtype=np.float32))
