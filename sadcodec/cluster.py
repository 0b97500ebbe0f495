"""Encode on a Dask cluster: `sad encode ... --cluster ADDRESS` or `--cluster local:N`.

The client (the process running `sad`, sadcodec.batch) reads each input image, sends its
pixels to the cluster, and writes the bytes each worker sends back, atomically, to its own
file system: workers need sadcodec installed, not the client's files. A worker's result is
the same ``api.encode`` the client would run itself, so on the CPU its bytes are the bytes
of a single-process encode with the same settings and seed.

Taichi is started once per worker process, by a worker plugin (``TaichiWorker``), and every
encode of that process runs on the one thread that started it: Taichi's LLVM context refuses
calls from any other thread, and one encode at a time already uses every core it is given.
A worker that dies while encoding (killed, out of memory) has its task sent to another
worker by the scheduler, up to Dask's ``distributed.scheduler.allowed-failures`` times;
nothing is written for a file until its bytes are back at the client.

Needs the optional extra: ``pip install "sadcodec[cluster]"`` (Dask distributed).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import shutil
import subprocess
import threading
import uuid
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass

import dask
import numpy as np
from distributed import (
    CancelledError,
    Client,
    KilledWorker,
    LocalCluster,
    Worker,
    WorkerPlugin,
    as_completed,
)

from .backend import current_arch
from .errors import SadError

__all__ = ["TaichiWorker", "TaskResult", "connect", "encode_on_cluster", "worker_info"]

# How long to wait for a scheduler at an address before giving up.
CONNECT_TIMEOUT_S = 10
# Images in flight per worker thread: one being encoded and one waiting, so that a worker
# never idles for a transfer, while the client holds only a few images' pixels at a time.
IN_FLIGHT_PER_THREAD = 2
# Dask warns above 10 MB of task data; one photograph's pixels are more than that (a
# 12 MP RGB image is 36 MB) and are meant to travel with its task, so that a task whose
# worker died can be run again elsewhere from what the scheduler holds.
_TASK_DATA_WARNING = "4GB"


# ------------------------------------------------------------------------ worker side

# One per worker process, kept across plugin registrations (each `sad` run registers the
# plugin again): Taichi stays bound to the thread that started it.
_executor: ThreadPoolExecutor | None = None
_executor_lock = threading.Lock()
_worker_state: dict = {
    "arch": None,  # the backend Taichi runs on
    "error": None,  # why it could not start
    "starts": 0,  # Taichi starts in this process: 1 once started, whatever the runs
    "encodes": 0,  # encodes done
    "busy": None,  # the key of the task being encoded
    "iteration": 0,  # how far its fit is
    "thread": None,  # the thread Taichi runs on
}


def _sad_thread() -> ThreadPoolExecutor:
    global _executor
    with _executor_lock:
        if _executor is None:
            _executor = ThreadPoolExecutor(1, thread_name_prefix="sadcodec")
        return _executor


class TaichiWorker(WorkerPlugin):
    """Start Taichi once in each worker process, on the thread every encode will run on.

    ``devices``: for a local cluster on a machine with several GPUs, the CUDA devices to
    share out, one per worker by the worker's index (a worker started by hand is given its
    GPU by its own ``CUDA_VISIBLE_DEVICES``). A failure to start (no CUDA device for
    ``arch="cuda"``, another sadcodec version) is kept and reported by each encode sent to
    that worker, so that the client says which worker and why.
    """

    name = "sadcodec-taichi"

    def __init__(
        self,
        arch: str,
        threads: int | None,
        version: str,
        devices: list[str] | None = None,
    ) -> None:
        self.arch = arch
        self.threads = threads
        self.version = version
        self.devices = devices

    async def setup(self, worker: Worker) -> None:
        from . import __version__

        _worker_state["error"] = None
        if __version__ != self.version:
            _worker_state["error"] = (
                f"the worker has sadcodec {__version__}, the client {self.version}"
            )
            return
        if self.devices and isinstance(worker.name, int) and current_arch() is None:
            os.environ["CUDA_VISIBLE_DEVICES"] = self.devices[worker.name % len(self.devices)]
        # Awaited, not waited for: the worker keeps answering the scheduler meanwhile.
        future = _sad_thread().submit(_start, self.arch, self.threads)
        try:
            _worker_state["arch"] = await asyncio.wrap_future(future)
        except SadError as exc:
            _worker_state["error"] = _one_line(exc)


def _start(arch: str, threads: int | None) -> str:
    from .backend import init_backend

    fresh = current_arch() is None
    arch = init_backend(arch, threads)
    if fresh:
        _worker_state["starts"] += 1
        _worker_state["thread"] = threading.current_thread().name
    return arch


def worker_info() -> dict:
    """This worker's sadcodec state (_worker_state) and process id."""
    return {"pid": os.getpid(), **_worker_state}


def _encode_task(image: np.ndarray, options: dict) -> tuple[str, object, str]:
    """Run on a worker: ("ok", EncodeResult, worker) or ("error", message, worker)."""
    from distributed import get_worker

    worker = get_worker()
    where = worker.address
    if _worker_state["error"] is not None:
        return "error", f"worker {where} could not start: {_worker_state['error']}", where
    _worker_state.update(busy=worker.get_current_task(), iteration=0)
    try:
        return (*_sad_thread().submit(_encode_here, image, options).result(), where)
    finally:
        _worker_state["busy"] = None


def _encode_here(image: np.ndarray, options: dict) -> tuple[str, object]:
    """On the Taichi thread: a bad image or setting is a result, not an exception (no
    worker traceback in the log for what is the file's fault)."""
    from . import api

    def progress(d: dict) -> None:
        _worker_state["iteration"] = d["iteration"]

    try:
        result = api.encode(
            image, arch=None, threads=None, stats=True, progress=progress, **options
        )
    except SadError as exc:
        return "error", _one_line(exc)
    except MemoryError:
        return "error", "out of memory"
    _worker_state["encodes"] += 1
    return "ok", result


def _one_line(exc: BaseException) -> str:
    text = str(exc).strip()
    return text.splitlines()[0] if text else type(exc).__name__


# ------------------------------------------------------------------------ client side


@dataclass(frozen=True)
class TaskResult:
    """What came back for one image: its result (an EncodeResult) or a one-line error."""

    index: int
    result: object | None
    error: str | None
    worker: str | None


@contextlib.contextmanager
def connect(address: str | None, workers: int = 1) -> Iterator[Client]:
    """A client of the scheduler at ``address``, or of a new local cluster of ``workers``
    worker processes (one task at a time each) when ``address`` is None; closed on exit."""
    cluster = None
    try:
        if address is None:
            # Dask's own log lines (a worker restarted, a task retried) would break the
            # one-line-per-file output; what matters reaches the client as a result.
            cluster = LocalCluster(
                n_workers=workers,
                threads_per_worker=1,
                processes=True,
                dashboard_address=None,
                silence_logs=logging.CRITICAL,
            )
            client = Client(cluster)
        else:
            client = Client(address, timeout=CONNECT_TIMEOUT_S)
    except (OSError, TimeoutError) as exc:
        if cluster is not None:
            cluster.close()
        where = f"at '{address}'" if address else f"of {workers} local workers"
        raise SadError(f"cannot connect to the cluster {where}: {_one_line(exc)}") from None
    try:
        yield client
    finally:
        with contextlib.suppress(Exception):
            client.close()
        if cluster is not None:
            with contextlib.suppress(Exception):
                cluster.close()


def local_devices() -> list[str] | None:
    """The CUDA devices a local cluster's workers share out: those CUDA_VISIBLE_DEVICES
    names, else one per GPU ``nvidia-smi -L`` lists; None when there are none."""
    visible = os.environ.get("CUDA_VISIBLE_DEVICES")
    if visible is not None:
        devices = [d.strip() for d in visible.split(",") if d.strip()]
        return devices or None
    smi = shutil.which("nvidia-smi")
    if smi is None:
        return None
    try:
        out = subprocess.run([smi, "-L"], capture_output=True, text=True, timeout=10).stdout
    except (OSError, subprocess.SubprocessError):
        return None
    count = sum(1 for line in out.splitlines() if line.startswith("GPU "))
    return [str(i) for i in range(count)] or None


def start_workers(
    client: Client, arch: str, threads: int | None, devices: list[str] | None = None
) -> list[dict]:
    """Start Taichi on every worker (TaichiWorker, also on workers that join later) and
    return their worker_info, address added; SadError when there is no worker or none
    could start."""
    from . import __version__

    if not client.nthreads():
        try:
            client.wait_for_workers(1, timeout=CONNECT_TIMEOUT_S)
        except TimeoutError:
            raise SadError("the cluster has no workers") from None
    client.register_plugin(TaichiWorker(arch, threads, __version__, devices))
    infos = [{"address": a, **i} for a, i in sorted(client.run(worker_info).items())]
    if all(i["error"] for i in infos):
        raise SadError(f"no worker could start: {infos[0]['error']}")
    return infos


def encode_on_cluster(
    client: Client, images: Iterator[tuple[int, np.ndarray, dict]]
) -> Iterator[TaskResult]:
    """Encode each (index, image, api.encode's keyword arguments) on the cluster, yielding
    results as they complete.

    ``images`` is read only as workers become free, so the client holds a few images at a
    time however many there are. A task whose worker died as often as Dask allows is a
    result with an error; losing the scheduler is a SadError.
    """
    in_flight: dict = {}
    done = as_completed()
    tag = uuid.uuid4().hex[:8]

    def capacity() -> int:
        threads = sum(client.nthreads().values())
        return max(2, IN_FLIGHT_PER_THREAD * threads)

    def top_up() -> None:
        limit = capacity()
        while len(in_flight) < limit:
            item = next(images, None)
            if item is None:
                return
            index, image, options = item
            with dask.config.set(
                {"distributed.admin.large-graph-warning-threshold": (_TASK_DATA_WARNING)}
            ):
                future = client.submit(
                    _encode_task, image, options, key=f"sad-encode-{index}-{tag}", pure=False
                )
            in_flight[future.key] = index
            done.add(future)

    top_up()
    for future in done:
        index = in_flight.pop(future.key)
        try:
            status, payload, worker = future.result()
        except KilledWorker as exc:
            tries = dask.config.get("distributed.scheduler.allowed-failures") + 1
            yield TaskResult(
                index, None, f"the worker encoding it died {tries} times ({_one_line(exc)})", None
            )
        except (OSError, TimeoutError, CancelledError) as exc:
            raise SadError(f"lost the cluster: {_one_line(exc)}") from None
        except Exception as exc:  # a bug on the worker: this file fails, the others go on
            message = f"internal error: {type(exc).__name__}: {_one_line(exc)}"
            yield TaskResult(index, None, message, None)
        else:
            if status == "ok":
                yield TaskResult(index, payload, None, worker)
            else:
                yield TaskResult(index, None, str(payload), worker)
        finally:
            future.release()
        top_up()
