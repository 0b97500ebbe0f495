"""Golden files: committed .sad files of every format version must keep decoding, exactly.

The files in tests/golden/ are never regenerated (see make_golden.py), so a decoder change
that alters the pixels of an old file, or a reader that stops accepting an old version,
fails here. Pixels must be identical on the CPU (docs/FORMAT.md allows CUDA +-1 level).
The header of each file is also read back with the offsets, types and valid values parsed
from the header table of docs/FORMAT.md, so the document and the files cannot drift apart.
"""

from __future__ import annotations

import os
import re
import struct
import zlib

import numpy as np
import pytest
from PIL import Image
from test_format import assert_every_bit_flip_refused

import sadcodec

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
GOLDEN = os.path.join(ROOT, "tests", "golden")
# The v1.0 defaults the goldens were written with (docs/FORMAT.md, "encoder's defaults").
V1_GRIDS = {
    "pos_frac_bits": 2,
    "theta_bits": 6,
    "a_bits": 5,
    "a_max": 4.0,
    "r_bits": 8,
    "r_min": -32.0,
    "r_step": 0.25,
    "t_bits": 6,
    "t_min": 2.0,
    "t_step": 0.125,
    "col_bits": 6,
}
# Frozen facts about each committed file; a golden is never removed or rewritten.
EXPECTED = {
    "v1.0-rgb-48x32": {"width": 48, "height": 32, "channels": 3, "n_sites": 62},
    "v1.0-gray-40x40": {"width": 40, "height": 40, "channels": 1, "n_sites": 94},
    "v1.0-rgba-32x24": {"width": 32, "height": 24, "channels": 4, "n_sites": 31},
}
_TYPES = {"4 bytes": "4s", "u8": "B", "u16": "H", "u32": "I", "f32": "f"}


def goldens() -> list[str]:
    return sorted(f[:-4] for f in os.listdir(GOLDEN) if f.endswith(".sad"))


def read(name: str, ext: str) -> bytes:
    with open(os.path.join(GOLDEN, name + ext), "rb") as f:
        return f.read()


def documented_header() -> dict[str, tuple[int, str, str]]:
    """field -> (offset, struct code, valid values), from the header table of FORMAT.md."""
    with open(os.path.join(ROOT, "docs", "FORMAT.md"), encoding="utf-8") as f:
        text = f.read()
    fields = {}
    for line in text.splitlines():
        cells = [c.strip() for c in line.strip().strip("|").split("|")]
        if len(cells) == 5 and cells[0].isdigit() and cells[1] in _TYPES:
            fields[cells[2]] = (int(cells[0]), _TYPES[cells[1]], cells[3])
    return fields


_NUM = r"-?\d+(?:\^\d+)?"  # 12, -32 or 2^22


def _number(text: str) -> int:
    base, _, exp = text.partition("^")
    return int(base) ** int(exp or 1)


def within(value: object, valid: str) -> bool:
    """Whether a field value lies in the 'valid values' cell of FORMAT.md's header table."""
    valid = valid.replace("`", "").replace("−", "-").strip()
    if valid in ("", "any"):
        return True
    if m := re.fullmatch(r"((?:[0-9A-F]{2} ?)+)\(.*\)", valid):
        return value == bytes.fromhex(m.group(1))
    if re.fullmatch(r"\d+(, \d+)*", valid):
        return value in {int(v) for v in valid.split(",")}
    if m := re.match(rf"({_NUM})\.\.({_NUM})", valid):
        return _number(m.group(1)) <= value <= _number(m.group(2))
    if m := re.match(r"([\[(])(-?[\d.]+), (-?[\d.]+)([\])])", valid):
        lo, hi = float(m.group(2)), float(m.group(3))
        above = value >= lo if m.group(1) == "[" else value > lo
        return above and (value <= hi if m.group(4) == "]" else value < hi)
    if m := re.fullmatch(rf"≤ ({_NUM})", valid):
        return value <= _number(m.group(1))
    raise AssertionError(f"FORMAT.md valid values '{valid}' are not understood by this test")


def test_every_expected_golden_is_committed():
    assert set(EXPECTED) <= set(goldens()), "a golden file was removed"
    for name in goldens():
        assert os.path.exists(os.path.join(GOLDEN, name + ".png")), name


@pytest.mark.parametrize("name", goldens())
def test_golden_decodes_to_identical_pixels(name):
    got = sadcodec.decode(read(name, ".sad"))
    with Image.open(os.path.join(GOLDEN, name + ".png")) as im:
        want = np.asarray(im)
    want = want[..., None] if want.ndim == 2 else want
    assert got.dtype == np.uint8 and got.shape == want.shape
    diff = np.abs(got.astype(int) - want.astype(int))
    assert diff.max() == 0, f"{name}: {np.count_nonzero(diff)} samples differ, max {diff.max()}"


@pytest.mark.parametrize("name", goldens())
def test_golden_header_matches_format_doc(name):
    data = read(name, ".sad")
    doc = documented_header()
    assert len(doc) == 22, sorted(doc)  # every header field, the header CRC included
    got = {f: struct.unpack_from("<" + code, data, off)[0] for f, (off, code, _) in doc.items()}
    for field, (_, _, valid) in doc.items():
        assert within(got[field], valid), f"{name}: {field} = {got[field]!r} not in {valid}"
    plen = got["payload_len"]
    assert len(data) == 47 + 4 + plen + 4
    assert got["header CRC"] == zlib.crc32(data[:47])
    assert struct.unpack_from("<I", data, 51 + plen)[0] == zlib.crc32(data[51 : 51 + plen])
    version = re.match(r"v(\d+)\.(\d+)-", name)
    assert version, name
    assert (got["version_major"], got["version_minor"]) == tuple(map(int, version.groups()))
    if name in EXPECTED:
        e = EXPECTED[name]
        assert (got["width"], got["height"]) == (e["width"], e["height"])
        assert (got["channels"], got["n_sites"], got["K"], got["flags"]) == (
            e["channels"],
            e["n_sites"],
            8,
            0,
        )
        assert {f: got[f] for f in V1_GRIDS} == V1_GRIDS
    info = sadcodec.read_info(data)
    assert info["format_version"] == "{}.{}".format(*version.groups())
    assert info["checksum"] == "ok"
    assert (info["width"], info["height"], info["sites"]) == (
        got["width"],
        got["height"],
        got["n_sites"],
    )


def test_doc_value_checker_is_not_vacuous():
    doc = documented_header()
    bad = {"magic": b"SAD\x1b", "version_major": 2, "width": 0, "channels": 2, "K": 33}
    bad |= {"n_sites": 2**22 + 1, "flags": 1, "a_max": 0.0, "r_min": -4097.0}
    bad |= {"t_step": 4.5, "payload_len": 2**30 + 1}
    for field, value in bad.items():
        assert not within(value, doc[field][2]), field


def test_every_bit_flip_of_every_golden_is_refused():
    """Real encoder output, both frame modes: each of the 8 * len flips fails a CRC."""
    flips = sum(assert_every_bit_flip_refused(read(name, ".sad")) for name in goldens())
    assert flips >= 8 * (563 + 565 + 374)
