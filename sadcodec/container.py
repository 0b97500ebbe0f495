"""The .sad container: fixed header, payload, CRC32 checksums (docs/FORMAT.md).

Parsing validates every header field against documented limits before anything is
allocated or decompressed; the payload (see bitstream.py) is decompressed with output
caps implied by the header, so a small file cannot claim a huge payload, nor a handful of
sites a payload larger than zstd's worst case for them. ``read_stream`` reads a file from
a stream (a file, pipe or device) no further than its header declares.
"""

from __future__ import annotations

import struct
import zlib
from dataclasses import dataclass, replace

from .bitstream import max_payload_bytes
from .errors import SadFormatError
from .quantize import QuantSpec

MAGIC = b"SAD\x1a"
VERSION_MAJOR = 1
VERSION_MINOR = 0
# magic, major, minor, width, height, channels, K, n_sites, flags,
# pos_frac_bits, theta_bits, a_bits, a_max, r_bits, r_min, r_step, t_bits, t_min, t_step,
# col_bits, payload_len
_HEADER = struct.Struct("<4sBBHHBBIBBBBfBffBffBI")
HEADER_SIZE = _HEADER.size + 4  # + header CRC32
TRAILER_SIZE = 4  # payload CRC32
# Bytes of every file besides its payload.
FIXED_BYTES = HEADER_SIZE + TRAILER_SIZE
MAX_SIDE = 65535
MAX_PIXELS = 1 << 28
MAX_SITES = 1 << 22
CHANNELS = (1, 3, 4)
MAX_K = 32
MAX_PAYLOAD = 1 << 30


@dataclass(frozen=True)
class Header:
    width: int
    height: int
    channels: int
    k: int
    n_sites: int
    spec: QuantSpec
    flags: int = 0
    version: tuple[int, int] = (VERSION_MAJOR, VERSION_MINOR)
    payload_bytes: int = 0

    def validate(self) -> None:
        if not (1 <= self.width <= MAX_SIDE and 1 <= self.height <= MAX_SIDE):
            raise SadFormatError(f"invalid dimensions {self.width}x{self.height}")
        if self.width * self.height > MAX_PIXELS:
            raise SadFormatError(f"image too large: {self.width}x{self.height}")
        if self.channels not in CHANNELS:
            raise SadFormatError(f"invalid channel count {self.channels}")
        if not 1 <= self.k <= MAX_K:
            raise SadFormatError(f"invalid K {self.k}")
        if not 1 <= self.n_sites <= MAX_SITES:
            raise SadFormatError(f"invalid site count {self.n_sites}")
        if self.flags != 0:
            raise SadFormatError(f"unknown flags {self.flags:#x}")
        if self.payload_bytes > MAX_PAYLOAD:
            raise SadFormatError(f"payload too large ({self.payload_bytes} bytes)")
        if self.n_sites > 8 * self.payload_bytes:
            # At least one payload bit per site: otherwise a file of a few hundred bytes could
            # make the reader inflate and build millions of sites (a decompression bomb).
            raise SadFormatError(
                f"corrupt file: {self.n_sites} sites cannot fit in {self.payload_bytes} "
                "payload bytes"
            )
        bound = max_payload_bytes(self.n_sites, self.channels)
        if self.payload_bytes > bound:
            # No more than zstd's worst case for the planes: a header cannot make a reader
            # read (or checksum) a gigabyte for a handful of sites.
            raise SadFormatError(
                f"payload too large for {self.n_sites} sites ({self.payload_bytes} bytes, "
                f"at most {bound})"
            )
        self.spec.validate()
        if max(self.width, self.height) << self.spec.pos_frac_bits > 65536:
            raise SadFormatError("position precision too fine for these dimensions")


def write(header: Header, comp: bytes) -> bytes:
    """Assemble a whole file from a header and the (compressed) payload."""
    replace(header, payload_bytes=len(comp)).validate()
    s = header.spec
    head = _HEADER.pack(
        MAGIC,
        VERSION_MAJOR,
        VERSION_MINOR,
        header.width,
        header.height,
        header.channels,
        header.k,
        header.n_sites,
        header.flags,
        s.pos_frac_bits,
        s.theta_bits,
        s.a_bits,
        s.a_max,
        s.r_bits,
        s.r_min,
        s.r_step,
        s.t_bits,
        s.t_min,
        s.t_step,
        s.col_bits,
        len(comp),
    )
    return head + struct.pack("<I", zlib.crc32(head)) + comp + struct.pack("<I", zlib.crc32(comp))


def read_header(data: bytes) -> Header:
    """Parse and validate the header (and check its CRC) without touching the payload."""
    if len(data) < 4 or data[:4] != MAGIC:
        raise SadFormatError("not a .sad file (bad magic bytes)")
    if len(data) < 6:
        raise SadFormatError("truncated file (header incomplete)")
    major, minor = data[4], data[5]
    if major != VERSION_MAJOR:
        raise SadFormatError(
            f"unsupported .sad version {major}.{minor} (this reader handles {VERSION_MAJOR}.x)"
        )
    if len(data) < HEADER_SIZE:
        raise SadFormatError("truncated file (header incomplete)")
    head = data[: _HEADER.size]
    (crc,) = struct.unpack_from("<I", data, _HEADER.size)
    if zlib.crc32(head) != crc:
        raise SadFormatError("corrupt file: header checksum mismatch")
    (
        _,
        major,
        minor,
        w,
        h,
        ch,
        k,
        n,
        flags,
        pfb,
        tb,
        ab,
        amax,
        rb,
        rmin,
        rstep,
        tbits,
        tmin,
        tstep,
        cb,
        plen,
    ) = _HEADER.unpack(head)
    spec = QuantSpec(
        pos_frac_bits=pfb,
        theta_bits=tb,
        a_bits=ab,
        a_max=amax,
        r_bits=rb,
        r_min=rmin,
        r_step=rstep,
        t_bits=tbits,
        t_min=tmin,
        t_step=tstep,
        col_bits=cb,
    )
    hdr = Header(w, h, ch, k, n, spec, flags, (major, minor), plen)
    hdr.validate()
    return hdr


def read(data: bytes) -> tuple[Header, memoryview]:
    """Parse a whole file: header and checksums. Returns the header and the payload, a
    read-only view into data (a payload may be tens of megabytes: it is not copied)."""
    hdr = read_header(data)
    end = HEADER_SIZE + hdr.payload_bytes
    if len(data) < end + TRAILER_SIZE:
        raise SadFormatError("truncated file (payload incomplete)")
    if len(data) > end + TRAILER_SIZE:
        raise SadFormatError("corrupt file: unexpected bytes after the payload")
    comp = memoryview(data).toreadonly()[HEADER_SIZE:end]
    (crc,) = struct.unpack_from("<I", data, end)
    if zlib.crc32(comp) != crc:
        raise SadFormatError("corrupt file: payload checksum mismatch")
    return hdr, comp


def _read_exactly(f, size: int) -> bytes:
    """Up to size bytes from a binary stream: fewer only at its end. Loops, since a pipe
    or a raw (unbuffered) stream may return less than asked for."""
    parts = []
    while size > 0:
        chunk = f.read(size)
        if not chunk:
            break
        parts.append(chunk)
        size -= len(chunk)
    return b"".join(parts)


def read_stream(f) -> bytes:
    """The bytes of one .sad file from a binary stream (a file, pipe or device), reading
    no more than the file declares: the header, then exactly payload_len + 4 bytes, then
    one byte to check that the stream ends there. Longer or endless input is refused
    without being read, and a bad header before anything else is read. The payload is not
    checked here (``read`` does that), so damaged files can still be described."""
    head = _read_exactly(f, HEADER_SIZE)
    hdr = read_header(head)  # a short head fails here: bad magic or truncated header
    body = _read_exactly(f, hdr.payload_bytes + TRAILER_SIZE)
    if len(body) < hdr.payload_bytes + TRAILER_SIZE:
        raise SadFormatError("truncated file (payload incomplete)")
    if _read_exactly(f, 1):
        raise SadFormatError("corrupt file: unexpected bytes after the payload")
    return head + body


def read_path(path: str) -> bytes:
    """read_stream of the file at path; OSError (missing, a directory, no permission) as is.
    Unbuffered, so that not even a read-ahead takes bytes past the one probed."""
    with open(path, "rb", buffering=0) as f:
        return read_stream(f)
