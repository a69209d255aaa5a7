"""`vaequiz new`: skeletons validate as-is, are commented from the models, and append safely."""

from __future__ import annotations

import json
import re
import subprocess
import sys
from pathlib import Path

import pytest
import yaml
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from typer.testing import CliRunner

from vaequiz.bank.loader import load_bank
from vaequiz.bank.models import QUESTION_KINDS
from vaequiz.bank.skeletons import KINDS, skeleton_data, skeleton_yaml
from vaequiz.cli.app import app

runner = CliRunner()


def invoke(*args: str) -> tuple[int, str, str]:
    result = runner.invoke(app, list(args))
    return result.exit_code, result.stdout, result.stderr


def test_every_kind_appends_and_validates(tmp_path: Path) -> None:
    bank_file = tmp_path / "bank" / "new.yaml"
    for kind in KINDS:
        code, out, _ = invoke("new", kind, "--file", str(bank_file))
        assert code == 0, out
        assert re.match(rf"{re.escape(str(bank_file))}:\d+: added {kind} question", out)
    code, out, err = invoke("validate", str(bank_file.parent))
    assert code == 0, err
    bank = load_bank(bank_file.parent)
    assert sorted(q.kind for q in bank.questions) == sorted(KINDS)


def test_reported_line_is_where_the_item_starts(tmp_path: Path) -> None:
    bank_file = tmp_path / "q.yaml"
    invoke("new", "mcq", "--file", str(bank_file))
    code, out, _ = invoke("new", "shape", "--id", "z-shape", "--file", str(bank_file))
    line = int(out.split(":")[1])
    assert bank_file.read_text().splitlines()[line - 1] == "- id: z-shape"
    assert load_bank(bank_file).locations["z-shape"].line == line


def test_real_cli_new_then_validate(tmp_path: Path) -> None:
    bank_file = tmp_path / "code.yaml"
    new = subprocess.run(
        [sys.executable, "-m", "vaequiz", "new", "code", "--id", "kl-per-row", "--file",
         str(bank_file)], capture_output=True, text=True, timeout=120,
    )
    assert new.returncode == 0, new.stderr
    check = subprocess.run(
        [sys.executable, "-m", "vaequiz", "validate", str(tmp_path)],
        capture_output=True, text=True, timeout=120,
    )
    assert check.returncode == 0, check.stderr
    assert "1 code" in check.stdout


def test_every_field_is_commented_from_the_models() -> None:
    for kind in KINDS:
        lines = skeleton_yaml(kind, "x").splitlines()
        data = yaml.safe_load("\n".join(lines))[0]
        for key in data:
            index = next(i for i, l in enumerate(lines) if re.match(rf"^(- |  ){key}:", l))
            before = [l for l in lines[:index] if l.strip().startswith("#")]
            assert before and re.search(rf"# {key}: ", "\n".join(lines[max(0, index - 4):index])), (
                kind, key)
        text = "\n".join(lines)
        for key in ("topics", "points", "hint"):
            description = QUESTION_KINDS[kind].model_fields[key].description
            assert key not in data or f"# {key}: {description}" in text, (kind, key)


def test_printed_without_file_is_a_valid_list(tmp_path: Path) -> None:
    code, out, _ = invoke("new", "short_answer", "--id", "why-reparam")
    assert code == 0
    (tmp_path / "printed.yaml").write_text(out)
    bank = load_bank(tmp_path)
    assert bank.ok, bank.problems
    assert [q.id for q in bank.questions] == ["why-reparam"]


def test_appends_after_existing_questions_and_keeps_them(tmp_path: Path) -> None:
    bank_file = tmp_path / "bank.yaml"
    invoke("new", "flashcard", "--id", "first-card", "--file", str(bank_file))
    before = bank_file.read_text()
    invoke("new", "numeric", "--file", str(bank_file))
    assert bank_file.read_text().startswith(before)
    assert [q.id for q in load_bank(tmp_path).questions] == ["first-card", "numeric-new"]


def test_empty_comment_only_and_flow_empty_files(tmp_path: Path) -> None:
    for name, content in [("empty.yaml", ""), ("comments.yaml", "# my questions\n"),
                          ("flow.yaml", "[]\n")]:
        bank_file = tmp_path / name
        bank_file.write_text(content)
        code, out, err = invoke("new", "shape", "--id", name.split(".")[0], "--file", str(bank_file))
        assert code == 0, err
    assert load_bank(tmp_path).ok
    assert (tmp_path / "comments.yaml").read_text().startswith("# my questions\n")


def test_indented_list_keeps_its_indentation(tmp_path: Path) -> None:
    bank_file = tmp_path / "indented.yaml"
    bank_file.write_text(
        "  - id: card\n    kind: flashcard\n    topics: [kl]\n    difficulty: beginner\n"
        "    source: original\n    front: a\n    back: b\n"
    )
    code, _, err = invoke("new", "mcq", "--file", str(bank_file))
    assert code == 0, err
    assert [q.id for q in load_bank(tmp_path).questions] == ["card", "mcq-new"]


def test_single_mapping_file_is_refused_unchanged(tmp_path: Path) -> None:
    bank_file = tmp_path / "one.yaml"
    content = "id: card\nkind: flashcard\n"
    bank_file.write_text(content)
    code, _, err = invoke("new", "mcq", "--file", str(bank_file))
    assert code == 2
    assert "single question written as a mapping" in err and "make it a list" in err
    assert bank_file.read_text() == content


def test_broken_yaml_and_duplicate_ids_are_refused(tmp_path: Path) -> None:
    broken = tmp_path / "broken.yaml"
    broken.write_text("- id: [unclosed\n")
    code, _, err = invoke("new", "mcq", "--file", str(broken))
    assert code == 2 and "broken.yaml:" in err and "fix the file first" in err
    good = tmp_path / "sub" / "good.yaml"
    invoke("new", "mcq", "--id", "same", "--file", str(good))
    code, _, err = invoke("new", "mcq", "--id", "same", "--file", str(good))
    assert code == 2 and "id 'same' is already used" in err
    code, _, err = invoke("new", "mcq", "--id", "same", "--file", str(good.parent / "other.yaml"))
    assert code == 2 and "id 'same' is already used" in err
    code, _, err = invoke("new", "mcq", "--id", "Not_Kebab")
    assert code == 2 and "kebab-case" in err
    code, _, err = invoke("new", "essay")
    assert code == 2
    for wrong in ("notes.txt", "week.quiz.yaml"):
        code, _, err = invoke("new", "mcq", "--file", str(tmp_path / wrong))
        assert code == 2 and "is not a bank file" in err
        assert not (tmp_path / wrong).exists()


@settings(max_examples=15, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(kinds=st.lists(st.sampled_from(KINDS), min_size=1, max_size=5))
def test_any_sequence_of_appends_stays_a_valid_bank(tmp_path_factory, kinds: list[str]) -> None:
    folder = tmp_path_factory.mktemp("seq")
    bank_file = folder / "bank.yaml"
    for kind in kinds:
        code, out, err = invoke("new", kind, "--file", str(bank_file))
        assert code == 0, err
    bank = load_bank(folder)
    assert bank.ok, bank.problems
    assert [q.kind for q in bank.questions] == kinds
    assert len({q.id for q in bank.questions}) == len(kinds)


@pytest.mark.slow
def test_code_skeleton_passes_verify(tmp_path: Path) -> None:
    """The skeleton teaches by example: its reference passes and every mutant is caught."""
    invoke("new", "code", "--id", "kl-per-row", "--file", str(tmp_path / "kl.yaml"))
    done = subprocess.run([sys.executable, "-m", "vaequiz", "verify", str(tmp_path), "--json",
                           "--workers", "1"], capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stdout + done.stderr
    findings = json.loads(done.stdout)
    assert len(findings) == 1 + len(skeleton_data("code", "x")["mutants"])
    assert all(f["agrees"] for f in findings)
    assert [f["got"] for f in findings] == ["pass"] + ["fail"] * (len(findings) - 1)
