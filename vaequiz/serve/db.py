"""The service's tables and its connection to SQLite or PostgreSQL.

Tables are declared once here (SQLAlchemy Core); the schema itself is created and changed only
by the Alembic migrations shipped in ``migrations/``, applied when the server starts.
"""

from __future__ import annotations

from datetime import datetime, timezone
from pathlib import Path

from sqlalchemy import (
    Column,
    DateTime,
    Engine,
    ForeignKey,
    Integer,
    MetaData,
    String,
    Table,
    Text,
    UniqueConstraint,
    create_engine,
    event,
)

DEFAULT_DB_FILE = "vaequiz-serve.db"
metadata = MetaData()

users = Table(
    "users",
    metadata,
    Column("id", Integer, primary_key=True),
    Column("name", String(200), nullable=False, unique=True),
    Column("role", String(20), nullable=False),  # "student" or "instructor"
    Column("password_hash", String(300)),
    Column("created_at", DateTime(timezone=True), nullable=False),
)

sign_in_tokens = Table(
    "sign_in_tokens",
    metadata,
    Column("id", Integer, primary_key=True),
    Column("token_hash", String(64), nullable=False, unique=True),
    Column("user_id", Integer, ForeignKey("users.id"), nullable=False),
    Column("quiz", String(200)),
    Column("expires_at", DateTime(timezone=True), nullable=False),
)

sessions = Table(
    "sessions",
    metadata,
    Column("id", Integer, primary_key=True),
    Column("token_hash", String(64), nullable=False, unique=True),
    Column("user_id", Integer, ForeignKey("users.id"), nullable=False),
    Column("expires_at", DateTime(timezone=True), nullable=False),
)

settings = Table(
    "settings",
    metadata,
    Column("key", String(100), primary_key=True),
    Column("value", Text, nullable=False),
)

attempts = Table(
    "attempts",
    metadata,
    Column("id", Integer, primary_key=True),
    Column("user_id", Integer, ForeignKey("users.id"), nullable=False),
    Column("quiz", String(200), nullable=False),
    Column("mode", String(20), nullable=False),
    Column("started_at", DateTime(timezone=True), nullable=False),
    Column("deadline", DateTime(timezone=True)),
    Column("submitted_at", DateTime(timezone=True)),
    UniqueConstraint("user_id", "quiz", "mode", name="uq_attempt_per_student"),
)

revisions = Table(
    "revisions",
    metadata,
    Column("id", Integer, primary_key=True),
    Column("attempt_id", Integer, ForeignKey("attempts.id"), nullable=False, index=True),
    Column("question", String(200), nullable=False),
    Column("value", Text, nullable=False),  # the answer as the page sent it, JSON
    Column("saved_at", DateTime(timezone=True), nullable=False),
)

jobs = Table(
    "jobs",
    metadata,
    Column("id", Integer, primary_key=True),
    Column("revision_id", Integer, ForeignKey("revisions.id"), nullable=False, unique=True),
    Column("attempt_id", Integer, ForeignKey("attempts.id"), nullable=False, index=True),
    Column("state", String(20), nullable=False, index=True),  # queued, running, done
    Column("tries", Integer, nullable=False, default=0),
    Column("enqueued_at", DateTime(timezone=True), nullable=False),
    Column("started_at", DateTime(timezone=True)),
    Column("finished_at", DateTime(timezone=True)),
    Column("claimed_by", String(200)),  # the grader holding a running job, then the one that graded it (host:pid:random)
    Column("lease_until", DateTime(timezone=True)),  # renewed while it grades; past it, the job is queued again
    Column("published_at", DateTime(timezone=True)),  # sent to the Celery broker (None: not yet, or again)
)

results = Table(
    "results",
    metadata,
    Column("id", Integer, primary_key=True),
    Column("revision_id", Integer, ForeignKey("revisions.id"), nullable=False),
    Column("attempt_id", Integer, ForeignKey("attempts.id"), nullable=False, index=True),
    Column("question", String(200), nullable=False),
    Column("item", Text, nullable=False),  # an ItemResult as JSON: a results.jsonl line
    Column("graded_at", DateTime(timezone=True), nullable=False),
    # what decided the result (question fingerprint / grader version): a regrade adds a row
    Column("grader", String(200), nullable=False, server_default=""),
    UniqueConstraint("revision_id", "grader", name="uq_result_per_grader"),
)

releases = Table(
    "releases",
    metadata,
    Column("quiz", String(200), primary_key=True),
    Column("released_at", DateTime(timezone=True), nullable=False),
)


def grader_key(fingerprint: str | None, grader_version: str | None) -> str:
    """What decided a result: the question's fingerprint and the grader's version. A result
    row is unique per answer revision and this key, so a regrade adds a row, a rerun does not."""
    return f"{fingerprint or ''}/{grader_version or ''}"


def now() -> datetime:
    return datetime.now(timezone.utc)


def aware(moment: datetime | None) -> datetime | None:
    """SQLite hands back naive datetimes; every time stored here is UTC."""
    if moment is None or moment.tzinfo is not None:
        return moment
    return moment.replace(tzinfo=timezone.utc)


def default_url(folder: Path | None = None) -> str:
    """SQLite in the current folder (the course folder the commands run in)."""
    return f"sqlite:///{((folder or Path.cwd()) / DEFAULT_DB_FILE).resolve()}"


def open_engine(url: str) -> Engine:
    """An engine for ``url``; SQLite gets WAL (readers never wait for the writer), a busy
    timeout and foreign keys, PostgreSQL a pre-ping so a restarted database is survived."""
    if url.startswith("sqlite"):
        engine = create_engine(url, connect_args={"timeout": 30, "check_same_thread": False})

        @event.listens_for(engine, "connect")
        def _pragmas(connection, _record):  # type: ignore[no-untyped-def]
            cursor = connection.cursor()
            cursor.execute("PRAGMA journal_mode=WAL")
            cursor.execute("PRAGMA synchronous=NORMAL")
            cursor.execute("PRAGMA foreign_keys=ON")
            cursor.close()

        return engine
    return create_engine(url, pool_pre_ping=True)


def migrate(engine: Engine) -> None:
    """Bring the schema to the newest migration (creating it on an empty database)."""
    from alembic import command
    from alembic.config import Config

    config = Config()
    config.set_main_option("script_location", str(Path(__file__).parent / "migrations"))
    with engine.begin() as connection:
        config.attributes["connection"] = connection
        command.upgrade(config, "head")
