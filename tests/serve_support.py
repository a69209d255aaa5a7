"""Shared set-up for the service's tests: a real PostgreSQL (the one .ci/run started, named by
$VAEQUIZ_TEST_POSTGRES, or a throw-away cluster started here) and SQLite, a course on the
bundled bank, and signed-in clients. Missing PostgreSQL fails the tests; it never skips them."""

from __future__ import annotations

import csv
import io
import os
import re
import secrets
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import textwrap
import time
from pathlib import Path
from typing import Any, Iterator

import httpx
import pytest

from tests.conftest import BUNDLED_BANK, REPO, run_vaequiz


PG_BIN = Path("/usr/lib/postgresql")
EXAM_IDS = ["decoder-for-28x28", "linear-layer-parameters", "encoder-z-shape", "kl-importance", "reparameterization-trick"]
PRACTICE_IDS = ["decoder-block-bce", "beta-loss-value", "kl-divergence"]


def _pg_tool(name: str) -> str:
    found = shutil.which(name)
    if found:
        return found
    versions = sorted(PG_BIN.glob(f"*/bin/{name}"))
    if not versions:
        pytest.fail(f"PostgreSQL is not installed ({name} not found); run `bash .ci/setup test`")
    return str(versions[-1])


def _as_postgres(command: list[str]) -> list[str]:
    return ["runuser", "-u", "postgres", "--", *command] if os.geteuid() == 0 else command


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


@pytest.fixture(scope="session")
def postgres_server() -> Iterator[str]:
    """A SQLAlchemy URL of a PostgreSQL server's ``postgres`` database."""
    given = os.environ.get("VAEQUIZ_TEST_POSTGRES")
    if given:
        yield given
        return
    folder = Path(tempfile.mkdtemp(prefix="vaequiz-pg-"))
    if os.geteuid() == 0:
        shutil.chown(folder, "postgres")
    data, port = folder / "data", _free_port()
    subprocess.run(_as_postgres([_pg_tool("initdb"), "-D", str(data), "-A", "trust", "-U", "postgres"]),
                   check=True, capture_output=True)
    subprocess.run(_as_postgres([_pg_tool("pg_ctl"), "-D", str(data), "-l", str(folder / "log"), "-w", "-o",
                                 f"-p {port} -k {folder} -c listen_addresses=''", "start"]), check=True, capture_output=True)
    try:
        yield f"postgresql+psycopg://postgres@/postgres?host={folder}&port={port}"
    finally:
        subprocess.run(_as_postgres([_pg_tool("pg_ctl"), "-D", str(data), "-m", "immediate", "stop"]), capture_output=True)
        shutil.rmtree(folder, ignore_errors=True)


def _with_database(url: str, name: str) -> str:
    return re.sub(r"/postgres(\?|$)", f"/{name}\\1", url, count=1)


@pytest.fixture(params=["sqlite", "postgresql"])
def db_url(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[str]:
    """A fresh, empty database of each kind."""
    if request.param == "sqlite":
        yield f"sqlite:///{tmp_path / 'serve.db'}"
        return
    import psycopg

    server = request.getfixturevalue("postgres_server")
    name = f"vaequiz_{secrets.token_hex(6)}"
    plain = server.replace("postgresql+psycopg://", "postgresql://")
    with psycopg.connect(plain, autocommit=True) as admin:
        admin.execute(f'CREATE DATABASE "{name}"')
    yield _with_database(server, name)
    with psycopg.connect(plain, autocommit=True) as admin:
        admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


def write_quizzes(folder: Path) -> tuple[Path, Path]:
    """An exam spec (one question of every kind, code included) and a practice spec."""
    exam = folder / "exam.quiz.yaml"
    exam.write_text(textwrap.dedent(f"""\
        id: serve-exam
        title: Served exam
        seed: 7
        select:
          - ids: [{", ".join(EXAM_IDS)}]
        """), encoding="utf-8")
    practice = folder / "practice.quiz.yaml"
    practice.write_text(textwrap.dedent(f"""\
        id: serve-practice
        title: Served practice
        select:
          - ids: [{", ".join(PRACTICE_IDS)}]
        """), encoding="utf-8")
    return exam, practice


class Site:
    """One running app (through Starlette's TestClient, lifespan and worker included)."""

    def __init__(self, app: Any, engine: Any) -> None:
        import warnings

        with warnings.catch_warnings():  # Starlette asks for httpx2; httpx is what the extra installs
            warnings.simplefilter("ignore")
            from starlette.testclient import TestClient

        self.app = app
        self.engine = engine
        self.TestClient = TestClient
        self.clients: list[Any] = []

    def client(self) -> Any:
        client = self.TestClient(self.app, base_url="http://testserver")
        client.__enter__()
        self.clients.append(client)
        return client

    def close(self) -> None:
        for client in self.clients:
            client.__exit__(None, None, None)


def csrf_of(client: Any) -> str:
    """The CSRF token a page gave this client (from any page's form)."""
    page = client.get("/")
    found = re.search(r'name="csrf" value="([^"]+)"', page.text)
    assert found, page.text[:500]
    return found.group(1)


def sign_in_student(site: Site, name: str) -> Any:
    from vaequiz.serve.accounts import issue_links

    token = issue_links(site.engine, [name], None)[name]
    client = site.client()
    form = client.get(f"/signin/{token}")
    csrf = re.search(r'name="csrf" value="([^"]+)"', form.text).group(1)
    response = client.post("/signin", data={"token": token, "csrf": csrf}, follow_redirects=False)
    assert response.status_code == 303, response.text
    client.headers["X-CSRF-Token"] = csrf
    return client


def sign_in_instructor(site: Site, email: str = "prof@example.org", password: str = "correct horse") -> Any:
    from vaequiz.serve.accounts import create_instructor

    create_instructor(site.engine, email, password)
    client = site.client()
    csrf = csrf_of(client)
    response = client.post("/login", data={"email": email, "password": password, "csrf": csrf}, follow_redirects=False)
    assert response.status_code == 303, response.text
    client.headers["X-CSRF-Token"] = csrf
    return client


def open_quiz(client: Any, quiz: str) -> dict[str, Any]:
    """Open a quiz page and return its serve-data (attempt id, csrf, saved answers...)."""
    import json

    page = client.get(f"/quiz/{quiz}")
    assert page.status_code == 200, page.text[:300]
    found = re.search(r'<script type="application/json" id="serve-data">(.*?)</script>', page.text, re.S)
    return json.loads(found.group(1))


def wait_graded(client: Any, attempt: int, count: int, timeout: float = 300) -> dict[str, Any]:
    """Poll the status API until ``count`` questions are graded (a hang guard, not a timing)."""
    deadline = time.monotonic() + timeout
    while True:
        status = client.get(f"/api/attempts/{attempt}/status").json()
        graded = [q for q, s in status["questions"].items() if s["state"] == "graded"]
        if len(graded) >= count:
            return status
        assert time.monotonic() < deadline, status
        time.sleep(0.2)


def sign_in_links(folder: Path, exam: Path, url: str, students: list[str],
                  base_url: str = "http://127.0.0.1") -> dict[str, str]:
    """Student -> sign-in link, through the real `vaequiz links` on a roster of ``students``."""
    roster = folder / "roster.csv"
    roster.write_text("student\n" + "\n".join(students) + "\n", encoding="utf-8")
    made = run_vaequiz("links", roster, "--quiz", exam, "--db", url, "--base-url", base_url)
    assert made.returncode == 0, made.stderr
    return {row["student"]: row["link"] for row in csv.DictReader(io.StringIO(made.stdout))}


def start_server(quiz_args: list[str], url: str, port: int, log: Path, extra: tuple[str, ...] = ()) -> subprocess.Popen[bytes]:
    """`vaequiz serve` in its own session on ``port``, once it answers."""
    process = subprocess.Popen(
        [sys.executable, "-m", "vaequiz", "serve", "--bank", str(BUNDLED_BANK), *quiz_args,
         "--db", url, "--port", str(port), "--workers", "1", *extra],
        cwd=REPO, env={**os.environ, "PYTHONPATH": str(REPO)}, stdout=log.open("ab"), stderr=subprocess.STDOUT,
        start_new_session=True,
    )
    deadline = time.monotonic() + 180  # a hang guard
    while True:
        try:
            if httpx.get(f"http://127.0.0.1:{port}/", timeout=2).status_code == 200:
                return process
        except httpx.HTTPError:
            pass
        assert process.poll() is None, log.read_text()
        assert time.monotonic() < deadline, log.read_text()
        time.sleep(0.3)


def kill(process: subprocess.Popen[bytes]) -> None:
    """SIGKILL to the server and everything it started (its sandbox workers), like a crash."""
    try:
        os.killpg(process.pid, signal.SIGKILL)
    except ProcessLookupError:
        pass
    process.wait(timeout=30)


# ---------------------------------------------------------------- Redis and `vaequiz worker`

WORKER_LEASE_S = 5
"""The job lease the test workers take (``.ci/run`` starts its workers with the same), so a
killed worker's job is queued again within seconds."""
SERVICE_TABLES = ["results", "jobs", "revisions", "attempts", "releases", "sessions", "sign_in_tokens", "settings", "users"]


def _wait_for(ready: Any, what: str, process: subprocess.Popen[bytes] | None = None, log: Path | None = None) -> None:
    deadline = time.monotonic() + 120  # a hang guard
    while not ready():
        if process is not None and process.poll() is not None:
            pytest.fail(f"{what} exited: {log.read_text() if log else ''}")
        assert time.monotonic() < deadline, f"{what} did not come up"
        time.sleep(0.2)


@pytest.fixture(scope="session")
def redis_url() -> Iterator[str]:
    """A Redis URL: the redis-server .ci/run started ($VAEQUIZ_TEST_REDIS), or one started here.
    A missing redis-server fails the tests; it never skips them."""
    given = os.environ.get("VAEQUIZ_TEST_REDIS")
    if given:
        yield given
        return
    server = shutil.which("redis-server")
    if server is None:
        pytest.fail("redis-server is not installed (Debian redis-server); run `bash .ci/setup test`")
    import redis

    folder, port = Path(tempfile.mkdtemp(prefix="vaequiz-redis-")), _free_port()
    process = subprocess.Popen(
        [server, "--port", str(port), "--bind", "127.0.0.1", "--dir", str(folder), "--save", "", "--appendonly", "no"],
        stdout=(folder / "log").open("wb"), stderr=subprocess.STDOUT, start_new_session=True,
    )

    def answers() -> bool:
        try:
            return bool(redis.Redis(port=port, socket_timeout=1).ping())
        except redis.RedisError:
            return False

    try:
        _wait_for(answers, "redis-server", process, folder / "log")
        yield f"redis://127.0.0.1:{port}/0"
    finally:
        kill(process)
        shutil.rmtree(folder, ignore_errors=True)


def start_worker(broker: str, url: str, log: Path, workers: int = 1) -> subprocess.Popen[bytes]:
    """`vaequiz worker` in its own session (its sandbox processes in its process group)."""
    return subprocess.Popen(
        [sys.executable, "-m", "vaequiz", "worker", "--broker", broker, "--db", url, "--workers", str(workers),
         "--lease", str(WORKER_LEASE_S)],
        cwd=REPO, env={**os.environ, "PYTHONPATH": str(REPO)}, stdout=log.open("ab"), stderr=subprocess.STDOUT,
        start_new_session=True,
    )


def kill_group_of(pid: int) -> None:
    """SIGKILL to a process and its process group (a worker and its sandbox), like a crash."""
    try:
        os.killpg(os.getpgid(pid), signal.SIGKILL)
    except ProcessLookupError:
        pass


class Workers:
    """Two `vaequiz worker` processes on one broker and one database (PostgreSQL): the ones
    .ci/run started ($VAEQUIZ_TEST_WORKERS: their database URL; $VAEQUIZ_TEST_WORKER_PIDS), or
    ones started here. A test may kill one; a replacement keeps two running."""

    def __init__(self, broker: str, url: str, pids: list[int], folder: Path) -> None:
        self.broker = broker
        self.url = url
        self.pids = pids
        self.folder = folder
        self.started: list[subprocess.Popen[bytes]] = []
        self.gone: set[int] = set()
        """Workers killed by a test (their jobs, graded before, name them)."""

    def start(self) -> int:
        process = start_worker(self.broker, self.url, self.folder / f"worker-{len(self.started)}.log")
        self.started.append(process)
        self.pids.append(process.pid)
        return process.pid

    def replace(self, pid: int) -> None:
        kill_group_of(pid)
        self.pids.remove(pid)
        self.gone.add(pid)
        for process in self.started:
            if process.pid == pid:
                process.wait(timeout=30)
        self.start()

    def logs(self) -> str:
        return "\n".join(p.read_text(errors="replace")[-3000:] for p in sorted(self.folder.glob("worker-*.log")))

    def fresh_database(self) -> None:
        """Empty the workers' database (each test starts from nothing; ids keep counting up, so a
        stale message of an earlier test never matches a new job)."""
        from sqlalchemy import delete

        from vaequiz.serve.server import database

        engine = database(self.url)
        with engine.begin() as db:
            for table in SERVICE_TABLES:
                from vaequiz.serve.db import metadata

                db.execute(delete(metadata.tables[table]))
        engine.dispose()

    def stop(self) -> None:
        for process in self.started:
            try:
                os.killpg(process.pid, signal.SIGTERM)
            except ProcessLookupError:
                pass
        for process in self.started:
            try:
                process.wait(timeout=30)
            except subprocess.TimeoutExpired:
                kill(process)


@pytest.fixture(scope="session")
def broker_workers(redis_url: str, tmp_path_factory: pytest.TempPathFactory, request: pytest.FixtureRequest) -> Iterator[Workers]:
    folder = tmp_path_factory.mktemp("workers")
    given = os.environ.get("VAEQUIZ_TEST_WORKERS")
    if given:
        pids = [int(p) for p in os.environ.get("VAEQUIZ_TEST_WORKER_PIDS", "").split()]
        workers = Workers(redis_url, given, pids, folder)
    else:
        import psycopg

        from vaequiz.serve.server import database

        server = request.getfixturevalue("postgres_server")
        name = f"vaequiz_workers_{secrets.token_hex(4)}"
        with psycopg.connect(server.replace("postgresql+psycopg://", "postgresql://"), autocommit=True) as admin:
            admin.execute(f'CREATE DATABASE "{name}"')
        workers = Workers(redis_url, _with_database(server, name), [], folder)
        database(workers.url).dispose()  # migrated once, before two workers start
        workers.start()
        workers.start()
    try:
        yield workers
    finally:
        workers.stop()
        if not given:
            import psycopg

            with psycopg.connect(server.replace("postgresql+psycopg://", "postgresql://"), autocommit=True) as admin:
                admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
