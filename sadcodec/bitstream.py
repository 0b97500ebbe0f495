"""Site fields <-> the uncompressed payload: spatial order, deltas and byte planes.

Sites are sorted along a Z-order (Morton) curve of their quantized positions and the
positions stored as gaps between consecutive Morton codes, split into byte planes: nearby
sites become small numbers and each plane gets its own statistics, which zstd's entropy
stage exploits. The other fields are one byte per site each, stored plane by plane; a
colour plane may be stored as differences to the previous site (mod 2**bits) when that
compresses better. Each plane is its own zstd frame. The layout is specified in docs/FORMAT.md.
"""

from __future__ import annotations

import numpy as np
import zstandard

from .errors import SadFormatError

GAP_BYTES = 4
ZSTD_LEVEL = 22
FIELDS = ("theta", "a", "r", "t")


def _spread(v: np.ndarray) -> np.ndarray:
    """Insert a zero bit between the bits of 16-bit integers."""
    v = v.astype(np.uint64) & 0xFFFF
    v = (v | (v << 8)) & 0x00FF00FF
    v = (v | (v << 4)) & 0x0F0F0F0F
    v = (v | (v << 2)) & 0x33333333
    v = (v | (v << 1)) & 0x55555555
    return v


def _compact(v: np.ndarray) -> np.ndarray:
    v = v.astype(np.uint64) & 0x55555555
    v = (v | (v >> 1)) & 0x33333333
    v = (v | (v >> 2)) & 0x0F0F0F0F
    v = (v | (v >> 4)) & 0x00FF00FF
    v = (v | (v >> 8)) & 0x0000FFFF
    return v.astype(np.int64)


def morton(x: np.ndarray, y: np.ndarray) -> np.ndarray:
    return (_spread(x) | (_spread(y) << np.uint64(1))).astype(np.int64)


def spatial_order(q: dict) -> np.ndarray:
    """A deterministic order of sites: Morton code, ties broken by the other fields."""
    keys = [q["col"][:, c] for c in range(q["col"].shape[1] - 1, -1, -1)]
    keys += [q[f] for f in reversed(FIELDS)]
    keys.append(morton(q["x"], q["y"]))
    return np.lexsort(keys)


def _planes(q: dict, col_bits: int) -> tuple[int, list[np.ndarray]]:
    """Flags byte and the byte planes, in stored order, of quantized fields."""
    order = spatial_order(q)
    codes = morton(q["x"][order], q["y"][order])
    gaps = np.diff(codes, prepend=0).astype(np.uint32)
    planes = [((gaps >> (8 * b)) & 0xFF).astype(np.uint8) for b in range(GAP_BYTES - 1, -1, -1)]
    planes += [q[f][order].astype(np.uint8) for f in FIELDS]
    flags = 0
    col = to_ycocg(q["col"][order], col_bits)
    for c in range(col.shape[1]):
        mask = plane_mask(c, col.shape[1], col_bits)
        raw = (col[:, c] & mask).astype(np.uint8)
        delta = (np.diff(col[:, c], prepend=0) & mask).astype(np.uint8)
        # Pick the cheaper plane by a zeroth-order entropy estimate (zstd's literal coder
        # is close to it), so the choice costs no extra compression runs.
        if _entropy(delta) < _entropy(raw):
            flags |= 1 << c
            planes.append(delta)
        else:
            planes.append(raw)
    return flags, planes


def _entropy(v: np.ndarray) -> float:
    counts = np.bincount(v, minlength=256).astype(np.float64)
    p = counts[counts > 0] / max(len(v), 1)
    return float(-(p * np.log2(p)).sum())


def _varint(v: int) -> bytes:
    out = bytearray()
    while True:
        b = v & 0x7F
        v >>= 7
        out.append(b | (0x80 if v else 0))
        if not v:
            return bytes(out)


def _read_varint(buf, pos: int) -> tuple[int, int]:
    v = shift = 0
    while True:
        if pos >= len(buf) or shift > 28:
            raise SadFormatError("corrupt file: bad stream table")
        b = buf[pos]
        pos += 1
        v |= (b & 0x7F) << shift
        shift += 7
        if not b & 0x80:
            return v, pos


def n_planes(channels: int) -> int:
    return GAP_BYTES + len(FIELDS) + channels


SINGLE_FRAME = 0x80
# Bytes of a payload that do not grow with its sites: a magicless zstd frame's header
# (2 bytes) and its block header (3).
FRAME_BYTES = 5
_UNKNOWN_SIZE = 2**64 - 1
# Morton codes interleave two 16-bit coordinates.
MORTON_LIMIT = 1 << 32


def compress_bound(size: int) -> int:
    """zstd's worst-case compressed size of size bytes (ZSTD_COMPRESSBOUND in zstd.h):
    a frame libzstd writes in one pass (compress()) is never larger, magicless ones less so."""
    small = ((128 << 10) - size) >> 11 if size < 128 << 10 else 0
    return size + (size >> 8) + small


def max_payload_bytes(n: int, channels: int) -> int:
    """The largest payload n sites may take (docs/FORMAT.md, "Limits"): the flags byte and
    either P frames of n bytes with their sizes, or one frame of P * n bytes, each frame
    at most compress_bound of its content, whichever layout allows more."""
    p = n_planes(channels)
    frame = compress_bound(n)
    split = 1 + p * (len(_varint(frame)) + frame)
    single = 1 + compress_bound(p * n)
    return max(split, single)


def _compressor() -> zstandard.ZstdCompressor:
    # Magicless frames without size, checksum or dictionary id: the container already
    # knows what the payload is and checks it with CRC-32, so those bytes would be waste.
    params = zstandard.ZstdCompressionParameters.from_level(
        ZSTD_LEVEL,
        format=zstandard.FORMAT_ZSTD1_MAGICLESS,
        write_content_size=0,
        write_checksum=0,
        write_dict_id=0,
    )
    return zstandard.ZstdCompressor(compression_params=params)


def encode_payload(q: dict, col_bits: int) -> bytes:
    """Quantized fields -> payload: flags, then either one zstd frame per plane (with a
    varint size table) or a single frame over all planes, whichever is smaller.

    Separate frames give each plane its own entropy tables (about 5% smaller on Kodak);
    on tiny images the per-frame overhead wins and the single frame is chosen."""
    flags, planes = _planes(q, col_bits)
    cctx = _compressor()
    frames = [cctx.compress(p.tobytes()) for p in planes]
    split = bytes([flags]) + b"".join(_varint(len(f)) for f in frames) + b"".join(frames)
    single = bytes([flags | SINGLE_FRAME]) + cctx.compress(b"".join(p.tobytes() for p in planes))
    return single if len(single) < len(split) else split


def payload_size_estimate(q: dict, col_bits: int, level: int = 3) -> int:
    """Bytes of the split-frame payload at a fast zstd level: a cheap, proportional stand-in
    for ``len(encode_payload(q))`` (about 5% larger on Kodak, several times faster), for
    the encoder's site-count steering; files are always written at ZSTD_LEVEL."""
    flags, planes = _planes(q, col_bits)
    params = zstandard.ZstdCompressionParameters.from_level(
        level,
        format=zstandard.FORMAT_ZSTD1_MAGICLESS,
        write_content_size=0,
        write_checksum=0,
        write_dict_id=0,
    )
    cctx = zstandard.ZstdCompressor(compression_params=params)
    sizes = [len(cctx.compress(p.tobytes())) for p in planes]
    return 1 + sum(len(_varint(n)) for n in sizes) + sum(sizes)


def _decompress(frame, size: int, what: str) -> bytes:
    """Decompress one frame, which must fill frame (bytes or a memoryview) exactly, to
    exactly size bytes, never allocating more."""
    dctx = zstandard.ZstdDecompressor(format=zstandard.FORMAT_ZSTD1_MAGICLESS)
    try:
        # max_output_size binds only frames that do not declare their size, so a declared
        # size is checked first (else a tiny frame could claim gigabytes).
        declared = zstandard.get_frame_parameters(
            frame, format=zstandard.FORMAT_ZSTD1_MAGICLESS
        ).content_size
        if declared not in (_UNKNOWN_SIZE, size):
            raise SadFormatError(f"corrupt file: {what} declares {declared} bytes")
        out = dctx.decompress(frame, max_output_size=size)
    except (zstandard.ZstdError, MemoryError) as exc:
        raise SadFormatError(f"corrupt file: {what} does not decompress ({exc})") from None
    if len(out) != size:
        raise SadFormatError(f"corrupt file: {what} has the wrong size for its site count")
    extra = _bytes_after_frame(dctx, frame, what)
    if extra:
        raise SadFormatError(f"corrupt file: {extra} bytes after the zstd frame of {what}")
    return out


def _bytes_after_frame(dctx: zstandard.ZstdDecompressor, frame, what: str) -> int:
    """How many bytes of frame follow the end of its first zstd frame.

    decompress() stops at the end of the first frame and ignores the rest, but a reader
    never skips data (docs/FORMAT.md). A streaming pass finds the end; it runs only after
    decompress() has shown that the frame inflates to the expected size, so its output is
    bounded too, and it goes in slices so that trailing bytes are counted, not copied."""
    obj = dctx.decompressobj()
    step = 1 << 17
    try:
        for start in range(0, len(frame), step):
            obj.decompress(frame[start : start + step])
            if obj.eof:
                return len(obj.unused_data) + max(0, len(frame) - start - step)
    except zstandard.ZstdError as exc:  # not expected after decompress(); still a refusal
        raise SadFormatError(f"corrupt file: {what} does not decompress ({exc})") from None
    raise SadFormatError(f"corrupt file: {what} is not a complete zstd frame")


def decode_planes(buf, n: int, channels: int) -> tuple[int, list[np.ndarray]]:
    """The payload's flags (without SINGLE_FRAME) and its P planes of n bytes each, read-only
    uint8 views of the decompressed frames (buf: bytes or a memoryview, never copied);
    decompression is capped at the size the header implies."""
    buf = memoryview(buf)
    if not buf:
        raise SadFormatError("corrupt file: empty payload")
    flags = buf[0]
    if (flags & ~SINGLE_FRAME) >> channels:
        raise SadFormatError("corrupt file: unknown payload flags")
    p = n_planes(channels)
    if flags & SINGLE_FRAME:
        whole = np.frombuffer(_decompress(buf[1:], p * n, "payload"), np.uint8)
        planes = [whole[i * n : (i + 1) * n] for i in range(p)]
    else:
        pos = 1
        sizes = []
        for _ in range(p):
            size, pos = _read_varint(buf, pos)
            sizes.append(size)
        if pos + sum(sizes) != len(buf):
            raise SadFormatError("corrupt file: stream sizes do not add up to the payload")
        planes = []
        for i, size in enumerate(sizes):
            planes.append(
                np.frombuffer(_decompress(buf[pos : pos + size], n, f"stream {i}"), np.uint8)
            )
            pos += size
    return flags & ~SINGLE_FRAME, planes


# Sites decoded at a time by iter_sites: its int64 fields take 8 * (6 + C) bytes a site,
# about 200 bytes a site with their temporaries, so a chunk takes ~3 MB where a file's
# fields at once took 180 bytes a site (750 MB for 2^22 sites).
SITE_CHUNK = 1 << 14


def iter_sites(
    flags: int, planes: list[np.ndarray], channels: int, col_bits: int, chunk: int = SITE_CHUNK
):
    """decode_planes' output -> (start, fields) for each run of up to chunk sites, in
    stored order: the quantized fields of sites start.. as decode_payload gives them (int64
    arrays). Checks the order and the colours first, over all sites, so a file is refused
    with the same message whatever the chunk."""
    n = len(planes[0])
    # Gaps are below 2^32, so the u64 running sum cannot wrap while n < 2^32 (n is at
    # most MAX_SITES); the codes then never decrease, and must stay below 2^32: a sum
    # past it would wrap to a smaller code once the coordinates are extracted, a site
    # out of the ascending order the format requires.
    if n >= MORTON_LIMIT:
        raise SadFormatError(f"corrupt file: {n} sites overflow the Morton code sum")
    gap_planes, field_planes = planes[:GAP_BYTES], planes[GAP_BYTES : GAP_BYTES + len(FIELDS)]
    col_planes = planes[GAP_BYTES + len(FIELDS) :]

    def gaps(a: int, b: int) -> np.ndarray:
        g = np.zeros(b - a, dtype=np.uint64)
        for plane in gap_planes:
            g <<= np.uint64(8)
            g |= plane[a:b]
        return g

    total = sum(int(gaps(a, min(a + chunk, n)).sum()) for a in range(0, n, chunk))
    if total >= MORTON_LIMIT:
        raise SadFormatError(
            "corrupt file: site positions out of Morton order (the gaps add up past 2^32)"
        )
    masks = [plane_mask(c, channels, col_bits) for c in range(channels)]
    for plane, mask in zip(col_planes, masks, strict=True):
        if int(plane.max(initial=0)) > mask:
            raise SadFormatError("corrupt file: colour index out of range")
    code = np.uint64(0)
    last = [0] * channels  # the previous site's value of each delta-coded plane
    for a in range(0, n, chunk):
        b = min(a + chunk, n)
        codes = np.cumsum(gaps(a, b), dtype=np.uint64)
        codes += code
        code = codes[-1]
        q = {"x": _compact(codes), "y": _compact(codes >> np.uint64(1))}
        del codes
        for f, plane in zip(FIELDS, field_planes, strict=True):
            q[f] = plane[a:b].astype(np.int64)
        col = np.empty((b - a, channels), dtype=np.int64)
        for c, (plane, mask) in enumerate(zip(col_planes, masks, strict=True)):
            v = plane[a:b].astype(np.int64)
            if flags >> c & 1:
                v = np.cumsum(v)
                v += last[c]
                v &= mask
                last[c] = int(v[-1])
            col[:, c] = v
        q["col"] = from_ycocg(col, col_bits)
        yield a, q


def decode_payload(buf, n: int, channels: int, col_bits: int) -> dict:
    """Inverse of encode_payload (buf: bytes or a memoryview, which is never copied);
    decompression is capped at the size the header implies."""
    flags, planes = decode_planes(buf, n, channels)
    parts = [q for _, q in iter_sites(flags, planes, channels, col_bits, max(n, 1))]
    if parts:
        return parts[0]
    empty = {k: np.zeros(0, np.int64) for k in ("x", "y", *FIELDS)}
    empty["col"] = np.zeros((0, channels), np.int64)
    return empty


def plane_mask(c: int, channels: int, col_bits: int) -> int:
    """Chroma planes (1 and 2 of a colour image) need one bit more than the channels."""
    extra = 1 if channels >= 3 and c in (1, 2) else 0
    return (1 << (col_bits + extra)) - 1


def to_ycocg(col: np.ndarray, col_bits: int) -> np.ndarray:
    """Lossless YCoCg-R of the first three channels (alpha and gray pass through).

    Decorrelating R, G, B saves about 3 bits per site on Kodak (zstd sizes).
    Chroma is kept modulo 2**(col_bits + 1)."""
    out = col.astype(np.int64).copy()
    if col.shape[1] >= 3:
        r, g, b = out[:, 0], out[:, 1], out[:, 2]
        co = r - b
        t = b + (co >> 1)
        cg = g - t
        y = t + (cg >> 1)
        m = (1 << (col_bits + 1)) - 1
        out[:, 0], out[:, 1], out[:, 2] = y, co & m, cg & m
    return out


def from_ycocg(col: np.ndarray, col_bits: int) -> np.ndarray:
    out = col.astype(np.int64).copy()
    if col.shape[1] >= 3:
        half = 1 << col_bits
        y = out[:, 0]
        co = out[:, 1] - ((out[:, 1] >= half) << (col_bits + 1))  # back to signed
        cg = out[:, 2] - ((out[:, 2] >= half) << (col_bits + 1))
        t = y - (cg >> 1)
        g = cg + t
        b = t - (co >> 1)
        r = b + co
        out[:, 0], out[:, 1], out[:, 2] = r, g, b
        if out[:, :3].min(initial=0) < 0 or out[:, :3].max(initial=0) >= half:
            raise SadFormatError("corrupt file: colour out of range")
    return out
