"""Golden files: committed .sad files of every format version must keep decoding, exactly.

The files in tests/golden/ are never regenerated (see make_golden.py and README.md), so a
decoder change that alters the pixels of an old file, or a reader that stops accepting an
old version, fails here. Each golden is decoded at its stored size and at one other scale
(`<golden>@<scale>x.png`), and pixels must be identical on the CPU; through the large-
output path (row blend, polynomial exp) they may differ by one level on a few samples.
Every expected PNG is also checked against an independent float64 rendering of
docs/FORMAT.md's formula (tests/test_render.py, reference), up to float32 rounding and
near ties, so a golden cannot freeze a wrong decode. On CUDA (jump flooding, not the
exact top-K: docs/FORMAT.md) a few pixels may blend another site.
The header of each file is also read back with the offsets, types and valid values parsed
from the header table of docs/FORMAT.md, so the document and the files cannot drift apart;
a 1.1 file's metadata block is checked against FORMAT.md's layout byte by byte.
"""

from __future__ import annotations

import io
import os
import re
import struct
import zlib

import numpy as np
import pytest
from PIL import Image, ImageCms
from test_format import assert_every_bit_flip_refused
from test_render import assert_matches_reference, reference

import sadcodec
from sadcodec import decoder

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
    "v1.0-rgb-256x192": {
        "width": 256,
        "height": 192,
        "channels": 3,
        "n_sites": 946,
        "grids": V1_GRIDS | {"theta_bits": 7},
        "scale": 0.5,
    },
    # An sRGB profile from LittleCMS and EXIF (Make, Model): the metadata of version 1.1.
    "v1.1-rgb-48x32-meta": {
        "width": 48,
        "height": 32,
        "channels": 3,
        "n_sites": 105,
        "flags": 1,
        "grids": V1_GRIDS | {"theta_bits": 7, "pos_frac_bits": 3},
        "metadata": {"ICCP": 588, "EXIF": 60},
    },
}
_TYPES = {"4 bytes": "4s", "u8": "B", "u16": "H", "u32": "I", "f32": "f"}
ON_CUDA = os.environ.get("SAD_TEST_ARCH", "cpu") == "cuda"
# On CUDA the share of pixels that may blend another site than the exact top-K's (jump
# flooding's misses: on the 256x192 golden 16 pixels at its size, 1.5% at half size).
CUDA_MISSES = 0.02


def goldens() -> list[str]:
    return sorted(f[:-4] for f in os.listdir(GOLDEN) if f.endswith(".sad"))


def scaled() -> list[tuple[str, float]]:
    """(golden, scale) of each expected decode at another scale, <golden>@<scale>x.png."""
    found = (re.fullmatch(r"(.+)@([\d.]+)x\.png", f) for f in os.listdir(GOLDEN))
    return sorted((m.group(1), float(m.group(2))) for m in found if m)


def read(name: str, ext: str) -> bytes:
    with open(os.path.join(GOLDEN, name + ext), "rb") as f:
        return f.read()


def expected(png: str) -> np.ndarray:
    """The expected pixels as sadcodec.decode gives them: (H, W) for greyscale."""
    with Image.open(os.path.join(GOLDEN, png)) as im:
        return np.asarray(im)


def assert_same_pixels(got: np.ndarray, want: np.ndarray, label: str) -> None:
    """Identical on the CPU; on CUDA within one level but for jump flooding's misses."""
    assert got.dtype == np.uint8 and got.shape == want.shape, label
    diff = np.abs(got.astype(int) - want.astype(int))
    if ON_CUDA:
        assert (np.atleast_3d(diff).max(axis=-1) > 1).mean() <= CUDA_MISSES, label
    else:
        differ = np.count_nonzero(diff)
        assert diff.max() == 0, f"{label}: {differ} samples differ, max {diff.max()}"


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


def test_every_golden_has_a_scaled_decode():
    assert {name for name, _ in scaled()} == set(goldens())
    for name, e in EXPECTED.items():
        assert (name, e.get("scale", 2.0)) in scaled(), name


@pytest.mark.parametrize("name", goldens())
def test_golden_decodes_to_identical_pixels(name):
    got = sadcodec.decode(read(name, ".sad"))
    assert_same_pixels(got, expected(name + ".png"), name)


@pytest.mark.parametrize("name,scale", scaled())
def test_golden_decodes_at_another_scale_to_identical_pixels(name, scale):
    """Another output grid: finer (2x: the points between the fitted pixel centres) or
    coarser (0.5x: each 8x8 tile covers 16x16 fitted pixels, lists twice as long)."""
    got = sadcodec.decode(read(name, ".sad"), scale=scale)
    assert_same_pixels(got, expected(f"{name}@{scale:g}x.png"), f"{name} at {scale:g}x")


@pytest.mark.parametrize("name,scale", [(n, 1.0) for n in goldens()] + scaled())
def test_golden_through_the_large_output_path(name, scale, monkeypatch):
    """Outputs of LARGE_OUTPUT_PIXELS or more fill each pixel's first K by a sorting
    network and blend a row of pixels at once with a polynomial exp: the same sites, so
    at most one level off the per-pixel blend, on few samples (docs/FORMAT.md)."""
    import sadcodec.render as render_mod

    monkeypatch.setattr(render_mod, "LARGE_OUTPUT_PIXELS", 0)
    got = sadcodec.decode(read(name, ".sad"), scale=scale)
    png = f"{name}.png" if scale == 1.0 else f"{name}@{scale:g}x.png"
    diff = np.abs(got.astype(int) - expected(png).astype(int))
    if not ON_CUDA:
        assert diff.max() <= 1, f"{name} at {scale:g}x: {diff.max()} levels off"
        assert (diff > 0).mean() <= 0.005, f"{name} at {scale:g}x: {(diff > 0).mean():.4f}"


@pytest.mark.parametrize("name,scale", [(n, 1.0) for n in goldens()] + scaled())
def test_golden_png_is_the_normative_render(name, scale):
    """Each expected PNG against float64 brute force over all sites (FORMAT.md's
    formula): one level off at most but at near ties of the K-th place (test_render)."""
    data = read(name, ".sad")
    hdr, params = decoder.parse(data)
    png = f"{name}.png" if scale == 1.0 else f"{name}@{scale:g}x.png"
    want = np.atleast_3d(expected(png))
    ref = reference(params, hdr.width, hdr.height, want.shape[1], want.shape[0], hdr.k)
    assert_matches_reference(want, ref, hdr.k, f"{png} vs float64")


def test_large_golden_sees_the_top_k_map():
    """The 256x192 golden tells the exact top-K from jump flooding's (which the CPU decoder
    used until 2026-11-25, and CUDA still uses): goldens can now catch a change in which
    sites a pixel blends. The three small ones decode alike under both."""
    import taichi as ti

    from sadcodec.kernels import render as krender
    from sadcodec.kernels import table as ktable
    from sadcodec.kernels.common import TABLE_COLS
    from sadcodec.topk import TopKMap

    name = "v1.0-rgb-256x192"
    for scale, png in ((1.0, f"{name}.png"), (0.5, f"{name}@0.5x.png")):
        hdr, params = decoder.parse(read(name, ".sad"))
        n, cols = params.shape
        w, h = round(hdr.width * scale), round(hdr.height * scale)
        p = ti.ndarray(ti.f32, shape=(n, cols))
        p.from_numpy(params)
        tab = ti.ndarray(ti.f32, shape=(n, TABLE_COLS))
        ktable.prepare(p, tab, n)
        s_inv = 1.0 / max(hdr.width, hdr.height)
        jfa = TopKMap(h, w, hdr.k, sx=hdr.width / w, sy=hdr.height / h)
        jfa.build(tab, n, s_inv)
        out = ti.ndarray(ti.u8, shape=(h, w, cols - 6))
        krender.render(jfa.cur, tab, p, out, jfa.sx, jfa.sy, s_inv, hdr.k, cols - 6, 0)
        missed = (out.to_numpy() != expected(png)).any(axis=-1).sum()
        print(f"\n{png}: jump flooding blends other sites at {missed} pixels")
        assert missed >= 5
    # The float64 reference tells them apart too (at half size: 159 pixels at no near tie).
    ref = reference(params, hdr.width, hdr.height, w, h, hdr.k)
    with pytest.raises(AssertionError, match="a different site was blended"):
        assert_matches_reference(out.to_numpy(), ref, hdr.k, "jump flooding")


@pytest.mark.parametrize("name", goldens())
def test_golden_header_matches_format_doc(name):
    data = read(name, ".sad")
    doc = documented_header()
    assert len(doc) == 22, sorted(doc)  # every header field, the header CRC included
    got = {f: struct.unpack_from("<" + code, data, off)[0] for f, (off, code, _) in doc.items()}
    for field, (_, _, valid) in doc.items():
        assert within(got[field], valid), f"{name}: {field} = {got[field]!r} not in {valid}"
    plen = got["payload_len"]
    entries = metadata_entries(data) if got["flags"] & 1 else {}
    start = 51 + (8 + sum(8 + n for n in entries.values()) if entries else 0)
    assert len(data) == start + plen + 4
    assert got["header CRC"] == zlib.crc32(data[:47])
    assert struct.unpack_from("<I", data, start + plen)[0] == zlib.crc32(data[start : start + plen])
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
            e.get("flags", 0),
        )
        assert {f: got[f] for f in V1_GRIDS} == e.get("grids", V1_GRIDS)
        assert entries == e.get("metadata", {})
    info = sadcodec.read_info(data)
    assert info["format_version"] == "{}.{}".format(*version.groups())
    assert info["checksum"] == "ok"
    assert (info["width"], info["height"], info["sites"]) == (
        got["width"],
        got["height"],
        got["n_sites"],
    )


def metadata_entries(data: bytes) -> dict[str, int]:
    """tag -> data bytes of each metadata entry, read by FORMAT.md's "Metadata" layout
    (the length at 51, the entries, a CRC of both), not by sadcodec."""
    (length,) = struct.unpack_from("<I", data, 51)
    assert 16 <= length <= 4259847
    assert struct.unpack_from("<I", data, 55 + length)[0] == zlib.crc32(data[51 : 55 + length])
    entries, pos = {}, 55
    while pos < 55 + length:
        tag = data[pos : pos + 4].decode("ascii")
        (n,) = struct.unpack_from("<I", data, pos + 4)
        body = data[pos + 8 : pos + 8 + n]
        if tag == "ICCP":
            assert int.from_bytes(body[:4], "big") == n and body[36:40] == b"acsp"
        else:
            assert tag == "EXIF" and body[:4] in (b"II*\x00", b"MM\x00*")
        entries[tag] = n
        pos += 8 + n
    assert pos == 55 + length and list(entries) in (["ICCP"], ["EXIF"], ["ICCP", "EXIF"])
    return entries


def test_golden_metadata_reads_back():
    """The 1.1 golden's ICC profile and EXIF as sadcodec.read_metadata gives them to Pillow."""
    meta = sadcodec.read_metadata(read("v1.1-rgb-48x32-meta", ".sad"))
    assert ImageCms.getProfileDescription(ImageCms.ImageCmsProfile(io.BytesIO(meta["icc_profile"])))
    exif = Image.Exif()
    exif.load(meta["exif"])
    assert (exif[0x010F], exif[0x0110]) == ("sadcodec", "golden v1.1")


def test_doc_value_checker_is_not_vacuous():
    doc = documented_header()
    bad = {"magic": b"SAD\x1b", "version_major": 2, "width": 0, "channels": 2, "K": 33}
    bad |= {"n_sites": 2**22 + 1, "flags": 2, "a_max": 0.0, "r_min": -4097.0}
    bad |= {"t_step": 4.5, "payload_len": 2**30 + 1}
    for field, value in bad.items():
        assert not within(value, doc[field][2]), field


def test_every_bit_flip_of_every_golden_is_refused():
    """Real encoder output, both frame modes: each of the 8 * len flips fails a CRC."""
    flips = sum(assert_every_bit_flip_refused(read(name, ".sad")) for name in goldens())
    assert flips >= 8 * (563 + 565 + 374)
