"""The CUDA check of issue 26: install on a fresh GPU machine, run the suite on CUDA and
measure the speed figures, in one bounded run (8 minutes by default).

    bench/gpu_check.sh prepare          # here, with network: gpu_data/ (images and wheels)
    bench/gpu_check.sh                  # on the GPU machine: every stage, results in $OUT
    bench/gpu_check.sh --cpu            # anywhere: the same stages on the CPU, tiny settings

Stages, in order, each a child process with its own timeout (bounded also by what the
stages after it are expected to need, so one slow stage cannot eat the rest):

    install   the carried wheels that the interpreter lacks, then the project (editable)
    probe     interpreter, packages, GPU (nvidia-smi), a Taichi CUDA start
    fit50k    bench.fit_sites: 50,000 sites, 2000 iterations, every Kodak image
    kodak     bench.kodak: every Kodak image at 1 bpp, default effort (median times, PSNR)
    photo     bench.scale: one photo upscaled to 12 MP, encode and decode as `sad` processes
    batch     the 24 Kodak images encoded in one process, Taichi started once
    tests     the test suite with SAD_TEST_ARCH=cuda, in the time left

The machine has no network: the interpreter's own packages are used, and what it lacks
(taichi and its dill, zstandard, the cluster extra's Dask) is installed from
gpu_data/wheels, built by `prepare` for that machine's interpreter (CPython 3.12, x86_64),
then the project itself, editable, its build backend from the same folder. Results are
rewritten in the output folder after every stage (at most 7 files, flat, as the device
tool returns them): gpu_check.md (the summary and every stage's report), gpu_check.csv
(one row per figure), gpu_check.log, pytest.txt and the CSVs of fit50k, kodak and photo,
which fill in row by row.
"""

from __future__ import annotations

import argparse
import contextlib
import csv
import datetime
import json
import os
import re
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import time
import zipfile
from dataclasses import dataclass, field
from pathlib import Path

# Only the standard library at the top: this module runs before anything is installed.

ROOT = Path(__file__).resolve().parents[1]
CARRY_LIMIT_MIB = 64
# The device machine's interpreter (bench/README.md, "GPU check"): CPython 3.12 on x86_64.
DEVICE_PYTHON = "3.12"
PLATFORMS = [
    "manylinux_2_28_x86_64",
    "manylinux_2_27_x86_64",
    "manylinux_2_17_x86_64",
    "manylinux2014_x86_64",
    "manylinux1_x86_64",
]
# Distributions the project needs (its dependencies, and the cluster extra the tests use)
# that the device image does not hold (KINDS.md's list), each its own import name, with what
# may be left out of its wheel: Taichi's C-API library (the AOT C API, never loaded by its
# Python module) and bundled C headers, zstandard's cffi backend (the C one is used). That
# keeps the wheels and the images within the 64 MiB that travel.
CARRIED = {
    "taichi": ("taichi/_lib/c_api/", ".data/data/include/"),
    "dill": (),
    "zstandard": ("zstandard/_cffi.",),
    "dask": (),
    "distributed": (),
    "locket": (),
    "partd": (),
    "tblib": (),
    "tornado": (),
    "zict": (),
}
# The build backend of `pip install -e .` in an isolated environment (pyproject's
# build-system), offered from the same folder since there is no index there.
BUILD_WHEELS = ["setuptools>=68"]
MODULES = [
    "numpy", "scipy", "PIL", "imageio", "click", "tqdm", "colorama", "rich", "pytest",
    "hypothesis", "pytest_timeout", *CARRIED, "sadcodec",
]  # fmt: skip

# Without an editable install (its environment not writable), the checkout's sadcodec is
# used from PYTHONPATH and this maps sadcodec.kernels to kernels/, as the install would.
KERNELS_FINDER = """\
import importlib.abc
import importlib.util
import sys


class _Kernels(importlib.abc.MetaPathFinder):
    def find_spec(self, name, path=None, target=None):
        if name != "sadcodec.kernels":
            return None
        return importlib.util.spec_from_file_location(
            name, "{kernels}/__init__.py", submodule_search_locations=["{kernels}"]
        )


sys.meta_path.append(_Kernels())
"""

TARGETS = {
    "kodak_encode_s": 1.0,  # issue 26: Kodak encode <= 1 s median on a GPU
    "photo_encode_s": 20.0,  # a 12 MP photo <= 20 s
    "fit_psnr_db": 46.0,  # the SAD paper: 50,000 sites, >= 46.0 dB ...
    "fit_seconds": 2.2,  # ... in <= 2.2 s
}


# ---------------------------------------------------------------- prepare (here)


def _download(specs: list[str], dest: Path, python_version: str) -> None:
    """The wheels of ``specs`` and everything they need, for the device's interpreter."""
    cmd = [sys.executable, "-m", "pip", "download", "--only-binary=:all:"]
    cmd += ["--python-version", python_version, "--implementation", "cp", "-d", str(dest)]
    for plat in PLATFORMS:
        cmd += ["--platform", plat]
    subprocess.run(cmd + specs, check=True)


def slim_wheel(src: Path, dest: Path, drop: tuple[str, ...]) -> int:
    """Copy a wheel without the members whose path starts with (or, for ".data/...",
    contains) one of ``drop``, and without their RECORD lines; return the members
    dropped. The members kept are unchanged, so their RECORD hashes still hold."""

    def dropped(name: str) -> bool:
        return any(name.startswith(d) or (d.startswith(".") and d in name) for d in drop)

    n = 0
    with zipfile.ZipFile(src) as zin, zipfile.ZipFile(dest, "w", zipfile.ZIP_DEFLATED) as zout:
        for info in zin.infolist():
            if dropped(info.filename):
                n += 1
                continue
            data = zin.read(info)
            if info.filename.endswith(".dist-info/RECORD"):
                lines = data.decode().splitlines(keepends=True)
                data = "".join(ln for ln in lines if not dropped(ln.split(",")[0])).encode()
            zout.writestr(info, data, compress_type=zipfile.ZIP_DEFLATED, compresslevel=9)
    return n


def _mib(n: int) -> str:
    return f"{n / 2**20:.1f} MiB"


def travel_bytes(extra: Path) -> int:
    """Bytes of what the device tool sends: tracked and untracked, not ignored files,
    plus the carried folder ``extra``."""
    out = subprocess.run(
        ["git", "-C", str(ROOT), "ls-files", "-z", "--cached", "--others", "--exclude-standard"],
        capture_output=True,
        check=True,
    ).stdout
    total = 0
    for name in filter(None, out.split(b"\0")):
        p = ROOT / os.fsdecode(name)
        if p.is_file():
            total += p.stat().st_size
    return total + sum(p.stat().st_size for p in extra.rglob("*") if p.is_file())


def prepare(args: argparse.Namespace) -> int:
    """Fill gpu_data/ (here, with network): the Kodak images, one photo, the wheels."""
    import importlib.metadata as md

    import tomllib  # Python 3.11+, which prepare runs under (.venv)

    data = Path(args.data)
    kodak = sorted(Path(args.kodak).glob("kodim*.png"))
    if not kodak:
        sys.exit(f"prepare: no kodim*.png in {args.kodak}")
    photo = Path(args.photo) if args.photo else min(Path(args.photos).glob("*.png"))
    if not photo.is_file():
        sys.exit(f"prepare: {photo} not found")
    for sub in ("kodak", "photo", "wheels"):
        shutil.rmtree(data / sub, ignore_errors=True)
        (data / sub).mkdir(parents=True)
    for p in kodak:
        shutil.copyfile(p, data / "kodak" / p.name)
    shutil.copyfile(photo, data / "photo" / photo.name)

    # Taichi and zstandard at the versions this checkout runs with here; the cluster extra
    # as pyproject.toml says; one resolution, so the versions agree with each other.
    with open(ROOT / "pyproject.toml", "rb") as fh:
        extras = tomllib.load(fh)["project"].get("optional-dependencies", {})
    specs = [f"{name}=={md.version(name)}" for name in ("taichi", "zstandard")]
    specs += extras.get("cluster", []) + BUILD_WHEELS
    with tempfile.TemporaryDirectory() as tmp:
        _download(specs, Path(tmp), args.python_version)
        for whl in sorted(Path(tmp).glob("*.whl")):
            dist = whl.name.split("-")[0].lower()
            if dist not in CARRIED and dist not in ("setuptools",):
                continue  # the device image has it
            drop = CARRIED.get(dist, ())
            n = slim_wheel(whl, data / "wheels" / whl.name, drop) if drop else 0
            if not drop:
                shutil.copyfile(whl, data / "wheels" / whl.name)
            size = (data / "wheels" / whl.name).stat().st_size
            note = f" ({n} members left out, from {_mib(whl.stat().st_size)})" if n else ""
            print(f"  {whl.name}: {_mib(size)}{note}")
    for sub in ("kodak", "photo", "wheels"):
        files = [p for p in (data / sub).iterdir() if p.is_file()]
        print(f"{data / sub}: {len(files)} files, {_mib(sum(p.stat().st_size for p in files))}")
    total = travel_bytes(data)
    verdict = "fits" if total < CARRY_LIMIT_MIB * 2**20 else "DOES NOT FIT"
    print(f"working tree + {data.name}/: {_mib(total)} of {CARRY_LIMIT_MIB} MiB: {verdict}")
    return 0 if verdict == "fits" else 1


# ---------------------------------------------------------------- the stages (there)


@dataclass
class Stage:
    name: str
    cap: float  # its own timeout, seconds
    expect: float  # what it should take; kept free for it while earlier stages run
    status: str = "not run"
    seconds: float = 0.0
    timeout: float = 0.0
    note: str = ""
    started: float = 0.0

    def left(self) -> float:
        return self.timeout - (time.monotonic() - self.started)


@dataclass
class Check:
    args: argparse.Namespace
    out: Path
    work: Path
    stages: list[Stage]
    deadline: float
    log: object
    py: str = sys.executable
    env: dict = field(default_factory=dict)
    figures: list[dict] = field(default_factory=list)
    facts: dict = field(default_factory=dict)
    reports: dict = field(default_factory=dict)
    child: subprocess.Popen | None = None
    stopped: str = ""

    # -- logging and bounded children

    def say(self, text: str) -> None:
        line = f"[gpu_check {time.strftime('%H:%M:%S')}] {text}"
        print(line, flush=True)
        self.log.write(line + "\n")
        self.log.flush()

    def budget_for(self, stage: Stage) -> float:
        """The stage's timeout: its cap, less what the stages after it expect to need,
        but never less than its own expected time while the budget has that much."""
        later = self.stages[self.stages.index(stage) + 1 :]
        left = self.deadline - time.monotonic() - 5.0
        return min(stage.cap, max(left - sum(s.expect for s in later), min(stage.expect, left)))

    def run(self, cmd: list[str], timeout: float, stdout: Path | None = None) -> tuple[int, bool]:
        """Run one child in its own process group, output appended to the log (or to
        ``stdout``); on timeout the whole group is ended. Returns (exit code, timed out)."""
        self.say("$ " + " ".join(cmd))
        sink = open(stdout, "a") if stdout else self.log  # noqa: SIM115
        try:
            self.child = subprocess.Popen(
                cmd,
                cwd=ROOT,
                env=self.env,
                stdin=subprocess.DEVNULL,
                stdout=sink,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )
            try:
                return self.child.wait(timeout=max(timeout, 1.0)), False
            except subprocess.TimeoutExpired:
                self.stop_child()
                return -1, True
            except Stopped as why:
                # The stage still reads what its child left; no stage starts after it.
                self.stopped = str(why)
                self.stop_child()
                return -1, True
        finally:
            self.child = None
            if stdout:
                sink.close()

    def stop_child(self) -> None:
        proc = self.child
        if proc is None or proc.poll() is not None:
            return
        # SIGINT first (a Python child stops at its next bytecode, and a benchmark's CSV
        # is complete after every row), then SIGTERM, then SIGKILL.
        for sig, wait in ((signal.SIGINT, 3), (signal.SIGTERM, 5), (signal.SIGKILL, 5)):
            try:
                os.killpg(proc.pid, sig)
            except ProcessLookupError:
                return
            try:
                proc.wait(timeout=wait)
                return
            except subprocess.TimeoutExpired:
                continue

    def capture(self, cmd: list[str], timeout: float = 60) -> tuple[int, str]:
        """A short child whose output is wanted as text (also logged)."""
        try:
            res = subprocess.run(
                cmd, cwd=ROOT, env=self.env, capture_output=True, text=True, timeout=timeout
            )
        except (OSError, subprocess.TimeoutExpired) as exc:
            self.say(f"$ {' '.join(cmd)}: {type(exc).__name__}")
            return -1, ""
        text = (res.stdout + res.stderr).strip()
        self.log.write(f"$ {' '.join(cmd)} -> {res.returncode}\n{text}\n")
        self.log.flush()
        return res.returncode, text

    def figure(
        self, stage: str, name: str, value: object, target: str = "", ok: bool | None = None
    ) -> None:
        verdict = "" if ok is None else ("met" if ok else "NOT met")
        self.figures = [f for f in self.figures if (f["stage"], f["figure"]) != (stage, name)]
        self.figures.append(
            {"stage": stage, "figure": name, "value": value, "target": target, "verdict": verdict}
        )

    # -- stages

    def stage_install(self, stage: Stage) -> str:
        before = self.modules()
        self.facts["before install"] = before
        wheels = Path(self.args.data) / "wheels"
        want = []
        for name in CARRIED:
            have = before.get(name)
            if have and not (name == "taichi" and not have.startswith("1.7")):
                continue  # the machine's own, except a Taichi other than 1.7
            found = sorted(wheels.glob(f"{name}-*.whl"))
            if not found:
                self.say(f"{name} is not installed and no wheel of it was carried in {wheels}")
                continue
            want.append(str(found[-1]))
        notes = []
        pip = [self.py, "-m", "pip", "install", "--no-index", "--no-deps", "--no-cache-dir"]
        pip.append("--disable-pip-version-check")
        if want:
            names = ", ".join(Path(w).name for w in want)
            self.say(f"installing from carried wheels: {names}")
            rc = 1 if self.args.site else self.run(pip + want, stage.left())[0]
            if rc != 0:
                site = self.use_site()
                self.say(f"installing the wheels into {site} (on PYTHONPATH) instead")
                rc, _ = self.run(pip + ["--target", str(site), *want], stage.left())
                if rc != 0:
                    return f"pip install of the carried wheels failed (exit {rc})"
            notes.append("carried: " + ", ".join(Path(w).name.split("-")[0] for w in want))
        else:
            notes.append("nothing to install from wheels")
        if self.capture([self.py, "-c", "import sadcodec.kernels"])[0] != 0:
            cmd = pip + ["--find-links", str(wheels), "-e", "."]
            rc = 1 if self.args.site else self.run(cmd, stage.left())[0]
            if rc == 0:
                notes.append("project installed (editable)")
            else:
                site = self.use_site()
                write_text(
                    site / "sitecustomize.py", KERNELS_FINDER.format(kernels=ROOT / "kernels")
                )
                notes.append(f"project used from the checkout ({site}/sitecustomize.py)")
        after = self.modules()
        self.facts["after install"] = after
        missing = [m for m in ("taichi", "numpy", "zstandard", "sadcodec") if not after.get(m)]
        if missing:
            return "still missing: " + ", ".join(missing)
        return "ok; " + "; ".join(notes)

    def use_site(self) -> Path:
        """The folder installs go to when the interpreter's own environment cannot take
        them (or --site names one): put first on PYTHONPATH, with the checkout after it."""
        site = Path(self.args.site or Path(tempfile.gettempdir()) / "sad_site").resolve()
        site.mkdir(parents=True, exist_ok=True)
        paths = self.env.get("PYTHONPATH", "").split(os.pathsep)
        if str(site) not in paths:
            paths = [str(site), str(ROOT), *filter(None, paths)]
            self.env["PYTHONPATH"] = os.pathsep.join(paths)
        return site

    def modules(self) -> dict:
        code = (
            "import importlib, importlib.metadata as md, json, sys\n"
            "out = {'python': sys.version.split()[0], 'executable': sys.executable}\n"
            "dists = {'PIL': 'pillow', 'pytest_timeout': 'pytest-timeout'}\n"
            f"for m in {MODULES!r}:\n"
            "    try:\n"
            "        mod = importlib.import_module(m)\n"
            "        try:\n"
            "            out[m] = md.version(dists.get(m, m))\n"
            "        except md.PackageNotFoundError:\n"
            "            out[m] = str(getattr(mod, '__version__', 'present'))\n"
            "    except Exception as exc:\n"
            "        out[m] = ''\n"
            "        out[m + ' error'] = f'{type(exc).__name__}: {exc}'[:200]\n"
            "print(json.dumps(out))\n"
        )
        rc, text = self.capture([self.py, "-W", "ignore", "-c", code], timeout=120)
        for line in reversed(text.splitlines()):
            if line.startswith("{"):
                with contextlib.suppress(ValueError):
                    return json.loads(line)
        return {"error": text[-300:]}

    def stage_probe(self, stage: Stage) -> str:
        _, pip = self.capture([self.py, "-m", "pip", "--version"])
        self.facts["pip"] = pip
        rc, smi = self.capture(
            ["nvidia-smi", "--query-gpu=name,memory.total,driver_version", "--format=csv,noheader"]
        )
        self.facts["GPU (nvidia-smi)"] = smi if rc == 0 else "nvidia-smi not available"
        code = (
            "import time; t = time.perf_counter()\n"
            "from sadcodec.backend import init_backend\n"
            f"arch = init_backend({self.args.arch!r})\n"
            "print(arch, round(time.perf_counter() - t, 2))\n"
        )
        rc, text = self.capture([self.py, "-c", code], timeout=stage.left())
        last = text.splitlines()[-1] if text else ""
        self.facts[f"Taichi start on {self.args.arch}"] = last if rc == 0 else f"failed: {last}"
        if rc != 0 or not last.startswith(self.args.arch):
            return f"Taichi does not start on {self.args.arch}: {last}"
        self.figure("probe", "Taichi start-up s (import + init)", last.split()[-1])
        return "ok"

    def stage_tests(self, stage: Stage) -> str:
        log = self.out / "pytest.txt"
        log.unlink(missing_ok=True)
        # -v: a line per test as it ends, so a run cut short can still be counted.
        cmd = [self.py, "-m", "pytest", "-v", "-p", "no:cacheprovider", "-rfE", "--durations=10"]
        if self.capture([self.py, "-c", "import pytest_timeout"])[0] == 0:
            cmd.append("--timeout=90")  # one hanging test fails alone, not the stage
        cmd += self.args.pytest_args.split()
        rc, timed_out = self.run(cmd, stage.left(), stdout=log)
        text = log.read_text(errors="replace") if log.exists() else ""
        counts = pytest_counts(text)
        for key in ("passed", "failed", "errors", "skipped"):
            self.figure(
                "tests", key, counts.get(key, 0), "0" if key in ("failed", "errors") else ""
            )
        bad = sorted(set(re.findall(r"^(\S+::\S+) (?:FAILED|ERROR)\b", text, re.M)))
        if bad:
            shown = ", ".join(bad[:12]) + (f" and {len(bad) - 12} more" if len(bad) > 12 else "")
            self.figure("tests", "failed tests", shown)
        self.figure("tests", "suite", "passed" if rc == 0 else f"exit {rc}", "exit 0", rc == 0)
        ran = ", ".join(f"{v} {k}" for k, v in counts.items() if k != "cut short")
        if timed_out:
            return f"timed out; {ran or 'nothing'} before it was cut short"
        return "ok" if rc == 0 else f"{len(bad)} failed or errors (exit {rc}; {ran})"

    def kodak_dir(self) -> Path:
        return Path(self.args.data) / "kodak"

    def limit_args(self) -> list[str]:
        return ["--limit", str(self.args.limit)] if self.args.limit else []

    def iteration_args(self) -> list[str]:
        return ["--iterations", str(self.args.iterations)] if self.args.iterations else []

    def stage_fit50k(self, stage: Stage) -> str:
        csv_path = self.out / "fit50k.csv"
        md = self.work / "fit50k.md"
        cmd = [self.py, "-m", "bench.fit_sites", "--images", str(self.kodak_dir())]
        cmd += ["--sites", str(self.args.fit_sites), "--iterations", str(self.args.fit_iterations)]
        cmd += ["--every", str(max(self.args.fit_iterations // 8, 1)), "--arch", self.args.arch]
        cmd += ["--out-csv", str(csv_path), "--out-md", str(md), *self.limit_args()]
        rc, timed_out = self.run(cmd, stage.left())
        self.reports["fit50k"] = md
        rows = read_rows(csv_path)
        done = fit_summary(rows)
        if done:
            n, best, means = done
            it, p, s = best if best else (0, float("nan"), float("nan"))
            met = best is not None and p >= TARGETS["fit_psnr_db"]
            reach = [m for m in means if m[1] >= TARGETS["fit_psnr_db"]]
            when = f"{reach[0][2]:.2f} s ({reach[0][0]} its)" if reach else "not reached"
            self.figure("fit50k", "images", n)
            self.figure("fit50k", f"mean time to {TARGETS['fit_psnr_db']} dB", when)
            target = f">= {TARGETS['fit_psnr_db']} dB within {TARGETS['fit_seconds']} s"
            self.figure("fit50k", f"mean PSNR dB at {it} its ({s:.2f} s)", f"{p:.2f}", target, met)
            it, p, s = means[-1]
            self.figure("fit50k", f"mean PSNR dB at {it} its (final)", f"{p:.2f} @ {s:.2f} s")
        return finish(rc, timed_out, bool(rows))

    def stage_kodak(self, stage: Stage) -> str:
        csv_path = self.out / "kodak-1bpp.csv"
        md = self.work / "kodak-1bpp.md"
        cmd = [self.py, "-m", "bench.kodak", "--images", str(self.kodak_dir()), "--bpp", "1.0"]
        cmd += ["--codecs", "sad", "--arch", self.args.arch, "--out-csv", str(csv_path)]
        cmd += ["--out-md", str(md), *self.limit_args(), *self.iteration_args()]
        rc, timed_out = self.run(cmd, stage.left())
        self.reports["kodak"] = md
        rows = [r for r in read_rows(csv_path) if r.get("codec") == "sad" and r.get("encode_s")]
        if rows:
            enc = statistics.median(float(r["encode_s"]) for r in rows)
            dec = statistics.median(float(r["decode_s"]) for r in rows)
            target = TARGETS["kodak_encode_s"]
            self.figure("kodak", "images", len(rows))
            self.figure("kodak", "median encode s", f"{enc:.3f}", f"<= {target}", enc <= target)
            self.figure("kodak", "median decode s", f"{dec:.3f}")
            mean = statistics.fmean(float(r["psnr_rgb"]) for r in rows)
            self.figure("kodak", "mean PSNR dB", f"{mean:.2f}")
            self.figure(
                "kodak", "mean bpp", f"{statistics.fmean(float(r['bpp']) for r in rows):.4f}"
            )
            over = sum(r.get("within_budget") == "False" for r in rows)
            self.figure("kodak", "files over budget", over, "0", over == 0)
        return finish(rc, timed_out, bool(rows))

    def photo(self) -> Path:
        photos = sorted((Path(self.args.data) / "photo").glob("*.png"))
        return photos[0] if photos else ROOT / "samples" / "kodim23.png"

    def stage_photo(self, stage: Stage) -> str:
        csv_path = self.out / "photo-12mp.csv"
        md = self.work / "photo-12mp.md"
        photo = self.photo()
        cmd = [self.py, "-m", "bench.scale", "--image", str(photo), "--mp", str(self.args.mp)]
        cmd += ["--bpp", "1.0", "--arch", self.args.arch, "--out-csv", str(csv_path)]
        cmd += ["--out-md", str(md), *self.iteration_args()]
        rc, timed_out = self.run(cmd, stage.left())
        self.reports["photo"] = md
        rows = read_rows(csv_path)
        if rows:
            r = rows[-1]
            target = TARGETS["photo_encode_s"]
            enc = float(r["encode_s"])
            self.figure("photo", "image", f"{photo.name} upscaled to {r['pixels']}")
            self.figure(
                "photo", "encode s (sad timer)", r["encode_s"], f"<= {target}", enc <= target
            )
            self.figure("photo", "encode process s", r["encode_process_s"])
            self.figure("photo", "encode peak RSS MiB", r["encode_rss_mib"])
            self.figure("photo", "PSNR dB / bpp", f"{r['psnr']} / {r['bpp']}")
            self.figure(
                "photo",
                "decode s (sad timer) / process s",
                f"{r['decode_s']} / {r['decode_process_s']}",
            )
        return finish(rc, timed_out, bool(rows))

    def stage_batch(self, stage: Stage) -> str:
        files = [str(p) for p in sorted(self.kodak_dir().glob("*.png"))[: self.args.limit or None]]
        dest = self.work / "batch"
        common = ["--bpp", "1.0", "--arch", self.args.arch, *self.iteration_args()]
        loop = [self.py, "-m", "bench.gpu_check", "batch-loop", "--out-dir", str(dest), *files]
        # `sad encode a.png b.png -o DIR/` (issue 26 point 2) where this checkout has it;
        # else the same work as a loop over sadcodec.encode in one process.
        if (ROOT / "sadcodec" / "batch.py").exists():
            tries = [
                ("sad encode FILES -o DIR/ (one process)",
                 [self.py, "-m", "sadcodec", "encode", *files, "-o", f"{dest}/"]),
                ("loop over sadcodec.encode in one process (`sad encode FILES` failed)", loop),
            ]  # fmt: skip
        else:
            tries = [
                ("loop over sadcodec.encode in one process (no multi-file `sad encode`)", loop)
            ]
        for how, cmd in tries:
            shutil.rmtree(dest, ignore_errors=True)
            dest.mkdir(parents=True)
            text_path = self.work / "batch.txt"
            text_path.unlink(missing_ok=True)
            t0 = time.perf_counter()
            rc, timed_out = self.run(cmd + common, stage.left(), stdout=text_path)
            wall = time.perf_counter() - t0
            text = text_path.read_text(errors="replace") if text_path.exists() else ""
            self.log.write(text)
            self.log.flush()
            made = sorted(dest.glob("*.sad"))
            self.figure("batch", "how", how)
            if made or timed_out or rc == 0:
                break
        self.figure("batch", "images encoded", f"{len(made)} of {len(files)}")
        self.figure("batch", "process wall s (start-up included)", f"{wall:.1f}")
        if made:
            self.figure("batch", "seconds per image", f"{wall / len(made):.2f}")
            self.figure("batch", "images per hour", f"{3600 * len(made) / wall:.0f}")
            self.figure("batch", "total bytes", sum(p.stat().st_size for p in made))
        found = re.findall(r"PSNR ([\d.]+) dB, encode ([\d.]+) s", text)
        if found:
            psnr = statistics.fmean(float(p) for p, _ in found)
            enc = statistics.median(float(e) for _, e in found)
            self.figure("batch", "mean PSNR dB (as printed)", f"{psnr:.2f}")
            self.figure("batch", "median encode s (as printed)", f"{enc:.2f}")
        return finish(rc, timed_out, bool(made))

    # -- the report

    def write_summary(self) -> None:
        mode = "CUDA" if self.args.arch == "cuda" else f"{self.args.arch} (dry run)"
        lines = [
            "# GPU check (issue 26, point 5)",
            "",
            f"Run {datetime.datetime.now().isoformat(timespec='seconds')} on "
            f"{os.uname().nodename}; arch {mode}; code {code_version()}; data "
            f"`{self.args.data}`; budget {self.args.budget:.0f} s. Command: "
            f"`bench/gpu_check.sh {' '.join(self.args.argv)}`.",
            "",
            "## Machine",
            "",
        ]
        for key, val in self.facts.items():
            if isinstance(val, dict):
                have = ", ".join(f"{k} {v}" for k, v in val.items() if v and "error" not in k)
                gone = [k for k, v in val.items() if not v]
                val = have + (f"; missing: {', '.join(gone)}" if gone else "")
            lines.append(f"- {key}: {val}")
        lines += ["", "## Stages", "", "| stage | status | seconds | timeout s | note |"]
        lines.append("|---|---|---|---|---|")
        for s in self.stages:
            lines.append(
                f"| {s.name} | {s.status} | {s.seconds:.1f} | {s.timeout:.0f} | {s.note} |"
            )
        lines += ["", "## Figures", "", "| stage | figure | value | target | verdict |"]
        lines.append("|---|---|---|---|---|")
        for f in self.figures:
            lines.append(
                f"| {f['stage']} | {f['figure']} | {f['value']} | {f['target']} | {f['verdict']} |"
            )
        for name, path in self.reports.items():
            if Path(path).exists():
                body = Path(path).read_text().strip().splitlines()
                body = ["##" + ln if ln.startswith("#") else ln for ln in body]
                lines += ["", f"## Report: {name}", "", *body]
        write_text(self.out / "gpu_check.md", "\n".join(lines) + "\n")
        with open(self.out / "gpu_check.csv.tmp", "w", newline="") as fh:
            w = csv.DictWriter(fh, ["stage", "figure", "value", "target", "verdict"])
            w.writeheader()
            for s in self.stages:
                w.writerow({"stage": s.name, "figure": "status", "value": s.status,
                            "target": "", "verdict": s.note})  # fmt: skip
            w.writerows(self.figures)
        os.replace(self.out / "gpu_check.csv.tmp", self.out / "gpu_check.csv")


def pytest_counts(text: str) -> dict:
    """pytest's closing line ('3 failed, 640 passed, 5 skipped in 80.1s') as counts; for
    a run cut short before it, the verbose lines ('tests/x.py::t PASSED [ 1%]') counted,
    with "cut short": True."""
    for line in reversed(text.splitlines()):
        found = re.findall(r"(\d+) (passed|failed|errors?|skipped|xfailed|xpassed)", line)
        if found and " in " in line and line.startswith("="):
            return {("errors" if key.startswith("error") else key): int(n) for n, key in found}
    counts: dict = {"cut short": True}
    for key in re.findall(r"^\S+::\S.* (PASSED|FAILED|ERROR|SKIPPED|XFAIL|XPASS)\b", text, re.M):
        key = {"ERROR": "errors", "XFAIL": "xfailed", "XPASS": "xpassed"}.get(key, key.lower())
        counts[key] = counts.get(key, 0) + 1
    return counts


def read_rows(path: Path) -> list[dict]:
    try:
        with open(path, newline="") as fh:
            return list(csv.DictReader(fh))
    except OSError:
        return []


def fit_summary(rows: list[dict]) -> tuple | None:
    """(images, best checkpoint within the paper's time, every checkpoint), each checkpoint
    (iterations, mean PSNR, mean seconds) over the images that reached the last one."""
    if not rows:
        return None
    last_it = max(int(r["iteration"]) for r in rows)
    done = {r["image"] for r in rows if int(r["iteration"]) == last_it}
    means = []
    for it in sorted({int(r["iteration"]) for r in rows}):
        rs = [r for r in rows if int(r["iteration"]) == it and r["image"] in done]
        p = statistics.fmean(float(r["psnr"]) for r in rs)
        s = statistics.fmean(float(r["seconds"]) for r in rs)
        means.append((it, p, s))
    within = [m for m in means if m[2] <= TARGETS["fit_seconds"]]
    best = max(within, key=lambda m: m[1]) if within else None
    return len(done), best, means


def finish(rc: int, timed_out: bool, anything: bool) -> str:
    if timed_out:
        return "timed out; " + ("partial results kept" if anything else "no results")
    return "ok" if rc == 0 else f"exit {rc}" + ("; partial results kept" if anything else "")


def write_text(path: Path, text: str) -> None:
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(text)
    os.replace(tmp, path)


def code_version() -> str:
    try:
        sha = subprocess.run(
            ["git", "-C", str(ROOT), "rev-parse", "--short", "HEAD"],
            capture_output=True, text=True, timeout=10, check=True,
        ).stdout.strip()  # fmt: skip
    except (OSError, subprocess.SubprocessError):
        given = os.environ.get("GPU_CHECK_CODE")
        return f"{given} (GPU_CHECK_CODE)" if given else "unknown (no git checkout here)"
    return sha


class Stopped(Exception):
    """SIGTERM (the wrapper's overall timeout) or SIGINT: stop and write what is done."""


def _stop(signum: int, frame: object) -> None:
    for sig in (signal.SIGTERM, signal.SIGINT):
        signal.signal(sig, signal.SIG_IGN)  # the first one stops the run; the rest wait
    raise Stopped(signal.Signals(signum).name)


def stages_for(args: argparse.Namespace) -> list[Stage]:
    # cap: the stage's own timeout; expect: what it should take on the H200 (bench/README.md,
    # "GPU check"), kept free for it while earlier stages run.
    # The suite runs last: it takes whatever the measurements leave (and its own expected
    # time at least); the measurements come first since they are what the check is for.
    plan = {
        "install": (150, 40),
        "probe": (60, 10),
        "fit50k": (100, 45),
        "kodak": (130, 70),
        "photo": (150, 80),
        "batch": (120, 60),
        "tests": (240, 120),
    }
    names = [n.strip() for n in args.stages.split(",") if n.strip()]
    unknown = [n for n in names if n not in plan]
    if unknown:
        sys.exit(
            f"gpu_check: unknown stage(s) {', '.join(unknown)} (choose from {', '.join(plan)})"
        )
    scale = args.time_scale
    return [Stage(n, plan[n][0] * scale, plan[n][1] * scale) for n in plan if n in names]


def run_all(args: argparse.Namespace) -> int:
    out = Path(args.out or os.environ.get("OUT") or ROOT / "out" / "gpu_check").resolve()
    out.mkdir(parents=True, exist_ok=True)
    work = Path(tempfile.mkdtemp(prefix="gpu_check_"))
    kodak = Path(args.data) / "kodak"
    if not sorted(kodak.glob("*.png")):
        sys.exit(f"gpu_check: no PNG in {kodak} (run `bench/gpu_check.sh prepare` and carry it)")
    env = dict(os.environ)
    env.update({"TI_SKIP_VERSION_CHECK": "ON", "PYTHONUNBUFFERED": "1"})
    env.setdefault("ENABLE_TAICHI_HEADER_PRINT", "False")
    if args.arch == "cuda":
        env["SAD_TEST_ARCH"] = "cuda"
    log = open(out / "gpu_check.log", "a")  # noqa: SIM115
    check = Check(args, out, work, stages_for(args), time.monotonic() + args.budget, log, env=env)
    if args.site:
        check.use_site()
    signal.signal(signal.SIGTERM, _stop)
    signal.signal(signal.SIGINT, _stop)
    check.say(f"python {sys.executable}; output {out}; work {work}; budget {args.budget:.0f} s")
    failed_start = False
    try:
        for stage in check.stages:
            if check.stopped:
                stage.status, stage.note = "skipped", f"the run was stopped ({check.stopped})"
                continue
            if failed_start and stage.name not in ("install", "probe"):
                stage.status, stage.note = "skipped", "the backend did not start"
                continue
            stage.timeout = check.budget_for(stage)
            if stage.timeout < 15:
                stage.status, stage.note = "skipped", "out of time"
                check.say(f"{stage.name}: skipped, out of time")
                continue
            check.say(f"stage {stage.name} (timeout {stage.timeout:.0f} s)")
            stage.status = "running"
            t0 = stage.started = time.monotonic()
            try:
                note = getattr(check, f"stage_{stage.name}")(stage)
            except Stopped as why:
                stage.status, stage.note = "stopped", f"stopped by {why}"
                raise
            except Exception as exc:  # a broken stage is reported; the next ones still run
                note = f"error: {type(exc).__name__}: {exc}"
            finally:
                stage.seconds = time.monotonic() - t0
            stage.status = "ok" if note.startswith("ok") else "problem"
            if check.stopped:
                stage.status, note = "stopped", f"stopped by {check.stopped}; {note}"
            stage.note = note
            check.say(f"{stage.name}: {note} ({stage.seconds:.1f} s)")
            if stage.name in ("install", "probe") and stage.status != "ok":
                failed_start = True
            check.write_summary()
    except Stopped as why:
        check.stop_child()
        check.say(f"stopped by {why}; writing what is done")
    finally:
        check.write_summary()
        shutil.rmtree(work, ignore_errors=True)
        log.close()
    print_summary(check)
    return 0 if all(s.status == "ok" for s in check.stages) else 1


def print_summary(check: Check) -> None:
    print("\n== GPU check summary ==")
    for s in check.stages:
        print(f"{s.name:8} {s.status:8} {s.seconds:6.1f} s  {s.note}")
    for f in check.figures:
        extra = f"   (target {f['target']}: {f['verdict']})" if f["verdict"] else ""
        print(f"{f['stage']:8} {f['figure']}: {f['value']}{extra}")
    print(f"results: {check.out}")


# ---------------------------------------------------------------- the batch fallback


def batch_loop(args: argparse.Namespace) -> int:
    """Encode FILES in this one process (Taichi started once), each to OUT_DIR/NAME.sad."""
    t0 = time.perf_counter()
    import sadcodec
    from sadcodec.atomic import atomic_write_bytes
    from sadcodec.backend import init_backend
    from sadcodec.imageload import load_image

    init_backend(args.arch)
    print(f"start-up {time.perf_counter() - t0:.2f} s", flush=True)
    for path in args.files:
        img = load_image(path)
        res = sadcodec.encode(
            img, bpp=args.bpp, iterations=args.iterations, arch=args.arch, stats=True
        )
        atomic_write_bytes(os.path.join(args.out_dir, Path(path).stem + ".sad"), res.data)
        h, w = img.shape[:2]
        print(
            f"{Path(path).name}: {8 * res.bytes / (w * h):.3f} bpp, PSNR {res.psnr:.2f} dB, "
            f"encode {res.seconds:.2f} s",
            flush=True,
        )
    print(f"{len(args.files)} images in {time.perf_counter() - t0:.1f} s", flush=True)
    return 0


# ---------------------------------------------------------------- command line


def main(argv: list[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    if argv[:1] == ["prepare"]:
        ap = argparse.ArgumentParser(prog="gpu_check prepare", description=prepare.__doc__)
        ap.add_argument("--data", default=str(ROOT / "gpu_data"))
        ap.add_argument("--kodak", default=str(ROOT.parent / "shared" / "data" / "kodak"))
        ap.add_argument("--photos", default=str(ROOT.parent / "shared" / "data" / "photos"))
        ap.add_argument("--photo", default=None, help="one photo (default: first of --photos)")
        ap.add_argument("--python-version", default=DEVICE_PYTHON)
        return prepare(ap.parse_args(argv[1:]))
    if argv[:1] == ["batch-loop"]:
        ap = argparse.ArgumentParser(prog="gpu_check batch-loop")
        ap.add_argument("files", nargs="+")
        ap.add_argument("--out-dir", required=True)
        ap.add_argument("--bpp", type=float, default=1.0)
        ap.add_argument("--iterations", type=int, default=None)
        ap.add_argument("--arch", default="cuda")
        return batch_loop(ap.parse_args(argv[1:]))

    ap = argparse.ArgumentParser(prog="gpu_check", description=__doc__.splitlines()[0])
    ap.add_argument("--cpu", action="store_true", help="dry run on the CPU, tiny settings")
    ap.add_argument("--data", default=os.environ.get("GPU_CHECK_DATA", "gpu_data"))
    ap.add_argument(
        "--out", default=None, help="results folder (default: $OUT, else out/gpu_check)"
    )
    ap.add_argument("--budget", type=float, default=None, help="seconds for all stages (450)")
    ap.add_argument("--stages", default="install,probe,tests,fit50k,kodak,photo,batch")
    ap.add_argument("--limit", type=int, default=None, help="Kodak images (default all; --cpu 2)")
    ap.add_argument("--iterations", type=int, default=None, help="encode iterations (--cpu 50)")
    ap.add_argument("--fit-sites", type=int, default=None, help="(50000; --cpu 2000)")
    ap.add_argument("--fit-iterations", type=int, default=None, help="(2000; --cpu 48)")
    ap.add_argument("--mp", type=float, default=None, help="photo size in MP (12; --cpu 0.3)")
    ap.add_argument("--pytest-args", default=None, help="(default: the whole suite)")
    ap.add_argument(
        "--site", default=None, help="install into DIR on PYTHONPATH, not the interpreter's own"
    )
    args = ap.parse_args(argv)
    args.argv = argv
    tiny = args.cpu
    args.arch = "cpu" if tiny else "cuda"
    defaults = {
        "budget": (450.0, 900.0),
        "limit": (None, 2),
        "iterations": (None, 50),
        "fit_sites": (50000, 2000),
        "fit_iterations": (2000, 48),
        "mp": (12.0, 0.3),
        "pytest_args": ("", "tests/test_golden.py tests/test_backend.py"),
    }
    for key, pair in defaults.items():
        if getattr(args, key) is None:
            setattr(args, key, pair[tiny])
    # On the 2-core development machine every stage is slower than on the GPU one.
    args.time_scale = 2.0 if tiny else 1.0
    return run_all(args)


if __name__ == "__main__":
    sys.exit(main())
