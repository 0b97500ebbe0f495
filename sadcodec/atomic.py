"""Safe output files: never leave a half-written or clobbered file behind.

An encode can take minutes; if it is interrupted (Ctrl-C, full disk, crash) the user must find
either the old file or the complete new one, never a truncated mix. So everything is written to a
temporary file next to the target and renamed over it in one step (``os.replace`` is atomic on
POSIX within one file system, which is why the temporary file lives in the same directory).
"""

from __future__ import annotations

import contextlib
import errno
import os
import stat
import tempfile

from sadcodec.errors import SadError

__all__ = ["atomic_write_bytes", "check_output_path"]

_DENIED = (errno.EACCES, errno.EPERM)


def _shown_dir(path: str) -> str:
    """The output's directory as the user spelled it, so messages match what they typed."""
    return os.path.dirname(path) or "."


def _os_error(path: str, exc: OSError) -> SadError:
    """Turn an OSError from writing into a one-line user message."""
    if isinstance(exc, PermissionError) or exc.errno in _DENIED:
        return SadError(f"cannot write '{path}': permission denied")
    if exc.errno == errno.EROFS:
        return SadError(f"cannot write '{path}': permission denied (read-only file system)")
    if exc.errno == errno.ENOSPC:
        return SadError(f"cannot write '{path}': no space left on device")
    if isinstance(exc, IsADirectoryError):
        return SadError(f"cannot write '{path}': it is a directory")
    reason = exc.strerror or str(exc) or type(exc).__name__
    return SadError(f"cannot write '{path}': {reason}")


def _default_mode() -> int:
    """0o666 minus the umask: what a plain ``open(path, 'w')`` would have produced.

    mkstemp creates 0o600 files, which would silently make outputs private to the user.
    """
    mask = os.umask(0)
    os.umask(mask)
    return 0o666 & ~mask


def _target(path: str) -> str:
    """Where the bytes really go: through a symlink rather than replacing the link itself."""
    return os.path.realpath(path) if os.path.islink(path) else path


def _check_dir(path: str, target: str) -> str:
    """Fail with a clear message unless the target's directory exists; return that directory."""
    if os.path.isdir(target):
        raise SadError(f"cannot write '{path}': it is a directory")
    directory = os.path.dirname(os.path.abspath(target))
    if not os.path.isdir(directory):
        shown = _shown_dir(path) if target == path else directory
        if os.path.exists(directory):
            raise SadError(f"cannot write '{path}': '{shown}' is not a directory")
        raise SadError(f"cannot write '{path}': directory '{shown}' does not exist")
    return directory


def atomic_write_bytes(path: str | os.PathLike[str], data: bytes) -> None:
    """Write ``data`` to ``path`` so that readers see the old file or the new one, nothing else.

    The temporary file is removed on any failure, KeyboardInterrupt included. An existing
    file's permission bits are kept; a new file gets the umask default (0o644 typically).
    """
    p = os.fspath(path)
    target = _target(p)
    directory = _check_dir(p, target)
    name = os.path.basename(target)[:200]  # room for the random part within NAME_MAX
    try:
        mode = stat.S_IMODE(os.stat(target).st_mode)
    except OSError:
        mode = _default_mode()
    try:
        fd, tmp = tempfile.mkstemp(dir=directory, prefix="." + name + ".", suffix=".tmp")
    except OSError as exc:
        raise _os_error(p, exc) from None
    try:
        with os.fdopen(fd, "wb") as f:
            fd = -1  # now owned by f
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        os.chmod(tmp, mode)
        os.replace(tmp, target)
    except BaseException as exc:
        if fd >= 0:
            with contextlib.suppress(OSError):
                os.close(fd)
        with contextlib.suppress(OSError):
            os.unlink(tmp)
        if isinstance(exc, OSError):
            raise _os_error(p, exc) from None
        raise
    _fsync_dir(directory)


def _fsync_dir(directory: str) -> None:
    """Make the rename itself durable; best effort, since not every file system allows it."""
    with contextlib.suppress(OSError):
        dfd = os.open(directory, os.O_RDONLY)
        try:
            os.fsync(dfd)
        finally:
            os.close(dfd)


def check_output_path(
    input_path: str | os.PathLike[str], output_path: str | os.PathLike[str]
) -> None:
    """Refuse an output that would clobber the input or cannot be written, before any work.

    Catching this up front means a long encode does not fail (or destroy its own input)
    only at the very end.
    """
    src = os.fspath(input_path)
    dst = os.fspath(output_path)
    if os.path.exists(src) and os.path.exists(dst):
        try:
            same = os.path.samefile(src, dst)
        except OSError:
            same = False
    else:
        same = os.path.realpath(src) == os.path.realpath(dst)
    if same:
        raise SadError(f"output path is the same as the input; refusing to overwrite '{dst}'")
    target = _target(dst)
    directory = _check_dir(dst, target)
    if not os.access(directory, os.W_OK | os.X_OK):
        raise SadError(f"cannot write '{dst}': permission denied")
