"""The encoder's settings, decided in one place (sadcodec.settings)."""

from __future__ import annotations

import numpy as np
import pytest

import sadcodec
from sadcodec import settings
from sadcodec.errors import SadError


def test_dense_rates_get_finer_positions_more_iterations_and_less_subsampling():
    """From 1.5 bpp on (sites are dense): positions on a 1/8 px grid instead of 1/4, an
    effort level fits 1.5x its iterations up to 1600 (levels already there keep theirs),
    and the gradient is subsampled for 30% of the run instead of 50%. An explicit
    iteration count is used as given."""
    edge = settings.FINE_POSITIONS_FROM_BPP
    assert edge == settings.MORE_ITERATIONS_FROM_BPP == 1.5
    dense = {1: 300, 2: 600, 3: 900, 4: 1200, 5: 1600, 6: 1600, 7: 2400, 8: 3200, 9: 4800}
    for e, n in settings.EFFORT_ITERATIONS.items():
        for bpp, want in ((1.0, n), (edge - 1e-9, n), (edge, dense[e]), (2.0, dense[e])):
            s = settings.encode_settings(768, 512, 3, bpp, effort=e)
            assert s.fit.iterations == want, (e, bpp)
    for bpp, step, sub in ((1.0, 2, 0.5), (edge - 1e-9, 2, 0.5), (edge, 3, 0.3), (3.0, 3, 0.3)):
        s = settings.encode_settings(768, 512, 3, bpp)
        assert s.spec.pos_frac_bits == step, bpp
        assert s.fit.subsample_until == sub, bpp
        assert s.spec.theta_bits == 7
    assert settings.encode_settings(768, 512, 3, 2.0, iterations=33).fit.iterations == 33
    assert settings.encode_settings(768, 512, 3, 1.0).fit.iterations == 1600


def test_the_header_stores_the_position_grid_of_the_rate():
    y, x = np.mgrid[0:40, 0:48]
    img = np.stack([x * 5, y * 6, 128 + 0 * x], axis=2).astype(np.uint8)
    for bpp, step in ((1.0, 0.25), (2.0, 0.125)):
        data = sadcodec.encode(img, bpp=bpp, iterations=20, seed=1)
        info = sadcodec.read_info(data)
        assert info["quantization"]["position_step_px"] == step
        assert info["bpp"] <= bpp


def test_budget_is_the_whole_file_and_positions_fit_the_side():
    s = settings.encode_settings(768, 512, 3, 1.0)
    assert s.budget_bytes == 768 * 512 // 8
    # 65535 px sides leave no room for fractional bits in 16-bit positions.
    assert settings.encode_settings(65535, 4, 1, 8.0).spec.pos_frac_bits == 0


def test_fixed_bytes_are_the_containers_and_the_frames():
    from sadcodec import bitstream, container, writer

    assert writer.fixed_bytes() == container.HEADER_SIZE + container.TRAILER_SIZE + 5
    assert bitstream.FRAME_BYTES == 5
    # The smallest file (one site) is only a few bytes over it.
    spec = settings.choose_spec(48, 40, 1.0)
    assert 0 < writer.smallest_file(48, 40, 3, 8, spec) - writer.fixed_bytes() < 16


@pytest.mark.parametrize(
    "kwargs, message",
    [
        ({"bpp": 0.0}, "--bpp must be"),
        ({"bpp": float("nan")}, "--bpp must be"),
        ({"bpp": 65.0}, "--bpp must be"),
        ({"bpp": "1"}, "--bpp must be"),
        ({"bpp": True}, "--bpp must be"),
        ({"bpp": 1.0, "effort": 0}, "--effort must be"),
        ({"bpp": 1.0, "effort": "x"}, "--effort must be"),
        ({"bpp": 1.0, "iterations": 0}, "--iterations must be"),
        ({"bpp": 1.0, "iterations": 2.5}, "--iterations must be"),
        ({"bpp": 1.0, "effort": 3, "iterations": 10}, "not both"),
        ({"bpp": 1.0, "seed": -1}, "--seed must be"),
        ({"bpp": 0.001}, "budget too small"),
    ],
)
def test_bad_arguments_are_refused_with_one_message(kwargs, message):
    with pytest.raises(SadError, match=message):
        settings.encode_settings(48, 40, 3, **kwargs)


def test_an_image_too_small_for_any_rate_says_so():
    with pytest.raises(SadError, match="1x1 image is too small for .sad"):
        settings.encode_settings(1, 1, 3, settings.MAX_BPP)


def test_the_api_validates_through_the_same_settings():
    s = sadcodec.encode_settings((40, 48, 4), 2.0, effort=1)
    assert (s.width, s.height, s.channels, s.fit.iterations) == (48, 40, 4, 300)
    assert sadcodec.encode_settings((40, 48), 1.0).channels == 1
