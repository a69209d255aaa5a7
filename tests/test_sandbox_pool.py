"""The grader's side of the sandbox: the measurement memo (a program handed over again gets the
measurement it got before, and nothing else does: a different program, a fallback, a sandbox
without a memo), and requests that carry each answer's source whole up to the 256 KB limit."""

from __future__ import annotations

import threading
from typing import Iterator

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from tests.conftest import BUNDLED_BANK
from vaequiz.bank.loader import load_bank
from vaequiz.bank.models import CodeQuestion
from vaequiz.grading.code import judge
from vaequiz.grading.inputs import PreparedQuestion, prepare_question
from vaequiz.grading.sandbox import Sandbox
from vaequiz.grading.sandbox.memo import MeasurementMemo

RIGHT = "z = mu + torch.exp(0.5 * logvar) * torch.randn_like(mu)\n"
RIGHT_RENAMED = (
    "# the reparameterization trick\n"
    "std = torch.exp(logvar * 0.5)  # sigma\n"
    "noise = torch.randn_like(mu)\n"
    "z = mu + std * noise\n"
)
"""The same computation as RIGHT, written differently: the same program."""
DETACHED = "z = (mu + torch.exp(0.5 * logvar) * torch.randn_like(mu)).detach()\n"
UNCAPTURABLE = "_ = torch.eye(2).to_sparse()\n" + RIGHT


def _question(question_id: str) -> PreparedQuestion:
    question = load_bank(BUNDLED_BANK).get(question_id)
    assert isinstance(question, CodeQuestion)
    return prepare_question(question)


@pytest.fixture(scope="module")
def reparameterization() -> PreparedQuestion:
    return _question("reparameterization-trick")


@pytest.fixture
def sandbox() -> Iterator[Sandbox]:
    with Sandbox(workers=1) as box:
        yield box


def _failed(prepared: PreparedQuestion, sandbox: Sandbox, source: str) -> list[str]:
    graded = judge(prepared, sandbox.run(prepared.request(source)))
    return [c.name for c in graded.checks if not c.passed]


def test_the_same_program_is_measured_once(reparameterization: PreparedQuestion, sandbox: Sandbox) -> None:
    assert _failed(reparameterization, sandbox, RIGHT) == []
    assert (sandbox.measurements.hits, len(sandbox.measurements)) == (0, 1)
    assert _failed(reparameterization, sandbox, RIGHT_RENAMED) == []
    assert sandbox.measurements.hits == 1, "names, comments and layout do not change the program"


def test_another_program_is_measured_for_itself(reparameterization: PreparedQuestion, sandbox: Sandbox) -> None:
    """The detached z computes the same values as the right answer; only its program differs,
    and that difference is what its gradient check needs."""
    assert _failed(reparameterization, sandbox, RIGHT) == []
    assert _failed(reparameterization, sandbox, DETACHED) == ["gradient of z w.r.t. mu, logvar"]
    assert _failed(reparameterization, sandbox, DETACHED) == ["gradient of z w.r.t. mu, logvar"]
    assert sandbox.measurements.hits == 1 and len(sandbox.measurements) == 2


def test_a_fallback_is_not_kept(reparameterization: PreparedQuestion, sandbox: Sandbox) -> None:
    for _ in range(2):
        result = sandbox.run(reparameterization.request(UNCAPTURABLE))
        assert result.in_process is not None and result.in_process.startswith("measured in-process")
    assert len(sandbox.measurements) == 0 and sandbox.measurements.hits == 0


def test_control_without_a_memo_every_answer_is_measured(reparameterization: PreparedQuestion) -> None:
    with Sandbox(workers=1, memo_mb=0) as box:
        for source in (RIGHT, RIGHT_RENAMED, RIGHT):
            assert _failed(reparameterization, box, source) == []
        assert box.measurements.hits == 0 and len(box.measurements) == 0


def test_the_memo_is_bounded_least_recently_used_first_out() -> None:
    memo = MeasurementMemo(limit_bytes=4000)
    keys = [MeasurementMemo.key({"mode": "measure"}, bytes([i])) for i in range(10)]
    for key in keys[:8]:
        memo.put(key, b"x" * 500)  # full
    assert memo.get(keys[0]) is not None  # now the most recently used
    memo.put(keys[8], b"y" * 500)
    assert memo.get(keys[1]) is None, "the least recently used went"
    assert all(memo.get(k) is not None for k in [keys[0], *keys[2:9]])
    memo.put(keys[9], b"z" * 501)  # over an eighth of the bound: one answer never flushes the rest
    assert memo.get(keys[9]) is None and len(memo) == 8


@settings(max_examples=60, deadline=None)
@given(st.binary(max_size=64), st.binary(max_size=64), st.integers(1, 60), st.integers(1, 60))
def test_keys_differ_when_the_bytes_or_the_limits_differ(first: bytes, second: bytes, time_a: int, time_b: int) -> None:
    same = MeasurementMemo.key({"time_s": time_a}, first) == MeasurementMemo.key({"time_s": time_b}, second)
    assert same == (first == second and time_a == time_b)


def test_the_memo_counts_right_under_threads() -> None:
    memo = MeasurementMemo(limit_bytes=1 << 20)
    key = MeasurementMemo.key({}, b"program")
    memo.put(key, b"measurement")

    def read() -> None:
        for _ in range(500):
            assert memo.get(key) == b"measurement"

    threads = [threading.Thread(target=read) for _ in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert memo.hits == 2000


@pytest.mark.parametrize("lines", [1, 600, 12_000])
def test_long_answers_up_to_the_source_limit_are_graded(
    lines: int, reparameterization: PreparedQuestion, sandbox: Sandbox
) -> None:
    """Answers up to 256 KB are accepted, so they must reach the child whole: one of 12,000
    characters used to crash ("exit status 71") because the wire cut strings at 10,000."""
    from vaequiz.grading.sandbox import MAX_SOURCE_BYTES

    padding = "".join(f"# note {i}: the noise is drawn, then scaled and shifted\n" for i in range(lines))
    padding = padding[: MAX_SOURCE_BYTES - len(RIGHT) - 1]
    source = padding[: padding.rfind("\n") + 1] + RIGHT
    assert len(source.encode()) < MAX_SOURCE_BYTES
    assert _failed(reparameterization, sandbox, source) == []
