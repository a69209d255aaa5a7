"""Job leases on SQLite and PostgreSQL: a server starting (or sweeping) queues again only the
jobs whose grader stopped renewing its lease, never those another live server or worker holds;
a job delivered twice is claimed once; the migration from the schema before leases keeps old
running jobs recoverable."""

from __future__ import annotations

from datetime import timedelta
from pathlib import Path

from sqlalchemy import insert, select, update

from tests.conftest import BUNDLED_BANK
from tests.serve_support import db_url, postgres_server, write_quizzes  # noqa: F401  (fixtures)
from vaequiz.serve import jobs
from vaequiz.serve.course import load_course
from vaequiz.serve.db import attempts, now, open_engine, users
from vaequiz.serve.db import jobs as job_table
from vaequiz.serve.server import database, sandbox_factory


def three_jobs(engine) -> list[int]:  # type: ignore[no-untyped-def]
    with engine.begin() as db:
        user = db.execute(insert(users).values(name="ada", role="student", created_at=now())).inserted_primary_key[0]
        attempt = db.execute(insert(attempts).values(user_id=user, quiz="serve-exam", mode="exam", started_at=now())).inserted_primary_key[0]
        jobs.save_answers(db, attempt, {"encoder-z-shape": "(64, 20)", "kl-importance": "x", "linear-layer-parameters": "1"})
        return list(jobs.enqueue(db, attempt, ["encoder-z-shape", "kl-importance", "linear-layer-parameters"]).values())


def state(engine, job_id: int):  # type: ignore[no-untyped-def]
    with engine.connect() as db:
        return db.execute(select(job_table.c.state, job_table.c.claimed_by).where(job_table.c.id == job_id)).one()


def test_a_starting_server_requeues_only_jobs_whose_lease_ran_out(tmp_path: Path, db_url: str) -> None:  # noqa: F811
    engine = database(db_url)
    first, second, third = three_jobs(engine)
    assert jobs.claim_next(engine, "live-server", 60) == (first, 1)
    assert jobs.claim_next(engine, "dead-server", 60) == (second, 1)
    with engine.begin() as db:  # the dead server stopped renewing a while ago
        db.execute(update(job_table).where(job_table.c.id == second).values(lease_until=now() - timedelta(seconds=1)))

    exam, practice = write_quizzes(tmp_path)
    course = load_course(BUNDLED_BANK, [exam], [practice])
    restarted = jobs.Worker(engine, course, 0, sandbox_factory(course, 1))
    restarted.start()  # what a restarting server does first
    restarted.stop()
    assert tuple(state(engine, first)) == ("running", "live-server")
    assert tuple(state(engine, second)) == ("queued", None)
    assert tuple(state(engine, third)) == ("queued", None)
    engine.dispose()


def test_renewing_keeps_a_slow_job_and_a_second_delivery_is_not_claimed(db_url: str) -> None:  # noqa: F811
    engine = database(db_url)
    first, second, _ = three_jobs(engine)
    with engine.connect() as db:
        revision = db.execute(select(job_table.c.revision_id).where(job_table.c.id == first)).scalar_one()
    assert jobs.claim(engine, first, revision, "worker-a", 60) == 1
    assert jobs.claim(engine, first, revision, "worker-b", 60) is None  # the same message again
    assert jobs.claim(engine, first, revision + 1000, "worker-b", 60) is None  # not this job's revision
    keeper = jobs.LeaseKeeper(engine, "worker-a", 60)
    with engine.begin() as db:
        db.execute(update(job_table).where(job_table.c.id == first).values(lease_until=now() - timedelta(seconds=1)))
    with keeper.holding(first):
        assert keeper.renew() == 1  # worker-a is alive and grading: renewed before anyone swept
    assert jobs.requeue_expired(engine) == 0
    with engine.begin() as db:
        db.execute(update(job_table).where(job_table.c.id == first).values(lease_until=now() - timedelta(seconds=1)))
    assert keeper.renew() == 0  # worker-a broke off this grading (or died): no renewal
    assert jobs.requeue_expired(engine) == 1  # its job is queued (and published) again
    assert jobs.claim(engine, first, revision, "worker-b", 60) == 2
    assert tuple(state(engine, second)) == ("queued", None)
    engine.dispose()


def test_running_jobs_of_the_schema_before_leases_are_recovered(db_url: str) -> None:  # noqa: F811
    from alembic import command
    from alembic.config import Config

    engine = open_engine(db_url)
    config = Config()
    config.set_main_option("script_location", str(Path(jobs.__file__).parent / "migrations"))
    with engine.begin() as connection:
        config.attributes["connection"] = connection
        command.upgrade(config, "0001")
    with engine.begin() as db:  # a job a server of the old schema was grading when it stopped
        user = db.execute(insert(users).values(name="ada", role="student", created_at=now())).inserted_primary_key[0]
        attempt = db.execute(insert(attempts).values(user_id=user, quiz="q", mode="exam", started_at=now())).inserted_primary_key[0]
        jobs.save_answers(db, attempt, {"a": "1"})
        revision = jobs.latest_revisions(db, attempt)["a"][0]
        db.exec_driver_sql(
            "INSERT INTO jobs (revision_id, attempt_id, state, tries, enqueued_at) VALUES (?, ?, 'running', 1, ?)"
            if engine.dialect.name == "sqlite" else
            "INSERT INTO jobs (revision_id, attempt_id, state, tries, enqueued_at) VALUES (%s, %s, 'running', 1, %s)",
            (revision, attempt, now()),
        )
    engine.dispose()
    engine = database(db_url)
    assert jobs.requeue_expired(engine) == 1
    engine.dispose()
