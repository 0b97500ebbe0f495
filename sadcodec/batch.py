"""Encode many images in one run: `sad encode a.png b.png ... -o OUTDIR/`.

In one process Taichi starts, and its kernels compile or load, once for all the files;
with a cluster (sadcodec.cluster) once per worker. Either way this module reads the inputs
and writes the outputs, each atomically (sadcodec.atomic), so an interrupted run leaves
only complete files, and ``skip_existing`` makes a rerun resume where it stopped.

A file that cannot be read, encoded or written is reported with its one-line error and
the others go on; the caller decides what the failures mean (the CLI exits 1). The
report (``TextReport``) gives a line per file as it starts (in one process, with the
encoder's progress under it) and as it completes, and a table at the end.
"""

from __future__ import annotations

import os
import sys
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from typing import NamedTuple, Protocol, TextIO

import numpy as np

from . import api
from .atomic import atomic_write_bytes, check_output_path
from .backend import init_backend
from .errors import SadError

__all__ = [
    "ClusterSpec",
    "EncodeOptions",
    "Job",
    "Outcome",
    "TextReport",
    "encode_files",
    "names_directory",
    "parse_cluster",
    "plan_outputs",
]

OUTPUT_SUFFIX = ".sad"
LOCAL_PREFIX = "local:"
MAX_LOCAL_WORKERS = 1024
_CHANNEL_NAMES = {1: "gray", 3: "RGB", 4: "RGBA"}


@dataclass(frozen=True)
class Job:
    """One input image and the .sad file it is encoded to."""

    input: str
    output: str


@dataclass(frozen=True)
class EncodeOptions:
    """api.encode's settings, the same for every file of a run."""

    bpp: float | None = None
    size: int | str | None = None
    seed: int = 0
    effort: int | None = None
    iterations: int | None = None
    max_memory: int | str | None = None
    metadata: str = "none"
    arch: str | None = "cpu"
    threads: int | None = None

    def encode_kwargs(self) -> dict:
        """The settings that decide the bytes, but for each file's own metadata."""
        return {
            "bpp": self.bpp,
            "size": self.size,
            "seed": self.seed,
            "effort": self.effort,
            "iterations": self.iterations,
            "max_memory": self.max_memory,
        }


@dataclass
class Outcome:
    """What became of one job: "encoded", "skipped" (its output existed) or "failed"."""

    job: Job
    status: str
    error: str | None = None
    shape: tuple[int, int, int] | None = None
    sites: int | None = None
    bytes: int | None = None
    psnr: float | None = None
    seconds: float | None = None
    worker: str | None = None

    @property
    def bpp(self) -> float | None:
        if self.bytes is None or self.shape is None:
            return None
        return 8 * self.bytes / (self.shape[0] * self.shape[1])


@dataclass(frozen=True)
class ClusterSpec:
    """Where to encode: the scheduler at ``address``, or a new local cluster of
    ``workers`` worker processes when ``address`` is None."""

    address: str | None
    workers: int = 0


def parse_cluster(text: str) -> ClusterSpec:
    """``local:N`` (N worker processes on this machine) or a scheduler's address
    (``tcp://host:8786``, ``host:8786``); SadError for anything else."""
    text = text.strip()
    if text.startswith(LOCAL_PREFIX):
        n = text[len(LOCAL_PREFIX) :]
        if not n.isdigit() or not 1 <= int(n) <= MAX_LOCAL_WORKERS:
            raise SadError(
                f"--cluster {text}: local:N needs N from 1 to {MAX_LOCAL_WORKERS} workers"
            )
        return ClusterSpec(None, int(n))
    if not text or any(c.isspace() for c in text):
        raise SadError(f"--cluster {text!r}: give a scheduler address (tcp://host:8786) or local:N")
    return ClusterSpec(text)


def names_directory(output: str) -> bool:
    """Whether ``-o`` is spelled as a directory (ends with a path separator)."""
    return output.endswith(os.sep) or (os.altsep is not None and output.endswith(os.altsep))


def plan_outputs(inputs: Sequence[str], output: str) -> list[Job]:
    """The job of each input. One input and an output that is not spelled as a directory:
    that file. Otherwise ``output`` is a directory (created when spelled with a trailing
    separator) and each output is named after its input, ``photo.png`` -> ``photo.sad``;
    two inputs that would write one output are refused before any work."""
    if len(inputs) == 1 and not names_directory(output):
        return [Job(inputs[0], output)]
    if not os.path.isdir(output):
        if os.path.lexists(output) or not names_directory(output):
            raise SadError(f"cannot write to '{output}': not a directory")
        try:
            os.makedirs(output, exist_ok=True)
        except OSError as exc:
            raise SadError(f"cannot create directory '{output}': {exc.strerror or exc}") from None
    jobs: list[Job] = []
    claimed: dict[str, str] = {}
    for path in inputs:
        stem = os.path.splitext(os.path.basename(os.path.normpath(path)))[0]
        out = os.path.join(output, stem + OUTPUT_SUFFIX)
        key = os.path.normcase(os.path.abspath(out))
        if key in claimed:
            raise SadError(
                f"cannot write '{out}': both '{claimed[key]}' and '{path}' would be encoded "
                "to it (encode them to different directories)"
            )
        claimed[key] = path
        jobs.append(Job(path, out))
    return jobs


class ProgressBar(Protocol):
    """An encode's progress display: called with the encoder's progress, then closed."""

    def __call__(self, d: dict) -> None: ...

    def close(self) -> None: ...


class TextReport:
    """The run's report on a stream (stderr): a line per file as it completes, each
    failure's one-line error, a table at the end. ``quiet``: errors only. ``progress``:
    makes the progress callback of each in-process encode (an object with ``close()``)."""

    def __init__(
        self,
        quiet: bool = False,
        stream: TextIO | None = None,
        progress: Callable[[], ProgressBar] | None = None,
    ) -> None:
        self.quiet = quiet
        self.stream = stream
        self.progress = progress
        self.total = 0
        self.finished = 0

    def _print(self, line: str) -> None:
        print(line, file=self.stream or sys.stderr, flush=True)

    def begin(self, total: int) -> None:
        self.total = total

    def info(self, line: str) -> None:
        if not self.quiet:
            self._print(line)

    def notice(self, job: Job, message: str) -> None:
        if not self.quiet:
            self._print(f"sad: notice: {os.path.basename(job.input)}: {message}")

    def starting(self, job: Job) -> ProgressBar | None:
        """An in-process encode of ``job`` begins: say so; its progress callback."""
        if self.quiet:
            return None
        src, dst = os.path.basename(job.input), os.path.basename(job.output)
        self._print(f"[{self.finished + 1}/{self.total}] {src} -> {dst} ...")
        return None if self.progress is None else self.progress()

    def done(self, outcome: Outcome) -> None:
        self.finished += 1
        if outcome.status == "failed":
            self._print(f"sad: error: {outcome.error}")
            return
        if self.quiet:
            return
        src = os.path.basename(outcome.job.input)
        dst = os.path.basename(outcome.job.output)
        where = f"[{self.finished}/{self.total}] {src} -> {dst}"
        if outcome.status == "skipped":
            self._print(f"{where}: skipped (the output exists)")
            return
        h, w, c = outcome.shape
        on = f" on {outcome.worker}" if outcome.worker else ""
        self._print(
            f"{where}: {w}x{h} {_CHANNEL_NAMES[c]}, {outcome.sites} sites, "
            f"{outcome.bytes} bytes, {outcome.bpp:.3f} bpp, PSNR {outcome.psnr:.2f} dB, "
            f"encode {outcome.seconds:.1f} s{on}"
        )

    def end(self, outcomes: Sequence[Outcome], seconds: float) -> None:
        if self.quiet or not outcomes:
            return
        for line in summary_table(outcomes, seconds):
            self._print(line)


def summary_table(outcomes: Sequence[Outcome], seconds: float) -> list[str]:
    """The end-of-run table, one row per file in the order given, and a totals line."""
    head = ("file", "result", "size", "sites", "bytes", "bpp", "PSNR dB", "encode s")
    rows = []
    for o in outcomes:
        name = os.path.basename(o.job.input)
        if o.status != "encoded":
            rows.append((name, o.status if o.status != "failed" else "FAILED"))
            continue
        h, w, _ = o.shape
        rows.append(
            (
                name,
                "ok",
                f"{w}x{h}",
                str(o.sites),
                str(o.bytes),
                f"{o.bpp:.3f}",
                f"{o.psnr:.2f}",
                f"{o.seconds:.1f}",
            )
        )
    widths = [max(len(r[i]) for r in (head, *rows) if len(r) > i) for i in range(len(head))]
    left = {0, 1, 2}

    def fmt(row: tuple[str, ...]) -> str:
        cells = [c.ljust(widths[i]) if i in left else c.rjust(widths[i]) for i, c in enumerate(row)]
        return "  ".join(cells).rstrip()

    count = {s: sum(o.status == s for o in outcomes) for s in ("encoded", "skipped", "failed")}
    rate = count["encoded"] * 3600 / seconds if seconds > 0 and count["encoded"] else 0.0
    total = (
        f"{len(outcomes)} files: {count['encoded']} encoded, {count['skipped']} skipped, "
        f"{count['failed']} failed in {seconds:.1f} s"
    )
    if count["encoded"]:
        total += f" ({rate:.0f} images/hour)"
    return [fmt(head), *(fmt(r) for r in rows), total]


class _Item(NamedTuple):
    """An image to encode: its job's index, its pixels, api.encode's keyword arguments."""

    index: int
    image: np.ndarray
    kwargs: dict


@dataclass
class _Run:
    jobs: Sequence[Job]
    options: EncodeOptions
    report: TextReport
    outcomes: list[Outcome | None] = field(default_factory=list)

    def record(self, index: int, outcome: Outcome) -> None:
        self.outcomes[index] = outcome
        self.report.done(outcome)

    def fail(self, index: int, message: str) -> None:
        self.record(index, Outcome(self.jobs[index], "failed", error=message))

    def images(self, skip_existing: bool) -> Iterator[_Item]:
        """Each job's image, loaded and checked; skipped and unreadable jobs are recorded
        here and not yielded."""
        for index, job in enumerate(self.jobs):
            if skip_existing and os.path.exists(job.output):
                self.record(index, Outcome(job, "skipped"))
                continue
            try:
                image, kwargs = self.load(job)
            except SadError as exc:
                self.fail(index, _one_line(exc))
                continue
            except MemoryError:
                self.fail(index, f"cannot read '{job.input}': out of memory")
                continue
            yield _Item(index, image, kwargs)

    def load(self, job: Job) -> tuple[np.ndarray, dict]:
        """The job's image and api.encode's keyword arguments for it, after the checks a
        single encode makes before its work: the input and output paths, the settings for
        the size the header declares (so an image too large is refused before its pixels
        are decoded), then for the decoded image and its metadata."""
        from .imageload import load_image, probe_image

        if job.input == "-":
            raise SadError("cannot read '-': standard input is for a single encode")
        check_output_path(job.input, job.output)
        kwargs = self.options.encode_kwargs()
        self.check(job, probe_image(job.input), kwargs)
        image = load_image(job.input, notice=lambda m: self.report.notice(job, m))
        if self.options.metadata != "none":
            from .metadata import read_image_metadata

            meta = read_image_metadata(
                job.input,
                self.options.metadata,
                image.shape[2],
                notice=lambda m: self.report.notice(job, m),
            )
            kwargs.update(icc_profile=meta.icc_profile, exif=meta.exif)
        self.check(job, image.shape, kwargs)
        return image, kwargs

    def check(self, job: Job, shape: tuple[int, ...], kwargs: dict) -> None:
        try:
            api.encode_settings(shape, **kwargs)
        except SadError as exc:
            raise SadError(f"cannot encode '{job.input}': {_one_line(exc)}") from None

    def finish(self, index: int, shape: tuple[int, ...], result, worker: str | None) -> None:
        """Write an encode's bytes (atomically) and record it."""
        job = self.jobs[index]
        try:
            atomic_write_bytes(job.output, result.data)
        except SadError as exc:
            self.fail(index, _one_line(exc))
            return
        h, w, c = shape
        self.record(
            index,
            Outcome(
                job,
                "encoded",
                shape=(h, w, c),
                sites=result.sites,
                bytes=result.bytes,
                psnr=result.psnr,
                seconds=result.seconds,
                worker=worker,
            ),
        )


def encode_files(
    jobs: Sequence[Job],
    options: EncodeOptions | None = None,
    *,
    skip_existing: bool = False,
    cluster: ClusterSpec | object | None = None,
    report: TextReport | None = None,
) -> list[Outcome]:
    """Encode each job's input to its output and return the outcomes, in the jobs' order.

    ``cluster``: None encodes in this process; a ClusterSpec connects to a scheduler or
    starts a local cluster for the run; a ``distributed.Client`` uses that cluster. With
    ``skip_existing`` a job whose output exists is not encoded. A bad file is a "failed"
    outcome; an environment that cannot encode at all (the backend cannot start, the
    cluster cannot be reached) raises SadError, and KeyboardInterrupt stops the run, with
    every file written so far complete.
    """
    options = options or EncodeOptions()
    report = report or TextReport(quiet=True)
    run = _Run(jobs, options, report, [None] * len(jobs))
    report.begin(len(jobs))
    t0 = time.perf_counter()
    if cluster is None:
        _encode_here(run, skip_existing)
    else:
        _encode_on_cluster(run, skip_existing, cluster)
    outcomes = [o for o in run.outcomes if o is not None]
    report.end(outcomes, time.perf_counter() - t0)
    return outcomes


def _encode_here(run: _Run, skip_existing: bool) -> None:
    """One process: Taichi starts before the first encode, and once."""
    started = False
    for index, image, kwargs in run.images(skip_existing):
        if not started:
            init_backend(run.options.arch, run.options.threads)  # an error here ends the run
            started = True
        progress = run.report.starting(run.jobs[index])
        try:
            result = api.encode(image, arch=None, stats=True, progress=progress or False, **kwargs)
        except SadError as exc:
            run.fail(index, f"cannot encode '{run.jobs[index].input}': {_one_line(exc)}")
            continue
        except MemoryError:
            run.fail(index, f"cannot encode '{run.jobs[index].input}': out of memory")
            continue
        except Exception as exc:  # a bug: this file fails, the others go on
            if os.environ.get("SAD_DEBUG", "") not in ("", "0"):
                raise
            what = f"internal error: {type(exc).__name__}: {_one_line(exc)}"
            run.fail(index, f"cannot encode '{run.jobs[index].input}': {what}")
            continue
        finally:
            if progress is not None:
                progress.close()
        run.finish(index, image.shape, result, None)


def _encode_on_cluster(run: _Run, skip_existing: bool, cluster: object) -> None:
    try:
        from . import cluster as dask_cluster
    except ImportError as exc:
        raise SadError(
            f"--cluster needs Dask distributed ({_one_line(exc)}): pip install 'sadcodec[cluster]'"
        ) from None

    if skip_existing and all(os.path.exists(job.output) for job in run.jobs):
        for _ in run.images(skip_existing):  # records each as skipped; yields nothing
            pass
        return  # nothing to encode: no cluster to start or reach
    if isinstance(cluster, ClusterSpec):
        threads = run.options.threads
        devices = None
        if cluster.address is None:
            # Local workers share this machine's cores (and GPUs) between them.
            threads = threads or max(1, _cores() // cluster.workers)
            if run.options.arch != "cpu":
                devices = dask_cluster.local_devices()
        with dask_cluster.connect(cluster.address, cluster.workers) as client:
            _run_on(run, skip_existing, dask_cluster, client, threads, devices)
    else:
        _run_on(run, skip_existing, dask_cluster, cluster, run.options.threads, None)


def _run_on(run: _Run, skip_existing: bool, dask_cluster, client, threads, devices) -> None:
    infos = dask_cluster.start_workers(client, run.options.arch or "cpu", threads, devices)
    arches = ", ".join(sorted({i["arch"] or "failed to start" for i in infos}))
    workers = f"{len(infos)} worker{'s' if len(infos) != 1 else ''}"
    run.report.info(f"cluster: {workers} at {client.scheduler.address} ({arches})")
    for info in infos:
        if info["error"]:
            run.report.info(f"sad: notice: worker {info['address']}: {info['error']}")
    shapes: dict[int, tuple[int, ...]] = {}

    def images() -> Iterator[_Item]:
        for item in run.images(skip_existing):
            shapes[item.index] = item.image.shape
            yield item

    for done in dask_cluster.encode_on_cluster(client, images()):
        if done.error is not None:
            run.fail(done.index, f"cannot encode '{run.jobs[done.index].input}': {done.error}")
        else:
            run.finish(done.index, shapes.pop(done.index), done.result, done.worker)


def _cores() -> int:
    """The cores this process may run on."""
    try:
        return len(os.sched_getaffinity(0))
    except (AttributeError, OSError):
        return os.cpu_count() or 1


def _one_line(exc: BaseException) -> str:
    text = str(exc).strip()
    return text.splitlines()[0] if text else type(exc).__name__
