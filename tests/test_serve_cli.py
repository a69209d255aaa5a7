"""`vaequiz serve --create-instructor` and `vaequiz links` through the real CLI, and the clear
messages (exit 2, no traceback) for bad databases, quiz files and rosters."""

from __future__ import annotations

import csv
import io
from pathlib import Path

from sqlalchemy import select

from tests.conftest import BUNDLED_BANK, run_vaequiz
from tests.serve_support import db_url, postgres_server, write_quizzes  # noqa: F401
from vaequiz.serve.accounts import check_instructor, redeem_link, secret_hash
from vaequiz.serve.db import open_engine, sign_in_tokens, users


def test_create_instructor_reads_the_password_from_stdin_and_stores_only_a_scrypt_hash(db_url: str) -> None:  # noqa: F811
    done = run_vaequiz("serve", "--create-instructor", "prof@example.org", "--db", db_url, input="a long secret\n")
    assert done.returncode == 0, done.stderr
    engine = open_engine(db_url)
    with engine.connect() as db:
        stored = db.execute(select(users.c.password_hash).where(users.c.name == "prof@example.org")).scalar_one()
    assert stored.startswith("scrypt$") and "a long secret" not in stored
    assert check_instructor(engine, "prof@example.org", "a long secret") is not None
    assert check_instructor(engine, "prof@example.org", "a long secreT") is None
    short = run_vaequiz("serve", "--create-instructor", "x@example.org", "--db", db_url, input="short\n")
    assert short.returncode == 1 and "shorter than 8 characters" in short.stderr and "Traceback" not in short.stderr
    engine.dispose()


def test_links_prints_one_link_per_student_with_tokens_stored_hashed(tmp_path: Path, db_url: str) -> None:  # noqa: F811
    exam, _ = write_quizzes(tmp_path)
    roster = tmp_path / "roster.csv"
    roster.write_text("student,name\nada,Ada L\nben,Ben K\n", encoding="utf-8")
    done = run_vaequiz("links", roster, "--quiz", exam, "--db", db_url, "--base-url", "https://quiz.example.org/")
    assert done.returncode == 0, done.stderr
    rows = list(csv.DictReader(io.StringIO(done.stdout)))
    assert [r["student"] for r in rows] == ["ada", "ben"]
    tokens = [r["link"].rsplit("/", 1)[1] for r in rows]
    assert all(r["link"].startswith("https://quiz.example.org/signin/") for r in rows) and len(set(tokens)) == 2
    engine = open_engine(db_url)
    with engine.connect() as db:
        stored = {row.token_hash for row in db.execute(select(sign_in_tokens.c.token_hash))}
    assert stored == {secret_hash(t) for t in tokens} and not stored & set(tokens)
    found = redeem_link(engine, tokens[0])
    assert found is not None and found[0].name == "ada" and found[1] == "serve-exam"
    engine.dispose()


def test_bad_input_gets_a_message_and_exit_2(tmp_path: Path) -> None:
    roster = tmp_path / "roster.csv"
    roster.write_text("student\nada\n", encoding="utf-8")
    cases = [
        (("links", roster, "--db", "postgresql+psycopg://nobody@127.0.0.1:1/x"), "cannot open the database"),
        (("links", roster, "--db", "nonsense://"), "use sqlite:///FILE or postgresql+psycopg://"),
        (("links", roster, "--db", "not a url"), "is not a database URL"),
        (("links", tmp_path / "missing.csv", "--db", f"sqlite:///{tmp_path / 'x.db'}"), "no such roster file"),
        (("links", roster, "--base-url", "quiz.example.org", "--db", f"sqlite:///{tmp_path / 'x.db'}"), "must start with http"),
        (("serve", "--bank", BUNDLED_BANK, "--quiz", tmp_path / "nope.quiz.yaml", "--db", f"sqlite:///{tmp_path / 'x.db'}"), "does not exist"),
    ]
    for args, message in cases:
        done = run_vaequiz(*args, cwd=tmp_path)
        assert done.returncode in (1, 2) and message in done.stderr, (args, done.stderr)
        assert "Traceback" not in done.stderr


def test_the_default_database_is_a_file_in_the_current_folder(tmp_path: Path) -> None:
    roster = tmp_path / "roster.csv"
    roster.write_text("student\nada\n", encoding="utf-8")
    done = run_vaequiz("links", roster, cwd=tmp_path)
    assert done.returncode == 0, done.stderr
    assert (tmp_path / "vaequiz-serve.db").is_file()
