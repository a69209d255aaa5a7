"""Quiz selection: draws respect the spec's filters and counts, never repeat, and are seeded."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from tests.test_render_sample import write_sample_bank
from vaequiz.bank.loader import Bank, load_bank
from vaequiz.bank.yaml_source import SourceMap
from vaequiz.render.quiz_spec import QuizSpec, QuizSpecError
from vaequiz.render.selection import resolve_quiz

TOPICS = ["kl-divergence", "reparameterization", "shapes", "vae-basics", "elbo"]


@pytest.fixture(scope="module")
def bank(tmp_path_factory: pytest.TempPathFactory) -> Bank:
    return load_bank(write_sample_bank(tmp_path_factory.mktemp("selection")))


rules = st.lists(
    st.fixed_dictionaries(
        {"topics": st.lists(st.sampled_from(TOPICS), min_size=1, max_size=3, unique=True)},
        optional={"count": st.integers(1, 3), "kinds": st.just(["mcq", "numeric", "shape"])},
    ),
    min_size=1,
    max_size=3,
)


@settings(max_examples=60, deadline=None)
@given(select=rules, seed=st.integers(0, 10**6))
def test_draws_follow_the_rules(bank: Bank, select: list[dict], seed: int) -> None:
    spec = QuizSpec.model_validate({"id": "q", "title": "T", "select": select})
    try:
        quiz = resolve_quiz(spec, SourceMap("q.quiz.yaml"), bank, seed)
    except QuizSpecError as err:
        assert all("match" in p.message for p in err.problems)
        return
    ids = [q.id for q in quiz.questions]
    assert len(ids) == len(set(ids))
    for question in quiz.questions:
        assert any(
            set(question.topics) & set(rule["topics"])
            and question.kind in rule.get("kinds", [question.kind])
            for rule in select
        )
    again = resolve_quiz(spec, SourceMap("q.quiz.yaml"), bank, seed)
    assert [q.id for q in again.questions] == ids


def test_ids_come_first_in_the_order_listed(bank: Bank) -> None:
    spec = QuizSpec.model_validate(
        {"id": "q", "title": "T", "select": [{"ids": ["latent-shape", "kl-role"]}, {"topics": ["kl-divergence"]}]}
    )
    quiz = resolve_quiz(spec, SourceMap("q.quiz.yaml"), bank)
    assert [q.id for q in quiz.questions] == ["latent-shape", "kl-role", "kl-value"]
    assert quiz.points == {"latent-shape": 1.0, "kl-role": 1.0, "kl-value": 1.0}
