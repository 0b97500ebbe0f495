"""Safe output files: never leave a half-written or clobbered file behind.

An encode can take minutes; if it is interrupted (Ctrl-C, full disk, crash) the user must find
either the old file or the complete new one, never a truncated mix. What is written depends on
what the output path names:

* **A new path or a regular file**: the bytes go to a temporary file next to the target, are
  fsynced, and the temporary file is renamed over the target in one step (``os.replace`` is
  atomic on POSIX within one file system, which is why the temporary file lives in the same
  directory). An existing file's permission bits are kept, and its owner and group where the
  process may set them (root); a new file gets the umask default, as ``open(path, 'w')`` would.
* **A symbolic link**: the kernel follows it (``os.stat`` on the path, so that its checks on
  following links apply, ``fs.protected_symlinks`` in sticky directories included, exactly as
  for the ``open()`` of cwebp, avifenc or ImageMagick); only then is the file it points to
  replaced as above, and the link stays a link. A dangling link is followed by ``open()`` with
  ``O_CREAT``, which the kernel checks the same way, to create the file it names.
* **A FIFO or a character device** (``/dev/null``, a terminal, ``/dev/stdout`` on a pipe): it is
  opened and written into, with no temporary file; it is never replaced. Opening a FIFO waits
  for a reader, as any writer's does.
* **Anything else** (a directory, a block device, a socket): refused with a one-line message.

While a regular file is written (from the temporary file to the rename, milliseconds), SIGINT,
SIGTERM and SIGHUP are held and delivered once the write is complete: a Ctrl-C or a ``kill`` then
never leaves a ``.tmp`` file behind, nor lands between the rename and the caller learning of it.
A second such signal is not held (the write's cleanup still runs), in case the write hangs.
"""

from __future__ import annotations

import contextlib
import errno
import os
import signal
import stat
import tempfile
import threading
from collections.abc import Iterator

from sadcodec.errors import SadError

__all__ = ["atomic_write_bytes", "check_output_path", "recording_writes"]

_DENIED = (errno.EACCES, errno.EPERM)
_HELD_SIGNALS = tuple(
    getattr(signal, name) for name in ("SIGINT", "SIGTERM", "SIGHUP") if hasattr(signal, name)
)
# The target's name goes into the temporary file's name cut to this many bytes, so that
# with the dot, the random part and ".tmp" it stays within NAME_MAX (255 on most systems).
_TMP_NAME_BYTES = 100
_FALLBACK_NAME_MAX = 255
_O_EXTRA = getattr(os, "O_CLOEXEC", 0) | getattr(os, "O_NOCTTY", 0)

_recorders: list[list[str]] = []


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
    if exc.errno == errno.EFBIG:
        return SadError(
            f"cannot write '{path}': file too large (over the file size limit, ulimit -f, "
            "or the file system's)"
        )
    if exc.errno == errno.ENAMETOOLONG:
        return SadError(f"cannot write '{path}': file name too long")
    if exc.errno == errno.ELOOP:
        return SadError(f"cannot write '{path}': too many levels of symbolic links")
    if exc.errno == errno.ENOTDIR:
        return SadError(f"cannot write '{path}': a component of the path is not a directory")
    if exc.errno == errno.EPIPE:
        return SadError(f"cannot write '{path}': the reader closed the pipe")
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


def _name_max(path: str) -> int:
    """NAME_MAX of the file system the output goes to (its nearest existing directory)."""
    directory = os.path.dirname(os.path.abspath(path))
    while True:
        try:
            return int(os.pathconf(directory, "PC_NAME_MAX"))
        except (OSError, ValueError):
            parent = os.path.dirname(directory)
            if parent == directory:
                return _FALLBACK_NAME_MAX
            directory = parent


def _check_name(path: str) -> None:
    """Refuse an empty output name, or one with a part longer than the file system allows."""
    if path == "":
        raise SadError("cannot write '': the output file name is empty")
    parts = os.fsencode(path).split(b"/")
    longest = max(len(part) for part in parts)
    if longest > 14:  # the POSIX minimum of NAME_MAX: nothing to look up below it
        limit = _name_max(path)
        if longest > limit:
            raise SadError(
                f"cannot write '{path}': file name too long ({longest} bytes; the limit is {limit})"
            )


def _kind(mode: int) -> str:
    for test, name in (
        (stat.S_ISDIR, "a directory"),
        (stat.S_ISBLK, "a block device"),
        (stat.S_ISSOCK, "a socket"),
        (stat.S_ISFIFO, "a FIFO"),
        (stat.S_ISCHR, "a character device"),
    ):
        if test(mode):
            return name
    return "not a regular file"


def _is_stream(mode: int) -> bool:
    """Outputs that are written into rather than replaced."""
    return stat.S_ISFIFO(mode) or stat.S_ISCHR(mode)


def _inspect(path: str) -> tuple[str, os.stat_result | None]:
    """Where writing ``path`` puts a regular file, and what ``path`` is now (None: nothing).

    ``os.stat`` follows a symbolic link in the kernel, which applies its checks on
    following links (``fs.protected_symlinks``, search permission); only after it succeeds
    is the link resolved by name, and the two must agree. Resolving by name alone
    (``os.path.realpath``) would bypass those checks.
    """
    _check_name(path)
    try:
        st = os.stat(path)
    except FileNotFoundError:
        st = None
    except OSError as exc:
        raise _os_error(path, exc) from None
    if st is not None and not stat.S_ISREG(st.st_mode) and not _is_stream(st.st_mode):
        if stat.S_ISDIR(st.st_mode):
            raise SadError(f"cannot write '{path}': it is a directory")
        raise SadError(f"cannot write '{path}': it is {_kind(st.st_mode)}, not a regular file")
    if not os.path.islink(path):
        return path, st
    target = os.path.realpath(path)
    if st is not None and not _same_file(target, st):
        raise SadError(f"cannot write '{path}': the symbolic link changed while being followed")
    return target, st


def _same_file(path: str, st: os.stat_result) -> bool:
    try:
        now = os.stat(path, follow_symlinks=False)
    except OSError:
        return False
    return (now.st_dev, now.st_ino) == (st.st_dev, st.st_ino)


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


class _HeldSignals:
    """Hold SIGINT, SIGTERM and SIGHUP while a regular file is written (see the module doc).

    A held signal goes to the handler it would have gone to, once the block is left. Only
    the main thread may set handlers; elsewhere, and for signals ignored or handled outside
    Python, nothing is held.
    """

    def __init__(self) -> None:
        self.saved: dict[int, object] = {}
        self.pending: int | None = None

    def __enter__(self) -> _HeldSignals:
        if threading.current_thread() is not threading.main_thread():
            return self
        try:
            for signum in _HELD_SIGNALS:
                old = signal.getsignal(signum)
                if old is None or old == signal.SIG_IGN:
                    continue
                self.saved[signum] = old
                signal.signal(signum, self._hold)
        except BaseException:
            self._restore()
            raise
        return self

    def __exit__(self, *exc_info: object) -> None:
        handlers = dict(self.saved)
        self._restore()
        signum, self.pending = self.pending, None
        if signum is not None:
            _deliver(signum, handlers.get(signum, signal.SIG_DFL), None)

    def _hold(self, signum: int, frame: object) -> None:
        if self.pending is None:
            self.pending = signum
            return
        # A second signal: the write seems stuck; stop holding and act on it now.
        handler = self.saved.get(signum, signal.SIG_DFL)
        self.pending = None
        self._restore()
        _deliver(signum, handler, frame)

    def _restore(self) -> None:
        while self.saved:
            signum, old = self.saved.popitem()
            signal.signal(signum, old)


def _deliver(signum: int, handler: object, frame: object) -> None:
    """Run what ``signum`` would have run: a Python handler, or the default action."""
    if callable(handler):
        handler(signum, frame)
    elif handler != signal.SIG_IGN:
        signal.raise_signal(signum)


@contextlib.contextmanager
def recording_writes() -> Iterator[list[str]]:
    """Collect the paths that ``atomic_write_bytes`` completes inside this block.

    For a caller that must say, when interrupted, whether its output was already written
    (a path is added while signals are still held, so no interrupt falls in between).
    """
    written: list[str] = []
    _recorders.append(written)
    try:
        yield written
    finally:
        _recorders.remove(written)


def _record(path: str) -> None:
    for written in _recorders:
        written.append(path)


def atomic_write_bytes(path: str | os.PathLike[str], data: bytes) -> None:
    """Write ``data`` to ``path`` so that readers see the old file or the new one, nothing else.

    The temporary file is removed on any failure, KeyboardInterrupt included. An existing
    file's permission bits are kept; a new file gets the umask default (0o644 typically).
    A FIFO or character device is written into instead (module doc).
    """
    p = os.fspath(path)
    target, st = _inspect(p)
    if st is not None and _is_stream(st.st_mode):
        _write_stream(p, data)
        _record(p)
        return
    directory = _check_dir(p, target)
    with _HeldSignals():
        created = None
        if st is None and target != p:  # a dangling symbolic link: create what it names
            created = _create_through_link(p, target)
        try:
            _replace(p, target, directory, st, data)
        except BaseException:
            if created is not None:
                _remove_if_unchanged(target, created)
            raise


def _create_through_link(path: str, target: str) -> os.stat_result:
    """Create the file a dangling link names by opening the link (the kernel's checks apply)."""
    try:
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | _O_EXTRA, 0o666)
    except OSError as exc:
        raise _os_error(path, exc) from None
    try:
        created = os.fstat(fd)
    finally:
        os.close(fd)
    if not _same_file(target, created):
        _remove_if_unchanged(target, created)
        raise SadError(f"cannot write '{path}': the symbolic link changed while being followed")
    return created


def _remove_if_unchanged(target: str, created: os.stat_result) -> None:
    """Undo _create_through_link: remove the empty file it made, unless it changed since."""
    with contextlib.suppress(OSError):
        now = os.stat(target, follow_symlinks=False)
        if (now.st_dev, now.st_ino) == (created.st_dev, created.st_ino) and now.st_size == 0:
            os.unlink(target)


def _replace(p: str, target: str, directory: str, old: os.stat_result | None, data: bytes) -> None:
    """Temporary file in ``directory``, fsync, rename over ``target``; nothing left on failure."""
    mode = stat.S_IMODE(old.st_mode) if old is not None else _default_mode()
    name = os.fsdecode(os.fsencode(os.path.basename(target))[:_TMP_NAME_BYTES])
    try:
        fd, tmp = tempfile.mkstemp(dir=directory, prefix="." + name + ".", suffix=".tmp")
    except OSError as exc:
        raise _os_error(p, exc) from None
    try:
        with os.fdopen(fd, "wb") as f:
            fd = -1  # now owned by f
            _set_owner_and_mode(f.fileno(), tmp, old, mode)
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, target)
    except BaseException as exc:
        if fd >= 0:
            with contextlib.suppress(OSError):
                os.close(fd)
        if not os.path.lexists(tmp):  # renamed: an interrupt just after os.replace
            _record(p)
            raise
        with contextlib.suppress(OSError):
            os.unlink(tmp)
        if isinstance(exc, OSError):
            raise _os_error(p, exc) from None
        raise
    _record(p)
    _fsync_dir(directory)


def _set_owner_and_mode(fd: int, tmp: str, old: os.stat_result | None, mode: int) -> None:
    """Give the temporary file the old file's owner and group where allowed (root, or a
    group the user is in; otherwise it belongs to the user, as any rewritten file would),
    and ``mode``. Through the descriptor where the platform can, never the name, which
    another user of a shared directory could swap for a link."""
    if old is not None and hasattr(os, "fchown"):
        st = os.fstat(fd)
        if (st.st_uid, st.st_gid) != (old.st_uid, old.st_gid):
            with contextlib.suppress(OSError):
                os.fchown(fd, old.st_uid, old.st_gid)
    if hasattr(os, "fchmod"):
        os.fchmod(fd, mode)
    else:
        os.chmod(tmp, mode)


def _write_stream(p: str, data: bytes) -> None:
    """Write into a FIFO or character device (opened, never created, truncated or replaced)."""
    try:
        fd = os.open(p, os.O_WRONLY | _O_EXTRA)  # on a FIFO: waits for a reader
    except OSError as exc:
        raise _os_error(p, exc) from None
    try:
        mode = os.fstat(fd).st_mode
        if not _is_stream(mode):  # replaced since it was inspected: write nothing
            raise SadError(f"cannot write '{p}': it changed while being opened")
        view = memoryview(data)
        while view:
            view = view[os.write(fd, view) :]
    except OSError as exc:
        raise _os_error(p, exc) from None
    finally:
        os.close(fd)


def _fsync_dir(directory: str) -> None:
    """Make the rename itself durable; best effort, since not every file system allows it."""
    with contextlib.suppress(OSError):
        dfd = os.open(directory, os.O_RDONLY)
        try:
            os.fsync(dfd)
        finally:
            os.close(dfd)


def _same_path(src: str, dst: str) -> bool:
    """Whether two paths name one file (or would, for a path that does not exist yet)."""
    if os.path.exists(src) and os.path.exists(dst):
        try:
            return os.path.samefile(src, dst)
        except OSError:
            return False
    return os.path.realpath(src) == os.path.realpath(dst)


def check_output_path(
    input_path: str | os.PathLike[str] | None, output_path: str | os.PathLike[str]
) -> None:
    """Refuse an output that would clobber the input or cannot be written, before any work.

    Catching this up front means a long encode does not fail (or destroy its own input)
    only at the very end: an empty or too long name, a missing or unwritable directory, a
    directory or another file that cannot be written into, a link that cannot be followed.
    ``input_path`` None: the input is no file (standard input), so none can be clobbered.
    """
    dst = os.fspath(output_path)
    _check_name(dst)
    if input_path is not None and _same_path(os.fspath(input_path), dst):
        raise SadError(f"output path is the same as the input; refusing to overwrite '{dst}'")
    target, st = _inspect(dst)
    if st is not None and _is_stream(st.st_mode):
        if not os.access(dst, os.W_OK):
            raise SadError(f"cannot write '{dst}': permission denied")
        return
    directory = _check_dir(dst, target)
    if not os.access(directory, os.W_OK | os.X_OK):
        raise SadError(f"cannot write '{dst}': permission denied")
