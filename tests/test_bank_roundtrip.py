"""Any valid question written as YAML loads back equal, and the schema accepts it."""

from __future__ import annotations

from pathlib import Path

import yaml
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from vaequiz.bank.loader import load_bank
from tests.bank_strategies import questions, to_yaml_data


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(question=questions)
def test_question_round_trips_through_yaml(tmp_path: Path, question) -> None:
    folder = tmp_path / "rt"
    folder.mkdir(exist_ok=True)
    file = folder / "q.yaml"
    file.write_text(yaml.safe_dump([to_yaml_data(question)], allow_unicode=True, sort_keys=False), encoding="utf-8")
    bank = load_bank(folder)
    assert bank.problems == []
    assert bank.questions == [question]


@settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(batch=st.lists(questions, min_size=2, max_size=6, unique_by=lambda q: q.id))
def test_many_questions_keep_file_order_and_locations(tmp_path: Path, batch) -> None:
    folder = tmp_path / "many"
    folder.mkdir(exist_ok=True)
    text = yaml.safe_dump([to_yaml_data(q) for q in batch], allow_unicode=True, sort_keys=False)
    (folder / "q.yaml").write_text(text, encoding="utf-8")
    bank = load_bank(folder)
    assert bank.problems == []
    assert [q.id for q in bank.questions] == [q.id for q in batch]
    lines = text.splitlines()
    for question in batch:
        location = bank.locations[question.id]
        # The location points at the "- " that opens the question's mapping.
        assert lines[location.line - 1].startswith("- ")


def test_schema_accepts_what_the_models_accept() -> None:
    from vaequiz.bank.schema import bank_schema

    schema = bank_schema()
    kinds = {ref.split("/")[-1] for ref in _refs(schema["anyOf"])}
    assert {"MultipleChoice", "ShortAnswer", "Flashcard", "ShapeAnswer", "NumericAnswer", "CodeQuestion"} <= kinds
    assert schema["$defs"]["MultipleChoice"]["additionalProperties"] is False


def _refs(node) -> list[str]:
    found: list[str] = []
    if isinstance(node, dict):
        if "$ref" in node:
            found.append(node["$ref"])
        for value in node.values():
            found += _refs(value)
    elif isinstance(node, list):
        for value in node:
            found += _refs(value)
    return found
