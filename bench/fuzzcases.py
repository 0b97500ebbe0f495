"""The fuzzer's inputs: a pool of valid .sad files and the mutations made of them.

Byte-level mutations (`make_input`, unstructured: bit flips, byte sets, inserts, deletes,
truncations, splices, with CRCs kept, recomputed or recomputed with payload_len) come first.
Then the structure-aware cases (`make_case`): a pool file is parsed into its levels
(bench/sadfile.py) and one level is changed at a time, then the file is serialised again
with a consistent payload_len and both CRCs (most cases) or with one inconsistency on
purpose (the "wrap"), so that the mutated field reaches the reader's checks behind the
checksums. Case i of seed s depends only on (s, i) and the pool, so any case can be
made again alone (`python -m bench.fuzz --structured --seed s --case i`).

Levels and their mutators are listed in MUTATORS (name -> level, description). A mutator
returns True when its file must read exactly as its base file does (the same refusal, or
the same pixels): it only re-encodes the same content in another valid way.
"""

from __future__ import annotations

import math
import os
import random
import struct
import zlib
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np

from bench import sadfile as sad

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
GOLDEN = os.path.join(ROOT, "tests", "golden")

# ---------------------------------------------------------------- byte-level mutations

HEAD = 47  # bytes covered by the header CRC, which follows them
HEADER_SIZE = HEAD + 4
PAYLOAD_LEN_AT = 43
MODES = ("raw", "crc", "crc+len")
KINDS = ("flip", "set", "insert", "delete", "truncate", "splice")
SPECIAL = (0x00, 0x01, 0x7F, 0x80, 0xFF)


def golden_files() -> list[bytes]:
    """The committed valid files every mutation starts from."""
    return [data for _, data in golden_items()]


def golden_items() -> list[tuple[str, bytes]]:
    names = sorted(f for f in os.listdir(GOLDEN) if f.endswith(".sad"))
    out = []
    for name in names:
        with open(os.path.join(GOLDEN, name), "rb") as f:
            out.append((name, f.read()))
    return out


def fix_checksums(data: bytes, fix_length: bool = False) -> bytes:
    """Recompute the CRCs (and payload_len) so that a mutation gets past them.

    The payload is taken to be everything between the header CRC and the last 4 bytes, or,
    when header flag bit 0 is set and the metadata block's length fits in the file, between
    that block (whose CRC is recomputed too) and the last 4 bytes."""
    if len(data) < HEADER_SIZE + 4:
        return data
    buf = bytearray(data)
    start = HEADER_SIZE
    if buf[16] & 1 and len(buf) >= HEADER_SIZE + 8:
        end = HEADER_SIZE + 4 + struct.unpack_from("<I", buf, HEADER_SIZE)[0]
        if end + 8 <= len(buf):
            struct.pack_into("<I", buf, end, zlib.crc32(buf[HEADER_SIZE:end]))
            start = end + 4
    if fix_length:
        struct.pack_into("<I", buf, PAYLOAD_LEN_AT, len(buf) - start - 4)
    struct.pack_into("<I", buf, HEAD, zlib.crc32(buf[:HEAD]))
    struct.pack_into("<I", buf, len(buf) - 4, zlib.crc32(buf[start:-4]))
    return bytes(buf)


def mutate(data: bytes, op: tuple[str, int, int], pool: list[bytes]) -> bytes:
    """Apply one mutation (kind, a, b); positions wrap around the input's length."""
    kind, a, b = op
    n = len(data)
    if kind == "insert":
        pos = a % (n + 1)
        return data[:pos] + bytes([b & 0xFF]) + data[pos:]
    if kind == "truncate":
        return data[: a % (n + 1)]
    if kind == "splice":  # this file's head, another valid file's tail
        other = pool[b % len(pool)]
        cut = a % (n + 1)
        return data[:cut] + other[min(cut, len(other)) :]
    if n == 0:
        return data
    pos = a % n
    if kind == "flip":
        return data[:pos] + bytes([data[pos] ^ (1 << (b & 7))]) + data[pos + 1 :]
    if kind == "set":
        return data[:pos] + bytes([b & 0xFF]) + data[pos + 1 :]
    if kind == "delete":
        return data[:pos] + data[pos + 1 + b % 8 :]
    raise ValueError(f"unknown mutation {kind}")


def make_input(data: bytes, ops, mode: str, pool: list[bytes]) -> bytes:
    for op in ops:
        data = mutate(data, op, pool)
    return data if mode == "raw" else fix_checksums(data, fix_length=mode == "crc+len")


def random_ops(rng: random.Random, size: int, pool: list[bytes]) -> list[tuple[str, int, int]]:
    """1-4 mutations, half of them aimed at the header and the start of the payload."""
    ops = []
    for _ in range(min(4, 1 + int(rng.expovariate(1.0)))):
        kind = rng.choice(KINDS)
        pos = rng.randrange(HEADER_SIZE + 8) if rng.random() < 0.5 else rng.randrange(size + 1)
        value = rng.choice(SPECIAL) if rng.random() < 0.3 else rng.randrange(256)
        if kind == "splice":
            value = rng.randrange(len(pool))
        ops.append((kind, pos, value))
    return ops


# ---------------------------------------------------------------- the pool


@dataclass
class Base:
    """A valid starting file, parsed once."""

    name: str
    data: bytes
    sf: sad.SadFile
    planes: list[bytes]
    sites: sad.Sites


def load_pool(items: list[tuple[str, bytes]]) -> list[Base]:
    pool = []
    for name, data in items:
        sf = sad.parse(data)
        planes = sad.planes(sf)
        pool.append(Base(name, data, sf, planes, sad.sites(sf, planes)))
    return pool


def synthetic_image(width: int, height: int, channels: int, seed: int) -> np.ndarray:
    """Smooth ramps, a disc and a stripe with noise: uint8 (H, W, C)."""
    rng = np.random.default_rng(seed)
    y, x = np.mgrid[0:height, 0:width].astype(np.float64)
    y, x = y / max(height - 1, 1), x / max(width - 1, 1)
    img = np.stack([x, y, 1 - x * y, 0.5 + 0.5 * np.sin(6 * x)], axis=-1)
    img[(x - 0.4) ** 2 + (y - 0.6) ** 2 < 0.08] = (0.95, 0.1, 0.3, 0.2)
    img[np.abs(x - y) < 0.08] = (0.1, 0.8, 0.9, 1.0)
    img = np.clip(img + rng.normal(0, 0.05, img.shape), 0, 1)
    if channels == 1:
        img = img[..., :3].mean(axis=-1, keepdims=True)
    return np.rint(img[..., :channels] * 255).astype(np.uint8)


# (name, width, height, channels, bpp): split and single-frame payloads, 1, 3 and 4
# channels, 1/4 and 1/8 px position grids (the encoder's grid is finer from 1.5 bpp).
ENCODED = (
    ("enc-rgb-64x48-4bpp", 64, 48, 3, 4.0),
    ("enc-rgba-64x64-3bpp", 64, 64, 4, 3.0),
    ("enc-gray-96x64-3bpp", 96, 64, 1, 3.0),
    ("enc-gray-24x16-8bpp", 24, 16, 1, 8.0),
    ("enc-rgb-40x24-1bpp", 40, 24, 3, 1.0),
)


def encoded_items(iterations: int = 30) -> list[tuple[str, bytes]]:
    """Files of the encoder of this checkout (deterministic on the CPU); starts Taichi."""
    import sadcodec

    out = []
    for i, (name, w, h, c, bpp) in enumerate(ENCODED):
        img = synthetic_image(w, h, c, seed=100 + i)
        out.append((name, sadcodec.encode(img, bpp, seed=i, iterations=iterations)))
    return out


def default_header(**fields) -> dict:
    h = {
        "magic": sad.MAGIC,
        "version_major": 1,
        "version_minor": 0,
        "width": 32,
        "height": 32,
        "channels": 3,
        "k": 8,
        "n_sites": 1,
        "flags": 0,
        "pos_frac_bits": 2,
        "theta_bits": 7,
        "a_bits": 5,
        "a_max": 4.0,
        "r_bits": 8,
        "r_min": -32.0,
        "r_step": 0.25,
        "t_bits": 6,
        "t_min": 2.0,
        "t_step": 0.125,
        "col_bits": 6,
        "payload_len": None,
    }
    h.update(fields)
    return h


def random_sites(nrng: np.random.Generator, header: dict, n: int, channels: int) -> sad.Sites:
    """n sites with every index inside its grid, in the writer's order."""
    f = 1 << header["pos_frac_bits"]

    def below(bits_field: str) -> np.ndarray:
        return nrng.integers(0, 1 << header[bits_field], n)

    col = nrng.integers(0, 1 << header["col_bits"], (n, channels))
    s = sad.Sites(
        nrng.integers(0, header["width"] * f, n),
        nrng.integers(0, header["height"] * f, n),
        below("theta_bits"),
        below("a_bits"),
        below("r_bits"),
        below("t_bits"),
        col,
    )
    return s.sorted()


# (name, header fields, sites, delta flags, split): valid files at the edges of the
# format that the encoder never writes.
CRAFTED = (
    ("made-1x1-gray-1site", {"width": 1, "height": 1, "k": 1}, 1, 1, 0, True),
    (
        "made-4000x3-rgb",
        {"width": 4000, "height": 3, "pos_frac_bits": 4, "k": 1},
        200,
        3,
        0b101,
        True,
    ),
    (
        "made-extremes-rgba",
        {
            "width": 64,
            "height": 64,
            "k": 32,
            "theta_bits": 8,
            "a_bits": 8,
            "a_max": 16.0,
            "r_min": -4096.0,
            "r_step": 64.0,
            "t_bits": 8,
            "t_min": 32.0,
            "t_step": 0.09375,
            "col_bits": 7,
        },
        500,
        4,
        0b1011,
        True,
    ),
    # The log-temperature grid ends at exactly 56, the most FORMAT.md allows.
    (
        "made-tmax56-gray",
        {
            "width": 20,
            "height": 20,
            "t_bits": 3,
            "t_min": 28.0,
            "t_step": 4.0,
            "r_min": 4096.0,
            "r_step": 64.0,
        },
        40,
        1,
        0,
        False,
    ),
    (
        "made-coarse-rgb",
        {
            "width": 40,
            "height": 30,
            "pos_frac_bits": 0,
            "theta_bits": 1,
            "a_bits": 1,
            "a_max": 1e-45,
            "r_bits": 1,
            "r_min": 4096.0,
            "r_step": 1e-45,
            "t_bits": 1,
            "t_min": -16.0,
            "t_step": 1e-45,
            "col_bits": 1,
        },
        100,
        3,
        0,
        False,
    ),
    ("made-dense-gray", {"width": 32, "height": 32, "pos_frac_bits": 4}, 2000, 1, 1, True),
    ("made-1x300-rgb", {"width": 1, "height": 300}, 60, 3, 0b110, False),
)


def crafted_items() -> list[tuple[str, bytes]]:
    out = []
    nrng = np.random.default_rng(2026)
    for name, fields, n, channels, flags, split in CRAFTED:
        header = default_header(**fields)
        header = {k: sad.f32(v) if k in sad.FLOAT_FIELDS else v for k, v in header.items()}
        s = random_sites(nrng, header, n, channels)
        out.append((name, sad.build(header, s, flags, split, level=19).to_bytes()))
    return out


def pool_items(encoded: bool = True) -> list[tuple[str, bytes]]:
    """The goldens, the crafted files and (starting Taichi) the encoded ones."""
    return golden_items() + crafted_items() + (encoded_items() if encoded else [])


# ---------------------------------------------------------------- structured mutations

LEVELS = {
    "header": (20, "header fields at their limits, past them, or at other valid values"),
    "payload": (12, "payload flags and the varint size table"),
    "frame": (16, "zstd frames swapped, cut, extended, crafted, recompressed"),
    "plane": (18, "plane bytes changed, then recompressed"),
    "site": (12, "site fields edited (ranges, order, count), planes rebuilt"),
    "count": (10, "n_sites, channels and plane lengths that disagree"),
    "bytes": (12, "unstructured byte damage, CRCs kept, fixed or fixed with the length"),
}
# After the mutation: how lengths and checksums are written (the byte level has MODES).
WRAPS = {
    "consistent": 90,
    "stale-len": 2,
    "bad-header-crc": 2,
    "bad-payload-crc": 2,
    "trailing": 2,
    "truncated": 2,
}


class Mut:
    """What a mutator works on: its random sources, the base file and a copy to change."""

    def __init__(self, rng: random.Random, base: Base, pool: list[Base]):
        self.rng = rng
        self.nrng = np.random.default_rng(rng.getrandbits(64))
        self.base = base
        self.pool = pool
        self.sf = base.sf.copy()
        self.data: bytes | None = None  # set by byte-level mutators
        self.wrap: str | None = None

    # helpers -------------------------------------------------------------------------
    def planes(self) -> list[bytearray]:
        return [bytearray(p) for p in self.base.planes]

    def level(self) -> int:
        return self.rng.choice((-5, 1, 3, 3, 3, 19))

    def put(self, planes, **kw) -> None:
        sad.set_planes(self.sf, [bytes(p) for p in planes], level=self.level(), **kw)

    def ensure_split(self) -> None:
        if not self.sf.split:
            self.put(self.base.planes, split=True)

    def limit(self, plane: int) -> int:
        """Values plane may hold in a valid file: 2^bits of its field, 256 for the gaps."""
        h = self.sf.header
        if plane < sad.GAP_BYTES:
            return 256
        if plane < sad.GAP_BYTES + len(sad.SITE_FIELDS):
            field = sad.SITE_FIELDS[plane - sad.GAP_BYTES]
            return 1 << h[sad.FIELD_BITS[field]]
        c = plane - sad.GAP_BYTES - len(sad.SITE_FIELDS)
        return sad.chroma_mask(c, h["channels"], h["col_bits"]) + 1

    def value(self, limit: int) -> int:
        """A byte value near the edges of [0, limit) or anywhere."""
        r = self.rng
        choices = [0, 1, limit - 1, limit, limit + 1, 0x7F, 0x80, 0xFF, r.randrange(256)]
        if limit <= 256:
            choices.append(r.randrange(limit))
        return r.choice(choices) & 0xFF

    def frame_index(self) -> int:
        return self.rng.randrange(len(self.sf.frames))

    def set_sites(self, s: sad.Sites, sort: bool = True) -> None:
        if sort:
            s = s.sorted()
        self.sf.header["n_sites"] = len(s)
        self.put(sad.site_planes(s, self.sf.header["col_bits"], self.sf.flags))


Mutator = Callable[[Mut], bool | None]
MUTATORS: dict[str, tuple[str, str, Mutator]] = {}


def mutator(level: str, description: str):
    def register(fn: Mutator) -> Mutator:
        MUTATORS[fn.__name__] = (level, description, fn)
        return fn

    return register


# header ----------------------------------------------------------------------------


def f32_step(v: float, up: bool) -> float:
    """The float32 next to finite v, up or down (on the bits: np.nextafter's subnormal
    results are flushed to zero once Taichi has started)."""
    if v == 0:
        return sad.f32_value(1 if up else 0x80000001)
    bits = sad.f32_bits(v)
    return sad.f32_value(bits + 1 if (v > 0) == up else bits - 1)


def boundary(m: Mut, name: str):
    """A value at the edge of name's valid range, past it, special or random."""
    r, h = m.rng, m.sf.header
    base = m.base.sf.header[name]
    if name == "magic":
        one_off = sad.MAGIC[:3] + bytes([r.randrange(256)])
        return r.choice((b"SAD\x00", b"sad\x1a", bytes(4), one_off))
    if name in sad.FLOAT_FIELDS:
        lo, hi, _ = sad.FLOAT_RANGES[name]
        return r.choice(
            (
                math.nan,
                math.inf,
                -math.inf,
                0.0,
                -0.0,
                1e-45,
                1.1754944e-38,
                3.4028235e38,
                -3.4028235e38,
                lo,
                hi,
                f32_step(lo, False),
                f32_step(lo, True),
                f32_step(hi, True),
                f32_step(hi, False),
                -base,
                2 * base,
                r.uniform(lo, hi),
                r.uniform(-1e6, 1e6),
            )
        )
    if base is None:  # payload_len, computed when writing
        base = len(m.sf.payload())
    lo, hi = sad.INT_RANGES[name]
    top = sad.TYPE_MAX[name]
    values = [lo, hi, hi + 1, 0, top, base + 1, base - 1, r.randrange(top + 1), r.randint(lo, hi)]
    if name == "n_sites":
        plen = len(m.sf.payload())
        values += [8 * plen, 8 * plen + 1, 2 * base, base // 2]
    if name == "channels":
        values += [2, 3, 4, 5]
    if name == "payload_len":
        plen = len(m.sf.payload())
        values += [plen - 1, plen + 1, plen + 4, 1 << 30, (1 << 30) + 1]
    if name in ("width", "height"):
        values += [h[name] * 2, 16384, 16385, 4096, 4097]
    return min(max(r.choice(values), 0), top)


def valid_value(m: Mut, name: str):
    r = m.rng
    if name in sad.FLOAT_FIELDS:
        lo, hi, lo_open = sad.FLOAT_RANGES[name]
        v = r.choice((lo, hi, r.uniform(lo, hi), m.base.sf.header[name] * r.choice((0.5, 2))))
        v = sad.f32(min(max(v, lo), hi))
        return f32_step(lo, True) if lo_open and v <= lo else v
    if name == "channels":
        return r.choice(sad.CHANNELS)
    lo, hi = sad.INT_RANGES[name]
    return r.choice((lo, hi, r.randint(lo, hi)))


HEADER_TARGETS = [f for f in sad.FIELDS if f != "payload_len"]
VALID_TARGETS = [
    f for f in HEADER_TARGETS if f not in ("magic", "version_major", "flags", "n_sites")
]


@mutator("header", "one field at a limit, past it, or special (nan, inf, -0)")
def h_boundary(m: Mut):
    name = m.rng.choice(HEADER_TARGETS + ["payload_len"])
    m.sf.header[name] = boundary(m, name)


@mutator("header", "2-4 fields at limits or special values")
def h_multi(m: Mut):
    for name in m.rng.sample(HEADER_TARGETS, m.rng.randint(2, 4)):
        m.sf.header[name] = boundary(m, name)


@mutator("header", "1-4 fields at other valid values (planes kept)")
def h_valid(m: Mut):
    for name in m.rng.sample(VALID_TARGETS, m.rng.randint(1, 4)):
        m.sf.header[name] = valid_value(m, name)


@mutator("header", "width, height and position grid at their joint limits")
def h_dims(m: Mut):
    r, h = m.rng, m.sf.header
    w, hh = r.choice(
        (
            (65535, 4096),
            (65535, 4097),
            (16384, 16384),
            (16384, 16385),
            (1, 65535),
            (65535, 1),
            (46341, 5792),
            (h["width"], 65535),
            (65535, h["height"]),
            (h["width"] + 1, h["height"]),
            (h["width"] - 1, h["height"] - 1),
        )
    )
    h["width"], h["height"] = w, hh
    # The finest position grid these sides allow (max(W, H) << bits <= 65536), or one off.
    fine = 0
    while fine < 16 and max(w, hh, 1) << (fine + 1) <= 65536:
        fine += 1
    h["pos_frac_bits"] = max(0, fine + r.choice((0, 0, 1, -1)))


@mutator("header", "another 1.x minor version (must read the same)")
def h_minor(m: Mut):
    m.sf.header["version_minor"] = m.rng.choice((1, 2, 0x7F, 0xFF, m.rng.randrange(256)))
    return True


# payload: flags and the size table ------------------------------------------------


@mutator("payload", "one payload flag bit toggled")
def p_flag_bit(m: Mut):
    m.sf.flags ^= 1 << m.rng.randrange(8)


@mutator("payload", "payload flags set to any byte, layout kept")
def p_flags(m: Mut):
    m.sf.flags = m.rng.choice((*SPECIAL, 0x0F, 0x8F, 1 << m.sf.channels, m.rng.randrange(256)))


@mutator("payload", "split <-> single-frame layout, recompressed (must read the same)")
def p_layout(m: Mut):
    m.put(m.base.planes, split=not m.sf.split)
    return True


def table_sizes(m: Mut) -> list[int]:
    return [len(f) for f in m.sf.frames]


@mutator("payload", "one size-table entry changed (sizes no longer add up)")
def p_table_entry(m: Mut):
    m.ensure_split()
    sizes = table_sizes(m)
    i = m.rng.randrange(len(sizes))
    r = m.rng
    sizes[i] = r.choice(
        (
            0,
            sizes[i] + 1,
            max(0, sizes[i] - 1),
            sizes[i] + r.randint(2, 64),
            r.randrange(sizes[i] + 1),
            1 << 31,
            (1 << 35) - 1,
            2**63,
            2**64,
        )
    )
    m.sf.table = b"".join(sad.varint(s) for s in sizes)


@mutator("payload", "a boundary between two frames moved (sizes still add up)")
def p_table_shift(m: Mut):
    m.ensure_split()
    sizes = table_sizes(m)
    i = m.rng.randrange(len(sizes) - 1)
    d = m.rng.choice((1, -1, 2, -2, m.rng.randint(-sizes[i], sizes[i + 1])))
    d = max(-sizes[i], min(d, sizes[i + 1]))
    sizes[i] += d
    sizes[i + 1] -= d
    m.sf.table = b"".join(sad.varint(s) for s in sizes)


@mutator("payload", "size-table varints overlong, endless, missing or extra")
def p_table_varint(m: Mut):
    m.ensure_split()
    r = m.rng
    entries = [sad.varint(s) for s in table_sizes(m)]
    i = r.randrange(len(entries))
    kind = r.choice(("overlong", "overlong5", "endless", "drop", "extra", "empty"))
    if kind.startswith("overlong"):  # the same value with zero-valued continuation bytes
        pad = 1 if kind == "overlong" else r.randint(2, 9)
        entries[i] = bytes(b | 0x80 for b in entries[i]) + b"\x80" * (pad - 1) + b"\x00"
    elif kind == "endless":
        entries[i] = b"\xff" * r.randint(5, 12)
    elif kind == "drop":
        del entries[i]
    elif kind == "extra":
        entries.insert(i, sad.varint(r.choice((0, 1, 5, 300))))
    else:
        entries = []
    m.sf.table = b"".join(entries)


@mutator("payload", "bytes after the last frame, inside the payload")
def p_extra(m: Mut):
    r = m.rng
    m.sf.extra = r.choice(
        (
            bytes([r.randrange(256)]),
            bytes(r.randint(1, 8)),
            r.randbytes(r.randint(1, 32)),
            sad.compress(b"", 3),
            m.sf.frames[-1],
        )
    )
    if m.sf.split and r.random() < 0.5:  # the table covers them: the last frame's trailer
        sizes = table_sizes(m)
        sizes[-1] += len(m.sf.extra)
        m.sf.table = b"".join(sad.varint(s) for s in sizes)


@mutator("payload", "payload empty, flags only, or flags and table only")
def p_empty(m: Mut):
    kind = m.rng.choice(("empty", "flags", "table"))
    if kind == "empty":
        m.sf.raw_payload = b""
    elif kind == "flags":
        m.sf.raw_payload = bytes([m.sf.flags])
    else:
        m.ensure_split()
        m.sf.raw_payload = bytes([m.sf.flags]) + m.sf.size_table()


# frames --------------------------------------------------------------------------


@mutator("frame", "two frames swapped (table follows)")
def f_swap(m: Mut):
    m.ensure_split()
    i, j = m.rng.sample(range(len(m.sf.frames)), 2)
    f = m.sf.frames
    f[i], f[j] = f[j], f[i]


@mutator("frame", "a frame replaced by another frame of this or another file")
def f_copy(m: Mut):
    m.ensure_split()
    other = m.rng.choice(m.pool).sf if m.rng.random() < 0.5 else m.sf
    m.sf.frames[m.frame_index()] = m.rng.choice(other.frames)


@mutator("frame", "a frame cut short (table follows)")
def f_cut(m: Mut):
    i = m.frame_index()
    f = m.sf.frames[i]
    m.sf.frames[i] = f[: m.rng.choice((0, 1, 2, 3, len(f) - 1, m.rng.randrange(len(f))))]


@mutator("frame", "junk appended to a frame (table follows)")
def f_extend(m: Mut):
    r = m.rng
    i = m.frame_index()
    m.sf.frames[i] += r.choice((b"\x00", bytes(r.randint(1, 16)), r.randbytes(r.randint(1, 16))))


@mutator("frame", "a second complete frame appended to a frame (table follows)")
def f_concat(m: Mut):
    r = m.rng
    i = m.frame_index()
    n = m.sf.n
    second = r.choice((b"", bytes(n), r.randbytes(r.randint(1, 64)), m.base.planes[0]))
    m.sf.frames[i] += sad.compress(second, r.choice((1, 3)))


@mutator("frame", "1-4 bytes of a frame flipped or set (table follows)")
def f_bytes(m: Mut):
    r = m.rng
    i = m.frame_index()
    f = bytearray(m.sf.frames[i])
    if not f:
        return
    for _ in range(r.randint(1, 4)):
        pos = r.randrange(len(f))
        f[pos] = f[pos] ^ (1 << r.randrange(8)) if r.random() < 0.5 else r.choice(SPECIAL)
    m.sf.frames[i] = bytes(f)


@mutator("frame", "a frame's header (descriptor, window, block header) damaged")
def f_head(m: Mut):
    r = m.rng
    i = m.frame_index()
    f = bytearray(m.sf.frames[i])
    pos = r.randrange(min(len(f), 5)) if f else 0
    if f:
        f[pos] = r.randrange(256) if r.random() < 0.5 else f[pos] ^ (1 << r.randrange(8))
    m.sf.frames[i] = bytes(f)


@mutator("frame", "frames declare their exact content size (must read the same)")
def f_declare(m: Mut):
    m.put(m.base.planes, content_size=True)
    return True


@mutator("frame", "frames recompressed at another zstd level (must read the same)")
def f_level(m: Mut):
    sad.set_planes(m.sf, m.base.planes, level=m.rng.choice((-7, -1, 1, 2, 6, 12, 19, 22)))
    return True


@mutator("frame", "frames with a content checksum, sometimes damaged")
def f_checksum(m: Mut):
    m.put(m.base.planes, checksum=True)
    if m.rng.random() < 0.5:
        i = m.frame_index()
        f = bytearray(m.sf.frames[i])
        f[-1 - m.rng.randrange(4)] ^= 1 << m.rng.randrange(8)
        m.sf.frames[i] = bytes(f)


def frame_content(m: Mut, i: int) -> bytes:
    return m.base.planes[i] if m.sf.split else b"".join(m.base.planes)


@mutator("frame", "hand-made raw/RLE frames holding the right bytes (must read the same)")
def f_craft_valid(m: Mut):
    r = m.rng
    m.put(m.base.planes)  # the base's layout, then frames replaced one by one
    for i in range(len(m.sf.frames)):
        content = frame_content(m, i)
        cuts = {0, len(content), *range(0, len(content), 1 << 17)}  # blocks are <= 128 KiB
        cuts = sorted(cuts | {r.randrange(len(content) + 1) for _ in range(2)})
        pieces = [content[a:b] for a, b in zip(cuts, cuts[1:], strict=False)]
        blocks = []
        for k, piece in enumerate(pieces):
            kind = "rle" if piece.count(piece[:1]) == len(piece) else "raw"
            blocks.append(sad.block(kind, piece, last=k == len(pieces) - 1))
        # A window holds the largest block (a block may not be larger than the window).
        window = max(10, r.randint(10, 20), (max(map(len, pieces)) - 1).bit_length())
        head = r.choice(
            (
                sad.frame_header(None, len(content)),
                sad.frame_header(window),
                sad.frame_header(window, len(content)),
            )
        )
        m.sf.frames[i] = head + b"".join(blocks)
    m.sf.table = None
    return True


@mutator("frame", "hand-made frames: wrong sizes, huge windows, reserved blocks")
def f_craft(m: Mut):
    r = m.rng
    i = m.frame_index()
    content = frame_content(m, i)
    n = len(content)
    size = r.choice((n, n - 1, n + 1, 0, 1 << 17, (1 << 21) - 1, 2 * n))
    kind = r.choice(("raw", "rle", "rle", "reserved", "compressed"))
    body = content[: max(size, 0)] if kind == "raw" else r.randbytes(r.randint(1, 8))
    blocks = [sad.block(kind, body, last=r.random() < 0.8, size=size)]
    if r.random() < 0.3:
        blocks.append(sad.block("rle", b"\x00", last=True, size=r.choice((1, n, 1 << 20))))
    declared = r.choice((None, n, n + 1, n - 1, 0, 2**32 - 1, 2**64 - 1))
    window = r.choice((None, 10, 17, 27, 31, 41))
    if window is None and declared is None:
        declared = n
    head = sad.frame_header(window, declared, checksum=r.random() < 0.1)
    m.sf.frames[i] = head + b"".join(blocks)


# planes -----------------------------------------------------------------------------


def plane_index(m: Mut) -> int:
    return m.rng.randrange(sad.n_planes(m.sf.channels))


@mutator("plane", "1-8 bytes of one plane set to edge values")
def pl_set(m: Mut):
    planes = m.planes()
    i = plane_index(m)
    for _ in range(m.rng.randint(1, 8)):
        planes[i][m.rng.randrange(m.sf.n)] = m.value(m.limit(i))
    m.put(planes)


@mutator("plane", "one plane filled with one edge value")
def pl_fill(m: Mut):
    planes = m.planes()
    i = plane_index(m)
    planes[i] = bytearray([m.value(m.limit(i))]) * m.sf.n
    m.put(planes)


@mutator("plane", "one plane random, within its range or not")
def pl_random(m: Mut):
    planes = m.planes()
    i = plane_index(m)
    top = m.limit(i) if m.rng.random() < 0.5 else 256
    planes[i] = bytearray(m.nrng.integers(0, min(top, 256), m.sf.n, dtype=np.uint8).tobytes())
    m.put(planes)


@mutator("plane", "two planes swapped")
def pl_swap(m: Mut):
    planes = m.planes()
    i, j = m.rng.sample(range(len(planes)), 2)
    planes[i], planes[j] = planes[j], planes[i]
    m.put(planes)


@mutator("plane", "one site's Morton gap at u32 edges (wraps the code past 2^32)")
def pl_gap(m: Mut):
    planes = m.planes()
    n = m.sf.n
    k = m.rng.randrange(n)
    codes = sad.morton(m.base.sites.x, m.base.sites.y)
    prev = int(codes[k - 1]) if k else 0
    gap = m.rng.choice(
        (
            0xFFFFFFFF,
            (1 << 32) - prev,
            (1 << 32) - prev + 1,
            1 << 31,
            m.rng.getrandbits(32),
            0x55555555,
            0xAAAAAAAA,
            0,
        )
    )
    gap &= 0xFFFFFFFF
    for b in range(sad.GAP_BYTES):
        planes[b][k] = gap >> (8 * (sad.GAP_BYTES - 1 - b)) & 0xFF
    m.put(planes)


@mutator("plane", "a colour plane's delta coding toggled, content recoded (must read the same)")
def pl_recode(m: Mut):
    planes = m.planes()
    ch, cb = m.sf.channels, m.sf.header["col_bits"]
    c = m.rng.randrange(ch)
    i = sad.GAP_BYTES + len(sad.SITE_FIELDS) + c
    mask = sad.chroma_mask(c, ch, cb)
    v = np.frombuffer(bytes(planes[i]), np.uint8).astype(np.int64)
    v = np.diff(v, prepend=0) & mask if not m.sf.flags >> c & 1 else np.cumsum(v) & mask
    planes[i] = bytearray(v.astype(np.uint8).tobytes())
    m.sf.flags ^= 1 << c
    m.put(planes)
    return True


@mutator("plane", "stored Y, Co, Cg at their edges (RGB past its range or not)")
def pl_ycocg(m: Mut):
    ch, cb = m.sf.channels, m.sf.header["col_bits"]
    if ch < 3:
        return pl_set(m)
    planes = m.planes()
    first = sad.GAP_BYTES + len(sad.SITE_FIELDS)
    half = 1 << cb
    m.sf.flags &= ~0b111  # raw Y, Co, Cg planes
    stored = sad.to_ycocg(m.base.sites.col, cb)
    for c in range(3):
        planes[first + c] = bytearray(stored[:, c].astype(np.uint8).tobytes())
    for k in m.rng.sample(range(m.sf.n), min(m.sf.n, m.rng.randint(1, 4))):
        edges = (0, half - 1, half, 2 * half - 1, half // 2, m.rng.randrange(2 * half))
        planes[first][k] = m.rng.choice((0, half - 1, m.rng.randrange(half)))
        planes[first + 1][k] = m.rng.choice(edges)
        planes[first + 2][k] = m.rng.choice(edges)
    m.put(planes)


# sites ------------------------------------------------------------------------------


def some(m: Mut, n: int) -> list[int]:
    return m.rng.sample(range(n), min(n, m.rng.choice((1, 1, 2, 5))))


@mutator("site", "positions at the grid's last cell or just past it")
def s_position(m: Mut):
    s, h = m.base.sites.copy(), m.sf.header
    f = 1 << h["pos_frac_bits"]
    for k in some(m, len(s)):
        xs = (h["width"] * f - 1, h["width"] * f, 0, 0xFFFF, s.x[k])
        ys = (h["height"] * f - 1, h["height"] * f, 0, 0xFFFF, s.y[k])
        s.x[k], s.y[k] = m.rng.choice(xs), m.rng.choice(ys)
    m.set_sites(s, sort=m.rng.random() < 0.8)


@mutator("site", "theta, a, r, t or colour at the last grid value or just past it")
def s_field(m: Mut):
    s, h = m.base.sites.copy(), m.sf.header
    name = m.rng.choice((*sad.SITE_FIELDS, "col"))
    for k in some(m, len(s)):
        if name == "col":
            top = 1 << h["col_bits"]
            s.col[k, m.rng.randrange(s.col.shape[1])] = m.rng.choice((top - 1, top, 0))
        else:
            top = 1 << h[sad.FIELD_BITS[name]]
            getattr(s, name)[k] = m.rng.choice((top - 1, top, 255, 0))
    m.set_sites(s)


@mutator("site", "sites out of Morton order (swapped, reversed, shuffled)")
def s_order(m: Mut):
    s = m.base.sites
    n = len(s)
    idx = np.arange(n)
    kind = m.rng.choice(("swap", "reverse", "shuffle", "rotate"))
    if n > 1 and kind == "swap":
        i, j = m.rng.sample(range(n), 2)
        idx[i], idx[j] = idx[j], idx[i]
    elif kind == "reverse":
        idx = idx[::-1]
    elif kind == "shuffle":
        m.nrng.shuffle(idx)
    else:
        idx = np.roll(idx, m.rng.randint(1, max(n - 1, 1)))
    m.set_sites(s.take(idx), sort=False)


@mutator("site", "sites duplicated (equal Morton codes, gap 0)")
def s_duplicate(m: Mut):
    s = m.base.sites
    extra = m.nrng.integers(0, len(s), m.rng.choice((1, 3, len(s))))
    m.set_sites(s.take(np.concatenate([np.arange(len(s)), extra])))


@mutator("site", "sites dropped, down to one")
def s_drop(m: Mut):
    s = m.base.sites
    keep = m.rng.choice((1, max(1, len(s) // 2), max(1, len(s) - 1)))
    m.set_sites(s.take(np.sort(m.nrng.choice(len(s), keep, replace=False))))


@mutator("site", "all new random sites inside their grids (a valid file)")
def s_random(m: Mut):
    n = m.rng.choice((1, 2, 17, 256, 1500))
    m.sf.flags = (m.sf.flags & sad.SINGLE_FRAME) | m.rng.randrange(1 << m.sf.channels)
    m.set_sites(random_sites(m.nrng, m.sf.header, n, m.sf.channels))


# log2 of s_many's site counts, and their weights.
MANY_SITES = {12: 40, 14: 30, 16: 15, 18: 10, 20: 4, 22: 0.5}


@mutator("site", "2^12 to 2^22 (the limit) random sites, or one more than the limit")
def s_many(m: Mut):
    r, h = m.rng, m.sf.header
    log_n = r.choices(list(MANY_SITES), weights=list(MANY_SITES.values()))[0]
    n = (1 << log_n) + (1 if log_n == 22 and r.random() < 0.3 else 0)
    # A 2^k square image (about 1 or 1/4 site a pixel) on a 1/4 px grid: codes < 2^(2k + 4).
    k = max(4, (log_n + 1) // 2 + r.randrange(2))
    h["width"] = h["height"] = 1 << k
    h["pos_frac_bits"] = 2
    h["n_sites"] = n
    codes = np.sort(m.nrng.integers(0, 1 << (2 * k + 4), n, dtype=np.int64))
    gaps = np.diff(codes, prepend=0)
    planes = [(gaps >> (8 * b) & 0xFF).astype(np.uint8).tobytes() for b in range(3, -1, -1)]
    del codes, gaps
    for field in sad.SITE_FIELDS:
        top = 1 << h[sad.FIELD_BITS[field]]
        planes.append(m.nrng.integers(0, top, n, dtype=np.uint8).tobytes())
    rgb = m.nrng.integers(0, 1 << h["col_bits"], (n, m.sf.channels), dtype=np.int64)
    stored = sad.to_ycocg(rgb, h["col_bits"])
    planes += [stored[:, c].astype(np.uint8).tobytes() for c in range(m.sf.channels)]
    del rgb, stored
    m.sf.flags &= sad.SINGLE_FRAME  # raw colour planes
    sad.set_planes(m.sf, planes, level=r.choice((-1, 1)))


# counts -------------------------------------------------------------------------------


@mutator("count", "n_sites changed, planes kept")
def c_header_n(m: Mut):
    n = m.sf.n
    m.sf.header["n_sites"] = max(0, m.rng.choice((n - 1, n + 1, 2 * n, n // 2, 1, n + 7)))


@mutator("count", "one plane one or more bytes longer or shorter")
def c_plane_len(m: Mut):
    planes = m.planes()
    i = plane_index(m)
    d = m.rng.choice((-1, 1, 2, -m.sf.n, m.sf.n))
    planes[i] = planes[i][: m.sf.n + d] if d < 0 else planes[i] + bytes(d)
    m.put(planes)


@mutator("count", "every plane the same wrong length")
def c_planes_len(m: Mut):
    n = m.sf.n
    new_n = m.rng.choice((n - 1, n + 1, 1, 2 * n))
    m.put([(p * 2)[:new_n] for p in m.planes()])


@mutator("count", "channels changed, planes kept")
def c_channels(m: Mut):
    m.sf.header["channels"] = m.rng.choice([c for c in (0, 1, 2, 3, 4, 5) if c != m.sf.channels])


@mutator("count", "channels changed, colour planes added or dropped to match (valid)")
def c_channels_repack(m: Mut):
    s = m.base.sites.copy()
    ch = m.sf.channels
    new = m.rng.choice([c for c in sad.CHANNELS if c != ch])
    top = (1 << m.sf.header["col_bits"]) - 1
    rgb = np.repeat(s.col[:, :1], 3, axis=1) if ch == 1 else s.col[:, :3]
    if new == 1:
        s.col = rgb[:, 1:2]
    else:
        alpha = s.col[:, 3:] if ch == 4 else np.full((len(s), 1), top)
        s.col = np.concatenate([rgb, alpha], axis=1)[:, :new]
    m.sf.header["channels"] = new
    m.sf.flags = (m.sf.flags & sad.SINGLE_FRAME) | m.rng.randrange(1 << new)
    m.set_sites(s, sort=False)


@mutator("count", "single frame holding a few bytes more or less than P x N")
def c_single_len(m: Mut):
    whole = b"".join(m.base.planes)
    d = m.rng.choice((-1, 1, -m.sf.n, m.sf.n, 7))
    whole = whole[:d] if d < 0 else whole + bytes(d)
    m.sf.split = False
    m.sf.flags |= sad.SINGLE_FRAME
    m.sf.table = None
    m.sf.frames = [sad.compress(whole, m.level())]


# bytes ----------------------------------------------------------------------------------


@mutator("bytes", "1-4 flips, sets, inserts, deletes, truncations or splices")
def b_random(m: Mut):
    pool = [b.data for b in m.pool]
    m.wrap = m.rng.choices(MODES, weights=(1, 2, 2))[0]
    ops = random_ops(m.rng, len(m.base.data), pool)
    m.data = make_input(m.base.data, ops, m.wrap, pool)


# ---------------------------------------------------------------- cases


@dataclass
class Case:
    index: int
    base: int  # pool index
    level: str
    mutator: str
    wrap: str
    same: bool  # must read as the base file does
    data: bytes


def level_mutators() -> dict[str, list[str]]:
    out: dict[str, list[str]] = {level: [] for level in LEVELS}
    for name, (level, _, _) in MUTATORS.items():
        out[level].append(name)
    return out


_BY_LEVEL = level_mutators()


def wrap(m: Mut, kind: str) -> bytes:
    """Serialise m.sf: lengths and CRCs consistent, or one of them wrong on purpose."""
    r, sf = m.rng, m.sf
    if kind == "stale-len" and sf.header["payload_len"] is None:
        sf.header["payload_len"] = len(m.base.sf.payload())
    data = bytearray(sf.to_bytes())
    end = len(data) - len(sf.tail)
    if kind == "bad-header-crc":
        data[sad.HEADER.size + r.randrange(4)] ^= 1 << r.randrange(8)
    elif kind == "bad-payload-crc":
        data[end - 1 - r.randrange(4)] ^= 1 << r.randrange(8)
    elif kind == "trailing":
        data += r.choice((b"\x00", r.randbytes(r.randint(1, 16)), bytes(r.randint(1, 64))))
    elif kind == "truncated":
        cut = r.choice((1, 2, 4, 5, r.randint(1, len(data))))
        data = data[: max(0, len(data) - cut)]
    return bytes(data)


def make_case(pool: list[Base], seed: int, index: int, levels=None) -> Case:
    """Case index of run seed: reproducible from (seed, index), the levels and the pool."""
    rng = random.Random(f"sad-fuzz/{seed}/{index}")
    names = list(levels or LEVELS)
    level = rng.choices(names, weights=[LEVELS[x][0] for x in names])[0]
    name = rng.choice(_BY_LEVEL[level])
    return build_case(rng, pool, index, name, rng.randrange(len(pool)))


def build_case(rng: random.Random, pool: list[Base], index: int, name: str, b: int) -> Case:
    """Mutator name applied to pool file b, then written (with a wrap drawn from rng)."""
    level = MUTATORS[name][0]
    m = Mut(rng, pool[b], pool)
    same = bool(MUTATORS[name][2](m))
    if m.data is not None:
        return Case(index, b, level, name, m.wrap or "raw", False, m.data)
    kind = "consistent" if same else rng.choices(list(WRAPS), weights=list(WRAPS.values()))[0]
    return Case(index, b, level, name, kind, same, wrap(m, kind))
