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
