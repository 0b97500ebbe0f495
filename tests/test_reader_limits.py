"""Reading a .sad file from a stream reads what its header declares, and no more (issue 24).

`container.read_stream` takes the header, then exactly payload_len + 4 bytes, then one
byte to see that the stream ends: endless input (/dev/zero, a pipe) and files padded with
gigabytes are refused at once, without being read. `sad info` and `sad decode` read
through it. Before: `sad info /dev/zero` grew until killed, a file with 3 GiB appended
was read whole (3.1 GB) before being refused.
"""

from __future__ import annotations

import io
import os
import struct
import threading
import tracemalloc
import zlib

import numpy as np
import pytest
from test_cli import assert_one_line_error, run

from sadcodec import container
from sadcodec.errors import SadFormatError

GOLDEN = os.path.join(os.path.dirname(os.path.abspath(__file__)), "golden")
NAMES = sorted(f for f in os.listdir(GOLDEN) if f.endswith(".sad"))


def golden(name: str = "v1.0-rgb-48x32.sad") -> bytes:
    with open(os.path.join(GOLDEN, name), "rb") as f:
        return f.read()


class Counting(io.RawIOBase):
    """A raw stream of data, then endless filler bytes (or its end); counts what is read."""

    def __init__(self, data: bytes, endless: bool = False, filler: int = 0):
        self.data, self.endless, self.filler = data, endless, filler
        self.pos = 0

    def readable(self) -> bool:
        return True

    def readinto(self, b) -> int:
        want = len(b)
        if self.pos < len(self.data):
            chunk = self.data[self.pos : self.pos + want]
        elif self.endless:
            chunk = bytes([self.filler]) * want
        else:
            chunk = b""
        b[: len(chunk)] = chunk
        self.pos += len(chunk)
        return len(chunk)


class Trickle(Counting):
    """At most 7 bytes a read, as a pipe may give: the reader must loop."""

    def readinto(self, b) -> int:
        return super().readinto(memoryview(b)[:7])


@pytest.mark.parametrize("name", NAMES)
def test_reads_exactly_the_file(name):
    data = golden(name)
    for cls in (Counting, Trickle):
        f = cls(data)
        assert container.read_stream(f) == data
        assert f.pos == len(data)


def test_endless_input_after_a_file_is_refused_after_one_byte():
    data = golden()
    for cls in (Counting, Trickle):
        f = cls(data, endless=True)
        with pytest.raises(SadFormatError, match="unexpected bytes after the payload"):
            container.read_stream(f)
        assert f.pos == len(data) + 1


@pytest.mark.parametrize("filler", [0x00, ord("S")])
def test_endless_junk_is_refused_after_the_header(filler):
    f = Counting(b"", endless=True, filler=filler)
    with pytest.raises(SadFormatError, match="not a .sad file"):
        container.read_stream(f)
    assert f.pos == container.HEADER_SIZE


def test_short_input_is_truncated():
    data = golden()
    for cut in (0, 3, 20, container.HEADER_SIZE, len(data) - 4, len(data) - 1):
        with pytest.raises(SadFormatError, match="truncated file|not a .sad file"):
            container.read_stream(Counting(data[:cut]))
    with pytest.raises(SadFormatError, match=r"truncated file \(payload incomplete\)"):
        container.read_stream(Counting(data[:-1]))


def test_a_huge_declared_payload_is_refused_before_reading_it():
    """payload_len 2^30 for 62 sites: refused by its header (the payload bound), with the
    stream endless behind it, so nothing past the header is read."""
    head = bytearray(golden()[:47])
    struct.pack_into("<I", head, 43, 1 << 30)
    head += struct.pack("<I", zlib.crc32(head))
    f = Counting(bytes(head), endless=True)
    with pytest.raises(SadFormatError, match="payload too large for 62 sites"):
        container.read_stream(f)
    assert f.pos == container.HEADER_SIZE


def test_a_file_padded_with_a_gibibyte_is_refused_without_reading_it(tmp_path):
    path = tmp_path / "padded.sad"
    data = golden()
    with open(path, "wb") as f:
        f.write(data)
        f.truncate(len(data) + (1 << 30))  # sparse: costs no disk
    tracemalloc.start()
    try:
        with pytest.raises(SadFormatError, match="unexpected bytes after the payload"):
            container.read_path(str(path))
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert peak < 1 << 20, f"peak {peak} bytes"
    assert container.read_path(os.path.join(GOLDEN, NAMES[0])) == golden(NAMES[0])


@pytest.mark.skipif(not os.path.exists("/dev/zero"), reason="needs /dev/zero")
@pytest.mark.parametrize("cmd", [["info", "/dev/zero"], ["decode", "/dev/zero", "-o", "OUT"]])
def test_sad_on_dev_zero_fails_at_once(cmd, tmp_path, capsys, monkeypatch):
    args = [str(tmp_path / "x.png") if a == "OUT" else a for a in cmd]
    code, out, err = run(args, capsys, monkeypatch)
    assert_one_line_error(code, err, "cannot read '/dev/zero': not a .sad file (bad magic bytes)")
    assert out == "" and not (tmp_path / "x.png").exists()


@pytest.mark.parametrize("cmd", ["info", "decode"])
def test_appended_junk_is_refused_unread_and_named_once(cmd, tmp_path, capsys, monkeypatch):
    """A GiB appended (sparse) is refused without being read (it used to be read whole)."""
    path = tmp_path / "junk.sad"
    data = golden()
    with open(path, "wb") as f:
        f.write(data)
        f.truncate(len(data) + (1 << 30))
    args = [cmd, path] + (["-o", tmp_path / "x.png"] if cmd == "decode" else [])
    tracemalloc.start()
    try:
        code, out, err = run(args, capsys, monkeypatch)
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert_one_line_error(
        code, err, f"cannot read '{path}': corrupt file: unexpected bytes after the payload"
    )
    assert err.count("cannot read") == 1
    assert peak < 64 << 20, f"peak {peak >> 20} MiB"


def feed_fifo(path: str, data: bytes) -> threading.Thread:
    """Write data into a FIFO from a thread (opening blocks until the reader opens it)."""

    def write() -> None:
        try:
            with open(path, "wb") as f:
                f.write(data)
        except BrokenPipeError:  # the reader stopped early, as it should on junk
            pass

    t = threading.Thread(target=write, daemon=True)
    t.start()
    return t


@pytest.mark.skipif(not hasattr(os, "mkfifo"), reason="needs FIFOs")
def test_sad_info_reads_a_fifo(tmp_path, capsys, monkeypatch):
    fifo = str(tmp_path / "pipe.sad")
    os.mkfifo(fifo)
    data = golden()
    t = feed_fifo(fifo, data)
    code, out, err = run(["info", fifo, "--json"], capsys, monkeypatch)
    t.join(10)
    assert code == 0, err
    assert f'"bytes": {len(data)}' in out and '"checksum": "ok"' in out
    t = feed_fifo(fifo, data + bytes(5000))
    code, out, err = run(["info", fifo], capsys, monkeypatch)
    t.join(10)
    assert_one_line_error(code, err, "unexpected bytes after the payload")


# -- decode cost: refused early, parsed lean (issue 24) ----------------------------------


def many_sites_file(n: int, size: int, k: int = 8, damage: str = "") -> bytes:
    """A valid file of n random sites on a size x size image (as the fuzzer's s_many
    makes them): positions on the grid, every other field random in its range, one fast
    zstd frame. damage: "gap" (the last site's Morton gap past the grid, or past 2^32),
    "colour" (its chroma past the RGB range), "both"."""
    import zstandard

    from sadcodec import bitstream
    from sadcodec.settings import choose_spec

    spec = choose_spec(size, size)
    rng = np.random.default_rng(n)
    side = size << spec.pos_frac_bits
    xq, yq = rng.integers(0, side, n), rng.integers(0, side, n)
    codes = np.sort(bitstream.morton(xq, yq))
    gaps = np.diff(codes, prepend=0)
    planes = [(gaps >> (8 * b) & 0xFF).astype(np.uint8) for b in range(3, -1, -1)]
    for bits in (spec.theta_bits, spec.a_bits, spec.r_bits, spec.t_bits):
        planes.append(rng.integers(0, 1 << bits, n).astype(np.uint8))
    rgb = rng.integers(0, 1 << spec.col_bits, (n, 3))
    stored = bitstream.to_ycocg(rgb, spec.col_bits)
    planes += [stored[:, c].astype(np.uint8) for c in range(3)]
    if damage in ("gap", "both"):
        planes[0][-1] = 0xFF
    if damage in ("colour", "both"):
        planes[8][-1], planes[9][-1] = 0, 1 << spec.col_bits  # Y 0, Co most negative
    params = zstandard.ZstdCompressionParameters.from_level(
        1, format=zstandard.FORMAT_ZSTD1_MAGICLESS, write_content_size=0
    )
    frame = zstandard.ZstdCompressor(compression_params=params).compress(b"".join(planes))
    payload = bytes([bitstream.SINGLE_FRAME]) + frame
    hdr = container.Header(size, size, 3, k, n, spec, payload_bytes=len(payload))
    return container.write(hdr, payload)


def test_parse_holds_the_params_and_the_planes_only():
    """Parsing 2^18 sites peaks at what decoder.site_bytes promises a site (80 bytes for
    RGB: the float32 params, the planes and one chunk's fields). It held every field in
    int64 several times over: ~180 bytes a site, 780 MB for 2^22 sites."""
    from sadcodec import decoder

    n = 1 << 18
    data = many_sites_file(n, 1024)
    tracemalloc.start()
    try:
        hdr, params = decoder.parse(data)
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert hdr.n_sites == n and params.shape == (n, 9) and params.dtype == np.float32
    assert peak <= decoder.site_bytes(3) * n, f"{peak / n:.0f} bytes a site"
    print(f"\nparse of {n} sites: peak {peak / n:.0f} bytes a site")


def test_parse_in_chunks_reads_as_one_chunk(monkeypatch):
    """The chunked parse gives the params (bit for bit) and the refusals of a parse in
    one piece: chunks of 7 sites against one chunk, on valid and damaged files."""
    from sadcodec import bitstream, decoder

    files = [golden(n) for n in NAMES] + [many_sites_file(300, 40)]
    damaged = [many_sites_file(300, 40, damage=d) for d in ("gap", "colour", "both")]

    def outcome(data: bytes):
        try:
            return decoder.parse(data)[1].view(np.uint32)
        except SadFormatError as exc:
            return str(exc)

    want = [outcome(d) for d in files + damaged]
    assert all(isinstance(w, str) for w in want[-3:])
    real = bitstream.iter_sites
    monkeypatch.setattr(bitstream, "iter_sites", lambda *a: real(*a, chunk=7))
    for d, w in zip(files + damaged, want, strict=True):
        got = outcome(d)
        assert got == w if isinstance(w, str) else np.array_equal(got, w)


def test_a_costly_file_is_refused_by_the_probe_before_culling(monkeypatch):
    """The ramp-of-radii file (400 sites, K = 32, 3900x3900) models at ~15 s, over the
    8 s limit: it was refused only once every level was culled (1.8-2.4 s idle). A probe
    of 16 windows of 64x64 pixels, culled alone, predicts it and refuses it first,
    having bounded under 2% of what the whole culling bounds."""
    from test_render import coincident_file

    import sadcodec
    import sadcodec.render as render_mod
    from sadcodec.topk import cull_tiles

    data = coincident_file(400, 32, 3900, radii=True)
    maps = []

    def culled(tab, n, s_inv, w, h, *a, **kw):
        maps.append((w, h))
        return cull_tiles(tab, n, s_inv, w, h, *a, **kw)

    monkeypatch.setattr(render_mod, "cull_tiles", culled)
    with pytest.raises(sadcodec.SadError, match=r"needs an estimated .* s to decode at 3900x3900"):
        sadcodec.decode(data)
    assert maps == [(64, 64)] * 16  # the windows only: the whole map was never culled


def test_probe_predicts_the_model_and_spares_ordinary_decodes(monkeypatch):
    """Where the probe runs, its prediction is the model's figure once culled, within
    a few percent (the sample's error is far inside decoder.PROBE_MARGIN); where its cost
    would show in an ordinary decode (a golden file at its size) it does not run."""
    from test_render import coincident_file

    import sadcodec.render as render_mod
    from sadcodec import decoder
    from sadcodec.kernels import table as ktable
    from sadcodec.kernels.common import TABLE_COLS
    from sadcodec.topk import cull_tiles

    seen = {}

    class Budget(render_mod.DecodeBudget):
        def predict(self, culled, scored):
            seen["args"] = (culled, scored)

    cases = [
        (coincident_file(400, 32, 3900, radii=True), 2000),
        (golden("v1.0-rgb-48x32.sad"), 4000),
    ]
    cases.append((golden("v1.0-rgb-256x192.sad"), 256))
    for data, width in cases:
        hdr, params = decoder.parse(data)
        params = render_mod.drop_shadowed(params, hdr.k)
        n = len(params)
        tab = np.empty((n, TABLE_COLS), np.float32)
        ktable.prepare(params, tab, n)
        height = round(hdr.height * width / hdr.width)
        sx, sy, s_inv = hdr.width / width, hdr.height / height, 1 / max(hdr.width, hdr.height)
        args = (width, height, hdr.k, hdr.channels, n)
        seen.clear()
        budget = Budget(*args)
        ran = render_mod.probe_cost(budget, tab, n, s_inv, width, height, hdr.k, sx, sy, (0, 0))
        if width == 256:
            assert not ran  # 256x192: too small to sample
            continue
        assert ran
        predicted = decoder.check_decode_cost(*args, culled=seen["args"][0], scored=seen["args"][1])
        full = render_mod.DecodeBudget(*args)
        cull_tiles(tab, n, s_inv, width, height, hdr.k, sx, sy, budget=full)
        assert 0.8 * full.seconds <= predicted[0] <= 1.1 * full.seconds, (predicted, full.seconds)


def test_the_least_cost_counts_every_site_before_the_payload_is_parsed(monkeypatch):
    """Before parsing, the least a decode costs counts each site's parse and its bounds
    over every root tile: a file of 2^22 sites (a 1.7 MB header declares them) models at
    over a second at any size, and a limit under that refuses it unparsed."""
    import sadcodec
    from sadcodec import decoder

    n = decoder.container.MAX_SITES
    least = decoder.check_decode_cost(181, 181, 8, 3, n)[0]
    assert least > 1.0
    assert least > 50 * decoder.check_decode_cost(181, 181, 8, 3, 1000)[0]
    data = many_sites_file(1 << 16, 512)
    monkeypatch.setattr(
        decoder, "MAX_DECODE_SECONDS", 0.5 * decoder.check_decode_cost(64, 64, 8, 3, 1 << 16)[0]
    )

    def forbidden(*a):
        raise AssertionError("parsed a file its header refuses")

    monkeypatch.setattr(decoder, "parse", forbidden)
    with pytest.raises(sadcodec.SadError, match="needs at least"):
        sadcodec.decode(data, width=64)
