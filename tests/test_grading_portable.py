"""Questions, answers as read and verdicts survive the JSON a Celery message carries exactly:
a worker elsewhere grades what the server meant, and its verdict comes back equal."""

from __future__ import annotations

import json

from hypothesis import given
from hypothesis import strategies as st

from tests.conftest import BUNDLED_BANK
from vaequiz.bank.loader import load_bank
from vaequiz.grading.answers import Reading
from vaequiz.grading.fingerprint import question_fingerprint
from vaequiz.grading.models import CheckResult
from vaequiz.grading.objective import Graded
from vaequiz.grading.portable import graded_from_json, graded_json, question_from_json, question_json, reading_from_json, reading_json


def through_json(data: object) -> object:
    return json.loads(json.dumps(data, ensure_ascii=False))


def test_every_bundled_question_comes_back_equal_with_the_same_fingerprint() -> None:
    bank = load_bank(BUNDLED_BANK)
    assert bank.questions
    for question in bank.questions:
        back = question_from_json(through_json(question_json(question)))  # type: ignore[arg-type]
        assert back == question and question_fingerprint(back) == question_fingerprint(question), question.id


TEXT = st.text(st.characters(blacklist_categories=("Cs",)), max_size=40)
FLOATS = st.floats(allow_nan=False, allow_infinity=False)
CHECKS = st.builds(CheckResult, name=TEXT, passed=st.booleans(), message=TEXT, points=FLOATS, hidden=st.booleans(), evidence=TEXT)
VERDICTS = st.builds(
    Graded, score=FLOATS, checks=st.lists(CHECKS, max_size=4), error=st.none() | TEXT, passed=st.none() | st.booleans(),
    output=TEXT, retry=st.booleans(), hints=st.lists(TEXT, max_size=3), mistake=st.none() | TEXT,
    errors=st.lists(TEXT, max_size=3), needs_review=st.booleans(), review_reasons=st.lists(TEXT, max_size=3),
)
READINGS = st.builds(
    Reading, answer=st.none() | TEXT | st.lists(st.sampled_from("ABCDE"), max_size=5), problem=st.none() | TEXT,
    params=st.none() | st.dictionaries(st.sampled_from(["n", "d", "h"]), st.integers(-10**6, 10**6) | FLOATS, max_size=3),
)


@given(VERDICTS)
def test_a_verdict_comes_back_equal(graded: Graded) -> None:
    assert graded_from_json(through_json(graded_json(graded))) == graded  # type: ignore[arg-type]


@given(READINGS)
def test_an_answer_as_read_comes_back_equal(reading: Reading) -> None:
    assert reading_from_json(through_json(reading_json(reading))) == reading  # type: ignore[arg-type]
