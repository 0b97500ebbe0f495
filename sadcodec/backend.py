"""Start Taichi once per process, on the CPU by default or CUDA when asked and present."""

from __future__ import annotations

import contextlib
import io
import os
import tempfile

from .errors import SadError

_state: dict = {}

_CANNOT_START = "cannot start the compute backend"


def preflight():
    """Check what importing and starting Taichi needs, import it, and return the module.

    Taichi's import asks Python for a temporary directory (tempfile.gettempdir, which
    writes a test file there) and fails deep inside with "No usable temporary directory
    found" when there is none, or when the file size limit (ulimit -f) is 0. Here that is a
    one-line SadError naming the cause, raised before any work; so is any other failure
    of the import. The CLI calls this before a command's work starts; it is cheap once done.
    """
    try:
        tempfile.gettempdir()
    except OSError:
        raise SadError(f"{_CANNOT_START}: {_no_tempdir_cause()}") from None
    os.environ.setdefault("ENABLE_TAICHI_HEADER_PRINT", "False")
    try:
        import taichi as ti
    except Exception as exc:
        raise SadError(f"{_CANNOT_START}: importing Taichi failed: {_brief(exc)}") from None
    return ti


def _no_tempdir_cause() -> str:
    try:
        import resource

        limit = resource.getrlimit(resource.RLIMIT_FSIZE)[0]
        unlimited = limit == resource.RLIM_INFINITY
    except (ImportError, AttributeError, OSError, ValueError):
        unlimited = True
    if not unlimited and limit < 4096:
        return f"the file size limit (ulimit -f) is {limit} bytes; no file can be written"
    where = os.environ.get("TMPDIR")
    tried = f"TMPDIR={where!r}, " if where else ""
    return (
        f"no usable temporary directory ({tried}/tmp, /var/tmp, /usr/tmp and the current "
        "directory are not writable); set TMPDIR to a writable directory"
    )


def _brief(exc: BaseException) -> str:
    text = str(exc).strip()
    return f"{type(exc).__name__}: {text.splitlines()[0]}" if text else type(exc).__name__


def init_backend(arch: str | None = "cpu", threads: int | None = None) -> str:
    """Initialise Taichi (idempotent) and return the arch in use: "cpu" or "cuda".

    ``arch="auto"`` picks CUDA when a CUDA device is usable, else the CPU; ``None`` keeps
    the backend already running (so library callers and tests can pick it once), else
    the CPU. Taichi's banner goes to a buffer, not stdout, so ``-o -`` use stays clean.
    """
    if arch is None:
        arch = _state.get("arch", "cpu")
    if arch not in ("auto", "cpu", "cuda"):
        raise SadError(f"unknown --arch '{arch}' (choose auto, cpu or cuda)")
    if "arch" in _state:
        if arch not in ("auto", _state["arch"]):
            raise SadError(f"backend already started on {_state['arch']}, cannot switch to {arch}")
        return _state["arch"]
    ti = preflight()

    kwargs = dict(
        offline_cache=True,
        log_level=ti.ERROR,
        default_fp=ti.f32,
        random_seed=0,
    )
    if threads:
        if threads < 1:
            raise SadError("--threads must be at least 1")
        kwargs["cpu_max_num_threads"] = int(threads)
    chosen = None
    buf = io.StringIO()
    if arch in ("auto", "cuda"):
        with contextlib.redirect_stdout(buf), contextlib.redirect_stderr(buf):
            try:
                ti.init(arch=ti.cuda, **kwargs)
                if ti.lang.impl.current_cfg().arch == ti.cuda:
                    chosen = "cuda"
            except Exception:
                chosen = None
        if chosen is None:
            if arch == "cuda":
                raise SadError("--arch cuda: no usable CUDA device found (try --arch auto or cpu)")
            with contextlib.suppress(Exception):
                ti.reset()
    if chosen is None:
        try:
            with contextlib.redirect_stdout(buf):
                ti.init(arch=ti.cpu, **kwargs)
        except Exception as exc:
            raise SadError(f"{_CANNOT_START} on the CPU: {_brief(exc)}") from None
        chosen = "cpu"
    _plain_source_positions(ti)
    _state["arch"] = chosen
    return chosen


def _plain_source_positions(ti) -> None:
    """Taichi 1.7 draws a wrapped, caret-underlined source excerpt (textwrap) for every
    statement and expression of a kernel it turns into IR, to attach to the IR for error
    messages. Kernels are turned into IR afresh in every process, even when their code
    comes from the offline cache, so this drawing was a large part of a `sad decode`
    process (docs/tuning.md, "Decoder start-up"). The position kept (file, line, function,
    source line) is what an error message needs; the cache keys do not change."""
    if tuple(ti.__version__[:2]) != (1, 7):
        return
    try:
        from taichi.lang.ast.ast_transformer_utils import ASTTransformerContext
    except ImportError:
        return

    def get_pos_info(self, node) -> str:
        src = self.src[node.lineno - 1] if 0 < node.lineno <= len(self.src) else ""
        line = node.lineno + self.lineno_offset
        return f'File "{self.file}", line {line}, in {self.func.func.__name__}:\n{src}\n'

    if hasattr(ASTTransformerContext, "get_pos_info"):
        ASTTransformerContext.get_pos_info = get_pos_info


def current_arch() -> str | None:
    return _state.get("arch")


def kernel_cache_dir() -> str:
    """Where Taichi keeps the kernels it compiled, for later processes: the directory
    ``TI_OFFLINE_CACHE_FILE_PATH`` names, else Taichi's default (``~/.cache/taichi/ticache``
    on Linux and macOS). Deleting it only makes the next run compile them again."""
    path = os.environ.get("TI_OFFLINE_CACHE_FILE_PATH")
    if path:
        return path
    preflight()
    from taichi.lang import impl

    return impl.default_cfg().offline_cache_file_path


# Taichi cannot tell whether a given kernel is in its cache, so a file next to its index
# records that this version of sadcodec, on this Taichi and arch, has written its encoder's
# kernels there; without the index (a cleared cache) the stamp alone means nothing.
_CACHE_INDEX = "ticache.tcb"


def _stamp(arch: str) -> str:
    from . import __version__

    ti = preflight()
    version = ".".join(map(str, ti.__version__))
    return os.path.join(kernel_cache_dir(), f"sadcodec-{__version__}-taichi-{version}-{arch}.ok")


def kernels_cached(arch: str) -> bool:
    """Whether a run of this sadcodec on ``arch`` has left its kernels in Taichi's offline
    cache, so that this process loads them instead of compiling (seconds, not a minute)."""
    try:
        index = os.path.join(kernel_cache_dir(), _CACHE_INDEX)
        return os.path.isfile(index) and os.path.isfile(_stamp(arch))
    except (OSError, SadError):
        return True  # unknown: say nothing


def mark_kernels_cached(arch: str) -> None:
    """Record that this process's kernels are in the cache (after ``shutdown`` wrote it);
    best effort: a cache that cannot be written is only compiled again."""
    with contextlib.suppress(OSError, SadError):
        if os.path.isfile(os.path.join(kernel_cache_dir(), _CACHE_INDEX)):
            with open(_stamp(arch), "a"):
                pass


def shutdown() -> None:
    """Stop Taichi if this process started it; this is when Taichi writes the kernels it
    compiled to its offline cache."""
    if "arch" in _state:
        import taichi as ti

        ti.reset()
        _state.clear()
