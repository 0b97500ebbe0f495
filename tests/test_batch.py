"""`sad encode a.png b.png ... -o OUTDIR/`: many files in one process (sadcodec.batch).

Commands run in-process through ``cli.main()``, like tests/test_cli.py; images are 40x32
and fits 30 iterations, so each file costs a fraction of a second.
"""

from __future__ import annotations

import os
import sys

import numpy as np
import pytest
from PIL import Image

import sadcodec
from sadcodec import api, batch, cli
from sadcodec.errors import SadError
from sadcodec.imageload import load_image

W, H = 40, 32
FAST = ["--iterations", "30", "--bpp", "2"]


def run(args, capsys, monkeypatch):
    """Run `sad ARGS` in-process; returns (exit code, stdout, stderr)."""
    monkeypatch.setattr(sys, "argv", ["sad", *map(str, args)])
    code = 0
    try:
        cli.main()
    except SystemExit as exc:
        code = exc.code if isinstance(exc.code, int) else 1
    out, err = capsys.readouterr()
    return code, out, err


def image(seed: int, mode: str = "RGB") -> np.ndarray:
    """A gradient with a disc whose place and colour follow the seed."""
    rng = np.random.default_rng(seed)
    y, x = np.mgrid[0:H, 0:W]
    img = np.stack([x * 255 // (W - 1), y * 255 // (H - 1), 200 - (x + y) * 2], axis=2)
    cx, cy = rng.integers(8, 32), rng.integers(8, 24)
    img[(x - cx) ** 2 + (y - cy) ** 2 < 49] = rng.integers(0, 256, 3)
    img = np.clip(img, 0, 255).astype(np.uint8)
    if mode == "L":
        return np.asarray(Image.fromarray(img).convert("L"))
    if mode == "RGBA":
        return np.dstack([img, (x * 255 // (W - 1)).astype(np.uint8)])
    return img


@pytest.fixture
def photos(tmp_path):
    """Three PNGs (RGB, gray, RGBA) in tmp_path/in; returns their paths."""
    d = tmp_path / "in"
    d.mkdir()
    paths = []
    for i, mode in enumerate(["RGB", "L", "RGBA"]):
        p = d / f"p{i}.png"
        Image.fromarray(image(i, mode)).save(p)
        paths.append(p)
    return paths


def single(path) -> bytes:
    """The bytes of a single in-process encode of ``path`` with FAST's settings."""
    return api.encode(load_image(path), 2.0, iterations=30)


def test_several_inputs_give_the_single_encodes_bytes(photos, tmp_path, capsys, monkeypatch):
    out = tmp_path / "out"
    code, stdout, err = run(["encode", *photos, "-o", f"{out}/", *FAST], capsys, monkeypatch)
    assert code == 0, err
    assert stdout == ""
    assert sorted(os.listdir(out)) == ["p0.sad", "p1.sad", "p2.sad"]
    for p in photos:
        assert (out / (p.stem + ".sad")).read_bytes() == single(p)
    lines = err.splitlines()
    # A line as each file starts and as it completes, then the table: a header, a row
    # per file, totals.
    started = [line for line in lines if line.startswith("[") and line.endswith(" ...")]
    done = [line for line in lines if line.startswith("[") and "bpp" in line]
    assert started == [f"[{i + 1}/3] p{i}.png -> p{i}.sad ..." for i in range(3)]
    assert [line.split()[0] for line in done] == ["[1/3]", "[2/3]", "[3/3]"]
    assert "p1.png -> p1.sad: 40x32 gray" in done[1]
    rows = lines[lines.index(next(ln for ln in lines if ln.startswith("file "))) + 1 :]
    assert [r.split()[:3] for r in rows[:3]] == [
        ["p0.png", "ok", "40x32"],
        ["p1.png", "ok", "40x32"],
        ["p2.png", "ok", "40x32"],
    ]
    assert rows[3].startswith("3 files: 3 encoded, 0 skipped, 0 failed in ")
    assert "images/hour" in rows[3]


def test_a_bad_file_is_reported_and_the_others_go_on(photos, tmp_path, capsys, monkeypatch):
    bad = tmp_path / "in" / "bad.png"
    bad.write_bytes(b"not an image at all")
    missing = tmp_path / "in" / "missing.png"
    out = tmp_path / "out"
    inputs = [photos[0], bad, missing, photos[1]]
    code, _, err = run(["encode", *inputs, "-o", f"{out}/", *FAST], capsys, monkeypatch)
    assert code == 1
    errors = [line for line in err.splitlines() if line.startswith("sad: error: ")]
    assert errors == [
        f"sad: error: cannot read '{bad}': not a supported image (PNG, JPEG, BMP, TIFF, GIF, WebP)",
        f"sad: error: cannot read '{missing}': no such file",
        "sad: error: 2 of 4 files failed",
    ]
    assert sorted(os.listdir(out)) == ["p0.sad", "p1.sad"]
    assert (out / "p1.sad").read_bytes() == single(photos[1])
    assert "4 files: 2 encoded, 0 skipped, 2 failed" in err


def test_skip_existing_resumes_and_leaves_existing_outputs(photos, tmp_path, capsys, monkeypatch):
    out = tmp_path / "out"
    out.mkdir()
    (out / "p0.sad").write_bytes(b"left as it is")
    args = ["encode", *photos, "-o", out, *FAST, "--skip-existing"]
    code, _, err = run(args, capsys, monkeypatch)
    assert code == 0, err
    assert (out / "p0.sad").read_bytes() == b"left as it is"
    assert (out / "p2.sad").read_bytes() == single(photos[2])
    assert "p0.png -> p0.sad: skipped (the output exists)" in err
    assert "3 files: 2 encoded, 1 skipped, 0 failed" in err
    # Without --skip-existing an existing output is replaced, as a single encode's is.
    code, _, err = run(["encode", *photos[:2], "-o", out, *FAST, "--quiet"], capsys, monkeypatch)
    assert (code, err) == (0, "")
    assert (out / "p0.sad").read_bytes() == single(photos[0])


def test_an_interrupt_leaves_only_complete_files(photos, tmp_path, capsys, monkeypatch):
    """Ctrl-C during the second encode: the first file is complete, nothing else is
    there (no temporary file), and the message says which file was written."""
    real = api.encode
    calls = []

    def encode(*args, **kwargs):
        calls.append(1)
        if len(calls) == 2:
            raise KeyboardInterrupt
        return real(*args, **kwargs)

    monkeypatch.setattr(api, "encode", encode)
    out = tmp_path / "out"
    code, _, err = run(["encode", *photos, "-o", f"{out}/", *FAST], capsys, monkeypatch)
    assert code == 130
    assert os.listdir(out) == ["p0.sad"]
    assert err.splitlines()[-1] == (
        f"sad: interrupted after writing '{out / 'p0.sad'}' (the file is complete)"
    )
    monkeypatch.setattr(api, "encode", real)
    code, _, err = run(
        ["encode", *photos, "-o", out, *FAST, "--skip-existing"], capsys, monkeypatch
    )
    assert code == 0, err
    assert "3 files: 2 encoded, 1 skipped, 0 failed" in err


def test_output_directory_rules(photos, tmp_path, capsys, monkeypatch):
    # Several inputs need a directory; a trailing '/' creates it, a bare name is refused.
    code, _, err = run(["encode", *photos, "-o", tmp_path / "x.sad", *FAST], capsys, monkeypatch)
    assert code == 2
    assert "with several inputs, -o names a directory" in err
    assert not (tmp_path / "x.sad").exists()
    # One input and a directory spelled with '/': the output is named after the input.
    code, _, err = run(["encode", photos[0], "-o", f"{tmp_path}/one/", *FAST], capsys, monkeypatch)
    assert code == 0, err
    assert os.listdir(tmp_path / "one") == ["p0.sad"]


def test_two_inputs_for_one_output_are_refused_before_any_work(tmp_path):
    (tmp_path / "a").mkdir()
    with pytest.raises(SadError, match="both '.*a/x.png' and 'x.jpg' would be encoded to it"):
        batch.plan_outputs([str(tmp_path / "a" / "x.png"), "x.jpg"], f"{tmp_path}/out/")
    jobs = batch.plan_outputs(["a/p.png", "b/q.jpeg"], f"{tmp_path}/out/")
    assert [j.output for j in jobs] == [f"{tmp_path}/out/p.sad", f"{tmp_path}/out/q.sad"]
    assert batch.plan_outputs(["p.png"], "file.sad") == [batch.Job("p.png", "file.sad")]


def test_parse_cluster():
    assert batch.parse_cluster("local:3") == batch.ClusterSpec(None, 3)
    assert batch.parse_cluster("tcp://10.0.0.1:8786") == batch.ClusterSpec("tcp://10.0.0.1:8786")
    for bad in ["local:0", "local:x", "local:", "local:2000", "", "a b"]:
        with pytest.raises(SadError):
            batch.parse_cluster(bad)


def test_cluster_without_dask_says_what_to_install(photos, tmp_path, capsys, monkeypatch):
    monkeypatch.setitem(sys.modules, "distributed", None)  # import distributed fails
    monkeypatch.delitem(sys.modules, "sadcodec.cluster", raising=False)
    monkeypatch.delattr(sadcodec, "cluster", raising=False)
    args = ["encode", *photos, "-o", f"{tmp_path}/out/", *FAST, "--cluster", "local:2"]
    code, _, err = run(args, capsys, monkeypatch)
    assert code == 1
    assert err.startswith("sad: error: --cluster needs Dask distributed (")
    assert err.rstrip().endswith("pip install 'sadcodec[cluster]'")
    assert os.listdir(tmp_path / "out") == []


def test_a_resume_with_nothing_left_reaches_no_cluster(photos, tmp_path, capsys, monkeypatch):
    pytest.importorskip("distributed")
    out = tmp_path / "out"
    out.mkdir()
    for p in photos:
        (out / (p.stem + ".sad")).write_bytes(b"done before")
    # Nothing listens on port 1: connecting would fail after a timeout.
    args = [
        "encode",
        *photos,
        "-o",
        out,
        *FAST,
        "--skip-existing",
        "--cluster",
        "tcp://127.0.0.1:1",
    ]
    code, _, err = run(args, capsys, monkeypatch)
    assert code == 0, err
    assert "3 files: 0 encoded, 3 skipped, 0 failed" in err
