"""Put the service together (database, course, worker, app) and run it on uvicorn."""

from __future__ import annotations

import os
import time
from contextlib import contextmanager
from pathlib import Path
from typing import Any, Iterator, Optional

from sqlalchemy import Engine

from vaequiz.serve.app import Settings, create_app
from vaequiz.serve.course import Course, load_course
from vaequiz.serve.db import migrate, open_engine
from vaequiz.serve.jobs import LEASE_S, Dispatch, Worker, hidden_paths


def sandbox_factory(course: Course, workers: int, device: str = "cpu") -> Any:
    """Opens the grading sandbox (for code answers) with ``workers`` warm workers."""

    @contextmanager
    def opened() -> Iterator[Any]:
        from vaequiz.grading.sandbox import Sandbox

        with Sandbox(workers=workers, device=device, hide_paths=hidden_paths(course)) as sandbox:
            yield sandbox

    return opened


def database(url: str) -> Engine:
    """The engine for ``url`` with the schema migrated to the newest version. Servers and
    workers starting at once on an empty database race to create it: the loser tries again."""
    from sqlalchemy.exc import SQLAlchemyError

    engine = open_engine(url)
    for attempt in range(3):
        try:
            migrate(engine)
            return engine
        except SQLAlchemyError:
            if attempt == 2:
                raise
            time.sleep(1.0 + attempt)
    return engine


def build_app(engine: Engine, course: Course, settings: Settings, broker: Optional[str] = None,
              device: str = "cpu", lease_s: float = LEASE_S) -> Any:
    """The app with its grading: this server's own threads, or (``broker``) the Celery publisher
    and `vaequiz worker` processes wherever they run."""
    dispatch: Dispatch
    if broker:
        from vaequiz.serve.broker import Publisher

        dispatch = Publisher(engine, course, broker, sandbox_factory(course, 1, device), device, lease_s)
    else:
        threads = settings.grading_threads
        dispatch = Worker(engine, course, threads, sandbox_factory(course, max(1, threads), device), lease_s, device)
    return create_app(engine, course, dispatch, settings)


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
    broker: Optional[str] = None,
    device: str = "cpu",
    lease_s: float = LEASE_S,
) -> None:
    import uvicorn

    from vaequiz.serve.accounts import join_code

    course = load_course(bank, exams, practice, time_limit_min)
    engine = database(url)
    app = build_app(engine, course, settings, broker, device, lease_s)
    shown = "localhost" if host in ("0.0.0.0", "::") else host
    announce(f"vaequiz serve: http://{shown}:{port}/ ({', '.join(f'{q.id} ({q.mode.value})' for q in course.quizzes.values())})")
    announce(f"vaequiz serve: course join code {join_code(engine)}; database {engine.url.render_as_string(hide_password=True)}")
    if broker:
        announce(f"vaequiz serve: grading by `vaequiz worker` processes through the broker {broker.split('@')[-1]}")
    uvicorn.run(app, host=host, port=port, log_level="warning", timeout_graceful_shutdown=5)
