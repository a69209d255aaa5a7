"""The README stays true: its YAML and JSON examples are valid in the formats they document."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest

from tests.conftest import REPO
from vaequiz.bank.loader import load_bank
from vaequiz.grading.models import AnswerSheet

README = (REPO / "README.md").read_text(encoding="utf-8")
BLOCKS = re.findall(r"```(yaml|json)\n(.*?)```", README, flags=re.S)


def _bank_blocks() -> list[str]:
    return [text for lang, text in BLOCKS if lang == "yaml" and re.search(r"^- id: ", text, flags=re.M)]


@pytest.mark.parametrize("text", _bank_blocks())
def test_bank_examples_validate(tmp_path: Path, text: str) -> None:
    (tmp_path / "example.yaml").write_text(text, encoding="utf-8")
    bank = load_bank(tmp_path)
    assert [str(p) for p in bank.problems] == []


def test_quiz_spec_example_loads(tmp_path: Path) -> None:
    from vaequiz.render.build import load_quiz

    spec = next(text for lang, text in BLOCKS if lang == "yaml" and text.startswith("id: vae-week"))
    file = tmp_path / "week.quiz.yaml"
    file.write_text(spec, encoding="utf-8")
    quiz = load_quiz(REPO / "question_bank", file, None)
    assert quiz.questions


def test_sheet_example_is_a_valid_sheet() -> None:
    text = next(text for lang, text in BLOCKS if lang == "json" and '"student"' in text)
    AnswerSheet.model_validate(json.loads(text))


def test_readme_names_every_command() -> None:
    from vaequiz.cli import app

    for command in app.registered_commands:
        name = command.name or command.callback.__name__.replace("_", "-")
        assert f"vaequiz {name}" in README, name


def test_readme_commands_exist() -> None:
    for script in (".ci/main-job", ".ci/run", ".ci/setup"):
        assert (REPO / script).is_file()
        assert f"bash {script}" in README or script == ".ci/setup"
