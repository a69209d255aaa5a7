"""The bank commands through the real CLI: list, schema, help, exit codes."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from tests.conftest import REPO
from tests.test_bank_errors import VALID


def test_list_json_has_one_object_per_question(cli, write_yaml) -> None:
    bank = write_yaml("a.yaml", VALID + VALID.replace("kl-role", "kl-role-2").replace("points", "points"))
    result = cli("list", bank, "--json")
    assert result.returncode == 0, result.stderr
    rows = json.loads(result.stdout)
    assert [r["id"] for r in rows] == ["kl-role", "kl-role-2"]
    assert rows[0] | {"location": None} == {
        "id": "kl-role",
        "kind": "mcq",
        "topics": ["kl-divergence"],
        "difficulty": "beginner",
        "points": 1.0,
        "source": "original",
        "location": None,
    }


def test_list_table_and_invalid_bank_exit_1(cli, write_yaml) -> None:
    bank = write_yaml("a.yaml", VALID)
    table = cli("list", bank)
    assert table.returncode == 0
    assert "kl-role" in table.stdout and "mcq" in table.stdout
    write_yaml("b.yaml", VALID.replace("kl-role", "BAD"))
    assert cli("list", bank).returncode == 1


def test_committed_schema_is_generated_from_the_models(cli) -> None:
    result = cli("schema")
    assert result.returncode == 0
    committed = (REPO / "vaequiz/schemas/question-bank.schema.json").read_text(encoding="utf-8")
    assert result.stdout == committed, "run: vaequiz schema -o vaequiz/schemas/question-bank.schema.json"
    schema = json.loads(result.stdout)
    assert "anyOf" in schema and "$defs" in schema


def test_bank_files_point_editors_at_the_schema() -> None:
    for file in sorted((REPO / "question_bank").rglob("*.yaml")):
        if file.name.endswith(".quiz.yaml"):
            continue
        first = file.read_text(encoding="utf-8").splitlines()[0]
        assert first.startswith("# yaml-language-server: $schema="), file
        target = (file.parent / first.split("$schema=")[1]).resolve()
        assert target == (REPO / "vaequiz/schemas/question-bank.schema.json").resolve(), file


def test_every_command_has_help(cli) -> None:
    top = cli("--help")
    assert top.returncode == 0
    commands = [line.split()[0] for line in top.stdout.split("Commands:")[1].splitlines() if line.strip()]
    assert {"validate", "list", "schema"} <= set(commands)
    for command in commands:
        result = cli(command, "--help")
        assert result.returncode == 0, command
        assert "Usage:" in result.stdout


def test_default_bank_is_the_bundled_one_from_any_folder(cli, tmp_path: Path) -> None:
    result = cli("validate", cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    assert result.stdout.startswith("ok: ")


def test_env_var_selects_the_bank(cli, write_yaml, tmp_path: Path) -> None:
    bank = write_yaml("a.yaml", VALID.replace("kl-role", "BAD"))
    result = cli("validate", cwd=tmp_path, env={"VAEQUIZ_BANK": str(bank)})
    assert result.returncode == 1
    assert "not kebab-case" in result.stderr
