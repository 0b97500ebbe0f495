"""The .sad container: fixed header, optional metadata, payload, CRC32 checksums
(docs/FORMAT.md).

Parsing validates every header field against documented limits before anything is
allocated or decompressed; the payload (see bitstream.py) is decompressed with output
caps implied by the header, so a small file cannot claim a huge payload, nor a handful of
sites a payload larger than zstd's worst case for them. The metadata (an ICC profile,
EXIF: ``Metadata``) is bounded, checksummed and checked entry by entry like the rest.
``read_stream`` reads a file from a stream (a file, pipe or device) no further than its
header declares.
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
# The newest minor version this code reads every feature of and writes.
VERSION_MINOR = 1
# Header flag bits, each with the minor version that defines it. A writer declares the
# lowest version that defines every flag it sets, so a file without metadata is a 1.0
# file that every 1.x reader decodes; a reader refuses a flag its file's version does not
# define, as 1.0 readers refuse any flag: an older reader never misreads newer data.
FLAG_METADATA = 0x01
FLAG_SINCE = {FLAG_METADATA: 1}
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
# The metadata block (flag bit 0): a u32 length L, L bytes of entries, a CRC-32.
METADATA_LEN_SIZE = 4
METADATA_OVERHEAD = METADATA_LEN_SIZE + 4
ENTRY_HEAD = 8  # tag (4 bytes) and u32 length
ICC_TAG = b"ICCP"
EXIF_TAG = b"EXIF"
# The only entries, in the order they must appear, each at most once.
METADATA_TAGS = (ICC_TAG, EXIF_TAG)
ICC_HEADER = 128  # an ICC profile's fixed header (ICC.1, section 7.2)
# An ICC profile may be up to 4 MiB: display profiles are a few KB, the largest printer
# profiles with large lookup tables a few MB.
MAX_ICC_BYTES = 1 << 22
# EXIF: a TIFF structure of at most 65527 bytes, the most a JPEG APP1 segment carries
# (65533 bytes of marker data less the "Exif\0\0" prefix), so every .sad's EXIF can be
# written back into a JPEG.
MIN_EXIF_BYTES = 8  # the TIFF header
MAX_EXIF_BYTES = 65527
EXIF_BYTE_ORDERS = (b"II*\x00", b"MM\x00*")
# What comes before the TIFF structure in a JPEG's APP1 segment (and in Pillow's
# info["exif"]); not stored.
EXIF_PREFIX = b"Exif\x00\x00"
MIN_METADATA = ENTRY_HEAD + MIN_EXIF_BYTES
MAX_METADATA = 2 * ENTRY_HEAD + MAX_ICC_BYTES + MAX_EXIF_BYTES


def file_version(flags: int) -> tuple[int, int]:
    """The version a file with these header flags declares: the lowest that defines them."""
    return VERSION_MAJOR, max((v for bit, v in FLAG_SINCE.items() if flags & bit), default=0)


@dataclass(frozen=True)
class Metadata:
    """What a file keeps besides its samples: the ICC profile that defines their colour
    space (none: sRGB) and EXIF (a TIFF structure, as in PNG's eXIf chunk). Both optional;
    ``Metadata()`` is none."""

    icc_profile: bytes | None = None
    exif: bytes | None = None

    @property
    def empty(self) -> bool:
        return not self.icc_profile and not self.exif

    def entries(self) -> list[tuple[bytes, bytes]]:
        """(tag, data) of each entry present, in the stored order."""
        pairs = ((ICC_TAG, self.icc_profile), (EXIF_TAG, self.exif))
        return [(tag, bytes(data)) for tag, data in pairs if data]

    def block_bytes(self) -> int:
        """Bytes this metadata adds to a file (0 when empty)."""
        if self.empty:
            return 0
        return METADATA_OVERHEAD + sum(ENTRY_HEAD + len(d) for _, d in self.entries())

    def validate(self, channels: int) -> None:
        """SadFormatError (a one-line reason) unless every entry is well formed for
        samples of this many channels (docs/FORMAT.md, "Metadata")."""
        if self.icc_profile is not None:
            check_icc_profile(self.icc_profile, channels)
        if self.exif is not None:
            check_exif(self.exif)


def icc_colour_space(channels: int) -> bytes:
    """The ICC data colour space signature of samples of this many channels."""
    return b"GRAY" if channels == 1 else b"RGB "


def check_icc_profile(icc: bytes, channels: int) -> None:
    """SadFormatError unless icc is an ICC profile (its header's size field and "acsp"
    signature) for gray (1 channel) or RGB (3, 4) samples, of 128..MAX_ICC_BYTES bytes."""
    n = len(icc)
    if not ICC_HEADER <= n <= MAX_ICC_BYTES:
        raise SadFormatError(
            f"ICC profile of {n} bytes (a profile has {ICC_HEADER}..{MAX_ICC_BYTES} bytes)"
        )
    if int.from_bytes(icc[:4], "big") != n or bytes(icc[36:40]) != b"acsp":
        raise SadFormatError("not an ICC profile (bad size field or signature)")
    space, want = bytes(icc[16:20]), icc_colour_space(channels)
    if space != want:
        raise SadFormatError(
            f"ICC profile for {space.decode('latin-1').strip()!r} samples, but the samples "
            f"are {want.decode().strip()} ({channels} channel{'s' if channels > 1 else ''})"
        )


def check_exif(exif: bytes) -> None:
    """SadFormatError unless exif starts with a TIFF header and has 8..MAX_EXIF_BYTES bytes."""
    n = len(exif)
    if not MIN_EXIF_BYTES <= n <= MAX_EXIF_BYTES:
        raise SadFormatError(
            f"EXIF of {n} bytes ({MIN_EXIF_BYTES}..{MAX_EXIF_BYTES} bytes are allowed)"
        )
    if bytes(exif[:4]) not in EXIF_BYTE_ORDERS:
        raise SadFormatError("EXIF does not start with a TIFF header (II*\\0 or MM\\0*)")


@dataclass(frozen=True)
class Header:
    width: int
    height: int
    channels: int
    k: int
    n_sites: int
    spec: QuantSpec
    flags: int = 0
    version: tuple[int, int] = (VERSION_MAJOR, 0)
    payload_bytes: int = 0
    metadata_len: int = 0  # bytes of the metadata entries (flag bit 0), else 0

    @property
    def metadata_bytes(self) -> int:
        """Bytes of the metadata block: its length, entries and CRC (0 without one)."""
        return METADATA_OVERHEAD + self.metadata_len if self.flags & FLAG_METADATA else 0

    @property
    def payload_offset(self) -> int:
        return HEADER_SIZE + self.metadata_bytes

    @property
    def file_bytes(self) -> int:
        """The whole file's size, as this header declares it."""
        return self.payload_offset + self.payload_bytes + TRAILER_SIZE

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
        known = sum(bit for bit, since in FLAG_SINCE.items() if self.version[1] >= since)
        if self.flags & ~known:
            raise SadFormatError(
                f"unknown flags {self.flags:#x} for a version {self.version[0]}."
                f"{self.version[1]} file"
            )
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


def _check_metadata_len(length: int) -> None:
    """The metadata's declared length is bounded before a byte of it is read: a header
    cannot make a reader read or checksum more than the largest metadata allowed."""
    if not MIN_METADATA <= length <= MAX_METADATA:
        raise SadFormatError(
            f"corrupt file: metadata length {length} out of range ({MIN_METADATA}..{MAX_METADATA})"
        )


def write(header: Header, comp: bytes, metadata: Metadata | None = None) -> bytes:
    """Assemble a whole file from a header, the (compressed) payload and the metadata.
    The header's flags and version follow from the metadata: a file without any is 1.0."""
    meta = metadata if metadata is not None else Metadata()
    flags = header.flags & ~FLAG_METADATA | (0 if meta.empty else FLAG_METADATA)
    entries = meta.entries()
    header = replace(
        header,
        flags=flags,
        version=file_version(flags),
        payload_bytes=len(comp),
        metadata_len=sum(ENTRY_HEAD + len(d) for _, d in entries),
    )
    header.validate()
    if entries:
        _check_metadata_len(header.metadata_len)
    meta.validate(header.channels)
    s = header.spec
    head = _HEADER.pack(
        MAGIC,
        *header.version,
        header.width,
        header.height,
        header.channels,
        header.k,
        header.n_sites,
        flags,
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
    block = b""
    if entries:
        block = struct.pack("<I", header.metadata_len) + b"".join(
            tag + struct.pack("<I", len(d)) + d for tag, d in entries
        )
        block += struct.pack("<I", zlib.crc32(block))
    crc = struct.pack("<I", zlib.crc32(comp))
    return head + struct.pack("<I", zlib.crc32(head)) + block + comp + crc


def with_metadata(data: bytes, metadata: Metadata) -> bytes:
    """A whole file with its metadata replaced by ``metadata`` (checked as read does)."""
    hdr, payload = read(data)
    return write(hdr, payload, metadata)


def read_header(data: bytes) -> Header:
    """Parse and validate the header (and check its CRC) without touching the payload.
    A file with metadata also needs the 4 bytes after the header: the metadata's length."""
    hdr = _read_fixed_header(data)
    if not hdr.flags & FLAG_METADATA:
        return hdr
    if len(data) < HEADER_SIZE + METADATA_LEN_SIZE:
        raise SadFormatError("truncated file (header incomplete)")
    (length,) = struct.unpack_from("<I", data, HEADER_SIZE)
    _check_metadata_len(length)
    return replace(hdr, metadata_len=length)


def _read_fixed_header(data: bytes) -> Header:
    """The 51 bytes of header and header CRC, parsed and validated."""
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
    """Parse a whole file: header, metadata and checksums. Returns the header and the
    payload, a read-only view into data (a payload may be tens of megabytes: it is not
    copied)."""
    hdr, comp, _ = read_all(data)
    return hdr, comp


def read_metadata(data: bytes) -> Metadata:
    """A whole file's metadata (every part of the file checked as ``read`` does)."""
    return read_all(data)[2]


def read_all(data: bytes) -> tuple[Header, memoryview, Metadata]:
    """``read``, and the file's metadata."""
    hdr = read_header(data)
    if len(data) < hdr.file_bytes:
        what = "payload" if len(data) >= hdr.payload_offset else "metadata"
        raise SadFormatError(f"truncated file ({what} incomplete)")
    if len(data) > hdr.file_bytes:
        raise SadFormatError("corrupt file: unexpected bytes after the payload")
    view = memoryview(data).toreadonly()
    meta = _metadata(view, hdr)
    end = hdr.payload_offset + hdr.payload_bytes
    comp = view[hdr.payload_offset : end]
    (crc,) = struct.unpack_from("<I", data, end)
    if zlib.crc32(comp) != crc:
        raise SadFormatError("corrupt file: payload checksum mismatch")
    return hdr, comp, meta


def _metadata(view: memoryview, hdr: Header) -> Metadata:
    """The metadata block of a file whose size matches its header: its CRC (which covers
    the length too), then every entry (docs/FORMAT.md, "Metadata")."""
    if not hdr.flags & FLAG_METADATA:
        return Metadata()
    end = HEADER_SIZE + METADATA_LEN_SIZE + hdr.metadata_len
    (crc,) = struct.unpack_from("<I", view, end)
    if zlib.crc32(view[HEADER_SIZE:end]) != crc:
        raise SadFormatError("corrupt file: metadata checksum mismatch")
    found: dict[bytes, bytes] = {}
    pos = HEADER_SIZE + METADATA_LEN_SIZE
    while pos < end:
        if end - pos < ENTRY_HEAD:
            raise SadFormatError("corrupt file: truncated metadata entry")
        tag = bytes(view[pos : pos + 4])
        (size,) = struct.unpack_from("<I", view, pos + 4)
        if tag not in METADATA_TAGS:
            raise SadFormatError(f"corrupt file: unknown metadata entry {tag!r}")
        if any(METADATA_TAGS.index(t) >= METADATA_TAGS.index(tag) for t in found):
            raise SadFormatError("corrupt file: metadata entries repeated or out of order")
        pos += ENTRY_HEAD
        if size > end - pos:
            raise SadFormatError("corrupt file: metadata entry longer than the metadata")
        found[tag] = bytes(view[pos : pos + size])
        pos += size
    meta = Metadata(found.get(ICC_TAG), found.get(EXIF_TAG))
    try:
        meta.validate(hdr.channels)
    except SadFormatError as exc:
        raise SadFormatError(f"corrupt file: {exc}") from None
    return meta


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
    no more than the file declares: the header (and the metadata's length, when it has
    metadata), then exactly the rest the header declares, then one byte to check that
    the stream ends there. Longer or endless input is refused without being read, and a
    bad header before anything else is read. The metadata and payload are not checked
    here (``read`` does that), so damaged files can still be described."""
    head = _read_exactly(f, HEADER_SIZE)
    # A short head fails here: bad magic or truncated header.
    if _read_fixed_header(head).flags & FLAG_METADATA:
        head += _read_exactly(f, METADATA_LEN_SIZE)
    hdr = read_header(head)
    rest = hdr.file_bytes - len(head)
    body = _read_exactly(f, rest)
    if len(body) < rest:
        what = "payload" if len(head) + len(body) >= hdr.payload_offset else "metadata"
        raise SadFormatError(f"truncated file ({what} incomplete)")
    if _read_exactly(f, 1):
        raise SadFormatError("corrupt file: unexpected bytes after the payload")
    return head + body


def read_path(path: str) -> bytes:
    """read_stream of the file at path; OSError (missing, a directory, no permission) as is.
    Unbuffered, so that not even a read-ahead takes bytes past the one probed."""
    with open(path, "rb", buffering=0) as f:
        return read_stream(f)
