"""A short, derandomized fuzz of the reader: mutated, truncated and spliced golden files.

Every input must decode to a uint8 image of the declared shape or raise a SadError;
anything else fails (the oracle is bench/fuzz.py's `check`, whose long run is reported in
docs/robustness.md). Most inputs get their CRCs recomputed after mutating, since random
damage otherwise stops at the checksum and never reaches the header validation and the
payload parser behind it. `pytest --hypothesis-show-statistics` lists the outcomes.
"""

from __future__ import annotations

import pytest
from hypothesis import HealthCheck, event, given, settings
from hypothesis import strategies as st

from bench import fuzz

POOL = fuzz.golden_files()
MAX_WORK = 1 << 16  # render small: the reader is under test here, not rendering speed
POSITION = st.one_of(st.integers(4, fuzz.HEADER_SIZE + 8), st.integers(0, 600))  # 4: past magic
OPS = st.lists(
    st.tuples(st.sampled_from(fuzz.KINDS), POSITION, st.integers(0, 255)), min_size=1, max_size=4
)


@pytest.fixture(scope="module", autouse=True)
def compiled_kernels(backend: str) -> None:
    """Start Taichi and compile the decoder's kernels before hypothesis times examples."""
    assert fuzz.check(POOL[0]) == "decoded"


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
            if pos == 5:  # any minor version of 1.x is read
                assert outcome == "decoded"


def test_spliced_and_truncated_with_fixed_lengths():
    """Every cut point of every golden, as a truncation and as a splice, lengths fixed."""
    for i, data in enumerate(POOL):
        for cut in range(0, len(data), 3):
            truncated = fuzz.make_input(data, [("truncate", cut, 0)], "crc+len", POOL)
            assert fuzz.check(truncated, MAX_WORK) not in ("decoded", "rendered reduced")
            spliced = fuzz.make_input(data, [("splice", cut, i + 1)], "crc+len", POOL)
            assert fuzz.check(spliced, MAX_WORK)  # raises on any other exception
