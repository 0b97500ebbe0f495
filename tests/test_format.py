"""The .sad container, payload bitstream and quantizer: round trips, limits, corruption.

Header offsets below are taken from docs/FORMAT.md, not from the implementation, so these
tests also hold the code to the documented layout.
"""

from __future__ import annotations

import math
import os
import struct
import tracemalloc
import zlib

import numpy as np
import pytest
import zstandard

import sadcodec
from sadcodec import bitstream, container, decoder, quantize
from sadcodec.errors import SadError, SadFormatError
from sadcodec.quantize import QuantSpec


def _magicless(level: int = 3) -> zstandard.ZstdCompressor:
    return zstandard.ZstdCompressor(
        compression_params=zstandard.ZstdCompressionParameters.from_level(
            level, format=zstandard.FORMAT_ZSTD1_MAGICLESS, write_content_size=0
        )
    )


# field -> (offset, struct format), from the header table of docs/FORMAT.md
FIELDS = {
    "magic": (0, "4s"),
    "major": (4, "B"),
    "minor": (5, "B"),
    "width": (6, "H"),
    "height": (8, "H"),
    "channels": (10, "B"),
    "k": (11, "B"),
    "n_sites": (12, "I"),
    "flags": (16, "B"),
    "pos_frac_bits": (17, "B"),
    "theta_bits": (18, "B"),
    "a_bits": (19, "B"),
    "a_max": (20, "f"),
    "r_bits": (24, "B"),
    "r_min": (25, "f"),
    "r_step": (29, "f"),
    "t_bits": (33, "B"),
    "t_min": (34, "f"),
    "t_step": (38, "f"),
    "col_bits": (42, "B"),
    "payload_len": (43, "I"),
}
HEAD = 47  # header bytes covered by the header CRC
# A spec whose floats are exact in float32, so the header round trip is exact.
SPEC = QuantSpec(a_max=4.0, r_step=0.5, t_min=-1.0, t_step=0.25)
W, H = 24, 16


def random_fields(rng, n: int, width: int, height: int, channels: int, spec: QuantSpec) -> dict:
    f = 1 << spec.pos_frac_bits
    return {
        "x": rng.integers(0, width * f, n),
        "y": rng.integers(0, height * f, n),
        "theta": rng.integers(0, 1 << spec.theta_bits, n),
        "a": rng.integers(0, 1 << spec.a_bits, n),
        "r": rng.integers(0, 1 << spec.r_bits, n),
        "t": rng.integers(0, 1 << spec.t_bits, n),
        "col": rng.integers(0, 1 << spec.col_bits, (n, channels)),
    }


def rows(q: dict) -> np.ndarray:
    """Sites as rows (x, y, theta, a, r, t, colours...), sorted lexicographically."""
    m = np.column_stack([q["x"], q["y"], q["theta"], q["a"], q["r"], q["t"], q["col"]])
    return m[np.lexsort(m.T[::-1])].astype(np.int64)


def make_file(n: int = 5, channels: int = 3, seed: int = 0) -> tuple[bytes, container.Header]:
    rng = np.random.default_rng(seed)
    q = random_fields(rng, n, W, H, channels, SPEC)
    payload = bitstream.encode_payload(q, SPEC.col_bits)
    hdr = container.Header(W, H, channels, 8, n, SPEC, payload_bytes=len(payload))
    return container.write(hdr, payload), hdr


def patch(data: bytes, **fields) -> bytes:
    """Overwrite header fields and recompute the header CRC, so validation is what fires."""
    buf = bytearray(data)
    for name, value in fields.items():
        off, fmt = FIELDS[name]
        struct.pack_into("<" + fmt, buf, off, value)
    struct.pack_into("<I", buf, HEAD, zlib.crc32(bytes(buf[:HEAD])))
    return bytes(buf)


def unpack_field(data: bytes, name: str):
    off, fmt = FIELDS[name]
    return struct.unpack_from("<" + fmt, data, off)[0]


def assert_refused(data: bytes, match: str | None = None) -> str:
    with pytest.raises(SadFormatError, match=match) as exc:
        decoder.parse(data)
    msg = str(exc.value)
    assert msg and "\n" not in msg
    return msg


# -- container ---------------------------------------------------------------------------


def test_header_layout_matches_format_doc():
    data, hdr = make_file()
    assert container.HEADER_SIZE == HEAD + 4
    assert data[:4] == b"SAD\x1a"
    assert unpack_field(data, "major") == 1
    assert unpack_field(data, "width") == W and unpack_field(data, "height") == H
    assert unpack_field(data, "channels") == 3 and unpack_field(data, "k") == 8
    assert unpack_field(data, "n_sites") == 5 and unpack_field(data, "flags") == 0
    for name in ("pos_frac_bits", "theta_bits", "a_bits", "r_bits", "t_bits", "col_bits"):
        assert unpack_field(data, name) == getattr(SPEC, name)
    for name in ("a_max", "r_min", "r_step", "t_min", "t_step"):
        assert unpack_field(data, name) == getattr(SPEC, name)
    plen = unpack_field(data, "payload_len")
    assert len(data) == HEAD + 4 + plen + 4
    assert struct.unpack_from("<I", data, HEAD)[0] == zlib.crc32(data[:HEAD])
    assert struct.unpack_from("<I", data, HEAD + 4 + plen)[0] == zlib.crc32(
        data[HEAD + 4 : HEAD + 4 + plen]
    )


@pytest.mark.parametrize("channels", [1, 3, 4])
def test_container_round_trip_is_exact(channels):
    rng = np.random.default_rng(channels)
    q = random_fields(rng, 40, W, H, channels, SPEC)
    payload = bitstream.encode_payload(q, SPEC.col_bits)
    hdr = container.Header(W, H, channels, 8, 40, SPEC, payload_bytes=len(payload))
    data = container.write(hdr, payload)
    got_hdr, got_payload = container.read(data)
    assert got_payload == payload
    assert got_hdr == hdr
    assert container.write(got_hdr, got_payload) == data  # bit-exact rewrite
    got_q = bitstream.decode_payload(got_payload, 40, channels, SPEC.col_bits)
    assert np.array_equal(rows(got_q), rows(q))


def test_header_floats_are_stored_as_float32():
    spec = QuantSpec()  # t_step = 0.2 is not exact in float32
    payload = bitstream.encode_payload(
        random_fields(np.random.default_rng(1), 3, W, H, 3, spec), spec.col_bits
    )
    data = container.write(container.Header(W, H, 3, 8, 3, spec), payload)
    got, _ = container.read(data)
    for name in ("a_max", "r_min", "r_step", "t_min", "t_step"):
        assert getattr(got.spec, name) == float(np.float32(getattr(spec, name)))


HEADER_CASES = [
    ({"width": 0}, "invalid dimensions"),
    ({"height": 0}, "invalid dimensions"),
    ({"width": 0, "height": 0}, "invalid dimensions"),
    ({"width": 65535, "height": 65535}, "too large"),
    ({"width": 4097, "height": 65535, "pos_frac_bits": 0}, "too large"),
    ({"channels": 0}, "channel"),
    ({"channels": 2}, "channel"),
    ({"channels": 5}, "channel"),
    ({"channels": 255}, "channel"),
    ({"k": 0}, "K"),
    ({"k": 33}, "K"),
    ({"k": 255}, "K"),
    ({"n_sites": 0}, "site count"),
    ({"n_sites": (1 << 22) + 1}, "site count"),
    ({"n_sites": 0xFFFFFFFF}, "site count"),
    ({"flags": 1}, "flags"),
    ({"flags": 0x80}, "flags"),
    ({"payload_len": (1 << 30) + 1}, "payload too large"),
    ({"payload_len": 0xFFFFFFFF}, "payload too large"),
    ({"pos_frac_bits": 5}, "quantization"),
    ({"pos_frac_bits": 255}, "quantization"),
    ({"theta_bits": 0}, "quantization"),
    ({"theta_bits": 9}, "quantization"),
    ({"a_bits": 0}, "quantization"),
    ({"a_bits": 9}, "quantization"),
    ({"r_bits": 0}, "quantization"),
    ({"r_bits": 9}, "quantization"),
    ({"t_bits": 0}, "quantization"),
    ({"t_bits": 9}, "quantization"),
    ({"col_bits": 0}, "quantization"),
    ({"col_bits": 9}, "quantization"),
    ({"col_bits": 255}, "quantization"),
    ({"a_max": math.nan}, "quantization"),
    ({"a_max": -1.0}, "quantization"),
    ({"a_max": 0.0}, "quantization"),
    ({"a_max": -0.0}, "quantization"),
    ({"a_max": math.inf}, "quantization"),
    ({"a_max": 16.5}, "quantization"),
    ({"r_step": math.nan}, "quantization"),
    ({"r_step": 0.0}, "quantization"),
    ({"r_step": -0.5}, "quantization"),
    ({"r_step": 64.5}, "quantization"),
    ({"r_step": math.inf}, "quantization"),
    ({"t_min": math.nan}, "quantization"),
    ({"t_min": -16.5}, "quantization"),
    ({"t_min": 32.5}, "quantization"),
    ({"t_min": -math.inf}, "quantization"),
    ({"t_step": math.nan}, "quantization"),
    ({"t_step": 0.0}, "quantization"),
    ({"t_step": -0.25}, "quantization"),
    ({"t_step": 4.5}, "quantization"),
    ({"t_step": math.inf}, "quantization"),
    ({"t_min": 32.0, "t_step": 4.0}, "log-temperature grid reaches 284"),  # t_bits 6
    ({"t_min": 28.0, "t_step": 4.0, "t_bits": 4}, "log-temperature grid reaches 88"),
    ({"t_min": 7.0, "t_step": 1.0}, "at most 56"),  # t_max 70: finite e^t, logits < -1e30
    ({"t_min": 0.0, "t_step": 0.25, "t_bits": 8}, "reaches 63.75"),
    ({"n_sites": 1, "channels": 1, "payload_len": 587}, "payload too large for 1 sites"),
    ({"n_sites": 1 << 22, "channels": 4, "payload_len": 50528306}, "payload too large"),
    ({"width": 32769, "pos_frac_bits": 1}, "position precision"),
    ({"width": 16, "height": 8193, "pos_frac_bits": 3}, "position precision"),
    ({"width": 4097, "pos_frac_bits": 4}, "position precision"),
]


@pytest.mark.parametrize("fields,match", HEADER_CASES, ids=[str(c[0]) for c in HEADER_CASES])
def test_header_field_out_of_limits_is_refused(fields, match):
    data, _ = make_file()
    assert_refused(patch(data, **fields), match)
    with pytest.raises(SadFormatError, match=match):
        container.read_header(patch(data, **fields))


ACCEPTED_CASES = [
    {"width": 1, "height": 1},
    {"width": 65535, "height": 1, "pos_frac_bits": 0},
    {"width": 4096, "height": 65535, "pos_frac_bits": 0},
    {"width": 32768, "height": 16, "pos_frac_bits": 1},
    {"width": 4096, "height": 16, "pos_frac_bits": 4},
    {"channels": 1},
    {"channels": 4},
    {"k": 1},
    {"k": 32},
    {"n_sites": 1 << 22, "payload_len": 1 << 19},
    {"minor": 255},
    {"theta_bits": 8, "a_bits": 8, "r_bits": 8, "t_bits": 8, "col_bits": 7, "t_step": 0.125},
    {"theta_bits": 1, "a_bits": 1, "r_bits": 1, "t_bits": 1, "col_bits": 1},
    {"a_max": 16.0, "r_step": 64.0, "r_min": 4096.0, "t_min": 28.0, "t_step": 4.0, "t_bits": 3},
    {"r_min": -4096.0, "t_min": 32.0, "t_step": 0.375, "t_bits": 6},  # t_max 55.625
    {"a_max": 1e-3, "r_step": 1e-3, "t_min": -16.0, "t_step": 1e-3},
    {"n_sites": 1, "channels": 1, "payload_len": 586},  # FORMAT.md: the bound for one site
    {"n_sites": 1 << 22, "channels": 4, "payload_len": 50528305},  # and for the most sites
]


@pytest.mark.parametrize("fields", ACCEPTED_CASES, ids=[str(c) for c in ACCEPTED_CASES])
def test_header_limits_are_not_too_strict(fields):
    """Values the format documents as valid pass header validation."""
    data, _ = make_file()
    hdr = container.read_header(patch(data, **fields))
    for name, value in fields.items():
        attr = {
            "k": "k",
            "n_sites": "n_sites",
            "width": "width",
            "height": "height",
            "channels": "channels",
            "payload_len": "payload_bytes",
        }.get(name)
        if attr:
            assert getattr(hdr, attr) == value
        elif name == "minor":
            assert hdr.version == (1, value)
        else:
            assert getattr(hdr.spec, name) == pytest.approx(value, rel=1e-6)


def test_unknown_major_version():
    data, _ = make_file()
    for major in (0, 2, 255):
        msg = assert_refused(patch(data, major=major), "unsupported .sad version")
        assert f"{major}." in msg


def test_newer_minor_version_is_read():
    data, hdr = make_file()
    got, payload = container.read(patch(data, minor=3))
    assert got.version == (1, 3)
    assert payload == container.read(data)[1]


def test_bad_magic():
    data, _ = make_file()
    assert_refused(b"PNG\x1a" + data[4:], "not a .sad file")
    assert_refused(b"", "not a .sad file")


def assert_every_bit_flip_refused(data: bytes) -> int:
    """Flip each bit of data in turn; every copy must be refused. Returns the flip count."""
    decoder.parse(data)  # the intact file parses
    for pos in range(len(data)):
        for bit in range(8):
            bad = bytearray(data)
            bad[pos] ^= 1 << bit
            with pytest.raises(SadFormatError):
                decoder.parse(bytes(bad))
    return 8 * len(data)


def test_every_single_bit_flip_is_detected():
    """Both CRCs together cover every byte: any one flipped bit anywhere is refused."""
    data, _ = make_file()
    assert len(data) <= 400
    assert_every_bit_flip_refused(data)


def test_every_truncation_is_detected():
    data, _ = make_file()
    for length in range(len(data)):
        with pytest.raises(SadFormatError):
            decoder.parse(data[:length])


def test_trailing_bytes_are_refused():
    data, _ = make_file()
    for extra in (b"\0", b"\xff" * 4, data):
        assert_refused(data + extra, "after the payload")


def test_payload_checksum_mismatch_message():
    data, _ = make_file()
    bad = bytearray(data)
    bad[HEAD + 10] ^= 0x10
    assert_refused(bytes(bad), "payload checksum")
    bad = bytearray(data)
    bad[6] ^= 0x01
    assert_refused(bytes(bad), "header checksum")


# -- payloads that pass the CRCs but are still wrong -------------------------------------


def wrap(payload: bytes, n: int, channels: int = 1, spec: QuantSpec = SPEC) -> bytes:
    """A file with a correct header and CRCs around an arbitrary payload."""
    hdr = container.Header(W, H, channels, 8, n, spec, payload_bytes=len(payload))
    return container.write(hdr, payload)


def frames_payload(frames: list[bytes], flags: int = 0) -> bytes:
    out = bytes([flags])
    for f in frames:
        out += bitstream._varint(len(f))
    return out + b"".join(frames)


def small_frames(n: int, channels: int) -> list[bytes]:
    cctx = _magicless()
    return [cctx.compress(bytes(n)) for _ in range(bitstream.n_planes(channels))]


def test_crafted_payloads_are_refused():
    n, ch = 4, 1
    good = frames_payload(small_frames(n, ch))
    decoder.parse(wrap(good, n, ch))  # the crafted reference payload itself is valid
    assert_refused(wrap(good[:-1], n, ch), "corrupt")  # sizes no longer add up
    assert_refused(wrap(good + b"\0", n, ch), "corrupt")
    assert_refused(wrap(b"\0", n, ch), "corrupt")  # no stream table
    assert_refused(wrap(bytes([0x02]) + good[1:], n, ch), "corrupt")  # unknown flag bit
    short = _magicless().compress(bytes(n - 1))
    frames = small_frames(n, ch)
    frames[5] = short
    assert_refused(wrap(frames_payload(frames), n, ch), "corrupt")  # a short stream
    frames = small_frames(n, ch)
    frames[2] = b"\x28\xb5\x2f\xfd garbage"
    assert_refused(wrap(frames_payload(frames), n, ch), "corrupt")  # not zstd


def test_out_of_grid_indices_are_refused():
    rng = np.random.default_rng(5)
    f = 1 << SPEC.pos_frac_bits
    for field, value in (("x", W * f), ("y", H * f), ("x", 65535)):
        q = random_fields(rng, 6, W, H, 3, SPEC)
        q[field][2] = value
        data = wrap(bitstream.encode_payload(q, SPEC.col_bits), 6, 3)
        assert_refused(data, "positions out of range")
    spec = QuantSpec(theta_bits=5, a_bits=4, r_bits=6, t_bits=3, col_bits=4)
    for field, name in (
        ("theta", "directions"),
        ("a", "anisotropy"),
        ("r", "radii"),
        ("t", "temperatures"),
    ):
        q = random_fields(rng, 6, W, H, 1, spec)
        q[field][3] = 1 << getattr(spec, field + "_bits")
        data = wrap(bitstream.encode_payload(q, spec.col_bits), 6, 1, spec)
        assert_refused(data, name)
    # Colour planes, crafted by hand (the encoder masks colours into their planes).
    cctx = _magicless()
    n = 2
    base = [bytes(n)] * (bitstream.GAP_BYTES + len(bitstream.FIELDS))
    gray = [bytes([3, 1 << spec.col_bits])]  # index 16 with 4 colour bits
    assert_refused(
        wrap(frames_payload([cctx.compress(p) for p in base + gray]), n, 1, spec), "colour"
    )
    # Y = 15, Co = -1, Cg = 0 is blue 16: a YCoCg triple outside the RGB cube.
    rgb = [bytes([15, 15]), bytes([0, 31]), bytes([0, 0])]
    assert_refused(
        wrap(frames_payload([cctx.compress(p) for p in base + rgb]), n, 3, spec), "colour"
    )
    rgb = [bytes([15, 15]), bytes([0, 0]), bytes([0, 0])]
    _, params = decoder.parse(
        wrap(frames_payload([cctx.compress(p) for p in base + rgb]), n, 3, spec)
    )
    assert np.array_equal(params[:, 6:], np.ones((n, 3), np.float32))


# Sites of the bomb files: enough that a 2 KB frame is within the payload bound (a frame
# for one site may take at most 64 bytes), so the frame itself is what gets refused.
BOMB_SITES = 256


def bomb_payload(frame0: bytes, n: int = BOMB_SITES, channels: int = 1) -> bytes:
    frames = small_frames(n, channels)
    frames[0] = frame0
    return frames_payload(frames)


def refused_peak(data: bytes, match: str) -> int:
    """Check that data is refused; return the peak memory the reader allocated doing so."""
    tracemalloc.start()
    try:
        assert_refused(data, match)
        return tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()


def test_decompression_bomb_without_content_size_is_refused():
    """Header says 256 sites; plane 0 decompresses to 16 MiB."""
    big = _magicless(1).compress(bytes(16 << 20))
    data = wrap(bomb_payload(big), BOMB_SITES)
    assert len(data) < 2000
    peak = refused_peak(data, "corrupt")
    assert peak < 4 << 20, f"a {len(data)}-byte file made the reader allocate {peak} bytes"


def test_decompression_bomb_with_content_size_is_refused_without_allocating_it():
    """Header says 256 sites; plane 0 is a zstd frame that declares (and holds) 64 MiB.

    python-zstandard ignores max_output_size when the frame header declares its content
    size, so an output cap alone does not stop this frame from being inflated in full."""
    big = zstandard.ZstdCompressor(
        compression_params=zstandard.ZstdCompressionParameters.from_level(
            1, format=zstandard.FORMAT_ZSTD1_MAGICLESS, write_content_size=1
        )
    ).compress(bytes(64 << 20))
    data = wrap(bomb_payload(big), BOMB_SITES)
    assert len(data) < 4000
    peak = refused_peak(data, "corrupt")
    assert peak < 8 << 20, f"a {len(data)}-byte file made the reader allocate {peak} bytes"


def test_frame_declaring_a_huge_content_size_is_refused():
    """A 20-byte zstd frame that declares 2^40 bytes of content must be a format error
    (not a MemoryError, nor an attempt to allocate a terabyte)."""
    frame = struct.pack("<I", 0xFD2FB528) + bytes([0xE0]) + struct.pack("<Q", 1 << 40)
    frame += (1 | (1 << 1) | (1000 << 3)).to_bytes(3, "little") + b"\0"  # last RLE block
    assert_refused(wrap(bomb_payload(frame), BOMB_SITES), "corrupt")


def test_a_site_needs_a_payload_bit():
    """A 1.6 KB file whose one frame inflates to 2^22 all-zero sites is refused by its header,
    before anything is inflated (found while fuzzing: it took 1.1 GB and 10 s to decode)."""
    n, ch = 1 << 22, 4
    frame = _magicless(19).compress(bytes(bitstream.n_planes(ch) * n))
    # Written for 256 sites (the payload bound allows them this frame), then patched.
    data = patch(wrap(bytes([bitstream.SINGLE_FRAME]) + frame, 256, ch), n_sites=n)
    assert len(data) < 2000
    assert refused_peak(data, "sites cannot fit in") < 1 << 20
    good, _ = make_file()
    plen = unpack_field(good, "payload_len")
    assert container.read_header(patch(good, n_sites=8 * plen)).n_sites == 8 * plen
    with pytest.raises(SadFormatError, match="sites cannot fit"):
        container.read_header(patch(good, n_sites=8 * plen + 1))


def test_decode_memory_is_bounded_before_allocating():
    """A valid header declaring 16384x16384 at K = 32 (64 GiB of top-K maps) is a SadError;
    found while fuzzing: the failed allocation crashed the process inside Taichi."""
    data, _ = make_file()
    huge = patch(data, width=16384, height=16384, k=32)
    hdr, _ = container.read(huge)
    with pytest.raises(SadError, match=r"needs 65\.5 GiB to decode at K = 32"):
        decoder.output_size(hdr, None, None, None)
    with pytest.raises(SadError, match="GiB to decode"):
        sadcodec.decode(huge)
    assert sadcodec.decode(huge, width=32).shape == (32, 32, 3)  # smaller is fine
    ok, _ = container.read(patch(data, width=4096, height=4096))  # 1.6 GiB at K = 8
    assert decoder.output_size(ok, None, None, None) == (4096, 4096)
    # At small K the tile-culling path's worst case (100 bytes a pixel: a level's slots,
    # 8 a pixel of index and bound, and the parent's slots of indices) sets the bound.
    assert decoder.bytes_per_pixel(8, 3) == 100 and decoder.bytes_per_pixel(32, 3) == 262
    big, _ = container.read(patch(data, width=8000, height=7000, k=4))  # 5.2 GiB
    with pytest.raises(SadError, match=r"needs 5\.2 GiB to decode at K = 4"):
        decoder.output_size(big, None, None, None)


# -- every byte is read, codes stay in order, logits stay finite (issue 24) ----------------

GOLDEN = os.path.join(os.path.dirname(os.path.abspath(__file__)), "golden")


def rewrap(data: bytes, payload: bytes) -> bytes:
    """A file's header (and metadata, if any) around another payload, with payload_len
    and the CRCs fixed."""
    head = bytearray(data[:HEAD])
    struct.pack_into("<I", head, FIELDS["payload_len"][0], len(payload))
    head += struct.pack("<I", zlib.crc32(head))
    if unpack_field(data, "flags") & 1:  # FORMAT.md, "Metadata": length, entries, CRC
        (length,) = struct.unpack_from("<I", data, HEAD + 4)
        head += data[HEAD + 4 : HEAD + 12 + length]
    return bytes(head) + payload + struct.pack("<I", zlib.crc32(payload))


def split_streams(payload: bytes, channels: int) -> list[bytes]:
    pos, sizes = 1, []
    for _ in range(bitstream.n_planes(channels)):
        size, pos = bitstream._read_varint(payload, pos)
        sizes.append(size)
    frames = []
    for size in sizes:
        frames.append(payload[pos : pos + size])
        pos += size
    assert pos == len(payload)
    return frames


def test_bytes_after_a_zstd_frame_are_refused():
    """Each frame must fill its region: padding after the single frame, or inside a split
    stream whose declared size was grown to cover it, used to be skipped silently."""
    n, ch = 4, 1
    frame = _magicless().compress(bytes(bitstream.n_planes(ch) * n))
    single = bytes([bitstream.SINGLE_FRAME]) + frame
    decoder.parse(wrap(single, n, ch))
    for junk in (b"\0", bytes(16), b"\xff" * 3, frame):  # the last: a second whole frame
        msg = assert_refused(wrap(single + junk, n, ch), "bytes after the zstd frame")
        assert f"{len(junk)} bytes after the zstd frame of payload" in msg
    for i in (0, 4, bitstream.n_planes(ch) - 1):
        frames = small_frames(n, ch)
        frames[i] += b"JUNK"
        assert_refused(
            wrap(frames_payload(frames), n, ch), f"4 bytes after the zstd frame of stream {i}"
        )


@pytest.mark.parametrize("name", sorted(f for f in os.listdir(GOLDEN) if f.endswith(".sad")))
def test_goldens_with_bytes_inside_the_last_frame_are_refused(name):
    with open(os.path.join(GOLDEN, name), "rb") as f:
        data = f.read()
    hdr, payload = container.read(data)
    payload = bytes(payload)
    if payload[0] & bitstream.SINGLE_FRAME:
        grown = payload + bytes(16)
    else:
        frames = split_streams(payload, hdr.channels)
        frames[-1] += bytes(16)
        grown = frames_payload(frames, payload[0])
    assert_refused(rewrap(data, grown), "16 bytes after the zstd frame")
    decoder.parse(rewrap(data, payload))  # the rewrapping itself is sound


def format_doc_bound(size: int) -> int:
    """zstd's worst case for size bytes, as docs/FORMAT.md ("Payload bound") writes it."""
    return size + size // 256 + ((131072 - size) // 2048 if size < 131072 else 0)


def format_doc_max_payload(n: int, channels: int) -> int:
    p = 8 + channels
    b = format_doc_bound(n)
    return max(1 + p * (len(bitstream._varint(b)) + b), 1 + format_doc_bound(p * n))


def test_payload_bound_is_zstd_worst_case_and_documented():
    rng = np.random.default_rng(24)
    cctx = bitstream._compressor()  # the writer's own settings, level 22
    for size in (0, 1, 2, 100, 4096, 131071, 131072, 131073, 400000):
        frame = cctx.compress(rng.integers(0, 256, size, dtype=np.uint8).tobytes())
        assert len(frame) <= bitstream.compress_bound(size) == format_doc_bound(size)
    for n in (1, 2, 100, 5000, 1 << 17, 1 << 22):
        for ch in container.CHANNELS:
            assert bitstream.max_payload_bytes(n, ch) == format_doc_max_payload(n, ch)
    assert bitstream.max_payload_bytes(1, 1) == 586
    assert bitstream.max_payload_bytes(1 << 22, 4) == 50528305
    # Random (incompressible) sites written by the encoder stay under the bound.
    for n in (1, 3, 700):
        q = random_fields(rng, n, W, H, 4, SPEC)
        payload = bitstream.encode_payload(q, SPEC.col_bits)
        assert len(payload) <= bitstream.max_payload_bytes(n, 4)


def test_padding_after_a_frame_is_refused_without_copying_the_payload():
    """A frame then zeros up to the payload bound: refused after one decompression and a
    pass over the frame, the payload never copied (it used to be copied twice, and a
    payload_len of 2^30 was allowed: 3.1 GB for a 1 GiB file)."""
    n, ch = 1 << 20, 1
    p = bitstream.n_planes(ch)
    frame = _magicless(1).compress(bytes(p * n))
    plen = bitstream.max_payload_bytes(n, ch)
    payload = bytes([bitstream.SINGLE_FRAME]) + frame + bytes(plen - 1 - len(frame))
    hdr = container.Header(2048, 2048, ch, 8, n, QuantSpec(pos_frac_bits=0))
    data = container.write(hdr, payload)
    got = container.read(data)[1]
    assert isinstance(got, memoryview) and got.obj is data and got.readonly
    peak = refused_peak(data, f"{plen - 1 - len(frame)} bytes after the zstd frame of payload")
    # The frame's content (p * n bytes) once, and at most as much again from the pass that
    # finds its end; each copy of the payload would add another plen.
    assert peak < 2.2 * p * n, f"peak {peak / 2**20:.1f} MiB for a {plen / 2**20:.1f} MiB payload"


def gap_planes(gaps: list[int]) -> list[bytes]:
    """The 4 gap byte planes (most significant first) of u32 gaps."""
    return [bytes((g >> (8 * b)) & 0xFF for g in gaps) for b in range(3, -1, -1)]


def test_morton_codes_may_not_wrap_past_2_32():
    """Gaps summing past 2^32 used to wrap to a smaller code (site 1 at (3, 2) after site 0
    at (50, 50)), a site out of the required ascending order."""
    m = bitstream.morton(np.array([50, 3]), np.array([50, 2]))
    a, b = int(m[0]), int(m[1])
    assert b < a
    n, ch = 2, 1
    rest = [bytes(n)] * len(bitstream.FIELDS) + [bytes([63, 0])]
    cctx = _magicless()

    def payload(gaps):
        return frames_payload([cctx.compress(x) for x in gap_planes(gaps) + rest])

    spec = QuantSpec(pos_frac_bits=2)
    assert_refused(wrap(payload([a, (1 << 32) - a + b]), n, ch, spec), "out of Morton order")
    _, params = decoder.parse(wrap(payload([b, a - b]), n, ch, spec))  # in order: fine
    assert params[:, 0].tolist() == [0.75, 12.5]
    # At the edge of the code range: a sum of 2^32 - 1 is the corner (65535, 65535), which
    # the grid check then refuses; 2^32 wraps and is refused as out of order.
    corner = bitstream.decode_payload(payload([(1 << 32) - 2, 1]), n, ch, spec.col_bits)
    assert corner["x"].tolist() == [65534, 65535] and corner["y"].tolist() == [65535, 65535]
    assert_refused(wrap(payload([(1 << 32) - 2, 1]), n, ch, spec), "positions out of range")
    with pytest.raises(SadFormatError, match="out of Morton order"):
        bitstream.decode_payload(payload([(1 << 32) - 1, 1]), n, ch, spec.col_bits)


# The extreme grids the header allows: t_max at its limit of 56, the widest anisotropy,
# radii from -4096 to 12224 px.
EXTREME = QuantSpec(
    pos_frac_bits=4,
    theta_bits=8,
    a_bits=8,
    a_max=16.0,
    r_bits=8,
    r_min=-4096.0,
    r_step=64.0,
    t_bits=3,
    t_min=28.0,
    t_step=4.0,
    col_bits=7,
)


@pytest.mark.parametrize("width,height", [(1, 1), (7, 5), (64, 48)])
def test_extreme_allowed_grids_render_defined_pixels(width, height):
    """Every pixel of a file at the header's limits blends its sites: all sites white, so
    any pixel that found no site (a logit overflowed, or fell below the kernels' -1e30
    sentinel) would be black (before the t_max rule, t up to 284 rendered all black)."""
    assert EXTREME.t_max == quantize.T_MAX_LIMIT
    rng = np.random.default_rng(width)
    n, ch = 40, 1
    q = random_fields(rng, n, width, height, ch, EXTREME)
    q["t"][:] = (1 << EXTREME.t_bits) - 1  # the hottest sites
    q["a"][: n // 2] = (1 << EXTREME.a_bits) - 1  # the most anisotropic
    q["col"][:] = (1 << EXTREME.col_bits) - 1
    top = (1 << EXTREME.r_bits) - 1
    # All radii -4096 (the most negative logits: this case renders black pixels from
    # t_max 62 on at 1x1, 64 at 7x5), all 12224 (the most positive), or both.
    for radii in ([0], [top], [0, top]):
        q["r"][:] = np.resize(radii, n)
        hdr = container.Header(width, height, ch, 8, n, EXTREME)
        data = container.write(hdr, bitstream.encode_payload(q, EXTREME.col_bits))
        _, params = decoder.parse(data)
        assert params[:, 5].max() == 56.0
        for kwargs in ({}, {"width": 33, "height": 17}):
            img = sadcodec.decode(data, **kwargs)
            assert (img == 255).all(), f"{np.count_nonzero(img != 255)} undefined pixels"


# -- bitstream ---------------------------------------------------------------------------


@pytest.mark.parametrize(
    "channels,col_bits,smooth",
    [(1, 6, False), (3, 6, False), (3, 6, True), (4, 7, False), (3, 1, False), (3, 7, True)],
)
def test_payload_round_trip(channels, col_bits, smooth):
    rng = np.random.default_rng(100 * channels + col_bits)
    spec = QuantSpec(col_bits=col_bits)
    n = 200
    q = random_fields(rng, n, 64, 48, channels, spec)
    # Extremes and exact duplicates (equal Morton codes) must survive too.
    f = 1 << spec.pos_frac_bits
    q["x"][:3] = [0, 64 * f - 1, 0]
    q["y"][:3] = [0, 48 * f - 1, 48 * f - 1]
    for key in q:
        q[key][10:13] = q[key][9]
    q["col"][20] = 0
    q["col"][21] = (1 << col_bits) - 1
    if smooth:  # colour a smooth function of position: delta-coding should win somewhere
        ramp = (q["x"] + q["y"]) * ((1 << col_bits) - 1) // (64 * f + 48 * f)
        q["col"][:] = ramp[:, None]
    payload = bitstream.encode_payload(q, col_bits)
    got = bitstream.decode_payload(payload, n, channels, col_bits)
    assert set(got) == set(q)
    for key in q:
        assert len(got[key]) == n
    assert np.array_equal(rows(got), rows(q))
    # Stored in Morton order, as documented.
    codes = bitstream.morton(got["x"], got["y"])
    assert (np.diff(codes) >= 0).all()
    # Decoding is deterministic and encoding does not depend on the input order.
    perm = rng.permutation(n)
    shuffled = {k: v[perm] for k, v in q.items()}
    assert bitstream.encode_payload(shuffled, col_bits) == payload
    if smooth:
        assert payload[0] != 0, "no colour plane was delta-coded for smooth colours"


def test_ycocg_is_lossless_for_every_colour():
    for col_bits in (1, 4, 7):
        m = 1 << col_bits
        r, g, b = np.meshgrid(np.arange(m), np.arange(m), np.arange(m), indexing="ij")
        col = np.column_stack([r.ravel(), g.ravel(), b.ravel()])
        enc = bitstream.to_ycocg(col, col_bits)
        for c in range(3):
            assert enc[:, c].min() >= 0
            assert enc[:, c].max() <= bitstream.plane_mask(c, 3, col_bits)
        assert np.array_equal(bitstream.from_ycocg(enc, col_bits), col)


# -- quantizer ---------------------------------------------------------------------------


def metric(theta: np.ndarray, a: np.ndarray) -> np.ndarray:
    """G = e^a u u^T + e^-a (I - u u^T), (N, 2, 2), float64."""
    u = np.stack([np.cos(theta), np.sin(theta)], axis=-1).astype(np.float64)
    uu = u[:, :, None] * u[:, None, :]
    ea = np.exp(np.asarray(a, np.float64))[:, None, None]
    return ea * uu + (np.eye(2) - uu) / ea


def in_range_params(rng, n: int, width: int, height: int, spec: QuantSpec, channels: int = 3):
    f = 1 << spec.pos_frac_bits
    p = np.empty((n, 6 + channels), np.float32)
    p[:, 0] = rng.uniform(0, width - 1.0 / f, n)
    p[:, 1] = rng.uniform(0, height - 1.0 / f, n)
    p[:, 2] = rng.uniform(-2 * np.pi, 4 * np.pi, n)
    p[:, 3] = rng.uniform(-spec.a_max, spec.a_max, n)
    p[:, 4] = rng.uniform(0, spec.r_max, n)
    p[:, 5] = rng.uniform(spec.t_min, spec.t_max, n)
    p[:, 6:] = rng.uniform(0, 1, (n, channels))
    return p


SPECS = [
    QuantSpec(),
    QuantSpec(
        pos_frac_bits=0,
        theta_bits=8,
        a_bits=8,
        r_bits=5,
        r_step=1.5,
        t_bits=4,
        t_min=2.0,
        t_step=0.5,
        col_bits=7,
        a_max=2.5,
    ),
    QuantSpec(pos_frac_bits=4, theta_bits=3, a_bits=2, col_bits=2, t_min=-3.0, t_step=1.0),
]


@pytest.mark.parametrize("spec", SPECS)
def test_quantize_errors_within_half_a_step(spec):
    rng = np.random.default_rng(spec.theta_bits)
    n, w, h = 200, 64, 48
    p = in_range_params(rng, n, w, h, spec)
    q = quantize.quantize(p, spec, w, h)
    d = quantize.dequantize(q, spec)
    assert d.dtype == np.float32 and d.shape == p.shape
    f = 1 << spec.pos_frac_bits
    a_step = spec.a_max / ((1 << spec.a_bits) - 1)
    th_step = np.pi / (1 << spec.theta_bits)
    col_step = 1.0 / ((1 << spec.col_bits) - 1)
    eps = 1e-5
    assert np.abs(d[:, :2] - p[:, :2]).max() <= 0.5 / f + eps
    assert np.abs(d[:, 3] - np.abs(p[:, 3])).max() <= a_step / 2 + eps
    assert np.abs(d[:, 4] - p[:, 4]).max() <= spec.r_step / 2 + eps
    assert np.abs(d[:, 5] - p[:, 5]).max() <= spec.t_step / 2 + eps
    assert np.abs(d[:, 6:] - p[:, 6:]).max() <= col_step / 2 + eps
    # Direction: the metric is symmetric under theta + pi; a < 0 folds into theta + pi/2.
    want = np.mod(p[:, 2] + np.where(p[:, 3] < 0, np.pi / 2, 0), np.pi)
    diff = np.abs(np.mod(d[:, 2] - want + np.pi / 2, np.pi) - np.pi / 2)
    aniso = q["a"] > 0
    assert aniso.sum() > n // 2
    assert diff[aniso].max() <= th_step / 2 + eps
    assert (d[:, 2] >= 0).all() and (d[:, 2] < np.pi).all()
    assert (d[:, 3] >= 0).all()
    # The rendered metric: the folded, quantized site has (nearly) the original G.
    g0 = metric(p[:, 2], p[:, 3])
    g1 = metric(d[:, 2], d[:, 3])
    aa = np.abs(p[:, 3]).astype(np.float64)
    dth = np.where(aniso, th_step / 2, np.pi / 2)  # isotropic sites store theta 0
    bound = (np.exp(aa) - np.exp(-aa)) * dth + 2 * np.exp(aa + a_step) * (a_step / 2) + 1e-5
    err = np.abs(g1 - g0).max(axis=(1, 2))
    assert (err <= bound).all(), f"worst metric error {err.max()} vs bound {bound[err.argmax()]}"
    # Without the fold, negative-a sites would render a different metric.
    unfolded = metric(d[:, 2], np.where(p[:, 3] < 0, -d[:, 3], d[:, 3]))
    neg = p[:, 3] < -1.0
    assert neg.any()
    assert (np.abs(unfolded - g0).max(axis=(1, 2))[neg] > 0.5).all()


@pytest.mark.parametrize("spec", SPECS)
def test_quantize_is_a_projection(spec):
    """dequantize(quantize(.)) is idempotent: what the encoder fits is what it writes."""
    rng = np.random.default_rng(7)
    p = in_range_params(rng, 200, 64, 48, spec)
    q1 = quantize.quantize(p, spec, 64, 48)
    d1 = quantize.dequantize(q1, spec)
    q2 = quantize.quantize(d1, spec, 64, 48)
    for key in q1:
        assert np.array_equal(q1[key], q2[key]), key
    assert np.array_equal(quantize.roundtrip(d1, spec, 64, 48), d1)


def test_quantize_clamps_out_of_range_values():
    spec = QuantSpec()
    w, h = 32, 24
    p = np.array(
        [
            [-5, -5, 0, 9.0, -300, -20, -0.5, 1.5, 0.5],
            [w + 7, h + 7, 1, -9.0, 1e4, 1e3, 2.0, -1.0, 0.5],
            [w - 0.01, h - 0.01, 2, 0.0, 0, 0, 0, 0, 0],
        ],
        np.float32,
    )
    q = quantize.quantize(p, spec, w, h)
    f = 1 << spec.pos_frac_bits
    assert q["x"].min() >= 0 and q["x"].max() <= w * f - 1
    assert q["y"].min() >= 0 and q["y"].max() <= h * f - 1
    for key in ("theta", "a", "r", "t"):
        assert q[key].min() >= 0 and q[key].max() < 1 << getattr(spec, key + "_bits")
    assert q["col"].min() >= 0 and q["col"].max() < 1 << spec.col_bits
    d = quantize.dequantize(q, spec)
    assert d[0, 3] == pytest.approx(spec.a_max) and d[1, 3] == pytest.approx(spec.a_max)
    assert d[0, 4] == spec.r_min and d[1, 4] == pytest.approx(spec.r_max)
    assert d[0, 5] == pytest.approx(spec.t_min) and d[1, 5] == pytest.approx(spec.t_max)
    assert d[2, 3] == 0 and d[2, 2] == 0  # isotropic: direction stored as 0
    # The clamped fields pack into a valid file.
    payload = bitstream.encode_payload(q, spec.col_bits)
    data = container.write(container.Header(w, h, 3, 8, 3, spec), payload)
    _, params = decoder.parse(data)
    assert np.array_equal(quantize.roundtrip(params, spec, w, h), params)
