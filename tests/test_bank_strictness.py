"""The bank format is as strict as its JSON Schema: what the schema rejects, `validate` rejects,
located, and a document the schema accepts loads (unless a rule between fields breaks)."""

from __future__ import annotations

import copy
from pathlib import Path
from typing import Any

import jsonschema
import yaml
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from tests.bank_strategies import questions, to_yaml_data
from tests.conftest import BUNDLED_BANK
from tests.test_bank_errors import VALID
from vaequiz.bank.loader import load_bank
from vaequiz.bank.schema import bank_schema

SCHEMA_VALIDATOR = jsonschema.Draft202012Validator(bank_schema())

# One pool of values per JSON type. No string is a Python name or an option label, so a string
# put where a trial symbol may stand cannot satisfy the schema yet break a rule between fields.
VALUES_BY_TYPE: dict[str, st.SearchStrategy[Any]] = {
    "int": st.sampled_from([0, 1, 3, -2, 64, 5000]),
    "float": st.sampled_from([0.5, 2.0, -1.5, 1e-06, 0.0, 1e300]),
    "str": st.sampled_from(["3", "", "1.0e-6", "x y", "no way", "-1"]),
    "bool": st.booleans(),
    "null": st.none(),
    "list": st.sampled_from([[], [1], ["A"], [[]]]),
    "mapping": st.sampled_from([{}, {"a": 1}, {"type": "tensor"}]),
}


def _bundled_questions() -> list[dict[str, Any]]:
    """Every question of the bundled bank as written: real documents using every input, probe
    and check type. Links to other questions (code_question) are dropped: each is checked alone."""
    documents = []
    for file in sorted(BUNDLED_BANK.rglob("*.yaml")):
        if not file.name.endswith(".quiz.yaml"):
            for question in yaml.safe_load(file.read_text(encoding="utf-8")):
                question.pop("code_question", None)
                documents.append(question)
    return documents


BUNDLED_QUESTIONS = _bundled_questions()


def _json_type(value: Any) -> str:
    if isinstance(value, bool):
        return "bool"
    for kind, python in (("int", int), ("float", float), ("str", str), ("list", list), ("mapping", dict)):
        if isinstance(value, python):
            return kind
    return "null"


def _paths(node: Any, prefix: tuple[Any, ...] = ()) -> list[tuple[Any, ...]]:
    """Every value's path below the question itself."""
    found = [prefix] if prefix else []
    items = node.items() if isinstance(node, dict) else enumerate(node) if isinstance(node, list) else []
    for key, child in items:
        found += _paths(child, prefix + (key,))
    return found


@st.composite
def retyped_documents(draw: st.DrawFn) -> dict[str, Any]:
    """A valid question with up to three values replaced by a value of a drawn JSON type.

    Replacing a value by one of its own type keeps it, so every change is a change of type:
    an int where a float is expected (valid), a null in an optional field (valid), a string
    where a number is expected (invalid), and so on.
    """
    document = draw(
        st.one_of(questions.map(to_yaml_data), st.sampled_from(BUNDLED_QUESTIONS).map(copy.deepcopy))
    )
    for _ in range(draw(st.integers(0, 3))):
        path = draw(st.sampled_from(_paths(document)))
        parent = document
        for key in path[:-1]:
            parent = parent[key]
        kind = draw(st.sampled_from(sorted(VALUES_BY_TYPE)))
        if _json_type(parent[path[-1]]) != kind:
            parent[path[-1]] = copy.deepcopy(draw(VALUES_BY_TYPE[kind]))
    return document


@settings(max_examples=600, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(document=retyped_documents())
def test_schema_and_loader_give_the_same_verdict(tmp_path: Path, document: dict[str, Any]) -> None:
    folder = tmp_path / "bank"
    folder.mkdir(exist_ok=True)
    text = yaml.safe_dump([document], allow_unicode=True, sort_keys=False)
    (folder / "q.yaml").write_text(text, encoding="utf-8")
    schema_errors = [e.message for e in SCHEMA_VALIDATOR.iter_errors(yaml.safe_load(text))]
    problems = [str(p) for p in load_bank(folder).problems]
    assert (schema_errors == []) == (problems == []), (text, schema_errors, problems)
    for problem in problems:
        assert "q.yaml:" in problem and "Traceback" not in problem


def test_a_number_where_text_is_expected_is_refused_with_its_line(cli, write_yaml) -> None:
    bank = write_yaml("a.yaml", VALID.replace("- id: kl-role", "- id: 12345"))
    result = cli("validate", bank)
    assert result.returncode == 1, result.stdout
    assert (
        "bank/a.yaml:1:7: id: Input should be a valid string; YAML read this value as the "
        "number 12345: put it in quotes"
    ) in result.stderr
    assert not SCHEMA_VALIDATOR.is_valid(yaml.safe_load((bank / "a.yaml").read_text()))
    quoted = write_yaml("a.yaml", VALID.replace("- id: kl-role", '- id: "12345"'))
    assert cli("validate", quoted).returncode == 0


def test_quoted_numbers_and_booleans_are_refused_with_the_fix(cli, write_yaml) -> None:
    text = VALID.replace("  source: original", '  source: original\n  points: "3"\n  shuffle: "no"')
    bank = write_yaml("a.yaml", text)
    result = cli("validate", bank)
    assert result.returncode == 1
    assert "bank/a.yaml:6:11: points: Input should be a valid number; '3' is quoted, so it is text: remove the quotes" in result.stderr
    assert "bank/a.yaml:7:12: shuffle: Input should be a valid boolean; 'no' is quoted, so it is text: write true or false without quotes" in result.stderr
    assert "Traceback" not in result.stderr


def test_numbers_the_schema_accepts_are_accepted(cli, write_yaml) -> None:
    """An int where a float is expected, and 2.0 where an int is expected, are JSON Schema
    numbers and integers too."""
    text = VALID.replace("  source: original", "  source: original\n  points: 2")
    shape = """
    - id: z-shape
      kind: shape
      topics: [shapes]
      difficulty: beginner
      source: original
      points: 1.5e+0
      prompt: Shape of z?
      answer: [64.0, 20]
      explanation: One row per example.
    """
    write_yaml("a.yaml", text)
    bank = write_yaml("b.yaml", shape)
    result = cli("validate", bank)
    assert result.returncode == 0, result.stderr
    assert SCHEMA_VALIDATOR.is_valid(yaml.safe_load((bank / "b.yaml").read_text()))


def test_the_bundled_bank_is_valid_under_the_schema() -> None:
    for file in sorted(BUNDLED_BANK.rglob("*.yaml")):
        if not file.name.endswith(".quiz.yaml"):
            errors = [e.message for e in SCHEMA_VALIDATOR.iter_errors(yaml.safe_load(file.read_text()))]
            assert errors == [], (file, errors)
