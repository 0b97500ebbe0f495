"""A structured view of .sad files, for the structure-aware fuzzer (bench/fuzz.py).

`parse` splits a valid file into its levels: header fields, header CRC, the metadata block
(version 1.1, kept as it is), payload flags, the varint size table, each zstd frame, the
payload CRC; `planes` decompresses the frames into
the byte planes and `sites` decodes those into integer site fields. Each level can be
edited and put back (`set_planes`, `site_planes`), and `SadFile.to_bytes` serialises the
result with a consistent payload_len and both CRCs unless a value was set on purpose.

Written from docs/FORMAT.md alone, not from sadcodec's reader, which is what the fuzzer
tests: the two agree on every valid file (bench/tests/test_fuzz.py checks that every pool
file parses and serialises back to the same bytes).
"""

from __future__ import annotations

import copy
import math
import struct
import zlib
from dataclasses import dataclass, field

import numpy as np
import zstandard

MAGIC = b"SAD\x1a"
HEADER = struct.Struct("<4sBBHHBBIBBBBfBffBffBI")
FIELDS = (
    "magic",
    "version_major",
    "version_minor",
    "width",
    "height",
    "channels",
    "k",
    "n_sites",
    "flags",
    "pos_frac_bits",
    "theta_bits",
    "a_bits",
    "a_max",
    "r_bits",
    "r_min",
    "r_step",
    "t_bits",
    "t_min",
    "t_step",
    "col_bits",
    "payload_len",
)
HEADER_SIZE = HEADER.size + 4  # the fields, then their CRC-32
TRAILER_SIZE = 4
# Largest value of each integer field's type (struct codes B, H, I after the magic).
TYPE_MAX = {
    name: {"B": 0xFF, "H": 0xFFFF, "I": 0xFFFFFFFF}[code]
    for name, code in zip(FIELDS[1:], HEADER.format.lstrip("<")[2:], strict=True)
    if code != "f"
}
FLOAT_FIELDS = ("a_max", "r_min", "r_step", "t_min", "t_step")
# The valid values of FORMAT.md's header table: integers (lo, hi) inclusive; floats
# (lo, hi, lo_open) with hi inclusive. Channels are 1, 3 or 4 within 1..4.
INT_RANGES = {
    "version_major": (1, 1),
    "version_minor": (0, 255),
    "width": (1, 65535),
    "height": (1, 65535),
    "channels": (1, 4),
    "k": (1, 32),
    "n_sites": (1, 1 << 22),
    "flags": (0, 1),
    "pos_frac_bits": (0, 4),
    "theta_bits": (1, 8),
    "a_bits": (1, 8),
    "r_bits": (1, 8),
    "t_bits": (1, 8),
    "col_bits": (1, 7),
    "payload_len": (0, 1 << 30),
}
FLOAT_RANGES = {
    "a_max": (0.0, 16.0, True),
    "r_min": (-4096.0, 4096.0, False),
    "r_step": (0.0, 64.0, True),
    "t_min": (-16.0, 32.0, False),
    "t_step": (0.0, 4.0, True),
}
CHANNELS = (1, 3, 4)
SINGLE_FRAME = 0x80
FLAG_METADATA = 0x01  # header flag bit 0: a metadata block follows the header CRC
GAP_BYTES = 4
SITE_FIELDS = ("theta", "a", "r", "t")
# Which header field gives the width in bits of each field plane.
FIELD_BITS = {"theta": "theta_bits", "a": "a_bits", "r": "r_bits", "t": "t_bits"}


def n_planes(channels: int) -> int:
    return GAP_BYTES + len(SITE_FIELDS) + channels


# The header with its floats as their bit patterns (see f32_bits).
HEADER_BITS = struct.Struct(HEADER.format.replace("f", "I"))
SMALLEST_NORMAL = 2.0**-126


def f32_bits(v: float) -> int:
    """The binary32 bits of v, rounded to nearest. Subnormals are converted in integer
    arithmetic: once Taichi has started, the CPU flushes subnormal results to zero, and
    struct.pack("<f", 1e-45) gives 0.0 in that process (ftz)."""
    if math.isfinite(v) and v != 0 and abs(v) < SMALLEST_NORMAL:
        return (0x80000000 if math.copysign(1, v) < 0 else 0) | round(abs(v) * 2.0**149)
    return struct.unpack("<I", struct.pack("<f", v))[0]


def f32_value(bits: int) -> float:
    if bits & 0x7F800000 == 0:  # zero or subnormal: exact in double arithmetic
        return math.copysign((bits & 0x7FFFFF) * 2.0**-149, -1 if bits >> 31 else 1)
    return struct.unpack("<f", struct.pack("<I", bits))[0]


def f32(v: float) -> float:
    """v as the float32 the header stores."""
    return f32_value(f32_bits(v))


# ---------------------------------------------------------------- varints and frames


def varint(v: int) -> bytes:
    """LEB128, least significant 7 bits first."""
    out = bytearray()
    while True:
        b = v & 0x7F
        v >>= 7
        out.append(b | (0x80 if v else 0))
        if not v:
            return bytes(out)


def read_varint(buf: bytes, pos: int) -> tuple[int, int]:
    v = shift = 0
    while True:
        if pos >= len(buf) or shift > 63:
            raise ValueError("bad varint")
        b = buf[pos]
        pos += 1
        v |= (b & 0x7F) << shift
        shift += 7
        if not b & 0x80:
            return v, pos


_COMPRESSORS: dict[tuple[int, bool, bool], zstandard.ZstdCompressor] = {}


def compress(data: bytes, level: int = 3, content_size: bool = False, checksum: bool = False):
    """One magicless zstd frame of data, by default with the writer's frame options (no
    content size, no checksum, no dictionary id); the level changes only the blocks."""
    key = (level, content_size, checksum)
    if key not in _COMPRESSORS:
        params = zstandard.ZstdCompressionParameters.from_level(
            level,
            format=zstandard.FORMAT_ZSTD1_MAGICLESS,
            write_content_size=int(content_size),
            write_checksum=int(checksum),
            write_dict_id=0,
        )
        _COMPRESSORS[key] = zstandard.ZstdCompressor(compression_params=params)
    return _COMPRESSORS[key].compress(bytes(data))


def decompress(frame: bytes, size: int) -> bytes:
    """A frame of a valid file back to its size bytes (the pool files only)."""
    dctx = zstandard.ZstdDecompressor(format=zstandard.FORMAT_ZSTD1_MAGICLESS)
    out = dctx.decompress(frame, max_output_size=size)
    if len(out) != size:
        raise ValueError(f"frame holds {len(out)} bytes, not {size}")
    return out


def frame_header(
    window_log: int | None = None, content_size: int | None = None, checksum: bool = False
) -> bytes:
    """A magicless frame header (RFC 8878 3.1.1.1): single segment when window_log is None
    (then content_size is required), else a window descriptor of 2^window_log bytes."""
    single = window_log is None
    if content_size is None:
        fcs_flag, fcs = 0, b""
    elif single and content_size < 256:
        fcs_flag, fcs = 0, bytes([content_size])
    elif 256 <= content_size < 65536 + 256:
        fcs_flag, fcs = 1, struct.pack("<H", content_size - 256)
    elif content_size < 1 << 32:
        fcs_flag, fcs = 2, struct.pack("<I", content_size)
    else:
        fcs_flag, fcs = 3, struct.pack("<Q", content_size & (2**64 - 1))
    if single and content_size is None:
        raise ValueError("a single-segment frame declares its content size")
    descriptor = fcs_flag << 6 | int(single) << 5 | int(checksum) << 2
    window = b"" if single else bytes([((window_log - 10) & 0x1F) << 3])
    return bytes([descriptor]) + window + fcs


def block(kind: str, content: bytes, last: bool, size: int | None = None) -> bytes:
    """A block: "raw" (content as is), "rle" (content[0] repeated size times), "reserved"
    (block type 3) or "compressed" (content taken as compressed data, unchecked)."""
    code = {"raw": 0, "rle": 1, "compressed": 2, "reserved": 3}[kind]
    if size is None:
        size = len(content)
    head = int(last) | code << 1 | (size & 0x1FFFFF) << 3
    return head.to_bytes(3, "little") + (content[:1] if kind == "rle" else content)


# ---------------------------------------------------------------- the file


@dataclass
class SadFile:
    """A .sad file by levels. A None header payload_len or CRC is computed when
    serialising; any other value is written as it is (a deliberate inconsistency)."""

    header: dict
    frames: list[bytes]
    flags: int = 0
    split: bool = True
    table: bytes | None = None  # split mode's size table; None: varints of the frame sizes
    extra: bytes = b""  # payload bytes after the last frame
    header_crc: int | None = None
    payload_crc: int | None = None
    tail: bytes = b""  # bytes after the payload CRC
    metadata: bytes = b""  # the metadata block as is: length, entries, CRC (FORMAT.md)
    raw_payload: bytes | None = None  # when set, the payload as is (flags, table, frames unused)
    notes: list[str] = field(default_factory=list)

    def copy(self) -> SadFile:
        return copy.deepcopy(self)

    @property
    def n(self) -> int:
        return self.header["n_sites"]

    @property
    def channels(self) -> int:
        return self.header["channels"]

    def size_table(self) -> bytes:
        if self.table is not None:
            return self.table
        return b"".join(varint(len(f)) for f in self.frames)

    def payload(self) -> bytes:
        if self.raw_payload is not None:
            return self.raw_payload
        table = self.size_table() if self.split else b""
        return bytes([self.flags & 0xFF]) + table + b"".join(self.frames) + self.extra

    def header_bytes(self, payload_len: int) -> bytes:
        values = dict(self.header)
        if values["payload_len"] is None:
            values["payload_len"] = payload_len
        for name in FLOAT_FIELDS:
            values[name] = f32_bits(values[name])
        return HEADER_BITS.pack(*(values[f] for f in FIELDS))

    def to_bytes(self) -> bytes:
        payload = self.payload()
        head = self.header_bytes(len(payload))
        hcrc = zlib.crc32(head) if self.header_crc is None else self.header_crc
        pcrc = zlib.crc32(payload) if self.payload_crc is None else self.payload_crc
        return (
            head
            + struct.pack("<I", hcrc)
            + self.metadata
            + payload
            + struct.pack("<I", pcrc)
            + self.tail
        )


def parse(data: bytes) -> SadFile:
    """Split a valid file into its levels; raises ValueError on anything invalid (this is
    for the fuzzer's starting files, not a reader)."""
    if len(data) < HEADER_SIZE + TRAILER_SIZE or data[:4] != MAGIC:
        raise ValueError("not a .sad file")
    head = data[: HEADER.size]
    (hcrc,) = struct.unpack_from("<I", data, HEADER.size)
    if zlib.crc32(head) != hcrc:
        raise ValueError("header CRC")
    header = dict(zip(FIELDS, HEADER_BITS.unpack(head), strict=True))
    for name in FLOAT_FIELDS:
        header[name] = f32_value(header[name])
    plen = header["payload_len"]
    start = HEADER_SIZE
    if header["flags"] & FLAG_METADATA:
        (length,) = struct.unpack_from("<I", data, HEADER_SIZE)
        start = HEADER_SIZE + 4 + length + 4
        (mcrc,) = struct.unpack_from("<I", data, start - 4)
        if zlib.crc32(data[HEADER_SIZE : start - 4]) != mcrc:
            raise ValueError("metadata CRC")
    if len(data) != start + plen + TRAILER_SIZE:
        raise ValueError("file length")
    payload = data[start : start + plen]
    if zlib.crc32(payload) != struct.unpack_from("<I", data, start + plen)[0]:
        raise ValueError("payload CRC")
    header["payload_len"] = None  # computed when serialising
    flags = payload[0]
    sf = SadFile(header=header, frames=[], flags=flags, split=not flags & SINGLE_FRAME)
    sf.metadata = data[HEADER_SIZE:start]
    if sf.split:
        pos, sizes = 1, []
        for _ in range(n_planes(header["channels"])):
            size, pos = read_varint(payload, pos)
            sizes.append(size)
        if payload[1:pos] != b"".join(varint(s) for s in sizes):
            sf.table = payload[1:pos]  # not the shortest varints: keep them as they were
        for size in sizes:
            sf.frames.append(payload[pos : pos + size])
            pos += size
        if pos != len(payload):
            raise ValueError("size table")
    else:
        sf.frames = [payload[1:]]
    planes(sf)  # every frame decompresses to its planes
    return sf


def planes(sf: SadFile) -> list[bytes]:
    """The byte planes of a parsed (valid) file, N bytes each, in stored order."""
    n, p = sf.n, n_planes(sf.channels)
    if sf.split:
        return [decompress(f, n) for f in sf.frames]
    whole = decompress(sf.frames[0], p * n)
    return [whole[i * n : (i + 1) * n] for i in range(p)]


def set_planes(
    sf: SadFile,
    new: list[bytes],
    level: int = 3,
    split: bool | None = None,
    content_size: bool = False,
    checksum: bool = False,
) -> None:
    """Put planes back as frames (in split or single-frame layout, flags bit 7 to match)."""
    if split is not None and split != sf.split:
        sf.split = split
        sf.flags = (sf.flags & ~SINGLE_FRAME) | (0 if split else SINGLE_FRAME)
    sf.table = None
    if sf.split:
        sf.frames = [compress(p, level, content_size, checksum) for p in new]
    else:
        sf.frames = [compress(b"".join(new), level, content_size, checksum)]


# ---------------------------------------------------------------- sites


def spread(v: np.ndarray) -> np.ndarray:
    """The bits of 16-bit integers moved to the even bit positions."""
    v = v.astype(np.uint64) & np.uint64(0xFFFF)
    out = np.zeros_like(v)
    for bit in range(16):
        out |= ((v >> np.uint64(bit)) & np.uint64(1)) << np.uint64(2 * bit)
    return out


def unspread(v: np.ndarray) -> np.ndarray:
    v = v.astype(np.uint64)
    out = np.zeros_like(v)
    for bit in range(16):
        out |= ((v >> np.uint64(2 * bit)) & np.uint64(1)) << np.uint64(bit)
    return out.astype(np.int64)


def morton(x: np.ndarray, y: np.ndarray) -> np.ndarray:
    return (spread(x) | spread(y) << np.uint64(1)).astype(np.int64)


def chroma_mask(c: int, channels: int, col_bits: int) -> int:
    """Values a colour plane may hold: Co and Cg of a colour image have one bit more."""
    extra = 1 if channels >= 3 and c in (1, 2) else 0
    return (1 << (col_bits + extra)) - 1


@dataclass
class Sites:
    """Integer site fields in stored order: x, y on the position grid, the four field
    indices, and colour indices (N, C) as R, G, B, A (or gray)."""

    x: np.ndarray
    y: np.ndarray
    theta: np.ndarray
    a: np.ndarray
    r: np.ndarray
    t: np.ndarray
    col: np.ndarray

    def __len__(self) -> int:
        return len(self.x)

    def take(self, idx) -> Sites:
        idx = np.asarray(idx, dtype=np.int64)
        return Sites(*(getattr(self, f)[idx] for f in ("x", "y", *SITE_FIELDS, "col")))

    def copy(self) -> Sites:
        return self.take(np.arange(len(self)))

    def sorted(self) -> Sites:
        """In the writer's order: Morton code, ties by the other fields."""
        keys = [self.col[:, c] for c in range(self.col.shape[1] - 1, -1, -1)]
        keys += [getattr(self, f) for f in reversed(SITE_FIELDS)]
        keys.append(morton(self.x, self.y))
        return self.take(np.lexsort(keys))


def sites(sf: SadFile, planes_: list[bytes] | None = None) -> Sites:
    """Decode the planes of a valid file into site fields."""
    arr = np.stack([np.frombuffer(p, np.uint8) for p in (planes_ or planes(sf))]).astype(np.int64)
    gaps = np.zeros(sf.n, dtype=np.int64)
    for b in range(GAP_BYTES):
        gaps = gaps << 8 | arr[b]
    codes = np.cumsum(gaps)
    cb, ch = sf.header["col_bits"], sf.channels
    stored = np.empty((sf.n, ch), dtype=np.int64)
    for c in range(ch):
        plane = arr[GAP_BYTES + len(SITE_FIELDS) + c]
        delta = sf.flags >> c & 1
        stored[:, c] = np.cumsum(plane) & chroma_mask(c, ch, cb) if delta else plane
    fields = [arr[GAP_BYTES + i] for i in range(len(SITE_FIELDS))]
    return Sites(unspread(codes), unspread(codes >> 1), *fields, from_ycocg(stored, cb))


def site_planes(s: Sites, col_bits: int, flags: int) -> list[bytes]:
    """Site fields -> byte planes, in the order given (an unsorted order makes a gap wrap
    around 2^32, as a u32 would). Colour plane c is delta-coded when flag bit c is set.
    Values that do not fit their plane are written modulo 256."""
    codes = morton(s.x, s.y)
    gaps = np.diff(codes, prepend=0) & 0xFFFFFFFF
    out = [((gaps >> (8 * b)) & 0xFF).astype(np.uint8).tobytes() for b in range(3, -1, -1)]
    out += [(getattr(s, f) & 0xFF).astype(np.uint8).tobytes() for f in SITE_FIELDS]
    stored = to_ycocg(s.col, col_bits)
    ch = s.col.shape[1]
    for c in range(ch):
        v = stored[:, c]
        if flags >> c & 1:
            v = np.diff(v, prepend=0) & chroma_mask(c, ch, col_bits)
        out.append((v & 0xFF).astype(np.uint8).tobytes())
    return out


def to_ycocg(col: np.ndarray, col_bits: int) -> np.ndarray:
    """FORMAT.md's YCoCg-R of R, G, B; chroma kept modulo 2^(col_bits + 1)."""
    out = col.astype(np.int64).copy()
    if col.shape[1] >= 3:
        r, g, b = out[:, 0].copy(), out[:, 1].copy(), out[:, 2].copy()
        co = r - b
        t = b + (co >> 1)
        cg = g - t
        m = (1 << (col_bits + 1)) - 1
        out[:, 0], out[:, 1], out[:, 2] = t + (cg >> 1), co & m, cg & m
    return out


def from_ycocg(stored: np.ndarray, col_bits: int) -> np.ndarray:
    out = stored.astype(np.int64).copy()
    if stored.shape[1] >= 3:
        half = 1 << col_bits
        y = out[:, 0].copy()
        co = np.where(out[:, 1] >= half, out[:, 1] - 2 * half, out[:, 1])
        cg = np.where(out[:, 2] >= half, out[:, 2] - 2 * half, out[:, 2])
        t = y - (cg >> 1)
        g = cg + t
        b = t - (co >> 1)
        out[:, 0], out[:, 1], out[:, 2] = b + co, g, b
    return out


def build(header: dict, s: Sites, flags: int = 0, split: bool = True, level: int = 3) -> SadFile:
    """A file from a header (payload_len None) and sites, written in the order given."""
    sf = SadFile(header=dict(header), frames=[], flags=flags & ~SINGLE_FRAME, split=True)
    sf.header["n_sites"] = len(s)
    sf.header["channels"] = s.col.shape[1]
    set_planes(sf, site_planes(s, header["col_bits"], flags), level=level, split=split)
    return sf
