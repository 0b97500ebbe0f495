"""atomic_write_bytes / check_output_path: old file or new file, never a mix or a clobber."""

from __future__ import annotations

import os
import stat
from pathlib import Path

import pytest

from sadcodec import atomic
from sadcodec.atomic import atomic_write_bytes, check_output_path
from sadcodec.errors import SadError

needs_non_root = pytest.mark.skipif(
    not hasattr(os, "geteuid") or os.geteuid() == 0,
    reason="root ignores file permissions",
)


def _leftovers(directory: Path) -> list[str]:
    return [p.name for p in directory.iterdir() if p.name.endswith(".tmp")]


def test_write_new_file(tmp_path: Path) -> None:
    out = tmp_path / "o.bin"
    atomic_write_bytes(out, b"hello")
    assert out.read_bytes() == b"hello"
    assert _leftovers(tmp_path) == []


def test_new_file_mode_follows_umask(tmp_path: Path) -> None:
    old = os.umask(0o022)
    try:
        atomic_write_bytes(tmp_path / "o.bin", b"x")
    finally:
        os.umask(old)
    assert stat.S_IMODE((tmp_path / "o.bin").stat().st_mode) == 0o644


def test_replace_keeps_existing_mode(tmp_path: Path) -> None:
    out = tmp_path / "o.bin"
    out.write_bytes(b"old")
    out.chmod(0o640)
    atomic_write_bytes(str(out), b"new")
    assert out.read_bytes() == b"new"
    assert stat.S_IMODE(out.stat().st_mode) == 0o640


def test_write_through_symlink_keeps_link(tmp_path: Path) -> None:
    real = tmp_path / "real.bin"
    real.write_bytes(b"old")
    link = tmp_path / "link.bin"
    link.symlink_to(real)
    atomic_write_bytes(link, b"new")
    assert link.is_symlink() and real.read_bytes() == b"new"


@pytest.mark.parametrize("where", ["fsync", "replace"])
def test_failure_mid_write_keeps_old_file(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, where: str
) -> None:
    out = tmp_path / "o.bin"
    out.write_bytes(b"original")

    def boom(*_args: object) -> None:
        raise OSError(5, "Input/output error")

    monkeypatch.setattr(atomic.os, where, boom)
    with pytest.raises(SadError, match="cannot write .*Input/output error"):
        atomic_write_bytes(out, b"new content")
    monkeypatch.undo()
    assert out.read_bytes() == b"original"
    assert _leftovers(tmp_path) == []


def test_keyboard_interrupt_cleans_up_and_propagates(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    out = tmp_path / "o.bin"
    out.write_bytes(b"original")

    def interrupt(*_args: object) -> None:
        raise KeyboardInterrupt

    monkeypatch.setattr(atomic.os, "fsync", interrupt)
    with pytest.raises(KeyboardInterrupt):
        atomic_write_bytes(out, b"new")
    monkeypatch.undo()
    assert out.read_bytes() == b"original"
    assert _leftovers(tmp_path) == []


def test_disk_full_message(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    def full(*_args: object) -> None:
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(atomic.os, "fsync", full)
    with pytest.raises(SadError, match="no space left on device"):
        atomic_write_bytes(tmp_path / "o.bin", b"x")
    monkeypatch.undo()
    assert list(tmp_path.iterdir()) == []


def test_missing_directory_message(tmp_path: Path) -> None:
    out = tmp_path / "missing" / "o.bin"
    with pytest.raises(SadError) as info:
        atomic_write_bytes(out, b"x")
    want = f"cannot write '{out}': directory '{tmp_path / 'missing'}' does not exist"
    assert str(info.value) == want


def test_parent_is_a_file(tmp_path: Path) -> None:
    (tmp_path / "f").write_bytes(b"")
    with pytest.raises(SadError, match="is not a directory"):
        atomic_write_bytes(tmp_path / "f" / "o.bin", b"x")


def test_target_is_a_directory(tmp_path: Path) -> None:
    (tmp_path / "d").mkdir()
    with pytest.raises(SadError, match="is a directory"):
        atomic_write_bytes(tmp_path / "d", b"x")
    assert (tmp_path / "d").is_dir()


def test_permission_denied_mapped(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Runs even as root: the error mapping, not the kernel, is what is tested here."""

    def denied(*_args: object, **_kwargs: object) -> None:
        raise PermissionError(13, "Permission denied")

    monkeypatch.setattr(atomic.tempfile, "mkstemp", denied)
    out = tmp_path / "o.bin"
    with pytest.raises(SadError) as info:
        atomic_write_bytes(out, b"x")
    assert str(info.value) == f"cannot write '{out}': permission denied"


@needs_non_root
def test_permission_denied_real(tmp_path: Path) -> None:
    ro = tmp_path / "ro"
    ro.mkdir()
    ro.chmod(0o555)
    try:
        with pytest.raises(SadError, match="permission denied"):
            atomic_write_bytes(ro / "o.bin", b"x")
        with pytest.raises(SadError, match="permission denied"):
            check_output_path(tmp_path / "in.png", ro / "o.bin")
    finally:
        ro.chmod(0o755)
    assert list(ro.iterdir()) == []


def test_check_output_path_denied_via_access(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(atomic.os, "access", lambda *_a, **_k: False)
    with pytest.raises(SadError, match="permission denied"):
        check_output_path(tmp_path / "in.png", tmp_path / "out.sad")


# ------------------------------------------------------------------ check_output_path


def test_same_path_refused(tmp_path: Path) -> None:
    src = tmp_path / "in.png"
    src.write_bytes(b"x")
    with pytest.raises(SadError) as info:
        check_output_path(src, src)
    assert str(info.value) == (
        f"output path is the same as the input; refusing to overwrite '{src}'"
    )


def test_same_path_via_dot_variant_refused(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    (tmp_path / "in.png").write_bytes(b"x")
    (tmp_path / "sub").mkdir()
    monkeypatch.chdir(tmp_path)
    with pytest.raises(SadError, match="refusing to overwrite './sub/../in.png'"):
        check_output_path("in.png", "./sub/../in.png")


def test_same_path_via_symlink_refused(tmp_path: Path) -> None:
    src = tmp_path / "in.png"
    src.write_bytes(b"x")
    link = tmp_path / "link.png"
    link.symlink_to(src)
    with pytest.raises(SadError, match="same as the input"):
        check_output_path(src, link)


def test_same_path_via_hard_link_refused(tmp_path: Path) -> None:
    src = tmp_path / "in.png"
    src.write_bytes(b"x")
    os.link(src, tmp_path / "hard.png")
    with pytest.raises(SadError, match="same as the input"):
        check_output_path(src, tmp_path / "hard.png")


def test_same_missing_path_refused(tmp_path: Path) -> None:
    with pytest.raises(SadError, match="same as the input"):
        check_output_path(tmp_path / "a.png", tmp_path / "." / "a.png")


def test_different_output_accepted(tmp_path: Path) -> None:
    src = tmp_path / "in.png"
    src.write_bytes(b"x")
    (tmp_path / "out.sad").write_bytes(b"old")
    check_output_path(src, tmp_path / "out.sad")  # existing output may be replaced
    check_output_path(src, tmp_path / "new.sad")
    assert src.read_bytes() == b"x" and (tmp_path / "out.sad").read_bytes() == b"old"


def test_check_output_missing_directory(tmp_path: Path) -> None:
    with pytest.raises(SadError, match="directory .* does not exist"):
        check_output_path(tmp_path / "in.png", tmp_path / "nodir" / "o.sad")


def test_check_output_is_directory(tmp_path: Path) -> None:
    with pytest.raises(SadError, match="is a directory"):
        check_output_path(tmp_path / "in.png", tmp_path)


def test_relative_output_in_cwd(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    check_output_path("in.png", "out.sad")
    atomic_write_bytes("out.sad", b"data")
    assert (tmp_path / "out.sad").read_bytes() == b"data"
    assert _leftovers(tmp_path) == []
