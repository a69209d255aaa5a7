"""Answer revisions and grading jobs, durable in the database.

Every saved answer is a new revision (all are kept). A grading is a job row written in the same
transaction as the revision it grades; a worker claims a job (queued -> running), grades it and
writes the result row and ``done`` in one transaction. Results are unique per revision, so a job
run twice (a server killed after grading, before committing) still leaves exactly one result.
A claim is a lease: the grader (a server thread or a `vaequiz worker` anywhere) renews it while
it grades; a job whose lease ran out (its grader was killed) is queued again by any server, and
only such jobs, so servers sharing one database never take each other's running jobs.
"""

from __future__ import annotations

import json
import logging
import os
import secrets
import socket
import threading
import time
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass
from datetime import timedelta
from pathlib import Path
from typing import Any, Callable, Collection, Iterator, Optional, Protocol

from sqlalchemy import Connection, Engine, and_, case, false, func, insert, or_, select, true, update
from sqlalchemy.exc import IntegrityError, SQLAlchemyError

from vaequiz.bank.models import AnyQuestion, CodeQuestion
from vaequiz.grading.answers import Reading
from vaequiz.grading.batch import grade_reading
from vaequiz.grading.fingerprint import GRADER_VERSION
from vaequiz.grading.grader import Grader, item_result, refused
from vaequiz.grading.models import ItemResult
from vaequiz.grading.portable import needs_sandbox, question_from_json, question_json, reading_from_json, reading_json
from vaequiz.serve.course import Course
from vaequiz.serve.db import attempts, grader_key, jobs, now, results, revisions, users

MAX_TRIES = 3
"""A job whose grading failed this often gets a result saying so instead of another try."""

NULL = "null"
log = logging.getLogger("vaequiz.serve")

BATCH = 32
"""Answers without code one grading thread takes at once: one transaction claims them, one writes
their results (per-answer transactions cost more than grading a multiple choice)."""
CODE_BATCH = 4
"""Code answers one grading thread takes at once (their runs take longer: fewer, so that every
thread gets some)."""


def dump(value: Any) -> str:
    return json.dumps(value, ensure_ascii=False, separators=(",", ":"), sort_keys=True)


def latest_revisions(db: Connection, attempt_id: int) -> dict[str, tuple[int, str]]:
    """question -> (revision id, value JSON) of the newest revision of each question."""
    newest = (
        select(revisions.c.question, func.max(revisions.c.id).label("id"))
        .where(revisions.c.attempt_id == attempt_id)
        .group_by(revisions.c.question)
        .subquery()
    )
    rows = db.execute(select(revisions.c.id, revisions.c.question, revisions.c.value).join(newest, newest.c.id == revisions.c.id))
    return {row.question: (row.id, row.value) for row in rows}


def save_answers(db: Connection, attempt_id: int, answers: dict[str, Any]) -> dict[str, int]:
    """A new revision for each answer that differs from its newest one; question -> revision id."""
    current = latest_revisions(db, attempt_id)
    saved: dict[str, int] = {}
    moment = now()
    for question, value in answers.items():
        text = dump(value)
        if question in current and current[question][1] == text:
            continue
        if question not in current and value is None:
            continue
        saved[question] = db.execute(
            insert(revisions).values(attempt_id=attempt_id, question=question, value=text, saved_at=moment)
        ).inserted_primary_key[0]
    return saved


def enqueue(db: Connection, attempt_id: int, questions: list[str]) -> dict[str, int]:
    """A job for the newest revision of each question (an unanswered one gets a ``null``
    revision, so it is graded as "no answer"); question -> job id. A revision already queued or
    graded is not queued twice."""
    current = latest_revisions(db, attempt_id)
    queued: dict[str, int] = {}
    moment = now()
    for question in questions:
        if question not in current:
            revision_id = db.execute(
                insert(revisions).values(attempt_id=attempt_id, question=question, value=NULL, saved_at=moment)
            ).inserted_primary_key[0]
        else:
            revision_id = current[question][0]
        existing = db.execute(select(jobs.c.id).where(jobs.c.revision_id == revision_id)).first()
        if existing is not None:
            queued[question] = existing.id
            continue
        queued[question] = db.execute(
            insert(jobs).values(revision_id=revision_id, attempt_id=attempt_id, state="queued", tries=0, enqueued_at=moment)
        ).inserted_primary_key[0]
    return queued


@dataclass(frozen=True)
class QuestionState:
    state: str  # "saved" (no grading asked), "queued", "running", "graded"
    position: Optional[int]
    result: Optional[ItemResult]


def code_questions(course: Course) -> frozenset[str]:
    """Ids of the served questions whose answers run in the sandbox."""
    return frozenset(q for served in course.quizzes.values() for q, question in served.questions.items()
                     if isinstance(question, CodeQuestion))


def dispatch_order(code: Collection[str]) -> tuple[Any, ...]:
    """Answers that need no sandbox first, then code, each oldest first: a light answer takes
    a millisecond, so it never waits behind a burst of code (or the sandbox's start)."""
    return (case((revisions.c.question.in_(sorted(code)), 1), else_=0), jobs.c.id) if code else (jobs.c.id,)


def attempt_states(
    db: Connection, attempt_id: int, code: Collection[str] = (), with_results: bool = True
) -> dict[str, QuestionState]:
    """Per question: the state of its newest grading job (position in the queue, in
    :func:`dispatch_order` for the ``code`` questions given, when queued) and, ``with_results``,
    the newest result (an exam's are not read before release: a status poll must stay cheap)."""
    job_rows = db.execute(
        select(jobs.c.id, jobs.c.state, revisions.c.question)
        .join(revisions, revisions.c.id == jobs.c.revision_id)
        .where(jobs.c.attempt_id == attempt_id)
        .order_by(jobs.c.id)
    ).all()
    newest_job = {row.question: row for row in job_rows}
    result_rows = db.execute(
        select(results.c.question, results.c.item).where(results.c.attempt_id == attempt_id)
        .order_by(results.c.revision_id, results.c.id)  # a regrade of an older answer never wins
    ).all() if with_results else []
    newest_result = {row.question: ItemResult.model_validate_json(row.item) for row in result_rows}
    positions = queue_positions(db, [job for job in newest_job.values() if job.state == "queued"], code)
    states: dict[str, QuestionState] = {}
    for question, job in newest_job.items():
        state = "graded" if job.state == "done" else job.state
        states[question] = QuestionState(state, positions.get(job.id), newest_result.get(question) if state == "graded" else None)
    return states


LEASE_S = 60.0
"""How long a claimed job stays with its grader without a renewal; graders renew every LEASE_S / 4.
Past it (the grader was killed or hangs), a server queues the job again."""


def owner_name() -> str:
    """Who holds a claim: host, process and a random part (a restarted process is someone new)."""
    return f"{socket.gethostname()[:120]}:{os.getpid()}:{secrets.token_hex(4)}"


def requeue_expired(engine: Engine) -> int:
    """Queue again every running job whose lease ran out (or that has none: a server from before
    leases); how many. Jobs another live server or worker is grading keep their claim."""
    with engine.begin() as db:
        return db.execute(
            update(jobs)
            .where(and_(jobs.c.state == "running", or_(jobs.c.lease_until.is_(None), jobs.c.lease_until < now())))
            .values(state="queued", started_at=None, claimed_by=None, lease_until=None, published_at=None)
        ).rowcount


def _claimed(lease_s: float, owner: str) -> dict[str, Any]:
    moment = now()
    return {"state": "running", "started_at": moment, "tries": jobs.c.tries + 1, "claimed_by": owner,
            "lease_until": moment + timedelta(seconds=lease_s)}


def claim_batch(engine: Engine, owner: str, lease_s: float, code: Collection[str] = (),
                limit: int = 1, light_only: bool = False) -> list[tuple[int, int]]:
    """Take up to ``limit`` queued jobs in :func:`dispatch_order`, leased to ``owner``: answers
    without code together, or up to :data:`CODE_BATCH` code answers once only code is left
    (never, with ``light_only``: the broker's workers take those); [(job id, tries)], [] when
    there is none. Two servers on one PostgreSQL never take the same job (SKIP LOCKED, and the
    state check)."""
    waiting = jobs.c.state == "queued"
    if light_only and code:
        waiting = and_(waiting, revisions.c.question.not_in(sorted(code)))
    with engine.begin() as db:
        rows = db.execute(
            select(jobs.c.id, revisions.c.question).join(revisions, revisions.c.id == jobs.c.revision_id)
            .where(waiting).order_by(*dispatch_order(code)).limit(limit)
            .with_for_update(skip_locked=True, of=jobs)
        ).all()
        if not rows:
            return []
        if rows[0].question in code:  # only code is left: a few at a time, the other threads take the rest
            wanted = [r.id for r in rows[:CODE_BATCH]]
        else:
            wanted = [r.id for r in rows if r.question not in code]
        taken = db.execute(
            update(jobs).where(and_(jobs.c.id.in_(wanted), jobs.c.state == "queued"))
            .values(**_claimed(lease_s, owner)).returning(jobs.c.id, jobs.c.tries)
        ).all()
        return sorted((row.id, row.tries) for row in taken)


def claim_next(engine: Engine, owner: str, lease_s: float) -> Optional[tuple[int, int]]:
    """Take the oldest queued job, leased to ``owner``: (job id, tries), or None."""
    taken = claim_batch(engine, owner, lease_s)
    return taken[0] if taken else None


def claim(engine: Engine, job_id: int, revision_id: int, owner: str, lease_s: float) -> Optional[int]:
    """Take this job if it is still queued for this revision; its tries, or None when it is done,
    held by another grader, or unknown (a message delivered twice is graded once)."""
    with engine.begin() as db:
        taken = db.execute(
            update(jobs)
            .where(and_(jobs.c.id == job_id, jobs.c.revision_id == revision_id, jobs.c.state == "queued"))
            .values(**_claimed(lease_s, owner))
        ).rowcount
        if taken != 1:
            return None
        return db.execute(select(jobs.c.tries).where(jobs.c.id == job_id)).scalar_one()


def job_known(engine: Engine, job_id: int, revision_id: int) -> bool:
    """Whether this database has this job (a worker given another --db never does)."""
    with engine.connect() as db:
        return db.execute(select(jobs.c.id).where(and_(jobs.c.id == job_id, jobs.c.revision_id == revision_id))).first() is not None


class LeaseKeeper:
    """Renews the leases of the jobs this process is grading right now, from one thread (one
    UPDATE a period), so a slow grading keeps its job while a killed grader's jobs expire, and
    so do the jobs of a grading that broke off (an error after the claim): only jobs inside
    :meth:`holding` are renewed."""

    def __init__(self, engine: Engine, owner: str, lease_s: float) -> None:
        self.engine = engine
        self.owner = owner
        self.lease_s = lease_s
        self._held: set[int] = set()
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._thread: Optional[threading.Thread] = None

    @contextmanager
    def holding(self, *job_ids: int) -> Iterator[None]:
        with self._lock:
            self._held.update(job_ids)
        try:
            yield
        finally:
            with self._lock:
                self._held.difference_update(job_ids)

    def renew(self) -> int:
        with self._lock:
            held = sorted(self._held)
        if not held:
            return 0
        with self.engine.begin() as db:
            return db.execute(
                update(jobs).where(and_(jobs.c.id.in_(held), jobs.c.claimed_by == self.owner, jobs.c.state == "running"))
                .values(lease_until=now() + timedelta(seconds=self.lease_s))
            ).rowcount

    def _loop(self) -> None:
        while not self._stop.wait(self.lease_s / 4):
            try:
                self.renew()
            except SQLAlchemyError as err:  # the database is back soon; the lease has slack
                log.warning("could not renew job leases: %s", err)

    def start(self) -> None:
        self._thread = threading.Thread(target=self._loop, name="vaequiz-leases", daemon=True)
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=30)


@dataclass(frozen=True)
class JobTask:
    """Everything grading one job needs, worked out by a server that serves its quiz: the
    question (with the quiz's points) and the answer as read for this student's variant. A
    worker on another machine needs neither the bank nor the quiz files. ``question`` is None
    when the quiz or question is no longer served."""

    job_id: int
    revision_id: int
    attempt_id: int
    student: str
    quiz: str
    question_id: str
    question: Optional[AnyQuestion]
    reading: Optional[Reading]
    fingerprint: Optional[str]

    def to_json(self) -> dict[str, Any]:
        return {
            "job": self.job_id, "revision": self.revision_id, "attempt": self.attempt_id, "student": self.student,
            "quiz": self.quiz, "question_id": self.question_id,
            "question": None if self.question is None else question_json(self.question),
            "reading": None if self.reading is None else reading_json(self.reading),
            "fingerprint": self.fingerprint,
        }

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> "JobTask":
        return cls(
            job_id=int(data["job"]), revision_id=int(data["revision"]), attempt_id=int(data["attempt"]),
            student=str(data["student"]), quiz=str(data["quiz"]), question_id=str(data["question_id"]),
            question=None if data["question"] is None else question_from_json(data["question"]),
            reading=None if data["reading"] is None else reading_from_json(data["reading"]),
            fingerprint=data["fingerprint"],
        )

    @property
    def needs_sandbox(self) -> bool:
        return self.question is not None and self.reading is not None and needs_sandbox(self.question, self.reading)


def prepare(db: Connection, course: Course, job_id: int) -> Optional[JobTask]:
    """The job's task, read from its rows and the course; None when there is no such job."""
    found = prepare_all(db, course, [job_id])
    return found[0] if found else None


def prepare_all(db: Connection, course: Course, job_ids: list[int]) -> list[JobTask]:
    """The tasks of these jobs (in job order; unknown ids left out), from one query."""
    rows = db.execute(
        select(jobs.c.id, jobs.c.revision_id, revisions.c.question, revisions.c.value,
               attempts.c.id.label("attempt_id"), attempts.c.quiz, users.c.name)
        .join(revisions, revisions.c.id == jobs.c.revision_id)
        .join(attempts, attempts.c.id == jobs.c.attempt_id)
        .join(users, users.c.id == attempts.c.user_id)
        .where(jobs.c.id.in_(job_ids)).order_by(jobs.c.id)
    ).all()
    tasks = []
    for row in rows:
        served = course.get(row.quiz)
        question = served.questions.get(row.question) if served is not None else None
        if served is None or question is None:
            tasks.append(JobTask(row.id, row.revision_id, row.attempt_id, row.name, row.quiz, row.question,
                                 None, None, None))
            continue
        reading = served.reading(row.name, row.question, json.loads(row.value))
        tasks.append(JobTask(row.id, row.revision_id, row.attempt_id, row.name, row.quiz, row.question, question,
                             reading, served.fingerprints[row.question]))
    return tasks


class Graders:
    """One Grader shared by a process's grading threads. Its sandbox (for code) opens when the
    first code answer needs it, or at once with ``open_now`` (a worker keeps a warm pool)."""

    def __init__(self, sandbox_factory: Callable[[], Any], device: str = "cpu") -> None:
        self.sandbox_factory = sandbox_factory
        self.device = device
        self._stack = ExitStack()
        self._lock = threading.Lock()
        self._grader = Grader(None, device)

    def get(self, sandbox: bool) -> Grader:
        if sandbox and self._grader.sandbox is None:
            with self._lock:
                if self._grader.sandbox is None:
                    opened = self._stack.enter_context(self.sandbox_factory())
                    self._grader = Grader(opened, self.device)  # known mistakes need the sandbox too
        return self._grader

    def close(self) -> None:
        self._stack.close()


def grade_task(graders: Graders, task: JobTask, last_try: bool) -> Optional[ItemResult]:
    """The one "grade this job" function, for the server's own threads and `vaequiz worker`
    alike: the job's result, or None when the grader itself failed and another try is left."""
    if task.question is None or task.reading is None:
        return ItemResult(
            student=task.student, question=task.question_id, kind="unknown", passed=False, score=0, points=0,
            max_points=0, error="this question is no longer served", quiz=task.quiz,
        )
    try:
        graded = grade_reading(graders.get(task.needs_sandbox), task.question, task.reading)
        if graded.retry and not last_try:
            return None
    except Exception as err:  # a grader bug must not stop the queue
        log.exception("grading job %s failed", task.job_id)
        if not last_try:
            return None
        graded = refused(f"could not be graded ({type(err).__name__}); the instructor has been told")
    return item_result(task.student, task.question, task.reading.answer, graded, task.quiz).model_copy(
        update={"fingerprint": task.fingerprint, "grader_version": GRADER_VERSION, "params": task.reading.params}
    )


def run_job(engine: Engine, graders: Graders, task: JobTask, tries: int) -> bool:
    """Grade a claimed job and write its result, or queue it again when the grader failed and
    tries are left; True when it is done."""
    item = grade_task(graders, task, last_try=tries >= MAX_TRIES)
    if item is None:
        release(engine, task.job_id)
        return False
    finish(engine, task.job_id, task.revision_id, task.attempt_id, item)
    return True


def release(engine: Engine, job_id: int) -> None:
    """A claimed job back to the queue (and to be published again)."""
    with engine.begin() as db:
        db.execute(update(jobs).where(jobs.c.id == job_id).values(
            state="queued", started_at=None, claimed_by=None, lease_until=None, published_at=None
        ))


def finish(engine: Engine, job_id: int, revision_id: int, attempt_id: int, item: ItemResult) -> None:
    """The result and ``done`` in one transaction; a result already there is kept. The job keeps
    ``claimed_by``: which server or worker graded it."""
    try:
        with engine.begin() as db:
            db.execute(insert(results).values(_result_row(revision_id, attempt_id, item, now())))
            db.execute(update(jobs).where(jobs.c.id == job_id).values(**_done()))
    except IntegrityError:
        with engine.begin() as db:
            db.execute(update(jobs).where(jobs.c.id == job_id).values(**_done()))


def finish_all(engine: Engine, graded: list[tuple[JobTask, ItemResult]]) -> None:
    """Every result and ``done`` in one transaction (per-answer transactions cost more than
    grading a multiple choice); when one result is already there (a job graded twice after a
    restart), each is written on its own and the one there is kept."""
    if not graded:
        return
    moment = now()
    try:
        with engine.begin() as db:
            db.execute(insert(results), [_result_row(task.revision_id, task.attempt_id, item, moment)
                                         for task, item in graded])
            db.execute(update(jobs).where(jobs.c.id.in_([task.job_id for task, _ in graded])).values(**_done()))
    except IntegrityError:
        for task, item in graded:
            finish(engine, task.job_id, task.revision_id, task.attempt_id, item)


def _result_row(revision_id: int, attempt_id: int, item: ItemResult, moment: Any) -> dict[str, Any]:
    return {"revision_id": revision_id, "attempt_id": attempt_id, "question": item.question,
            "item": result_line(item), "graded_at": moment,
            "grader": grader_key(item.fingerprint, item.grader_version)}


def _done() -> dict[str, Any]:
    return {"state": "done", "finished_at": now(), "lease_until": None}  # claimed_by stays: who graded it


class Dispatch(Protocol):
    """What the app needs of grading: started and stopped with it, told after every commit that
    queued jobs. The server's own threads (:class:`Worker`) or the Celery publisher."""

    code: frozenset[str]
    """The served questions whose answers run in the sandbox (the queue's order puts them last)."""
    sandbox_factory: Callable[[], Any]
    """Opens a sandbox in this server, for the instructor's regrade dry run."""

    def start(self) -> None: ...

    def stop(self) -> None: ...

    def notify(self) -> None: ...


def queue_positions(db: Connection, queued: list[Any], code: Collection[str]) -> dict[int, int]:
    """Job id -> place in the queue for one attempt's queued jobs, from one query over the queue
    (a status poll must stay cheap while thousands of jobs wait)."""
    if not queued:
        return {}
    first = min(job.id for job in queued)
    is_code = revisions.c.question.in_(sorted(code)) if code else false()
    light = ~is_code if code else true()
    counts = db.execute(
        select(
            func.count().filter(and_(light, jobs.c.id < first)).label("light_before"),
            func.count().filter(and_(is_code, jobs.c.id < first)).label("code_before"),
            func.count().filter(light).label("light_all"),
        ).select_from(jobs.join(revisions, revisions.c.id == jobs.c.revision_id)).where(jobs.c.state == "queued")
    ).one()
    positions: dict[int, int] = {}
    light_rank = code_rank = 0
    for job in sorted(queued, key=lambda job: job.id):
        if job.question in code:
            code_rank += 1
            positions[job.id] = counts.light_all + counts.code_before + code_rank
        else:
            light_rank += 1
            positions[job.id] = counts.light_before + light_rank
    return positions


class Worker:
    """Grades queued jobs on ``threads`` threads of this server with one Grader; the sandbox (for
    code) starts with the server when a served quiz has code. ``sandbox_factory`` opens a
    sandbox context."""

    def __init__(
        self,
        engine: Engine,
        course: Course,
        threads: int,
        sandbox_factory: Callable[[], Any],
        lease_s: float = LEASE_S,
        device: str = "cpu",
        light_only: bool = False,
    ) -> None:
        self.light_only = light_only
        """Grade only answers without code (beside a broker, whose workers take the code)."""
        self.engine = engine
        self.course = course
        self.threads = max(0, threads)
        self.lease_s = lease_s
        self.owner = owner_name()
        self.sandbox_factory = sandbox_factory
        self.graders = Graders(sandbox_factory, device)
        self.leases = LeaseKeeper(engine, self.owner, lease_s)
        self.wake = threading.Event()
        self.stopping = threading.Event()
        self.code = code_questions(course)
        self._threads: list[threading.Thread] = []
        self._swept = 0.0
        self._sweep_lock = threading.Lock()

    def start(self) -> None:
        requeue_expired(self.engine)
        self._swept = time.monotonic()
        if self.threads:
            self.leases.start()
        if self.code and self.threads and not self.light_only:  # warm before the first code answer, which would otherwise wait for it
            warming = threading.Thread(target=self._warm_sandbox, name="vaequiz-sandbox-start", daemon=True)
            warming.start()
            self._threads.append(warming)
        for number in range(self.threads):
            thread = threading.Thread(target=self._loop, name=f"vaequiz-grader-{number}", daemon=True)
            thread.start()
            self._threads.append(thread)

    def stop(self) -> None:
        self.stopping.set()
        self.wake.set()
        for thread in self._threads:
            thread.join(timeout=60)
        self.leases.stop()
        self.graders.close()

    def notify(self) -> None:
        self.wake.set()

    def _sweep(self) -> None:
        """Now and then, queue again the jobs of graders that stopped renewing their lease."""
        with self._sweep_lock:
            if time.monotonic() - self._swept < self.lease_s / 2:
                return
            self._swept = time.monotonic()
        requeue_expired(self.engine)

    def _loop(self) -> None:
        while not self.stopping.is_set():
            try:
                self._sweep()
                claimed = self.claim_batch(BATCH)
            except SQLAlchemyError as err:  # the database is back soon
                log.warning("could not take a job: %s", err)
                claimed = []
            if not claimed:
                self.wake.wait(timeout=1.0)
                self.wake.clear()
                continue
            try:
                self.run_batch(claimed)
            except SQLAlchemyError as err:  # the jobs' leases run out and a server queues them again
                log.warning("grading jobs %s broke off: %s", [job for job, _ in claimed], err)
                self.stopping.wait(timeout=1.0)

    def claim(self) -> Optional[tuple[int, int]]:
        """The next queued job in dispatch order, now leased to this server: (job id, tries), or None."""
        taken = self.claim_batch(1)
        return taken[0] if taken else None

    def claim_batch(self, limit: int) -> list[tuple[int, int]]:
        """Up to ``limit`` queued jobs leased to this server (see :func:`claim_batch`)."""
        return claim_batch(self.engine, self.owner, self.lease_s, self.code, limit, self.light_only)

    @property
    def grader(self) -> Grader:
        """The grader the threads share (its sandbox opens with the server when code is served)."""
        return self.graders.get(False)

    def _warm_sandbox(self) -> None:
        try:
            self.graders.get(True)
        except Exception:  # noqa: BLE001 - the first code answer tries again and reports the failure
            log.exception("the sandbox could not start; the first code answer tries again")

    def run(self, claimed: tuple[int, int]) -> None:
        self.run_batch([claimed])

    def run_batch(self, claimed: list[tuple[int, int]]) -> None:
        """Grade these claimed jobs; their results and ``done`` are written in one transaction,
        a job whose grader failed with tries left goes back to the queue."""
        ids = [job_id for job_id, _ in claimed]
        tries = dict(claimed)
        with self.leases.holding(*ids):
            with self.engine.connect() as db:
                tasks = prepare_all(db, self.course, ids)
            graded: list[tuple[JobTask, ItemResult]] = []
            retried = False
            for task in tasks:
                item = grade_task(self.graders, task, last_try=tries[task.job_id] >= MAX_TRIES)
                if item is None:
                    release(self.engine, task.job_id)
                    retried = True
                else:
                    graded.append((task, item))
            finish_all(self.engine, graded)
        if retried:
            self.stopping.wait(timeout=1.0)


def result_line(item: ItemResult) -> str:
    return json.dumps(item.model_dump(mode="json"), ensure_ascii=True)


def hidden_paths(course: Course) -> list[Path]:
    """What a snippet must not read: the bank and the reference implementation."""
    paths = [course.bank_root.resolve()]
    try:
        from vaequiz.paths import reference_impl_dir

        paths.append(reference_impl_dir())
    except ImportError:
        pass
    return paths
