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


# ------------------------------------------------------------------ memory


def test_the_memory_formula_follows_the_fit() -> None:
    """The constants settings repeats (so as not to import the fit and Taichi) are the
    fit's own."""
    from sadcodec import colour_ls
    from sadcodec.fit import densify, schedule

    assert settings.CAPACITY_FACTOR == schedule.CAPACITY_FACTOR
    assert settings.CAPACITY_SLACK == schedule.CAPACITY_SLACK
    assert settings.BITS_PER_SITE_GUESS == densify.BITS_PER_SITE_GUESS
    assert settings.MEMORY_CHUNK_PIXELS == colour_ls.CHUNK_PIXELS


def test_the_memory_estimate_grows_with_every_term() -> None:
    est = settings.estimate_memory
    base = est(768, 512, 3, 768 * 512 // 8)
    assert est(1536, 1024, 3, 1536 * 1024 // 8) > base
    assert est(768, 512, 4, 768 * 512 // 8) > base
    assert est(768, 512, 3, 768 * 512 // 4) > base
    assert est(768, 512, 3, 768 * 512 // 8, k=16) > base
    s = settings.encode_settings(768, 512, 3, 1.0)
    assert s.memory_bytes == base and s.max_memory == settings.default_max_memory()
    # Beyond the colour phase's slices of pixels, the estimate is linear in the pixels.
    big = [est(w, 4096, 1, w * 4096 // 8) for w in (1024, 2048, 3072)]
    assert big[2] - big[1] == pytest.approx(big[1] - big[0], rel=1e-3)


@pytest.mark.parametrize(
    "text, size",
    [
        ("8G", 8 << 30),
        ("8g", 8 << 30),
        ("8 GiB", 8 << 30),
        ("8GB", 8 << 30),
        ("512M", 512 << 20),
        ("1.5G", 3 << 29),
        ("64k", 64 << 10),
        ("1T", 1 << 40),
        ("1000000", 1_000_000),
        ("4096b", 4096),
        (4096, 4096),
        (1e9, 10**9),
    ],
)
def test_memory_sizes(text, size) -> None:
    assert settings.parse_memory(text) == size


@pytest.mark.parametrize(
    "text", ["", "G", "lots", "-1G", "0", "0.5", "8X", "8ib", "1e9", "nan", 0, -1, 0.5]
)
def test_bad_memory_sizes(text) -> None:
    with pytest.raises(SadError, match="--max-memory must be a size"):
        settings.parse_memory(text)


@pytest.mark.parametrize("value", [None, True, [8], float("nan"), float("inf"), 10**400])
def test_memory_sizes_of_the_wrong_kind(value) -> None:
    with pytest.raises(SadError, match="--max-memory must be a size"):
        settings.parse_memory(value)


def test_the_default_limit_is_a_share_of_the_machine(monkeypatch) -> None:
    total = settings.machine_memory()
    assert total is not None and total > 0
    assert settings.default_max_memory() == int(total * settings.DEFAULT_MEMORY_SHARE)
    # A cgroup limit below physical memory is what counts.
    monkeypatch.setattr(settings, "_cgroup_limit", lambda: 2 << 30)
    assert settings.machine_memory() == min(total, 2 << 30)
    monkeypatch.setattr(settings, "machine_memory", lambda: 1 << 30)
    with pytest.raises(SadError) as info:
        settings.encode_settings(4096, 4096, 3, 1.0)
    msg = str(info.value)
    assert "4096x4096 image at 1 bpp needs about" in msg and "\n" not in msg
    assert "over the limit of 768 MiB (75% of this machine's 1.0 GiB)" in msg
    assert "raise it with --max-memory" in msg and "max_memory=" in msg
    assert settings.encode_settings(4096, 4096, 3, 1.0, max_memory="64G").max_memory == 64 << 30
    # Unknown machine memory: nothing to check against.
    monkeypatch.setattr(settings, "machine_memory", lambda: None)
    assert settings.encode_settings(4096, 4096, 3, 1.0).max_memory is None


def test_cgroup_limits_are_read(tmp_path, monkeypatch) -> None:
    """v1 says "no limit" with a huge number, v2 with "max"."""
    import builtins

    files = {
        "/proc/self/cgroup": "4:memory:/box\n0::/slice\n",
        "/sys/fs/cgroup/memory/box/memory.limit_in_bytes": "9223372036854771712\n",
        "/sys/fs/cgroup/slice/memory.max": "3221225472\n",
        "/sys/fs/cgroup/memory.max": "max\n",
    }
    real_open = builtins.open

    def fake_open(path, *args, **kwargs):
        if path in files:
            p = tmp_path / "f"
            p.write_text(files[path])
            return real_open(p, *args, **kwargs)
        if str(path).startswith(("/proc/self/cgroup", "/sys/fs/cgroup")):
            raise FileNotFoundError(path)
        return real_open(path, *args, **kwargs)

    monkeypatch.setattr(builtins, "open", fake_open)
    assert settings._cgroup_limit() == 3 << 30
    files["/sys/fs/cgroup/slice/memory.max"] = "max\n"
    assert settings._cgroup_limit() is None
