"""The reader fuzz in the suite: every structure-aware mutator on every pool file, a few
hundred drawn inputs, the worker supervisor's time and memory bounds, and byte mutations of
the goldens under hypothesis.

Every input must decode to a uint8 image of the declared shape or raise a SadError, and an
input that only re-encodes its base file must read exactly as the base does; anything else
fails (the oracle is bench/fuzz.py's `check_case`, whose long run is reported in
docs/robustness.md). The pool here is the goldens and the hand-made files, not the encoded
ones (no encoder runs: the structured tests take seconds). Byte-mutated inputs mostly get
their CRCs recomputed, since random damage otherwise stops at the checksum.
`pytest --hypothesis-show-statistics` lists the outcomes.
"""

from __future__ import annotations

import argparse
import collections
import os
import random
import signal
import time

import pytest
from hypothesis import HealthCheck, event, given, settings
from hypothesis import strategies as st

import sadcodec
from bench import fuzz
from bench import fuzzcases as fc
from bench import sadfile as sad

POOL = fuzz.golden_files()
MAX_WORK = 1 << 16  # render small: the reader is under test here, not rendering speed
POSITION = st.one_of(st.integers(4, fuzz.HEADER_SIZE + 8), st.integers(0, 600))  # 4: past magic
OPS = st.lists(
    st.tuples(st.sampled_from(fuzz.KINDS), POSITION, st.integers(0, 255)), min_size=1, max_size=4
)
ITEMS = fc.golden_items() + fc.crafted_items()


@pytest.fixture(scope="module", autouse=True)
def compiled_kernels(backend: str) -> None:
    """Start Taichi and compile the decoder's kernels before hypothesis times examples."""
    assert fuzz.check(POOL[0]) == "decoded"


@pytest.fixture(scope="module")
def pool() -> list[fc.Base]:
    return fc.load_pool(ITEMS)


@pytest.fixture(scope="module")
def bases(pool) -> fuzz.BaseReads:
    reads = fuzz.BaseReads(pool, MAX_WORK)
    reads.read_all()
    return reads


def test_pool_files_parse_as_the_reader_reads_them(pool, bases):
    """bench/sadfile.py agrees with the reader: each pool file parses and serialises back
    byte for byte, its sites give back its planes, and its header reads the same."""
    for b in pool:
        assert b.sf.to_bytes() == b.data, b.name
        assert sad.site_planes(b.sites, b.sf.header["col_bits"], b.sf.flags) == b.planes
        info = sadcodec.read_info(b.data)
        h = b.sf.header
        assert (info["width"], info["height"], info["channels"], info["sites"], info["k"]) == (
            h["width"],
            h["height"],
            h["channels"],
            h["n_sites"],
            h["k"],
        ), b.name
        assert info["quantization"]["anisotropy_max"] == h["a_max"], b.name
    assert {b.sf.split for b in pool} == {True, False}
    assert {b.sf.channels for b in pool} == {1, 3, 4}
    goldens = [bases[i][0] for i, b in enumerate(pool) if b.name.endswith(".sad")]
    assert goldens and set(goldens) <= set(fuzz.DECODED)


def test_every_mutator_on_every_pool_file(pool, bases, monkeypatch):
    """Each structured mutator once on each pool file (about 500 inputs)."""
    monkeypatch.setattr(fc, "MANY_SITES", {12: 1})  # 2^22 sites take seconds: the long run's
    stages = collections.Counter()
    for name in fc.MUTATORS:
        for b in range(len(pool)):
            rng = random.Random(f"test/{name}/{b}")
            case = fc.build_case(rng, pool, 0, name, b)
            stages[fuzz.stage(fuzz.check_case(case, bases))] += 1
    # The inputs reach every stage of the reader, not only the checksums.
    assert set(stages) == {"container", "header", "payload", "sites", "decoded"}, stages


def test_drawn_cases_are_reproducible_and_reach_every_level(pool, bases):
    """A run's inputs as make_case draws them, twice: the same bytes each time."""
    levels = collections.Counter()
    for i in range(150):
        case = fc.make_case(pool, 11, i)
        assert fc.make_case(pool, 11, i).data == case.data
        fuzz.check_case(case, bases)
        levels[case.level] += 1
    assert set(levels) == set(fc.LEVELS)
    assert fc.make_case(pool, 12, 0).data != fc.make_case(pool, 11, 0).data


def test_re_encodings_must_read_like_their_base(pool, bases):
    """The oracle refuses a re-encoded file that reads differently from its base."""
    rgb = [b.name for b in pool].index("v1.0-rgb-48x32.sad")
    case = fc.build_case(random.Random(1), pool, 0, "p_layout", rgb)
    assert case.same and fuzz.check_case(case, bases) == "decoded"
    gray = [b.name for b in pool].index("v1.0-gray-40x40.sad")
    other = fc.Case(0, rgb, "payload", "p_layout", "consistent", True, pool[gray].data)
    with pytest.raises(AssertionError):
        fuzz.check_case(other, bases)


# ---------------------------------------------------------------- the supervisor

HANG, CRASH, MEMORY = 2, 4, 6


def fake_worker(conn, opts, items, start, stop):
    """A worker that hangs, crashes or grows past the memory bound at chosen inputs. (The
    test gives a case 10 s: the others take milliseconds, but the suite shares 2 cores.)"""
    conn.send(("ready", fuzz.peak_rss()))
    for i in range(start, stop):
        if i == HANG:
            time.sleep(3600)
        if i == CRASH:
            os.kill(os.getpid(), signal.SIGSEGV)
        ballast = b"x" * (300 << 20) if i == MEMORY else b""
        rss = fuzz.peak_rss()
        conn.send(("case", i, "bytes", "b_random", "crc", "decoded", 0.01, rss, True, ""))
        del ballast
        if rss > opts["max_rss"]:
            conn.send(("bye", i))
            return


def test_supervisor_turns_hangs_crashes_and_memory_into_failures(tmp_path):
    args = argparse.Namespace(
        seed=0, levels=("bytes",), max_work=MAX_WORK, max_rss_gb=0.25, limit_as_gb=8.0,
        threads=1, save_dir=str(tmp_path), structured=False, count=9, seconds=120.0,
        startup_timeout=60.0, case_timeout=10.0, slow=5.0, verbose=False,
    )  # fmt: skip
    items = fc.golden_items()
    run = fuzz.supervise(args, items, target=fake_worker)
    assert run.inputs == 9
    assert [kind for kind, _ in run.failures] == ["HANG", "CRASH", "MEMORY"]
    assert f"input {CRASH}: CRASH: the worker died (signal {signal.SIGSEGV})" in run.failures[1][1]
    assert run.outcomes["decoded"] == 6 and run.restarts == 3
    saved = sorted(os.listdir(tmp_path))
    assert saved == sorted(f"failure-s0-{i}.sad" for i in (HANG, CRASH, MEMORY))
    text = fuzz.report(args, run, items, "python -m bench.fuzz --count 9")
    assert "**9 inputs in" in text and "3 failures** (HANG 1, CRASH 1, MEMORY 1)" in text


# ---------------------------------------------------------------- byte mutations


@settings(
    max_examples=1000,
    deadline=5000,
    derandomize=True,
    database=None,
    suppress_health_check=[HealthCheck.too_slow],
)
@given(base=st.integers(0, len(POOL) - 1), ops=OPS, mode=st.sampled_from(fuzz.MODES))
def test_mutated_files_decode_or_raise_sad_error(base, ops, mode):
    # check() raises on anything but a decode or the project's own error (its docstring).
    outcome = fuzz.check(fuzz.make_input(POOL[base], ops, mode, POOL), MAX_WORK)
    assert isinstance(outcome, str) and outcome
    event(outcome)


@pytest.mark.parametrize("value", fuzz.SPECIAL)
def test_every_header_byte_set_to_extremes(value):
    """Each header byte at 0, 1, 0x7f, 0x80, 0xff with valid CRCs, in every golden."""
    for data in POOL:
        for pos in range(fuzz.HEAD):
            outcome = fuzz.check(fuzz.make_input(data, [("set", pos, value)], "crc", POOL))
            if pos == 5 and not (data[16] & 1 and value == 0):
                assert outcome == "decoded"  # any minor version of 1.x is read, but
            elif pos == 5:  # a 1.0 file has no metadata flag (FORMAT.md, Compatibility)
                assert "unknown flags" in outcome


def test_spliced_and_truncated_with_fixed_lengths():
    """Every cut point of every golden, as a truncation and as a splice, lengths fixed."""
    for i, data in enumerate(POOL):
        for cut in range(0, len(data), 3):
            truncated = fuzz.make_input(data, [("truncate", cut, 0)], "crc+len", POOL)
            assert fuzz.check(truncated, MAX_WORK) not in ("decoded", "rendered reduced")
            spliced = fuzz.make_input(data, [("splice", cut, i + 1)], "crc+len", POOL)
            assert fuzz.check(spliced, MAX_WORK)  # raises on any other exception
