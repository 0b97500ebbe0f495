"""atomic_write_bytes / check_output_path: old file or new file, never a mix or a clobber."""

from __future__ import annotations

import contextlib
import errno
import os
import signal
import socket
import stat
import threading
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


# ------------------------------------------------- special files, links, names (issue 24)

needs_root = pytest.mark.skipif(
    not hasattr(os, "geteuid") or os.geteuid() != 0, reason="mknod and chown need root"
)


def _read_fifo(fifo: Path, got: list[bytes]) -> threading.Thread:
    """A reader thread, as a consumer at the other end of a pipe would be."""

    def read() -> None:
        with open(fifo, "rb") as f:
            got.append(f.read())

    thread = threading.Thread(target=read, daemon=True)
    thread.start()
    return thread


@pytest.mark.skipif(not hasattr(os, "mkfifo"), reason="POSIX FIFOs")
def test_fifo_is_written_into_not_replaced(tmp_path: Path) -> None:
    fifo = tmp_path / "out.sad"
    os.mkfifo(fifo)
    data = os.urandom(300_000)  # more than a pipe holds: the writer must loop
    check_output_path(tmp_path / "in.png", fifo)
    got: list[bytes] = []
    reader = _read_fifo(fifo, got)
    atomic_write_bytes(fifo, data)
    reader.join(timeout=30)
    assert got == [data]
    assert stat.S_ISFIFO(fifo.lstat().st_mode)  # still a FIFO, not a regular file
    assert sorted(p.name for p in tmp_path.iterdir()) == ["out.sad"]


@pytest.mark.skipif(not hasattr(os, "mkfifo"), reason="POSIX FIFOs")
def test_fifo_reader_gone_is_one_line(tmp_path: Path) -> None:
    fifo = tmp_path / "out.sad"
    os.mkfifo(fifo)

    def read_one_byte() -> None:
        with open(fifo, "rb") as f:
            f.read(1)

    reader = threading.Thread(target=read_one_byte, daemon=True)
    reader.start()
    with pytest.raises(SadError, match="cannot write .*: the reader closed the pipe"):
        atomic_write_bytes(fifo, os.urandom(4 << 20))
    reader.join(timeout=30)
    assert stat.S_ISFIFO(fifo.lstat().st_mode)


def _null_device(path: Path) -> None:
    """A copy of /dev/null at ``path`` (mknod), or skip where that is not possible."""
    try:
        os.mknod(path, 0o666 | stat.S_IFCHR, os.makedev(1, 3))
        os.close(os.open(path, os.O_WRONLY))  # a nodev mount refuses to open it
    except (OSError, AttributeError) as exc:
        with contextlib.suppress(OSError):
            path.unlink()
        pytest.skip(f"cannot make a character device here: {exc}")


@needs_root
def test_char_device_is_written_into_not_replaced(tmp_path: Path) -> None:
    dev = tmp_path / "x.png"
    _null_device(dev)
    before = dev.lstat()
    check_output_path(tmp_path / "in.sad", dev)
    atomic_write_bytes(dev, b"discarded")
    after = dev.lstat()
    assert stat.S_ISCHR(after.st_mode) and after.st_rdev == before.st_rdev
    assert after.st_ino == before.st_ino  # the same node: written into, not replaced
    assert _leftovers(tmp_path) == []


def test_socket_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "s.sad"
    if len(os.fsencode(path)) > 100:
        pytest.skip("path too long for a unix socket")
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as s:
        s.bind(str(path))
        for call in (
            lambda: check_output_path(tmp_path / "in.png", path),
            lambda: atomic_write_bytes(path, b"x"),
        ):
            with pytest.raises(SadError, match="it is a socket, not a regular file"):
                call()
        assert stat.S_ISSOCK(path.lstat().st_mode)


def test_symlink_is_followed_by_the_kernel(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Following the output link must go through the kernel (stat/open), whose checks
    (fs.protected_symlinks in sticky directories) can refuse it; resolving the link by
    name and renaming onto the result would bypass them. The refusal is simulated, as
    the sysctl cannot be set from a test."""
    real = tmp_path / "real.bin"
    real.write_bytes(b"old")
    link = tmp_path / "link.bin"
    link.symlink_to(real)
    real_stat = os.stat

    def protected(path, *args, **kwargs):
        if os.fspath(path) == str(link) and kwargs.get("follow_symlinks", True):
            raise PermissionError(13, "Permission denied")
        return real_stat(path, *args, **kwargs)

    monkeypatch.setattr(atomic.os, "stat", protected)
    with pytest.raises(SadError, match="permission denied"):
        check_output_path(tmp_path / "in.png", link)
    with pytest.raises(SadError, match="permission denied"):
        atomic_write_bytes(link, b"new")
    monkeypatch.undo()
    assert real.read_bytes() == b"old" and link.is_symlink()
    assert _leftovers(tmp_path) == []


def test_relative_symlink_into_other_directory(tmp_path: Path) -> None:
    (tmp_path / "d").mkdir()
    real = tmp_path / "d" / "real.bin"
    real.write_bytes(b"old")
    real.chmod(0o640)
    link = tmp_path / "link.bin"
    link.symlink_to(os.path.join("d", "real.bin"))
    atomic_write_bytes(link, b"new")
    assert link.is_symlink() and real.read_bytes() == b"new"
    assert stat.S_IMODE(real.stat().st_mode) == 0o640
    assert _leftovers(tmp_path) == [] and _leftovers(tmp_path / "d") == []


def test_dangling_symlink_creates_its_target(tmp_path: Path) -> None:
    link = tmp_path / "link.bin"
    link.symlink_to(tmp_path / "new.bin")
    check_output_path(tmp_path / "in.png", link)
    atomic_write_bytes(link, b"new")
    assert link.is_symlink() and (tmp_path / "new.bin").read_bytes() == b"new"
    assert _leftovers(tmp_path) == []


def test_dangling_symlink_failure_leaves_nothing(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    link = tmp_path / "link.bin"
    link.symlink_to(tmp_path / "new.bin")

    def full(*_args: object) -> None:
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(atomic.os, "fsync", full)
    with pytest.raises(SadError, match="no space left on device"):
        atomic_write_bytes(link, b"new")
    monkeypatch.undo()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["link.bin"]


def test_symlink_loop_refused(tmp_path: Path) -> None:
    loop = tmp_path / "loop.sad"
    loop.symlink_to(loop)
    for call in (
        lambda: check_output_path(tmp_path / "in.png", loop),
        lambda: atomic_write_bytes(loop, b"x"),
    ):
        with pytest.raises(SadError, match="too many levels of symbolic links"):
            call()
    assert loop.is_symlink() and _leftovers(tmp_path) == []


def test_empty_and_too_long_names_refused_early(tmp_path: Path) -> None:
    for call in (
        lambda: check_output_path(tmp_path / "in.png", ""),
        lambda: atomic_write_bytes("", b"x"),
    ):
        with pytest.raises(SadError, match="^cannot write '': the output file name is empty$"):
            call()
    long = tmp_path / ("a" * 300 + ".sad")
    limit = os.pathconf(tmp_path, "PC_NAME_MAX")
    for call in (
        lambda: check_output_path(tmp_path / "in.png", long),
        lambda: atomic_write_bytes(long, b"x"),
    ):
        with pytest.raises(
            SadError, match=rf"file name too long \(304 bytes; the limit is {limit}\)"
        ):
            call()
    deep = tmp_path / ("b" * 300) / "o.sad"  # a directory part counts too
    with pytest.raises(SadError, match="file name too long"):
        check_output_path(tmp_path / "in.png", deep)
    assert list(tmp_path.iterdir()) == []


def test_long_multibyte_name_fits_its_temporary_file(tmp_path: Path) -> None:
    """A legal 253-byte name (83 three-byte characters): the temporary file's name, which
    carries part of it, must stay within NAME_MAX too (it used to take 200 characters)."""
    out = tmp_path / ("图" * 83 + ".sad")
    assert len(os.fsencode(out.name)) == 253
    check_output_path(tmp_path / "in.png", out)
    atomic_write_bytes(out, b"data")
    assert out.read_bytes() == b"data" and _leftovers(tmp_path) == []


@needs_root
def test_replace_keeps_owner_and_group(tmp_path: Path) -> None:
    out = tmp_path / "o.bin"
    out.write_bytes(b"old")
    os.chown(out, 12345, 23456)
    atomic_write_bytes(out, b"new")
    st = out.stat()
    assert (st.st_uid, st.st_gid) == (12345, 23456) and out.read_bytes() == b"new"


def test_file_size_limit_message(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    def too_big(*_args: object) -> None:
        raise OSError(errno.EFBIG, "File too large")

    monkeypatch.setattr(atomic.os, "fsync", too_big)
    with pytest.raises(SadError, match=r"file too large \(over the file size limit, ulimit -f"):
        atomic_write_bytes(tmp_path / "o.bin", b"x")
    monkeypatch.undo()
    assert list(tmp_path.iterdir()) == []


# ---------------------------------------------------------------- signals during a write


class _Term(Exception):
    """What the test's SIGTERM handler raises (the default action would end pytest)."""


def _raise_term(*_args: object) -> None:
    raise _Term


@pytest.mark.parametrize("sig", ["SIGINT", "SIGTERM"])
@pytest.mark.parametrize("when", ["fsync", "replace"])
def test_signal_during_write_is_held_until_written(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, sig: str, when: str
) -> None:
    """A signal while the file is written (or just as it is renamed) is delivered once the
    new file is in place: never a .tmp file left, never an exception between the rename
    and the caller knowing of it. The handlers in force before are back afterwards."""
    signum = getattr(signal, sig)
    expected = KeyboardInterrupt if sig == "SIGINT" else _Term
    old_term = signal.signal(signal.SIGTERM, _raise_term)
    try:
        before = {s: signal.getsignal(s) for s in (signal.SIGINT, signal.SIGTERM)}
        out = tmp_path / "o.bin"
        out.write_bytes(b"original")
        real = getattr(os, when)

        def hook(*args: object) -> object:
            result = real(*args)
            signal.raise_signal(signum)
            return result

        monkeypatch.setattr(atomic.os, when, hook)
        with atomic.recording_writes() as written, pytest.raises(expected):
            atomic_write_bytes(out, b"new")
        monkeypatch.undo()
        assert written == [str(out)]
        assert out.read_bytes() == b"new"
        assert _leftovers(tmp_path) == []
        assert {s: signal.getsignal(s) for s in before} == before
    finally:
        signal.signal(signal.SIGTERM, old_term)


def test_second_signal_is_not_held(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Two Ctrl-Cs during the write (a write that seems stuck): the second acts at once,
    and the write's cleanup still runs."""
    out = tmp_path / "o.bin"
    out.write_bytes(b"original")

    def twice(*_args: object) -> None:
        signal.raise_signal(signal.SIGINT)
        signal.raise_signal(signal.SIGINT)
        raise AssertionError("not interrupted")

    monkeypatch.setattr(atomic.os, "fsync", twice)
    with atomic.recording_writes() as written, pytest.raises(KeyboardInterrupt):
        atomic_write_bytes(out, b"new")
    monkeypatch.undo()
    assert written == [] and out.read_bytes() == b"original"
    assert _leftovers(tmp_path) == []
    assert signal.getsignal(signal.SIGINT) is signal.default_int_handler
