"""The Python API's arguments: what a .sad file may be given as, and every bad value
refused with a SadError (a SadTypeError, also a TypeError, for a wrong type) before any
work, never a bare TypeError, ValueError or OverflowError."""

from __future__ import annotations

import os
import pathlib

import numpy as np
import pytest

import sadcodec
from sadcodec import api, container
from sadcodec.errors import SadError, SadFormatError, SadTypeError

GOLDEN = os.path.join(os.path.dirname(__file__), "golden", "v1.0-rgb-48x32.sad")
NAN, INF = float("nan"), float("inf")


@pytest.fixture(scope="module")
def data() -> bytes:
    with open(GOLDEN, "rb") as f:
        return f.read()


def _sources(data: bytes) -> list:
    return [
        GOLDEN,
        pathlib.Path(GOLDEN),
        data,
        bytearray(data),
        memoryview(data),
    ]


def test_a_file_is_a_path_or_its_bytes(data: bytes) -> None:
    want_info = sadcodec.read_info(data)
    want = sadcodec.decode(data)
    for source in _sources(data):
        assert sadcodec.read_info(source) == want_info, type(source)
        assert np.array_equal(sadcodec.decode(source), want), type(source)
    assert want_info["bytes"] == len(data) and want_info["checksum"] == "ok"


@pytest.mark.parametrize("func", [sadcodec.decode, sadcodec.read_info])
@pytest.mark.parametrize("source", [None, 3, 1.5, np.zeros(16, np.uint8), ["x.sad"], object()])
def test_anything_else_is_a_type_error(func, source) -> None:
    with pytest.raises(SadTypeError, match=r"takes a \.sad file as a path .* or its bytes") as info:
        func(source)
    assert isinstance(info.value, TypeError) and isinstance(info.value, SadError)
    assert "\n" not in str(info.value)


def test_a_path_is_read_not_taken_for_data(tmp_path: pathlib.Path, data: bytes) -> None:
    # Before, read_info("x.sad") parsed the string itself: "bad magic bytes".
    with pytest.raises(SadError, match=r"cannot read '\S*missing.sad': no such file$"):
        sadcodec.read_info(str(tmp_path / "missing.sad"))
    with pytest.raises(SadError, match="is a directory"):
        sadcodec.decode(tmp_path)
    (tmp_path / "image.png").write_bytes(b"\x89PNG\r\n\x1a\n" + bytes(64))
    with pytest.raises(SadFormatError, match=r"'\S*image.png': not a .sad file \(bad magic"):
        sadcodec.read_info(tmp_path / "image.png")
    (tmp_path / "cut.sad").write_bytes(data[:-9])
    with pytest.raises(SadFormatError, match=r"'\S*cut.sad': truncated file"):
        sadcodec.decode(str(tmp_path / "cut.sad"))


def test_a_path_is_read_no_further_than_its_header_declares(tmp_path, data, monkeypatch):
    """Padding after the file is refused without being read."""
    (tmp_path / "padded.sad").write_bytes(data + bytes(1 << 20))
    with pytest.raises(SadFormatError, match="unexpected bytes after the payload"):
        sadcodec.read_info(tmp_path / "padded.sad")
    calls = []
    real = container.read_path
    monkeypatch.setattr(container, "read_path", lambda p: calls.append(p) or real(p))
    assert sadcodec.read_info(GOLDEN)["width"] == 48 and calls == [GOLDEN]


@pytest.mark.parametrize(
    "kwargs, kind",
    [
        ({"width": NAN}, SadTypeError),
        ({"width": INF}, SadTypeError),
        ({"width": 24.0}, SadTypeError),
        ({"width": "24"}, SadTypeError),
        ({"width": True}, SadTypeError),
        ({"width": 0}, SadError),
        ({"width": -24}, SadError),
        ({"width": 10**30}, SadError),
        ({"height": NAN}, SadTypeError),
        ({"height": -1}, SadError),
        ({"height": 65536}, SadError),
        ({"scale": NAN}, SadError),
        ({"scale": INF}, SadError),
        ({"scale": -2.0}, SadError),
        ({"scale": 0}, SadError),
        ({"scale": 10**400}, SadError),
        ({"scale": 1e300}, SadError),
        ({"scale": "2"}, SadTypeError),
        ({"scale": True}, SadTypeError),
        ({"scale": 2, "width": 24}, SadError),
        ({"threads": "2"}, SadTypeError),
        ({"threads": 0}, SadError),
        ({"arch": "tpu"}, SadError),
    ],
)
def test_bad_decode_arguments(data: bytes, kwargs: dict, kind: type) -> None:
    with pytest.raises(kind) as info:
        sadcodec.decode(data, **kwargs)
    assert type(info.value) is kind
    assert "\n" not in str(info.value)


def test_good_decode_sizes(data: bytes) -> None:
    assert sadcodec.decode(data, width=np.int64(24)).shape == (16, 24, 3)
    assert sadcodec.decode(data, scale=np.float32(0.5)).shape == (16, 24, 3)
    assert sadcodec.decode(data, height=64).shape == (64, 96, 3)


IMG = np.zeros((16, 16, 3), np.uint8)


@pytest.mark.parametrize(
    "kwargs, kind",
    [
        ({"bpp": "1"}, SadTypeError),
        ({"bpp": [1.0]}, SadTypeError),
        ({"bpp": None, "size": "lots"}, SadError),
        ({"bpp": None, "size": 1.5}, SadError),
        ({"bpp": True}, SadTypeError),
        ({"bpp": NAN}, SadError),
        ({"bpp": INF}, SadError),
        ({"bpp": -1.0}, SadError),
        ({"bpp": 10**400}, SadError),
        ({"effort": "x"}, SadTypeError),
        ({"effort": 6.0}, SadTypeError),
        ({"effort": NAN}, SadTypeError),
        ({"effort": 10}, SadError),
        ({"iterations": "50"}, SadTypeError),
        ({"iterations": INF}, SadTypeError),
        ({"iterations": 10**30}, SadError),
        ({"seed": NAN}, SadTypeError),
        ({"seed": -1}, SadError),
        ({"threads": 1.5}, SadTypeError),
        ({"max_memory": "lots"}, SadError),
        ({"max_memory": -1}, SadError),
        ({"max_memory": NAN}, SadError),
        ({"max_memory": [1]}, SadTypeError),
        ({"arch": "tpu"}, SadError),
    ],
)
def test_bad_encode_arguments(kwargs: dict, kind: type, monkeypatch) -> None:
    def no_fit(*args, **kw):
        raise AssertionError("the fit started")

    monkeypatch.setattr("sadcodec.encoder.encode_image", no_fit)
    kwargs = {"bpp": 8.0, **kwargs}
    with pytest.raises(kind) as info:
        sadcodec.encode(IMG, **kwargs)
    assert type(info.value) is kind
    assert "\n" not in str(info.value)


@pytest.mark.parametrize(
    "shape, kind",
    [
        (None, SadTypeError),
        (5, SadTypeError),
        ((NAN, 10), SadTypeError),
        ((INF, 10), SadTypeError),
        ((10.0, 10), SadTypeError),
        (("10", 10), SadTypeError),
        ((True, 10), SadTypeError),
        ((10,), SadTypeError),
        ((10, 10, 3, 1), SadTypeError),
        ((10, 10, 2), SadError),
        ((-3, 10), SadError),
        ((0, 10), SadError),
        ((70_000, 10), SadError),
    ],
)
def test_bad_shapes(shape, kind) -> None:
    with pytest.raises(kind) as info:
        sadcodec.encode_settings(shape, 1.0)
    assert type(info.value) is kind


def test_good_shapes() -> None:
    s = sadcodec.encode_settings(np.zeros((40, 48, 4)).shape, 2.0)
    assert (s.width, s.height, s.channels) == (48, 40, 4)
    assert sadcodec.encode_settings([np.int32(40), np.int64(48)], 2.0).channels == 1


def test_too_much_memory_is_refused_before_any_work(monkeypatch) -> None:
    """The estimate is checked before the backend starts or the fit allocates anything."""

    def never(*args, **kwargs):
        raise AssertionError("work started")

    monkeypatch.setattr(api, "init_backend", never)
    monkeypatch.setattr("sadcodec.encoder.encode_image", never)
    img = np.zeros((256, 256, 3), np.uint8)
    need = sadcodec.encode_settings(img.shape, 1.0).memory_bytes
    with pytest.raises(SadError, match=r"needs about .* over the limit of .*--max-memory") as info:
        sadcodec.encode(img, 1.0, max_memory=need - 1)
    assert "max_memory=" in str(info.value) and "\n" not in str(info.value)
    with pytest.raises(SadError, match="65535x1525 image at 1 bpp needs about"):
        sadcodec.encode_settings((1525, 65535), 1.0, max_memory="2G")
    assert sadcodec.encode_settings(img.shape, 1.0, max_memory=need).memory_bytes == need
