"""Region decode (issue 26): `decode(data, region=(x, y, w, h))` and `sad decode --region`
render only that rectangle of the output, pixel for pixel the same crop of the whole
output, and the decoder's limits and cost model count the region's pixels."""

from __future__ import annotations

import os

import numpy as np
import pytest
from conftest import random_scene
from PIL import Image
from test_cli import assert_one_line_error, run

import sadcodec
from sadcodec import decoder
from sadcodec import render as render_mod
from sadcodec.errors import RegionError, SadTypeError
from sadcodec.render import render_params

GOLDEN = os.path.join(os.path.dirname(os.path.abspath(__file__)), "golden")


def golden(name: str) -> bytes:
    with open(os.path.join(GOLDEN, name), "rb") as f:
        return f.read()


RGB = "v1.0-rgb-256x192.sad"  # 946 sites; culled in 64, 32, 16, 8 px tiles at scale 1


def regions(w: int, h: int) -> list[tuple[int, int, int, int]]:
    """Regions of a w x h output: the whole, its corners and borders (one pixel wide
    too), across tile boundaries (tiles of 8 px, levels up to 64) and unaligned."""
    wanted = [
        (0, 0, w, h),
        (0, 0, 1, 1),
        (w - 1, h - 1, 1, 1),
        (w - 1, 0, 1, h),
        (0, h - 1, w, 1),
        (0, 0, 64, 64),
        (63, 63, 3, 3),
        (7, 9, 2, 50),
        (8, 8, 8, 8),
        (57, 31, 71, 41),
        (w - 45, h - 33, 45, 33),
        (13, 5, w - 20, h - 11),
        (w // 2 - 1, 0, 2, h),
    ]
    # Cut to the output where it is small.
    return [(x, y, min(rw, w - x), min(rh, h - y)) for x, y, rw, rh in wanted if x < w and y < h]


def crop(img: np.ndarray, r: tuple[int, int, int, int]) -> np.ndarray:
    x, y, w, h = r
    return img[y : y + h, x : x + w]


@pytest.mark.parametrize("scale", [1.0, 2.3, 0.45])
def test_region_is_the_crop_of_the_whole_decode(scale):
    data = golden(RGB)
    full = sadcodec.decode(data, scale=scale)
    h, w = full.shape[:2]
    for r in regions(w, h):
        got = sadcodec.decode(data, scale=scale, region=r)
        assert got.shape == (r[3], r[2], 3), r
        assert np.array_equal(got, crop(full, r)), r


@pytest.mark.parametrize("name", ["v1.0-gray-40x40.sad", "v1.0-rgba-32x24.sad"])
def test_region_of_gray_and_alpha(name):
    data = golden(name)
    full = sadcodec.decode(data, width=75)
    h, w = full.shape[:2]
    for r in [(0, 0, w, h), (0, 0, 9, 9), (w - 10, h - 7, 10, 7), (17, 3, 20, h - 3)]:
        assert np.array_equal(sadcodec.decode(data, width=75, region=r), crop(full, r)), r


@pytest.mark.parametrize("k", [1, 8, 32])
def test_region_of_random_sites(k):
    """Sites of every shape, sizes and K values the golden files do not have."""
    p = random_scene(np.random.default_rng(k), 300, 90, 70, a_max=2.5, r_max=12.0)
    for out_w, out_h in ((90, 70), (203, 131)):
        full = render_params(p, 90, 70, out_w, out_h, k)
        for r in regions(out_w, out_h):
            assert np.array_equal(
                render_params(p, 90, 70, out_w, out_h, k, region=r), crop(full, r)
            )


def test_region_of_a_large_output_takes_the_large_variant(monkeypatch):
    """A region renders with the variant its whole output would (their colours may differ
    by float rounding), so it stays the crop of the whole output."""
    from sadcodec.kernels import render as krender

    seen = []
    real = krender.render_tiled
    monkeypatch.setattr(krender, "render_tiled", lambda *a: seen.append(a[-1]) or real(*a))
    monkeypatch.setattr(render_mod, "LARGE_OUTPUT_PIXELS", 400 * 300)
    data = golden(RGB)
    full = sadcodec.decode(data, width=400)
    r = (100, 50, 40, 30)  # 1200 pixels: a whole output this small takes the other variant
    assert np.array_equal(sadcodec.decode(data, width=400, region=r), crop(full, r))
    assert seen == [1, 1]


def region_reference(params, src_w, src_h, out_w, out_h, k, r) -> np.ndarray:
    """docs/FORMAT.md's normative render of region r of an out_w x out_h output, in
    float64 over every site (the exact top-K, equal logits to the site stored first)."""
    from test_render import _top

    x0, y0, w, h = r
    p = params.astype(np.float64)
    ys, xs = np.mgrid[y0 : y0 + h, x0 : x0 + w]
    x = ((xs.ravel() + 0.5) * src_w / out_w)[:, None]
    y = ((ys.ravel() + 0.5) * src_h / out_h)[:, None]
    dx, dy = x - p[:, 0], y - p[:, 1]
    cs, sn = np.cos(p[:, 2]), np.sin(p[:, 2])
    al, be = cs * dx + sn * dy, -sn * dx + cs * dy
    q = np.exp(p[:, 3]) * al * al + np.exp(-p[:, 3]) * be * be + 1e-4
    lg = -np.exp(p[:, 5]) * (np.sqrt(q) - p[:, 4]) / max(src_w, src_h)
    top = _top(lg, min(k, len(p)))
    tl = np.take_along_axis(lg, top, axis=1)
    wt = np.exp(tl - tl[:, :1])
    col = (wt[..., None] * p[top, 6:]).sum(axis=1) / wt.sum(axis=1)[:, None]
    out = np.floor(np.clip(col, 0.0, 1.0) * 255.0 + 0.5).astype(np.uint8)
    return out.reshape(h, w, -1)


def test_limits_count_the_region_not_the_output(monkeypatch):
    """The cost model and the memory bound see the region: a region of an output far
    over every limit (56000x42000, 2.4 billion pixels) decodes, charged at its own size,
    and its pixels are the normative render's at their place in that output."""
    data = golden(RGB)
    with pytest.raises(sadcodec.SadError, match="too large"):
        sadcodec.decode(data, width=56000)
    charged = []
    real = decoder.check_decode_cost

    def record(width, height, *a, **kw):
        charged.append((width, height, kw.get("region")))
        return real(width, height, *a, **kw)

    monkeypatch.setattr(decoder, "check_decode_cost", record)
    hdr, params = decoder.parse(data)
    for r in [(30000, 20000, 48, 40), (55990, 41990, 10, 10)]:
        charged.clear()
        got = sadcodec.decode(data, width=56000, region=r)
        assert got.shape == (r[3], r[2], 3)
        assert charged and set(charged) == {(r[2], r[3], True)}
        want = region_reference(params, 256, 192, 56000, 42000, hdr.k, r)
        assert np.abs(got.astype(int) - want).max() <= 1, r


def test_region_work_grows_with_the_region_not_the_output(monkeypatch):
    """The work the decoder does for a 64x64 region (sites bounded over tiles, candidates
    its pixels score) stays within the file's sites and a few dozen per region pixel
    however large the output, while a whole decode's grows with the output."""
    work = []

    class Budget(render_mod.DecodeBudget):
        def score(self, scored):
            super().score(scored)
            work.append((self.culled, scored))

    monkeypatch.setattr(render_mod, "DecodeBudget", Budget)
    data = golden(RGB)
    n = sadcodec.read_info(data)["sites"]
    for width in (512, 2048, 8192, 30000):
        sadcodec.decode(data, width=width, region=(width // 2, width // 3, 64, 64))
        culled, scored = work[-1]
        assert culled <= n + 16 * 64 * 64 and scored <= 16 * 64 * 64, (width, work[-1])
    sadcodec.decode(data, width=2048)
    assert work[-1][0] > 100 * n and work[-1][1] > 100 * 64 * 64  # the whole output's


def test_a_file_refused_whole_decodes_a_region():
    """The crafted file of issue 24 with a ramp of radii is refused at its stored size
    (3900x3900, K = 32); a 128x128 region of it is within the limits and is its crop."""
    from test_render import coincident_file

    data = coincident_file(400, 32, 3900, radii=True)
    with pytest.raises(sadcodec.SadError, match="to decode at 3900x3900"):
        sadcodec.decode(data)
    r = (1886, 1886, 128, 128)  # around the sites' point
    got = sadcodec.decode(data, region=r)
    hdr, params = decoder.parse(data)
    want = render_params(params, 3900, 3900, 3900, 3900, 32, region=r)
    assert got.shape == (128, 128, 3) and np.array_equal(got, want)


def test_region_cost_error_names_the_region(monkeypatch):
    monkeypatch.setattr(decoder, "MAX_DECODE_SECONDS", 0.0)
    monkeypatch.setattr(decoder, "MAX_DECODE_SECONDS_PER_PIXEL", 0.0)
    with pytest.raises(sadcodec.SadError, match=r"to decode a 20x10 region .*a smaller region"):
        sadcodec.decode(golden(RGB), region=(0, 0, 20, 10))


@pytest.mark.parametrize(
    "region, match",
    [
        ((0, 0, 0, 5), "is empty"),
        ((0, 0, 5, -1), "is empty"),
        ((-1, 0, 5, 5), "not inside the 256x192 output"),
        ((250, 0, 7, 5), "not inside the 256x192 output"),
        ((0, 190, 5, 3), "not inside the 256x192 output"),
        ((10**30, 0, 5, 5), "not inside"),
    ],
)
def test_bad_regions_raise_region_error(region, match):
    with pytest.raises(RegionError, match=match):
        sadcodec.decode(golden(RGB), region=region)


@pytest.mark.parametrize("region", ["0,0,5,5", (0, 0, 5), (0, 0, 5.0, 5), (0, True, 5, 5), 7])
def test_region_of_the_wrong_type(region):
    with pytest.raises(SadTypeError, match="region must be four integers"):
        sadcodec.decode(golden(RGB), region=region)


def test_region_is_checked_against_the_scaled_output():
    data = golden(RGB)
    assert sadcodec.decode(data, scale=2, region=(500, 370, 12, 14)).shape == (14, 12, 3)
    with pytest.raises(RegionError, match="not inside the 512x384 output"):
        sadcodec.decode(data, scale=2, region=(500, 380, 12, 14))
    with pytest.raises(RegionError, match="not inside the 128x96 output"):
        sadcodec.decode(data, width=128, region=(0, 0, 129, 1))


# -- the command line -----------------------------------------------------------------


def test_cli_region_writes_the_crop(tmp_path, capsys, monkeypatch):
    src = tmp_path / "g.sad"
    src.write_bytes(golden(RGB))
    full = sadcodec.decode(golden(RGB), scale=1.5)
    out = tmp_path / "crop.png"
    code, _, err = run(
        ["decode", src, "-o", out, "--scale", "1.5", "--region", "100,40,64,48"],
        capsys,
        monkeypatch,
    )
    assert code == 0, err
    assert "64x48 RGB" in err
    assert np.array_equal(np.asarray(Image.open(out)), crop(full, (100, 40, 64, 48)))


@pytest.mark.parametrize(
    "value, phrase",
    [
        ("0,0,300,10", "region 0,0,300,10 is not inside the 256x192 output"),
        ("250,180,10,10", "is not inside the 256x192 output"),
        ("0,0,0,10", "W and H must be at least 1"),
        ("0,0,10,-3", "W and H must be at least 1"),
        ("-1,0,10,10", "X and Y at least 0"),
        ("1,2,3", "is not four integers X,Y,W,H"),
        ("a,b,c,d", "is not four integers X,Y,W,H"),
        ("", "is not four integers X,Y,W,H"),
    ],
)
def test_cli_bad_region_is_a_usage_error(value, phrase, tmp_path, capsys, monkeypatch):
    src = tmp_path / "g.sad"
    src.write_bytes(golden(RGB))
    out = tmp_path / "x.png"
    code, _, err = run(["decode", src, "-o", out, "--region", value], capsys, monkeypatch)
    assert_one_line_error(code, err, phrase, expected_code=2)
    assert "--region" in err and "(see 'sad decode --help')" in err
    assert not out.exists()
