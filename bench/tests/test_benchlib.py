"""bench/benchlib.py: provenance, the resume rule, the image folder check, and the CSV ->
report round trip (the report is rendered from the CSV alone). kodak.py runs end to end
with JPEG only on tiny generated images, so no Taichi is needed here."""

from __future__ import annotations

import argparse
import shutil
import subprocess
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from bench import benchlib, kodak
from bench.benchlib import (
    Recorder,
    kodak_folder,
    provenance,
    read_csv,
    reusable,
    settings_of,
    simple_report,
    write_report,
)

needs_git = pytest.mark.skipif(shutil.which("git") is None, reason="git not installed")


def _git(repo: Path, *args: str) -> str:
    return subprocess.run(
        ["git", "-C", str(repo), *args], check=True, capture_output=True, text=True
    ).stdout


@pytest.fixture
def repo(tmp_path: Path) -> Path:
    """A git repository with one commit: code.py, docs/a.md, bench/results/x.csv."""
    r = tmp_path / "repo"
    (r / "docs").mkdir(parents=True)
    (r / "bench" / "results").mkdir(parents=True)
    (r / "code.py").write_text("x = 1\n")
    (r / "docs" / "a.md").write_text("# a\n")
    (r / "bench" / "results" / "x.csv").write_text("a\n1\n")
    _git(r, "init", "-q")
    _git(r, "add", ".")
    _git(r, "-c", "user.name=t", "-c", "user.email=t@t", "commit", "-qm", "init")
    return r


@needs_git
def test_provenance_of_a_clean_tree(repo: Path) -> None:
    p = provenance(repo)
    assert p == {
        "commit": _git(repo, "rev-parse", "--short", "HEAD").strip(),
        "dirty": False,
        "diff": "",
    }


@needs_git
def test_outputs_do_not_make_the_tree_dirty(repo: Path) -> None:
    # A run rewrites its CSV and report as it goes: that must not stop --resume matching.
    (repo / "bench" / "results" / "x.csv").write_text("a\n2\n")
    (repo / "bench" / "results" / "new.md").write_text("report\n")
    (repo / "docs" / "a.md").write_text("# b\n")
    (repo / "README.md").write_text("notes\n")
    assert provenance(repo)["dirty"] is False


@needs_git
def test_changes_to_code_make_it_dirty_with_a_hash_of_them(repo: Path) -> None:
    (repo / "code.py").write_text("x = 2\n")
    a = provenance(repo)
    assert a["dirty"] is True and len(a["diff"]) == 12
    assert provenance(repo) == a  # the same changes, the same hash
    (repo / "code.py").write_text("x = 3\n")
    b = provenance(repo)
    assert b["dirty"] is True and b["diff"] != a["diff"]
    (repo / "code.py").write_text("x = 1\n")
    (repo / "new.py").write_text("y = 1\n")  # an untracked file counts too
    c = provenance(repo)
    assert c["dirty"] is True and c["diff"] not in (a["diff"], b["diff"])
    (repo / "new.py").write_text("y = 2\n")  # and its content
    assert provenance(repo)["diff"] != c["diff"]


def test_provenance_without_a_repository_or_git(tmp_path: Path, monkeypatch) -> None:
    unknown = {"commit": "unknown", "dirty": "unknown", "diff": ""}
    assert provenance(tmp_path) == unknown  # not a checkout
    monkeypatch.setenv("PATH", str(tmp_path))  # no git at all
    assert provenance(benchlib.ROOT) == unknown


def test_reusable_needs_the_same_code_and_settings() -> None:
    clean = {"commit": "abc", "dirty": False, "diff": ""}
    row = {"commit": "abc", "dirty": "False", "diff": "", "settings": "s"}
    assert reusable(row, clean, "s")
    assert not reusable(row, clean, "t")
    assert not reusable({**row, "commit": "abd"}, clean, "s")
    assert not reusable({**row, "dirty": "True", "diff": "d"}, clean, "s")
    dirty = {"commit": "abc", "dirty": True, "diff": "d"}
    assert reusable({**row, "dirty": "True", "diff": "d"}, dirty, "s")
    assert not reusable({**row, "dirty": "True", "diff": "e"}, dirty, "s")
    unknown = {"commit": "unknown", "dirty": "unknown", "diff": ""}
    assert not reusable({**row, "commit": "unknown", "dirty": "unknown"}, unknown, "s")


def test_missing_kodak_folder_says_what_to_put_where(tmp_path: Path, monkeypatch) -> None:
    monkeypatch.setattr(benchlib, "KODAK", tmp_path / "kodak")
    with pytest.raises(SystemExit) as exc:
        kodak_folder(None)
    msg = str(exc.value)
    assert str(tmp_path / "kodak") in msg and "does not exist" in msg
    assert "kodim01.png" in msg and "kodim24.png" in msg and "r0k.us/graphics/kodak" in msg
    assert "--images" in msg
    (tmp_path / "empty").mkdir()
    with pytest.raises(SystemExit) as exc:
        kodak_folder(tmp_path / "empty")
    assert "has no .png images" in str(exc.value) and "--images" in str(exc.value)


def test_default_kodak_folder_is_beside_the_repository() -> None:
    assert benchlib.KODAK == benchlib.ROOT.parent / "shared" / "data" / "kodak"


def _args(tmp_path: Path, **kw) -> argparse.Namespace:
    return argparse.Namespace(out_csv=tmp_path / "r.csv", out_md=None, report_only=False, **kw)


def test_settings_leave_out_outputs(tmp_path: Path) -> None:
    args = _args(tmp_path, bpp=1.0, iterations=[200, 400], images=None)
    assert settings_of(args) == "bpp=1.0 images=../shared/data/kodak iterations=200,400"


def test_report_is_rendered_from_the_csv_alone(tmp_path: Path, capsys) -> None:
    args = _args(tmp_path, n=2)
    rec = Recorder(args.out_csv, ["name", "value"], settings_of(args), machine="m1")
    rec.add({"name": "a", "value": "1"})
    rec.add({"name": "b|c", "value": "2"})
    rows = read_csv(args.out_csv)
    assert [r["name"] for r in rows] == ["a", "b|c"]
    assert list(rows[0])[-6:] == benchlib.PROVENANCE_FIELDS
    assert rows[0]["settings"] == "n=2" and rows[0]["machine"] == "m1"
    assert rows[0]["commit"] == rec.prov["commit"]
    render = simple_report("T", "bench.x", args.out_csv, [("name", "name"), ("value", "v")])
    assert write_report(args, render) == 0
    md = (tmp_path / "r.md").read_text()
    assert md.startswith("# T\n") and "`python -m bench.x --report-only`" in md
    assert "| b/c | 2 |" in md and "- Settings: `n=2`; all 2 rows" in md
    assert "- Machine: m1; all 2 rows" in md
    first = md
    assert write_report(args, render) == 0  # regenerating gives the same report
    assert (tmp_path / "r.md").read_text() == first
    args.out_csv = tmp_path / "none.csv"
    with pytest.raises(SystemExit):
        write_report(args, render)


@pytest.fixture
def images(tmp_path: Path) -> Path:
    d = tmp_path / "img"
    d.mkdir()
    rng = np.random.default_rng(0)
    for i in (1, 2):
        Image.fromarray(rng.integers(0, 256, (24, 32, 3), dtype=np.uint8)).save(
            d / f"kodim0{i}.png"
        )
    return d


def test_kodak_records_provenance_and_resumes_only_matching_cells(
    images: Path, tmp_path: Path, capsys, monkeypatch
) -> None:
    prov = {"commit": "abc1234", "dirty": True, "diff": "d1"}
    monkeypatch.setattr(kodak, "provenance", lambda: prov)
    out = tmp_path / "k.csv"
    base = ["--images", str(images), "--codecs", "jpeg", "--bpp", "2", "--out-csv", str(out)]
    assert kodak.main(base) == 0
    rows = read_csv(out)
    assert [r["image"] for r in rows] == ["kodim01", "kodim02"]
    assert {(r["commit"], r["dirty"], r["diff"]) for r in rows} == {("abc1234", "True", "d1")}
    assert all("optimize=True" in r["settings"] and r["measured"] for r in rows)
    md = (tmp_path / "k.md").read_text()
    assert "# Kodak at 2 bpp: jpeg" in md and "| jpeg | 2 |" in md
    assert "`abc1234` + uncommitted changes (diff d1)" in md
    # A resume of the same code and settings reuses every cell as it is.
    capsys.readouterr()
    assert kodak.main([*base, "--resume"]) == 0
    assert read_csv(out) == rows
    assert "2 cell(s) reused" in capsys.readouterr().err
    # Other uncommitted changes, or other settings: the cells are redone.
    prov["diff"] = "d2"
    assert kodak.main([*base, "--resume"]) == 0
    assert {r["diff"] for r in read_csv(out)} == {"d2"}
    assert "0 cell(s) reused" in capsys.readouterr().err
    assert kodak.main([*base, "--resume", "--seed", "1"]) == 0  # sad's settings only
    assert "2 cell(s) reused" in capsys.readouterr().err
    # --report-only writes the same report from the CSV, measuring nothing.
    md = (tmp_path / "k.md").read_text()
    (tmp_path / "k.md").unlink()
    assert kodak.main([*base, "--report-only"]) == 0
    assert (tmp_path / "k.md").read_text() == md
