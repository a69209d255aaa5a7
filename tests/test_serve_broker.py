"""Grading through Celery over a real redis-server: `vaequiz serve --broker` publishes its job
rows, two `vaequiz worker` processes grade them. A burst is graded exactly once; a worker
killed (SIGKILL) mid-job loses nothing; a server killed mid-burst, or between committing a job
and publishing it, loses nothing; `grade-sheets --broker` gives the results of local grading."""

from __future__ import annotations

import json
import time
from datetime import timedelta
from pathlib import Path
from typing import Any, Iterator

import pytest
from sqlalchemy import func, insert, select, update

from tests.conftest import run_vaequiz
from tests.serve_support import (  # noqa: F401  (fixtures)
    EXAM_IDS,
    Workers,
    _free_port,
    broker_workers,
    kill,
    postgres_server,
    redis_url,
    sign_in_links,
    start_server,
    write_quizzes,
)
from tests.test_serve_restart import RIGHT, WRONG, submit
from vaequiz.serve import jobs as job_rows
from vaequiz.serve.db import attempts, jobs, now, open_engine, results, revisions, users

pytestmark = pytest.mark.slow

SLOW_RIGHT = "import time\ntime.sleep(1)\n" + RIGHT  # about 4 s of grading: several runs
CODE = "reparameterization-trick"


@pytest.fixture
def workers(broker_workers: Workers) -> Iterator[Workers]:  # noqa: F811
    broker_workers.fresh_database()
    yield broker_workers


def broker_server(exam: Path, workers: Workers, port: int, log: Path) -> Any:
    return start_server(["--quiz", str(exam)], workers.url, port, log, ("--broker", workers.broker, "--lease", "5"))


def wait_all_done(engine: Any, expected: int, workers: Workers, log: Path, timeout: float = 600) -> None:
    """Until ``expected`` jobs exist and none is left undone (a hang guard, not a timing)."""
    deadline = time.monotonic() + timeout
    with engine.connect() as db:
        while True:
            total = db.execute(select(func.count()).select_from(jobs)).scalar_one()
            left = db.execute(select(func.count()).select_from(jobs).where(jobs.c.state != "done")).scalar_one()
            if total == expected and left == 0:
                return
            assert time.monotonic() < deadline, (total, left, log.read_text(), workers.logs())
            time.sleep(0.2)
            db.rollback()


def assert_graded_exactly_once(engine: Any, expected: int, workers: Workers) -> dict[str, dict[str, Any]]:
    """One result per job's revision, every code job done by a worker and every other job by
    the server (answers without code never go through the broker); student -> code result."""
    with engine.connect() as db:
        per_revision = db.execute(select(results.c.revision_id, func.count()).group_by(results.c.revision_id)).all()
        assert len(per_revision) == expected and all(count == 1 for _, count in per_revision)
        job_list = db.execute(select(jobs, revisions.c.question).join(revisions, revisions.c.id == jobs.c.revision_id)).all()
        assert {j.revision_id for j in job_list} == {revision for revision, _ in per_revision}
        assert all(j.state == "done" and j.lease_until is None for j in job_list)
        code_graders = {int(j.claimed_by.split(":")[1]) for j in job_list if j.question == CODE}
        assert code_graders and code_graders <= set(workers.pids) | workers.gone
        light = {int(j.claimed_by.split(":")[1]) for j in job_list if j.question != CODE}
        assert light and not light & (set(workers.pids) | workers.gone), "answers without code are the server's"
        items = [json.loads(row.item) for row in db.execute(
            select(results.c.item).join(revisions, revisions.c.id == results.c.revision_id).where(revisions.c.question == CODE)
        )]
    return {item["student"]: item for item in items}


def submit_burst(port: int, links: dict[str, str], students: list[str], engine: Any, workers: Workers,
                 log: Path) -> dict[str, dict[str, Any]]:
    """Every student submits the exam (even ones right, odd ones wrong); waits until all is graded,
    checks each answer was graded exactly once and the code points; the code results."""
    for n, student in enumerate(students):
        submit(f"http://127.0.0.1:{port}", links[student], RIGHT if n % 2 == 0 else WRONG)
    wait_all_done(engine, len(students) * len(EXAM_IDS), workers, log)
    code = assert_graded_exactly_once(engine, len(students) * len(EXAM_IDS), workers)
    assert {s for s, item in code.items() if item["points"] == 4.0} == set(students[::2])
    return code


def test_a_burst_through_the_broker_is_graded_exactly_once_by_the_workers(tmp_path: Path, workers: Workers) -> None:
    students = [f"s{n:02d}" for n in range(12)]
    exam, _ = write_quizzes(tmp_path)
    links = sign_in_links(tmp_path, exam, workers.url, students)
    engine = open_engine(workers.url)
    port, log = _free_port(), tmp_path / "server.log"
    server = broker_server(exam, workers, port, log)
    try:
        code = submit_burst(port, links, students, engine, workers, log)
        assert all(code[s]["points"] < 4.0 for s in students[1::2])
    finally:
        kill(server)
        engine.dispose()


def test_a_worker_killed_mid_job_loses_nothing_and_the_job_is_graded_once(tmp_path: Path, workers: Workers) -> None:
    exam, _ = write_quizzes(tmp_path)
    links = sign_in_links(tmp_path, exam, workers.url, ["ada", "ben"])
    engine = open_engine(workers.url)
    port, log = _free_port(), tmp_path / "server.log"
    server = broker_server(exam, workers, port, log)
    try:
        submit(f"http://127.0.0.1:{port}", links["ada"], SLOW_RIGHT)
        code_job = (
            select(jobs.c.state, jobs.c.claimed_by).join(revisions, revisions.c.id == jobs.c.revision_id)
            .where(revisions.c.question == CODE)
        )
        deadline = time.monotonic() + 300
        with engine.connect() as db:
            while (row := db.execute(code_job).one()).state != "running":
                assert time.monotonic() < deadline, (log.read_text(), workers.logs())
                time.sleep(0.05)
                db.rollback()
        holder = int(row.claimed_by.split(":")[1])
        assert holder in workers.pids
        workers.replace(holder)  # SIGKILL mid-job (the snippet sleeps 1 s a run); a new worker joins
        with engine.connect() as db:
            assert db.execute(select(func.count()).select_from(results).join(revisions, revisions.c.id == results.c.revision_id)
                              .where(revisions.c.question == CODE)).scalar_one() == 0
        submit(f"http://127.0.0.1:{port}", links["ben"], WRONG)  # the queue goes on meanwhile
        wait_all_done(engine, 2 * len(EXAM_IDS), workers, log)
        code = assert_graded_exactly_once(engine, 2 * len(EXAM_IDS), workers)
        assert code["ada"]["points"] == 4.0 and code["ben"]["points"] < 4.0
        with engine.connect() as db:
            tries = db.execute(code_job.with_only_columns(jobs.c.tries).where(jobs.c.attempt_id == select(
                attempts.c.id).join(users, users.c.id == attempts.c.user_id).where(users.c.name == "ada").scalar_subquery())).scalar_one()
        assert tries == 2  # claimed by the killed worker, then once more
    finally:
        kill(server)
        engine.dispose()


def test_a_server_killed_mid_burst_or_before_publishing_loses_nothing(tmp_path: Path, workers: Workers) -> None:
    students = [f"s{n:02d}" for n in range(10)]
    exam, _ = write_quizzes(tmp_path)
    links = sign_in_links(tmp_path, exam, workers.url, [*students, "late"])
    engine = open_engine(workers.url)
    port, log = _free_port(), tmp_path / "server.log"
    server = broker_server(exam, workers, port, log)
    try:
        for n, student in enumerate(students):
            submit(f"http://127.0.0.1:{port}", links[student], RIGHT if n % 2 == 0 else WRONG)
        kill(server)
        with engine.connect() as db:
            graded_at_kill = db.execute(select(func.count()).select_from(results)).scalar_one()
        assert graded_at_kill < len(students) * len(EXAM_IDS), "the burst was graded before the kill; make it larger"

        # A submit committed by a server killed before it published: the rows are all there is.
        with engine.begin() as db:
            late = db.execute(select(users.c.id).where(users.c.name == "late")).scalar_one()
            attempt = db.execute(insert(attempts).values(user_id=late, quiz="serve-exam", mode="exam", started_at=now(),
                                                         submitted_at=now())).inserted_primary_key[0]
            job_rows.save_answers(db, attempt, {CODE: RIGHT})
            job_rows.enqueue(db, attempt, EXAM_IDS)
        total = (len(students) + 1) * len(EXAM_IDS)

        server = broker_server(exam, workers, port, log)
        wait_all_done(engine, total, workers, log)
        code = assert_graded_exactly_once(engine, total, workers)
        assert code["late"]["points"] == 4.0
        assert {s for s, item in code.items() if item["points"] == 4.0} == {*students[::2], "late"}
    finally:
        kill(server)
        engine.dispose()


def test_grade_sheets_through_the_workers_writes_what_local_grading_writes(tmp_path: Path, workers: Workers) -> None:
    from tests.sheet_support import write_bank, write_sheet
    from tests.test_grading_sheets import BANK, RIGHT_KL, WRONG_KL

    bank = write_bank(tmp_path, BANK)
    sheets = [
        write_sheet(tmp_path / "sheets", "ada.json", {"student": "ada", "answers": {
            "pick": "B", "why": "It is not differentiable, so noise goes in epsilon.", "z-shape": "64x20", "kl": RIGHT_KL}}),
        write_sheet(tmp_path / "sheets", "bob.json", {"student": "bob", "answers": {
            "pick": "C", "z-shape": "(20, 64)", "kl": WRONG_KL}}),  # a known mistake: diagnosed on the worker too
        write_sheet(tmp_path / "sheets", "cy.json", {"student": "cy", "answers": {"kl": "kl = undefined_name"}}),
    ]
    local = run_vaequiz("grade-sheets", *sheets, "--out", tmp_path / "local", "--workers", "2", "--bank", bank)
    assert local.returncode == 0, local.stderr
    remote = run_vaequiz("grade-sheets", *sheets, "--out", tmp_path / "remote", "--bank", bank, "--broker", workers.broker)
    assert remote.returncode == 0, remote.stderr + workers.logs()

    def written(folder: Path) -> dict[str, str]:
        files = {p.relative_to(folder).as_posix(): p.read_text(encoding="utf-8") for p in folder.rglob("*") if p.is_file()}
        files["results.jsonl"] = "\n".join(sorted(files["results.jsonl"].splitlines()))
        return files

    assert written(tmp_path / "remote") == written(tmp_path / "local")
    assert "kl" in written(tmp_path / "local")["grades.csv"]


def test_broker_commands_explain_what_is_missing(tmp_path: Path, redis_url: str) -> None:  # noqa: F811
    from tests.sheet_support import write_bank, write_sheet
    from tests.test_grading_sheets import BANK, RIGHT_KL

    not_redis = run_vaequiz("worker", "--broker", "amqp://localhost//", "--db", f"sqlite:///{tmp_path / 'w.db'}")
    assert not_redis.returncode == 2 and "is not a Redis URL" in not_redis.stderr and "Traceback" not in not_redis.stderr
    down = run_vaequiz("worker", "--broker", f"redis://127.0.0.1:{_free_port()}/0", "--db", f"sqlite:///{tmp_path / 'w.db'}")
    assert down.returncode == 2 and "cannot reach the broker" in down.stderr and "Traceback" not in down.stderr
    exam, _ = write_quizzes(tmp_path)
    serve_down = run_vaequiz("serve", "--quiz", exam, "--db", f"sqlite:///{tmp_path / 's.db'}", "--port", str(_free_port()),
                             "--broker", f"redis://127.0.0.1:{_free_port()}/0")
    assert serve_down.returncode == 2 and "cannot reach the broker" in serve_down.stderr and "Traceback" not in serve_down.stderr
    import torch

    if not torch.cuda.is_available():
        cuda = run_vaequiz("worker", "--broker", redis_url, "--device", "cuda", "--db", f"sqlite:///{tmp_path / 'w.db'}")
        assert cuda.returncode == 2 and "no CUDA device" in cuda.stderr and "Traceback" not in cuda.stderr
    bank = write_bank(tmp_path, BANK)
    sheet = write_sheet(tmp_path / "sheets", "ada.json", {"student": "ada", "answers": {"kl": RIGHT_KL}})
    # no worker takes the GPU queue (the test workers are CPU workers, on database 0 or elsewhere)
    no_gpu = run_vaequiz("grade-sheets", sheet, "--out", tmp_path / "out", "--bank", bank, "--broker", redis_url, "--device", "cuda")
    assert no_gpu.returncode == 2 and "no vaequiz worker takes the queue(s)" in no_gpu.stderr
    assert "vaequiz-cuda" in no_gpu.stderr and "vaequiz worker --broker URL --device cuda" in no_gpu.stderr
    assert not (tmp_path / "out").exists()


def test_with_device_cuda_code_jobs_go_to_the_gpu_queue_and_a_lost_message_is_published_again(tmp_path: Path, workers: Workers) -> None:
    import redis

    from vaequiz.grading.remote import GPU_QUEUE

    queue = redis.Redis.from_url(workers.broker)
    queue.delete(GPU_QUEUE)
    exam, _ = write_quizzes(tmp_path)
    links = sign_in_links(tmp_path, exam, workers.url, ["ada"])
    engine = open_engine(workers.url)
    port, log = _free_port(), tmp_path / "server.log"
    server = start_server(["--quiz", str(exam)], workers.url, port, log,
                          ("--broker", workers.broker, "--device", "cuda", "--lease", "5"))
    try:
        submit(f"http://127.0.0.1:{port}", links["ada"], RIGHT)
        by_question = (select(revisions.c.question, jobs.c.state, jobs.c.published_at)
                       .join(revisions, revisions.c.id == jobs.c.revision_id))
        deadline = time.monotonic() + 300
        with engine.connect() as db:
            while True:
                rows = {row.question: row for row in db.execute(by_question)}
                if len(rows) == len(EXAM_IDS) and all(r.state == "done" for q, r in rows.items() if q != CODE) \
                        and rows[CODE].published_at is not None:
                    break
                assert time.monotonic() < deadline, (log.read_text(), workers.logs())
                time.sleep(0.2)
                db.rollback()
        assert rows[CODE].state == "queued"  # no GPU worker runs here: it waits for one, in its own queue
        assert queue.llen(GPU_QUEUE) == 1

        # The message is lost (a Redis restarted without persistence) and an hour passes: the
        # server's sweep publishes the job again.
        queue.delete(GPU_QUEUE)
        with engine.begin() as db:
            db.execute(update(jobs).where(jobs.c.state == "queued").values(published_at=now() - timedelta(hours=1)))
        deadline = time.monotonic() + 120
        while queue.llen(GPU_QUEUE) != 1:
            assert time.monotonic() < deadline, log.read_text()
            time.sleep(0.2)
    finally:
        kill(server)
        queue.delete(GPU_QUEUE)
        engine.dispose()


def test_a_sqlite_file_shared_by_a_server_and_two_workers_on_one_machine(tmp_path: Path, redis_url: str) -> None:  # noqa: F811
    """SQLite works with the broker when everything runs on one machine (WAL, one writer at a
    time). Its own workers and its own Redis database, so the shared workers never see its jobs."""
    broker = redis_url.rsplit("/", 1)[0] + "/1"
    url = f"sqlite:///{tmp_path / 'serve.db'}"
    own = Workers(broker, url, [], tmp_path)
    students = [f"s{n:02d}" for n in range(6)]
    exam, _ = write_quizzes(tmp_path)
    links = sign_in_links(tmp_path, exam, url, students)  # migrates the file before the workers start
    own.start()
    own.start()
    engine = open_engine(url)
    port, log = _free_port(), tmp_path / "server.log"
    server = broker_server(exam, own, port, log)
    try:
        submit_burst(port, links, students, engine, own, log)
    finally:
        kill(server)
        own.stop()
        engine.dispose()
