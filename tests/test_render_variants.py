"""Per-student variants: reproducible, and their label maps always lead back to the bank's key."""

from __future__ import annotations

from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from tests.test_render_sample import write_sample_bank
from vaequiz.bank.loader import Bank, load_bank
from vaequiz.bank.models import MultipleChoice
from vaequiz.grading.models import AnswerSheet
from vaequiz.render.variants import StableRandom, derive_variant, variant_id


@pytest.fixture(scope="module")
def bank(tmp_path_factory: pytest.TempPathFactory) -> Bank:
    return load_bank(write_sample_bank(tmp_path_factory.mktemp("variants")))


students = st.text(min_size=0, max_size=30)
seeds = st.integers(min_value=0, max_value=2**63)


@settings(max_examples=80, deadline=None)
@given(seed=seeds, student=students, shuffle_questions=st.booleans())
def test_labels_map_is_a_bijection_that_maps_the_shown_key_to_the_bank_key(
    bank: Bank, seed: int, student: str, shuffle_questions: bool
) -> None:
    variant = derive_variant(
        "quiz", seed, student, bank.questions, shuffle_questions=shuffle_questions, shuffle_options=True
    )
    assert sorted(variant.question_order) == sorted(q.id for q in bank.questions)
    labels = variant.labels()
    answers: dict[str, object] = {}
    for question in bank.questions:
        if not isinstance(question, MultipleChoice):
            continue
        mapping = labels[question.id]
        bank_labels = [o.label for o in question.options]
        assert sorted(mapping) == sorted(bank_labels)  # every shown label once
        assert sorted(mapping.values()) == sorted(bank_labels)  # every bank label once
        if not question.shuffle:
            assert all(shown == bank_label for shown, bank_label in mapping.items())
        shown_key = sorted(variant.shown_label(question.id, b) for b in question.answer)
        answers[question.id] = shown_key if question.multiple else shown_key[0]
    # The sheet a page saves for a student who picks the key validates and maps back to the key.
    sheet = AnswerSheet.model_validate(
        {"student": student or "anonymous", "quiz": "quiz", "variant": variant.id,
         "labels": labels, "answers": answers}
    )
    for question in bank.questions:
        if isinstance(question, MultipleChoice):
            given_answer = sheet.answers[question.id]
            shown = given_answer if isinstance(given_answer, list) else [given_answer]
            assert sorted(sheet.labels[question.id][s] for s in shown) == sorted(question.answer)


@settings(max_examples=30, deadline=None)
@given(seed=seeds, student=students)
def test_same_inputs_same_variant(bank: Bank, seed: int, student: str) -> None:
    first = derive_variant("q", seed, student, bank.questions, shuffle_questions=True, shuffle_options=True)
    again = derive_variant("q", seed, student, bank.questions, shuffle_questions=True, shuffle_options=True)
    assert first == again


def test_variants_are_pinned_across_releases(bank: Bank) -> None:
    """Rebuilding a student's page must give the same page, whatever Python version runs it."""
    variant = derive_variant(
        "vae-week", 2026, "s1234", bank.questions, shuffle_questions=True, shuffle_options=True
    )
    assert variant.id == variant_id("vae-week", 2026, "s1234") == "v4bfa14807b"
    assert variant.option_order["kl-role"] == ("C", "B", "A", "D")


def test_students_get_different_variants(bank: Bank) -> None:
    orders = {
        derive_variant("q", 1, f"s{i}", bank.questions, shuffle_questions=True, shuffle_options=True).option_order["kl-role"]
        for i in range(40)
    }
    assert len(orders) > 10


def test_no_option_shuffle_keeps_bank_order(bank: Bank) -> None:
    variant = derive_variant("q", 1, "s", bank.questions, shuffle_questions=False, shuffle_options=False)
    assert variant.question_order == tuple(q.id for q in bank.questions)
    assert all(order == tuple(sorted(order)) for order in variant.option_order.values())


@settings(max_examples=50, deadline=None)
@given(key=st.text(max_size=20), n=st.integers(1, 50), k=st.integers(0, 50))
def test_stable_random_shuffles_and_samples(key: str, n: int, k: int) -> None:
    rng = StableRandom(key)
    assert sorted(rng.shuffled(range(n))) == list(range(n))
    sample = StableRandom(key).sample(list(range(n)), min(k, n))
    assert sample == sorted(set(sample)) and len(sample) == min(k, n)


def test_stable_random_is_roughly_uniform() -> None:
    rng = StableRandom("uniform")
    counts = [0] * 4
    for _ in range(4000):
        counts[rng.below(4)] += 1
    assert all(850 < c < 1150 for c in counts)
