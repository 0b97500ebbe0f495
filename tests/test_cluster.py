"""Encoding on a real Dask cluster: a local cluster of 2 worker processes (sadcodec.cluster).

One cluster serves the module: starting it, and loading the kernels in each worker, is
most of the cost. Images are 40x32 and fits 30 iterations (the lost-worker test: more, so
that there is an encode in progress to interrupt).
"""

from __future__ import annotations

import os
import signal
import sys
import threading
import time

import numpy as np
import pytest
from PIL import Image

pytest.importorskip("distributed")

from sadcodec import api, batch, cli, cluster  # noqa: E402
from sadcodec.errors import SadError  # noqa: E402
from sadcodec.imageload import load_image  # noqa: E402

W, H = 40, 32
ARCH = os.environ.get("SAD_TEST_ARCH", "cpu")
# Bytes are pinned on the CPU only (docs/DESIGN.md, "Determinism").
same_bytes_here = ARCH == "cpu"


@pytest.fixture(scope="module")
def client():
    with cluster.connect(None, 2) as c:
        c.wait_for_workers(2)
        yield c


def save_images(directory, n: int, seed: int = 0) -> list:
    """``n`` 40x32 RGB PNGs of random discs on a gradient in ``directory``."""
    directory.mkdir(exist_ok=True)
    rng = np.random.default_rng(seed)
    y, x = np.mgrid[0:H, 0:W]
    paths = []
    for i in range(n):
        img = np.stack([x * 6, y * 8, np.full_like(x, 90)], axis=2)
        for _ in range(3):
            cx, cy, r = rng.integers(0, W), rng.integers(0, H), rng.integers(3, 9)
            img[(x - cx) ** 2 + (y - cy) ** 2 < r * r] = rng.integers(0, 256, 3)
        p = directory / f"img{i}.png"
        Image.fromarray(np.clip(img, 0, 255).astype(np.uint8)).save(p)
        paths.append(p)
    return paths


def test_workers_give_the_single_process_bytes(client, tmp_path):
    paths = save_images(tmp_path / "in", 4)
    jobs = batch.plan_outputs([str(p) for p in paths], f"{tmp_path}/out/")
    options = batch.EncodeOptions(bpp=2.0, iterations=30, arch=ARCH, threads=1)
    outcomes = batch.encode_files(jobs, options, cluster=client)
    assert [o.status for o in outcomes] == ["encoded"] * 4
    assert {o.worker for o in outcomes} <= set(client.nthreads())
    if same_bytes_here:
        for p, job in zip(paths, jobs, strict=True):
            expected = api.encode(load_image(p), 2.0, iterations=30)
            assert open(job.output, "rb").read() == expected
    # A second run reuses each worker's Taichi: started once per worker process, on the
    # one thread every encode of that worker runs on.
    before = client.run(cluster.worker_info)
    outcomes = batch.encode_files(jobs, options, cluster=client)
    assert [o.status for o in outcomes] == ["encoded"] * 4
    after = client.run(cluster.worker_info)
    assert set(after) == set(before)
    for addr, info in after.items():
        assert (info["starts"], info["arch"], info["error"]) == (1, ARCH, None)
        assert info["thread"] == before[addr]["thread"]
    done = sum(after[a]["encodes"] - before[a]["encodes"] for a in after)
    assert done == 4


def test_cli_cluster_address_with_a_bad_file(client, tmp_path, capsys, monkeypatch):
    paths = save_images(tmp_path / "in", 2, seed=1)
    bad = tmp_path / "in" / "bad.png"
    bad.write_bytes(b"\x89PNG\r\n\x1a\n but not really")
    out = tmp_path / "out"
    args = [
        "encode",
        paths[0],
        bad,
        paths[1],
        "-o",
        f"{out}/",
        "--bpp",
        "2",
        "--iterations",
        "30",
        "--cluster",
        client.scheduler.address,
        "--arch",
        ARCH,
        "--threads",
        "1",
    ]
    monkeypatch.setattr(sys, "argv", ["sad", *map(str, args)])
    with pytest.raises(SystemExit) as exc:
        cli.main()
    err = capsys.readouterr().err
    assert exc.value.code == 1, err
    assert err.splitlines()[0] == f"cluster: 2 workers at {client.scheduler.address} ({ARCH})"
    assert f"sad: error: cannot read '{bad}': corrupt or unsupported PNG file" in err
    assert err.splitlines()[-1] == "sad: error: 1 of 3 files failed"
    assert sorted(os.listdir(out)) == ["img0.sad", "img1.sad"]
    if same_bytes_here:
        assert (out / "img1.sad").read_bytes() == api.encode(
            load_image(paths[1]), 2.0, iterations=30
        )


def test_a_lost_worker_has_its_file_encoded_elsewhere(client, tmp_path):
    """SIGKILL a worker early in an encode: the scheduler gives its file to the other
    worker (the nanny restarts the dead one), the file is complete and has the same bytes,
    and nothing else is in the output directory."""
    iterations = 600
    paths = save_images(tmp_path / "in", 2, seed=2)
    jobs = batch.plan_outputs([str(p) for p in paths], f"{tmp_path}/out/")
    options = batch.EncodeOptions(bpp=2.0, iterations=iterations, arch=ARCH, threads=1)
    result: list = []
    run = threading.Thread(
        target=lambda: result.append(batch.encode_files(jobs, options, cluster=client))
    )
    run.start()
    victim = None
    deadline = time.monotonic() + 120
    while victim is None and time.monotonic() < deadline:
        for addr, info in client.run(cluster.worker_info).items():
            # Killed with most of the fit still to do, so that it cannot finish first.
            if info["busy"] and 0 < info["iteration"] <= iterations // 6:
                victim = addr, info["pid"], int(info["busy"].split("-")[2])
                break
        else:
            time.sleep(0.01)
    assert victim is not None, "no worker was seen early in an encode"
    addr, pid, index = victim
    os.kill(pid, signal.SIGKILL)
    run.join(timeout=180)
    assert not run.is_alive()
    outcomes = result[0]
    assert [o.status for o in outcomes] == ["encoded"] * 2
    assert outcomes[index].worker != addr  # the killed worker's file, done elsewhere
    assert sorted(os.listdir(tmp_path / "out")) == ["img0.sad", "img1.sad"]
    if same_bytes_here:
        expected = api.encode(load_image(paths[index]), 2.0, iterations=iterations)
        assert open(jobs[index].output, "rb").read() == expected
    client.wait_for_workers(2, timeout=60)  # the nanny's replacement, for later tests


def test_workers_that_cannot_start_say_why(client, tmp_path):
    """Workers whose Taichi runs on another backend than asked (as after a previous run)
    refuse, and the run says why instead of sending them files."""
    paths = save_images(tmp_path / "in", 1)
    jobs = batch.plan_outputs([str(p) for p in paths], f"{tmp_path}/out/")
    other = "cuda" if ARCH == "cpu" else "cpu"
    options = batch.EncodeOptions(bpp=2.0, iterations=30, arch=other, threads=1)
    expected = f"no worker could start: backend already started on {ARCH}, cannot switch to {other}"
    with pytest.raises(SadError, match=expected):
        batch.encode_files(jobs, options, cluster=client)
    assert os.listdir(tmp_path / "out") == []


def test_local_gpus_are_shared_out_from_cuda_visible_devices(monkeypatch):
    monkeypatch.setenv("CUDA_VISIBLE_DEVICES", "2, 3")
    assert cluster.local_devices() == ["2", "3"]
    monkeypatch.setenv("CUDA_VISIBLE_DEVICES", "")
    assert cluster.local_devices() is None  # no GPU visible: every worker on the CPU
