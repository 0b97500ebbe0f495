"""The .sad container: fixed header, payload, CRC32 checksums (docs/FORMAT.md).

Parsing validates every header field against documented limits before anything is
allocated or decompressed; the payload (see bitstream.py) is decompressed with output
caps implied by the header, so a small file cannot claim a huge payload.
"""

from __future__ import annotations

import struct
import zlib
from dataclasses import dataclass, replace

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


def read(data: bytes) -> tuple[Header, bytes]:
    """Parse a whole file: header and checksums. Returns the header and the payload."""
    hdr = read_header(data)
    end = HEADER_SIZE + hdr.payload_bytes
    if len(data) < end + TRAILER_SIZE:
        raise SadFormatError("truncated file (payload incomplete)")
    if len(data) > end + TRAILER_SIZE:
        raise SadFormatError("corrupt file: unexpected bytes after the payload")
    comp = data[HEADER_SIZE:end]
    (crc,) = struct.unpack_from("<I", data, end)
    if zlib.crc32(comp) != crc:
        raise SadFormatError("corrupt file: payload checksum mismatch")
    return hdr, comp
