"""Put the service together (database, course, worker, app) and run it on uvicorn."""

from __future__ import annotations

import os
from contextlib import contextmanager
from pathlib import Path
from typing import Any, Iterator, Optional

from sqlalchemy import Engine

from vaequiz.serve.app import Settings, create_app
from vaequiz.serve.course import Course, load_course
from vaequiz.serve.db import migrate, open_engine
from vaequiz.serve.jobs import Worker, hidden_paths


def sandbox_factory(course: Course, workers: int) -> Any:
    """Opens the grading sandbox (for code answers) with ``workers`` warm workers."""

    @contextmanager
    def opened() -> Iterator[Any]:
        from vaequiz.grading.sandbox import Sandbox

        with Sandbox(workers=workers, device="cpu", hide_paths=hidden_paths(course)) as sandbox:
            yield sandbox

    return opened


def database(url: str) -> Engine:
    """The engine for ``url`` with the schema migrated to the newest version."""
    engine = open_engine(url)
    migrate(engine)
    return engine


def build_app(engine: Engine, course: Course, settings: Settings) -> Any:
    worker = Worker(engine, course, settings.grading_threads, sandbox_factory(course, max(1, settings.grading_threads)))
    return create_app(engine, course, worker, settings)


def default_threads() -> int:
    return max(1, os.cpu_count() or 1)


def run(
    bank: Path,
    exams: list[Path],
    practice: list[Path],
    url: str,
    host: str,
    port: int,
    settings: Settings,
    time_limit_min: Optional[float] = None,
    announce: Any = print,
) -> None:
    import uvicorn

    from vaequiz.serve.accounts import join_code

    course = load_course(bank, exams, practice, time_limit_min)
    engine = database(url)
    app = build_app(engine, course, settings)
    shown = "localhost" if host in ("0.0.0.0", "::") else host
    announce(f"vaequiz serve: http://{shown}:{port}/ ({', '.join(f'{q.id} ({q.mode.value})' for q in course.quizzes.values())})")
    announce(f"vaequiz serve: course join code {join_code(engine)}; database {engine.url.render_as_string(hide_password=True)}")
    uvicorn.run(app, host=host, port=port, log_level="warning", timeout_graceful_shutdown=5)
