"""`vaequiz serve` (quizzes served live) and `vaequiz links` (per-student sign-in links).

The service's libraries are the optional ``serve`` extra, imported when a command runs.
"""

from __future__ import annotations

import getpass
import sys
from datetime import timedelta
from pathlib import Path
from typing import Annotated, Any, Optional

import typer

from vaequiz.cli.app import EXIT_INVALID, BankOption, app, fail, resolve_bank
from vaequiz.cli.grade import Device, DeviceOpt

DbOption = Annotated[
    Optional[str],
    typer.Option("--db", help="Database URL: sqlite:///FILE or postgresql+psycopg://USER@HOST/DB "
                 "(default: vaequiz-serve.db in the current folder).", show_default=False),
]


BrokerOption = Annotated[
    Optional[str],
    typer.Option("--broker", help="Celery broker (Redis) URL, redis://HOST:PORT/DB: grading goes to `vaequiz worker` processes.",
                 show_default=False),
]
LeaseOption = Annotated[
    float,
    typer.Option("--lease", min=1.0, max=3600.0, help="Seconds a grading job stays claimed without renewal "
                 "(renewed every quarter of it); a killed grader's jobs are queued again after it."),
]


def _need_celery() -> None:
    try:
        import celery  # noqa: F401
        import redis  # noqa: F401
    except ModuleNotFoundError as err:
        fail(f"--broker needs celery[redis] (the 'serve' extra; {err.name} is missing): pip install 'vaequiz[serve]'")


def _check_device(device: Device) -> None:
    from vaequiz.serve.broker import check_device

    problem = check_device(device.value)
    if problem:
        fail(problem)


def _need_extra() -> None:
    try:
        import alembic  # noqa: F401
        import sqlalchemy  # noqa: F401
        import starlette  # noqa: F401
        import uvicorn  # noqa: F401
    except ModuleNotFoundError as err:
        fail(f"vaequiz serve needs the 'serve' extra ({err.name} is missing): pip install 'vaequiz[serve]'")


def _database(url: Optional[str]) -> Any:
    from sqlalchemy.exc import ArgumentError, SQLAlchemyError

    from vaequiz.serve.db import default_url
    from vaequiz.serve.server import database

    try:
        return database(url or default_url())
    except ArgumentError as err:
        fail(f"--db {url!r} is not a database URL ({err}); use sqlite:///FILE or postgresql+psycopg://USER@HOST/DB")
    except (SQLAlchemyError, OSError) as err:
        first = str(err).strip().splitlines()[0] if str(err).strip() else type(err).__name__
        fail(f"cannot open the database {url or default_url()}: {first}")


def _password() -> str:
    if sys.stdin.isatty():
        first = getpass.getpass("Password: ")
        if getpass.getpass("Password again: ") != first:
            fail("the passwords differ")
        return first
    return sys.stdin.readline().rstrip("\r\n")


@app.command()
def serve(
    bank: BankOption = None,
    quiz: Annotated[
        Optional[list[Path]], typer.Option("--quiz", help="Quiz spec served as an exam (repeatable).")
    ] = None,
    practice: Annotated[
        Optional[list[Path]], typer.Option("--practice", help="Quiz spec served as practice (repeatable).")
    ] = None,
    db: DbOption = None,
    host: Annotated[str, typer.Option("--host", help="Address to listen on.")] = "127.0.0.1",
    port: Annotated[int, typer.Option("--port", min=0, max=65535, help="Port to listen on.")] = 8000,
    workers: Annotated[
        Optional[int], typer.Option("--workers", min=0, help="Grading threads and sandbox workers (default: all cores; 0 grades nothing here).")
    ] = None,
    code_per_minute: Annotated[
        int, typer.Option("--code-per-minute", min=1, help="Code answers one student may send for grading per minute.")
    ] = 30,
    time_limit: Annotated[
        Optional[float], typer.Option("--time-limit", min=0.1, help="Minutes an exam attempt may last (overrides the quiz spec).")
    ] = None,
    create_instructor: Annotated[
        Optional[str], typer.Option("--create-instructor", metavar="EMAIL", help="Create the instructor account (password from stdin or a prompt) and exit.")
    ] = None,
    broker: BrokerOption = None,
    device: DeviceOpt = Device.cpu,
    lease: LeaseOption = 60.0,
) -> None:
    """Serve quizzes live: students sign in, answers are saved and graded on the server (or, with
    --broker, by `vaequiz worker` processes; --device cuda sends code to the GPU queue)."""
    _need_extra()
    if create_instructor is not None:
        from vaequiz.serve.accounts import AccountError, create_instructor as create

        engine = _database(db)
        try:
            create(engine, create_instructor, _password())
        except AccountError as err:
            fail(str(err), EXIT_INVALID)
        typer.echo(f"instructor {create_instructor.strip()} can sign in at /login")
        return
    from vaequiz.serve.app import Settings
    from vaequiz.serve.course import CourseError, load_course
    from vaequiz.serve.server import default_threads, run

    root = resolve_bank(bank)
    try:
        load_course(root, quiz or [], practice or [], time_limit)  # fail before binding the port
    except CourseError as err:
        fail(str(err), EXIT_INVALID)
    _database(db)
    from vaequiz.serve.db import default_url

    if broker:
        _need_celery()
        _check_broker(broker)
    elif workers != 0:
        _check_device(device)  # this server grades code itself
    settings = Settings(code_per_minute=code_per_minute, grading_threads=default_threads() if workers is None else workers)
    run(root, quiz or [], practice or [], db or default_url(), host, port, settings, time_limit,
        announce=lambda line: typer.echo(line, err=True), broker=broker, device=device.value, lease_s=lease)


def _check_broker(url: str) -> None:
    from vaequiz.grading.remote import BrokerError, celery_app, check_reachable

    try:
        check_reachable(celery_app(url), set(), need_workers=False)
    except BrokerError as err:
        fail(str(err))


@app.command()
def worker(
    broker: Annotated[str, typer.Option("--broker", help="Celery broker (Redis) URL, the one the servers use.")],
    db: DbOption = None,
    workers: Annotated[
        Optional[int], typer.Option("--workers", min=1, max=256, help="Answers graded at once: threads and warm sandbox workers (default: all cores).")
    ] = None,
    device: DeviceOpt = Device.cpu,
    lease: LeaseOption = 60.0,
    hide: Annotated[
        Optional[list[Path]], typer.Option("--hide", help="A folder snippets must not read, e.g. the course's bank on this machine (repeatable).")
    ] = None,
) -> None:
    """Grade for `vaequiz serve --broker` and `grade-sheets --broker`: a Celery worker with its own
    warm sandbox pool; --device cuda takes the GPU queue. Stop it with Ctrl-C or SIGTERM."""
    _need_extra()
    _need_celery()
    _check_device(device)
    _check_broker(broker)
    from vaequiz.serve.broker import run_worker
    from vaequiz.serve.server import default_threads

    from vaequiz.grading.sandbox.api import SandboxUnavailable

    engine = _database(db)
    try:
        run_worker(broker, engine, workers or default_threads(), device.value, lease, [p.resolve() for p in hide or []],
                   announce=lambda line: typer.echo(line, err=True))
    except SandboxUnavailable as err:
        fail(f"the sandbox could not start: {err}")


@app.command()
def links(
    roster: Annotated[Path, typer.Argument(help="CSV with a 'student' (or 'id') column.")],
    quiz: Annotated[
        Optional[Path], typer.Option("--quiz", help="Quiz spec the link opens (default: the quiz list).")
    ] = None,
    base_url: Annotated[str, typer.Option("--base-url", help="Where students reach the server.")] = "http://localhost:8000",
    days: Annotated[float, typer.Option("--days", min=0.01, help="Days until the links expire.")] = 14,
    db: DbOption = None,
) -> None:
    """Print a sign-in link per student (CSV: student,link); tokens are stored hashed, expiring."""
    _need_extra()
    import csv

    from vaequiz.render.quiz_spec import QuizSpecError, load_quiz_spec
    from vaequiz.render.roster import RosterError, read_roster
    from vaequiz.serve.accounts import AccountError, issue_links

    try:
        names = read_roster(roster)
    except RosterError as err:
        fail(str(err))
    quiz_id = None
    if quiz is not None:
        try:
            quiz_id = load_quiz_spec(quiz)[0].id
        except QuizSpecError as err:
            fail(f"the quiz spec has {len(err.problems)} problem(s):\n{err}", EXIT_INVALID)
    if not base_url.startswith(("http://", "https://")):
        fail(f"--base-url {base_url!r} must start with http:// or https://")
    engine = _database(db)
    try:
        tokens = issue_links(engine, names, quiz_id, timedelta(days=days))
    except AccountError as err:
        fail(str(err), EXIT_INVALID)
    writer = csv.writer(sys.stdout, lineterminator="\n")
    writer.writerow(["student", "link"])
    for name, token in tokens.items():
        writer.writerow([name, f"{base_url.rstrip('/')}/signin/{token}"])
