""".sad in Pillow (Image.open, Image.save, thumbnail) and imageio v3 (imread, imwrite,
improps) once `sadcodec.pillow` is imported: the same bytes and pixels as the API's."""

from __future__ import annotations

import io
import warnings

import imageio.v3 as iio
import numpy as np
import pytest
from PIL import Image, ImageCms

import sadcodec
import sadcodec.pillow  # noqa: F401 (registers the format)
from sadcodec import SadError, SadFormatError
from sadcodec.container import MAX_ICC_BYTES

H, W = 16, 24
OPTIONS = {"bpp": 3.0, "iterations": 20, "seed": 2}


def _image(channels: int = 3) -> np.ndarray:
    y, x = np.mgrid[0:H, 0:W]
    img = np.stack([x * 10, y * 15, 255 - x * 10, 128 + y * 8], axis=2).astype(np.uint8)
    img[4:10, 6:14, :3] = (220, 40, 30)
    return img[..., 0] if channels == 1 else img[..., :channels]


@pytest.fixture(scope="module")
def files() -> dict[int, bytes]:
    """The API's encode of the test image, by channel count."""
    return {c: sadcodec.encode(_image(c), **OPTIONS) for c in (1, 3, 4)}


@pytest.mark.parametrize("channels,mode", [(1, "L"), (3, "RGB"), (4, "RGBA")])
def test_pillow_save_and_open(tmp_path, files, channels, mode):
    path = tmp_path / "a.sad"
    Image.fromarray(_image(channels)).save(path, **OPTIONS, quality=80)  # quality: ignored
    assert path.read_bytes() == files[channels]
    with Image.open(path) as im:
        assert (im.format, im.mode, im.size) == ("SAD", mode, (W, H))
        got = np.asarray(im)
    want = sadcodec.decode(files[channels])
    assert got.shape == want.shape == _image(channels).shape  # greyscale: (H, W)
    np.testing.assert_array_equal(got, want)


def test_pillow_opens_a_stream_and_converts(files):
    with Image.open(io.BytesIO(files[3])) as im:
        png = io.BytesIO()
        im.save(png, format="PNG")
    np.testing.assert_array_equal(
        np.asarray(Image.open(io.BytesIO(png.getvalue()))), sadcodec.decode(files[3])
    )


def test_thumbnail_renders_at_the_smaller_size(files):
    """draft(): the sites rendered straight at the reduced size, not the stored one."""
    with Image.open(io.BytesIO(files[3])) as im:
        assert im.draft(None, (W // 2, H // 2)) == ("RGB", (0, 0, W // 2, H // 2))
        assert im.size == (W // 2, H // 2)
        np.testing.assert_array_equal(
            np.asarray(im), sadcodec.decode(files[3], width=W // 2, height=H // 2)
        )
    with Image.open(io.BytesIO(files[3])) as im:
        im.thumbnail((6, 6))
        assert im.size == (6, 4)


def test_other_modes_are_stored_as_sad_encode_stores_them(tmp_path):
    """A palette image becomes RGB; 16-bit greyscale is rounded, with a warning."""
    rgb = _image(3)
    Image.fromarray(rgb).quantize(16).save(tmp_path / "p.sad", **OPTIONS)
    assert Image.open(tmp_path / "p.sad").mode == "RGB"
    gray16 = Image.fromarray(_image(1).astype(np.uint16) * 257)
    with pytest.warns(UserWarning, match="16-bit input reduced to 8 bits"):
        gray16.save(tmp_path / "g.sad", **OPTIONS)
    assert (tmp_path / "g.sad").read_bytes() == sadcodec.encode(_image(1), **OPTIONS)


def test_pillow_errors_are_sad_errors(tmp_path, files):
    with pytest.raises(SadError, match="bpp"):
        Image.fromarray(_image(3)).save(tmp_path / "bad.sad", bpp=-1)
    assert not (tmp_path / "bad.sad").exists()  # Pillow removes the file it created
    with pytest.raises(SadFormatError, match="unexpected bytes after the payload"):
        Image.open(io.BytesIO(files[3] + b"x"))
    truncated = files[3][:-10]
    with pytest.raises(SadFormatError, match="truncated"):
        Image.open(io.BytesIO(truncated))


def test_imageio_read_write(tmp_path, files):
    path = tmp_path / "a.sad"
    iio.imwrite(path, _image(1), **OPTIONS)
    assert path.read_bytes() == files[1]
    got = iio.imread(path)
    assert got.shape == (H, W) and got.dtype == np.uint8
    np.testing.assert_array_equal(got, sadcodec.decode(files[1]))
    props = iio.improps(path)
    assert props.shape == (H, W) and props.dtype == np.uint8
    data = iio.imwrite("<bytes>", _image(4), extension=".sad", **OPTIONS)
    assert data == files[4]
    np.testing.assert_array_equal(iio.imread(data), sadcodec.decode(files[4]))


def test_registration_is_idempotent():
    from imageio.config import known_extensions

    with warnings.catch_warnings():
        warnings.simplefilter("error")
        sadcodec.pillow.register()
    assert Image.registered_extensions()[".sad"] == "SAD"
    assert [f.priority for f in known_extensions[".sad"]] == [["pillow"]]


# ---------------------------------------------------------------- metadata

MW, MH = 40, 32  # room for a 588-byte profile within 6 bpp
META_OPTIONS = {"bpp": 6.0, "iterations": 20, "seed": 2}


# Made once: a profile holds the time it was made.
ICC = ImageCms.ImageCmsProfile(ImageCms.createProfile("sRGB")).tobytes()


def _exif() -> bytes:
    """EXIF as Pillow's info["exif"] holds it, with a camera make and an orientation."""
    exif = Image.Exif()
    exif[0x010F] = "TestCam"
    exif[0x0112] = 6
    return exif.tobytes()


def _photo(channels: int = 3) -> Image.Image:
    """An image as Pillow opens it from a file with an ICC profile and EXIF."""
    y, x = np.mgrid[0:MH, 0:MW]
    rgb = np.stack([x * 6, y * 7, 200 - (x + y) * 2], axis=2).clip(0, 255).astype(np.uint8)
    im = Image.fromarray(rgb[..., 0] if channels == 1 else rgb)
    im.info.update(icc_profile=ICC, exif=_exif())
    return im


@pytest.mark.parametrize(
    "save_kwargs, kept",
    [
        ({}, {"icc_profile"}),  # as sad encode: the profile by default
        ({"metadata": "all"}, {"icc_profile", "exif"}),
        ({"metadata": "none"}, set()),
        ({"exif": "given"}, {"icc_profile", "exif"}),  # a given exif= is stored
        ({"metadata": "all", "icc_profile": None}, {"exif"}),  # a given profile: as given
    ],
)
def test_save_keeps_the_profile_and_exif_on_request(tmp_path, save_kwargs, kept):
    im = _photo()
    if save_kwargs.get("exif") == "given":
        save_kwargs = {"exif": im.getexif()}  # a PIL.Image.Exif, as Pillow's writers take
    path = tmp_path / "a.sad"
    im.save(path, **META_OPTIONS, **save_kwargs)
    meta = {k: v for k, v in (("icc_profile", ICC), ("exif", _exif())) if k in kept}
    data = path.read_bytes()
    assert sadcodec.read_metadata(data) == meta
    # The same bytes as the API's encode with that metadata; the EXIF as given, its
    # orientation kept (the pixels are stored as they are, not turned).
    assert data == sadcodec.encode(np.asarray(im), **META_OPTIONS, **meta)


def test_open_gives_the_metadata_and_writers_take_it(tmp_path):
    src = tmp_path / "a.sad"
    _photo().save(src, **META_OPTIONS, metadata="all")
    with Image.open(src) as im:
        assert im.info["icc_profile"] == ICC and im.info["exif"] == _exif()
        im.save(tmp_path / "b.png")  # Pillow writes info's profile; EXIF when given
        im.save(tmp_path / "c.png", exif=im.info["exif"])
        im.save(tmp_path / "d.sad", **META_OPTIONS)  # and so does the .sad writer
    with Image.open(tmp_path / "b.png") as png:
        assert png.info["icc_profile"] == ICC and "exif" not in png.info
    with Image.open(tmp_path / "c.png") as png:
        assert png.info["icc_profile"] == ICC and png.getexif()[0x010F] == "TestCam"
    assert sadcodec.read_metadata(tmp_path / "d.sad") == {"icc_profile": ICC}
    assert iio.immeta(src)["icc_profile"] == ICC
    plain = tmp_path / "plain.sad"
    Image.fromarray(np.asarray(_photo())).save(plain, **META_OPTIONS)
    with Image.open(plain) as im:
        assert "icc_profile" not in im.info and "exif" not in im.info


def test_metadata_that_cannot_be_kept(tmp_path):
    # An RGB profile on a greyscale image does not describe its samples: dropped, with a
    # warning, as sad encode drops it with a notice.
    gray = _photo(channels=1)
    with pytest.warns(UserWarning, match="ICC profile for RGB samples dropped"):
        gray.save(tmp_path / "g.sad", **META_OPTIONS)
    assert sadcodec.read_metadata(tmp_path / "g.sad") == {}
    big = _photo()
    big.info["icc_profile"] = b"\0" * (MAX_ICC_BYTES + 1)
    with pytest.raises(SadError, match='more than a .sad file holds.*use metadata="none"'):
        big.save(tmp_path / "big.sad", **META_OPTIONS)
    assert not (tmp_path / "big.sad").exists()
    with pytest.raises(SadError, match="metadata must be one of all, icc, none, got 'exif'"):
        _photo().save(tmp_path / "bad.sad", **META_OPTIONS, metadata="exif")
