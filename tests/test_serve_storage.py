"""The service's storage on SQLite and PostgreSQL: the shipped migrations build exactly the
tables the code declares, migrating twice is harmless, saved answers come back as they were
sent, and nothing else in vaequiz imports the service."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from sqlalchemy import insert

from tests.conftest import BUNDLED_BANK, REPO
from tests.serve_support import PRACTICE_IDS, Site, db_url, open_quiz, postgres_server, sign_in_student, write_quizzes  # noqa: F401
from vaequiz.serve import jobs
from vaequiz.serve.app import Settings
from vaequiz.serve.course import load_course
from vaequiz.serve.db import attempts, metadata, migrate, now, open_engine, users
from vaequiz.serve.server import build_app, database


def test_migrations_build_the_declared_schema_and_can_run_again(db_url: str) -> None:  # noqa: F811
    engine = open_engine(db_url)
    migrate(engine)
    migrate(engine)
    with engine.connect() as connection:
        differences = compare_metadata(MigrationContext.configure(connection), metadata)
    engine.dispose()
    assert differences == []


def test_revisions_are_new_only_when_the_answer_changes(db_url: str) -> None:  # noqa: F811
    engine = database(db_url)
    with engine.begin() as db:
        user = db.execute(insert(users).values(name="ada", role="student", created_at=now())).inserted_primary_key[0]
        attempt = db.execute(insert(attempts).values(user_id=user, quiz="q", mode="exam", started_at=now())).inserted_primary_key[0]
        assert set(jobs.save_answers(db, attempt, {"a": "1", "b": ["A", "C"], "c": None})) == {"a", "b"}
        assert jobs.save_answers(db, attempt, {"a": "1", "b": ["A", "C"]}) == {}
        assert set(jobs.save_answers(db, attempt, {"a": "2", "b": None})) == {"a", "b"}
        first = jobs.enqueue(db, attempt, ["a", "c"])
        assert jobs.enqueue(db, attempt, ["a", "c"]) == first  # one job per revision
        latest = jobs.latest_revisions(db, attempt)
    assert {q: v for q, (_, v) in latest.items()} == {"a": '"2"', "b": "null", "c": "null"}
    engine.dispose()


ANSWER_TEXT = st.text(st.characters(blacklist_categories=("Cs",)), max_size=300)


def test_saved_answers_come_back_as_sent(tmp_path: Path) -> None:
    exam, practice = write_quizzes(tmp_path)
    engine = database(f"sqlite:///{tmp_path / 'serve.db'}")
    site = Site(build_app(engine, load_course(BUNDLED_BANK, [exam], [practice]), Settings(grading_threads=0)), engine)
    try:
        student = sign_in_student(site, "ada")
        attempt = open_quiz(student, "serve-practice")["attempt"]
        sent: dict[str, Any] = {}

        @settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow])
        @given(st.dictionaries(st.sampled_from(PRACTICE_IDS), st.one_of(ANSWER_TEXT, st.lists(st.sampled_from("ABCD"), max_size=4)), min_size=1))
        def round_trip(answers: dict[str, Any]) -> None:
            response = student.post(f"/api/attempts/{attempt}/answers", json={"answers": answers})
            assert response.status_code == 200, response.text
            sent.update(answers)
            assert open_quiz(student, "serve-practice")["answers"] == sent

        round_trip()
    finally:
        site.close()


def test_nothing_else_in_vaequiz_imports_the_service() -> None:
    importing = [
        path.relative_to(REPO).as_posix()
        for path in (REPO / "vaequiz").rglob("*.py")
        if re.search(r"^\s*(from|import) vaequiz\.serve\b", path.read_text(encoding="utf-8"), re.M)
        and path.relative_to(REPO / "vaequiz").parts[0] != "serve"
        and path != REPO / "vaequiz" / "cli" / "serve.py"
    ]
    assert importing == []


def test_the_results_migration_keeps_old_results_and_lets_a_regrade_add_a_row(db_url: str) -> None:  # noqa: F811
    import json

    import pytest
    from alembic import command
    from alembic.config import Config
    from sqlalchemy import column, select, table
    from sqlalchemy.exc import IntegrityError

    from vaequiz.serve.db import grader_key, results, revisions

    engine = open_engine(db_url)
    config = Config()
    config.set_main_option("script_location", str(REPO / "vaequiz" / "serve" / "migrations"))
    with engine.begin() as connection:
        config.attributes["connection"] = connection
        command.upgrade(config, "0001")  # a database of the first release, with a graded answer
    item = {"student": "ada", "question": "q", "kind": "numeric", "passed": True, "score": 1, "points": 1,
            "max_points": 1, "fingerprint": "f1", "grader_version": "v1"}
    with engine.begin() as db:
        user = db.execute(insert(users).values(name="ada", role="student", created_at=now())).inserted_primary_key[0]
        attempt = db.execute(insert(attempts).values(user_id=user, quiz="q", mode="exam", started_at=now())).inserted_primary_key[0]
        revision = db.execute(insert(revisions).values(attempt_id=attempt, question="q", value='"1"', saved_at=now())).inserted_primary_key[0]
        first_release = table("results", *(column(name) for name in ("revision_id", "attempt_id", "question", "item", "graded_at")))
        db.execute(insert(first_release).values(revision_id=revision, attempt_id=attempt, question="q", item=json.dumps(item), graded_at=now()))
    migrate(engine)
    with engine.connect() as db:
        assert db.execute(select(results.c.grader)).scalar_one() == grader_key("f1", "v1") == "f1/v1"
    row = {"revision_id": revision, "attempt_id": attempt, "question": "q", "item": "{}", "graded_at": now()}
    with engine.begin() as db:
        db.execute(insert(results).values(**row, grader="f2/v1"))  # a regrade: the question changed
    with pytest.raises(IntegrityError), engine.begin() as db:
        db.execute(insert(results).values(**row, grader="f2/v1"))  # the same grading twice: refused
    engine.dispose()
