"""The pure parts of bench/rd.py and bench/benchlib.py: BD-rate, quality search, resume.

No codec runs here (a fake encoder stands in), so the numbers the RD report rests on are
checked in milliseconds; the plot test is skipped where matplotlib is not installed.
"""

from __future__ import annotations

import math
import os
from pathlib import Path

import numpy as np
import pytest

from bench import rd
from bench.benchlib import best_quality, budget_bytes

PROV = {"commit": "abc1234", "dirty": False, "diff": ""}

RATES = [0.25, 0.5, 1.0, 2.0]
PSNRS = [26.7, 29.8, 33.0, 36.9]


@pytest.mark.parametrize("factor, expected", [(2.0, 100.0), (0.5, -50.0), (1.0, 0.0)])
def test_bd_rate_of_a_curve_scaled_in_rate(factor: float, expected: float) -> None:
    scaled = [r * factor for r in RATES]
    assert rd.bd_rate(RATES, PSNRS, scaled, PSNRS) == pytest.approx(expected, abs=1e-9)


def test_bd_rate_is_antisymmetric_in_log_rate() -> None:
    # A non-uniform shift: test needs 2x at low rates, 1.5x at high ones; swapping the roles
    # inverts the mean log-rate gap exactly.
    test = [0.5, 0.95, 1.7, 3.0]
    a = rd.bd_rate(RATES, PSNRS, test, PSNRS)
    b = rd.bd_rate(test, PSNRS, RATES, PSNRS)
    assert a > 0 and b < 0
    assert (1 + a / 100) * (1 + b / 100) == pytest.approx(1.0)


def test_bd_psnr_of_a_curve_shifted_in_psnr() -> None:
    assert rd.bd_psnr(RATES, PSNRS, RATES, [p + 1.5 for p in PSNRS]) == pytest.approx(1.5)


def test_bd_rate_only_over_the_overlapping_psnr_range() -> None:
    # Two points each (a line in log-rate): test covers 30..40 dB, ref 20..35 dB; on the
    # overlap 30..35 test is always at 2x the rate of ref.
    ref_r, ref_p = [0.1, 0.8], [20.0, 35.0]
    slope = (math.log10(0.8) - math.log10(0.1)) / 15
    test_p = [30.0, 40.0]
    test_r = [2 * 10 ** (math.log10(0.1) + slope * (p - 20)) for p in test_p]
    assert rd.bd_rate(ref_r, ref_p, test_r, test_p) == pytest.approx(100.0)


def test_bd_rate_undefined_without_overlap_or_points() -> None:
    assert rd.bd_rate([0.5, 1.0], [20.0, 25.0], [0.5, 1.0], [30.0, 35.0]) is None
    assert rd.bd_rate([0.5], [30.0], RATES, PSNRS) is None
    assert rd.bd_rate(RATES, PSNRS, [1.0, 2.0], [math.inf, math.inf]) is None


def test_best_quality_is_the_highest_within_budget() -> None:
    calls = []

    def fake(q: int) -> bytes:  # size grows with quality: 100 bytes per step
        calls.append(q)
        return bytes(100 * q)

    assert best_quality(fake, 4250, 1, 100) == (42, True)
    assert len(calls) <= math.ceil(math.log2(100)) + 1  # a search, not a scan
    assert best_quality(fake, 4200, 1, 100) == (42, True)  # exactly the budget fits
    assert best_quality(fake, 10**6, 0, 100) == (100, True)
    assert best_quality(fake, 99, 1, 100) == (1, False)  # nothing fits: lowest, flagged
    assert best_quality(fake, 0, 0, 100) == (0, True)  # quality 0 is 0 bytes here


def test_budget_is_floor_of_whole_file_bits() -> None:
    assert budget_bytes(0.25, 768, 512) == 12288
    assert budget_bytes(1.0, 3, 3) == 1  # 9 bits: one whole byte
    assert budget_bytes(0.5, 7, 5) == 2


def _row(image: str, codec: str, target: float, **kw) -> dict:
    row = {
        "image": image,
        "codec": codec,
        "target_bpp": f"{target:g}",
        "bytes": "10",
        "bpp": "0.5",
        "psnr_rgb": "30",
        "ssim": "0.9",
        "encode_s": "1",
        "decode_s": "1",
        "within_budget": "True",
        "quality": "",
        "sites": "",
        "error": "",
        "startup_s": "",
        "commit": "abc1234",
        "dirty": "False",
        "diff": "",
        "settings": "s",
        "measured": "2026-12-04T10:00:00",
        "machine": "m",
    }
    row.update(kw)
    return row


def test_resume_reuses_only_finished_cells_of_the_same_code_and_settings() -> None:
    old = [
        _row("a", "sad", 1.0),
        _row("a", "sad", 0.5, settings="iterations=9"),  # other settings: redone
        _row("a", "jpeg", 1.0, bytes="", error="OSError: x"),  # failed: retried
        _row("b", "jpeg", 1.0),  # not in this run: kept as it is
        _row("a", "webp", 1.0, commit="0000000"),  # another commit: redone
        _row("a", "avif", 1.0, commit=""),  # no provenance (an old CSV): redone
    ]
    wanted = {(im, c, 1.0) for im in "a" for c in ("sad", "jpeg", "webp", "avif")}
    wanted.add(("a", "sad", 0.5))
    settings = dict.fromkeys(("sad", "jpeg", "webp", "avif"), "s")
    done, extra = rd.split_resume(old, wanted, settings, PROV)
    assert list(done) == [("a", "sad", 1.0)]
    assert extra == [old[3]]


def test_resume_with_uncommitted_changes_needs_the_same_diff() -> None:
    old = [
        _row("a", "sad", 1.0, dirty="True", diff="d1"),
        _row("a", "jpeg", 1.0, dirty="True", diff="d2"),
        _row("a", "webp", 1.0),  # clean tree: not this dirty one
    ]
    wanted = {("a", c, 1.0) for c in ("sad", "jpeg", "webp")}
    dirty = {"commit": "abc1234", "dirty": True, "diff": "d1"}
    done, _ = rd.split_resume(old, wanted, dict.fromkeys(("sad", "jpeg", "webp"), "s"), dirty)
    assert list(done) == [("a", "sad", 1.0)]
    unknown = {"commit": "unknown", "dirty": "unknown", "diff": ""}
    old = [_row("a", "sad", 1.0, commit="unknown", dirty="unknown")]
    assert rd.split_resume(old, wanted, {"sad": "s"}, unknown)[0] == {}  # no git: never


def test_bd_per_image_averages_images_not_curves() -> None:
    rows = []
    for image, factor in (("a", 2.0), ("b", 0.5)):
        for r, p in zip(RATES, PSNRS, strict=True):
            rows.append(_row(image, "jpeg", r, bpp=str(r), psnr_rgb=str(p)))
            rows.append(_row(image, "sad", r, bpp=str(r * factor), psnr_rgb=str(p)))
    rows.append(_row("b", "sad", 4.0, bytes="", error="boom"))  # a failed cell is no point
    per = rd.bd_per_image(rows, "sad", "jpeg")
    assert per["a"][0] == pytest.approx(100.0)
    assert per["b"][0] == pytest.approx(-50.0)


def test_report_names_over_budget_and_failed_cells(tmp_path: Path) -> None:
    rows = [
        _row("a", "sad", 1.0, bpp="0.9", psnr_rgb="30"),
        _row("a", "sad", 0.5, bpp="0.45", psnr_rgb="27"),
        _row("a", "jpeg", 1.0, bpp="1.1", psnr_rgb="31", within_budget="False", quality="7"),
        _row("a", "jpeg", 0.5, bytes="", error="OSError: broken"),
    ]
    md = rd.markdown(rows, tmp_path / "r.csv", tmp_path / "r.png", tmp_path / "r.md")
    assert "a jpeg at 1 bpp: over budget" in md
    assert "a jpeg at 0.5 bpp: failed: OSError: broken" in md
    assert "| jpeg | 0.5 | 0 |" in md  # the failed rate shows 0 images, 1 failed
    assert "| sad vs | mean BD-rate" in md and "n/a" in md  # one jpeg point: no BD-rate
    assert "![RD plot](r.png)" in md
    assert "- Code: `abc1234` (clean tree); all 4 rows" in md
    assert "No webp, avif cells" in md


def test_plot_writes_a_png(tmp_path: Path) -> None:
    pytest.importorskip("matplotlib")
    rows = [
        _row("a", c, r, bpp=str(r), psnr_rgb=str(p))
        for c in ("sad", "jpeg")
        for r, p in zip(RATES, PSNRS, strict=True)
    ]
    rd.plot(tmp_path / "p.png", rows, ["sad", "jpeg"], RATES, "t")
    assert (tmp_path / "p.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert not [p for p in os.listdir(tmp_path) if p.startswith(".")]  # no temporary left


def test_mean_curve_skips_failed_cells() -> None:
    rows = [
        _row("a", "sad", 1.0, bpp="1.0", psnr_rgb="30"),
        _row("b", "sad", 1.0, bpp="0.8", psnr_rgb="32"),
        _row("c", "sad", 1.0, bytes="", error="x"),
    ]
    xs, ys = rd.mean_curve(rows, "sad", [0.5, 1.0])
    assert xs == pytest.approx([0.9]) and ys == pytest.approx([31.0])
    assert np.isfinite(xs).all()
