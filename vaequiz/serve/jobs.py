"""Answer revisions and grading jobs, durable in the database.

Every saved answer is a new revision (all are kept). A grading is a job row written in the same
transaction as the revision it grades; a worker claims a job (queued -> running), grades it and
writes the result row and ``done`` in one transaction. Results are unique per revision, so a job
run twice (a server killed after grading, before committing) still leaves exactly one result.
On start, every job left ``running`` by a killed server is queued again.
"""

from __future__ import annotations

import json
import threading
from contextlib import ExitStack
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Collection, Optional

from sqlalchemy import Connection, Engine, and_, case, false, func, insert, select, true, update
from sqlalchemy.exc import IntegrityError, OperationalError

from vaequiz.bank.models import CodeQuestion
from vaequiz.grading.batch import grade_reading
from vaequiz.grading.fingerprint import GRADER_VERSION
from vaequiz.grading.grader import Grader, item_result, refused
from vaequiz.grading.models import ItemResult
from vaequiz.serve.course import Course
from vaequiz.serve.db import attempts, grader_key, jobs, now, results, revisions, users

MAX_TRIES = 3
"""A job whose grading failed this often gets a result saying so instead of another try."""

NULL = "null"

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


def requeue_interrupted(engine: Engine) -> int:
    """Queue again every job a stopped server left running; how many there were."""
    with engine.begin() as db:
        return db.execute(update(jobs).where(jobs.c.state == "running").values(state="queued", started_at=None)).rowcount


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
    """Grades queued jobs on ``threads`` threads with one Grader; the sandbox (for code) starts
    when the first code answer arrives. ``sandbox_factory`` opens a sandbox context."""

    def __init__(
        self,
        engine: Engine,
        course: Course,
        threads: int,
        sandbox_factory: Callable[[], Any],
    ) -> None:
        self.engine = engine
        self.course = course
        self.threads = max(0, threads)
        self.sandbox_factory = sandbox_factory
        self.wake = threading.Event()
        self.stopping = threading.Event()
        self._stack = ExitStack()
        self._sandbox_lock = threading.Lock()
        self.grader = Grader(None)
        self.code = code_questions(course)
        self._threads: list[threading.Thread] = []

    def start(self) -> None:
        requeue_interrupted(self.engine)
        if self.code and self.threads:  # warm before the first code answer, which would otherwise wait for it
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
        self._stack.close()

    def notify(self) -> None:
        self.wake.set()

    def _loop(self) -> None:
        while not self.stopping.is_set():
            batch = self.claim_batch(BATCH)
            if not batch:
                self.wake.wait(timeout=1.0)
                self.wake.clear()
                continue
            self.run_batch(batch)

    def claim(self) -> Optional[int]:
        """Take the next queued job (see :meth:`claim_batch`); None when there is none."""
        taken = self.claim_batch(1)
        return taken[0] if taken else None

    def claim_batch(self, limit: int) -> list[int]:
        """Take up to ``limit`` queued jobs in :func:`dispatch_order` (queued -> running): answers
        without code together, or up to :data:`CODE_BATCH` code answers; [] when there is none. Two servers on one
        PostgreSQL never take the same job (SKIP LOCKED, and the state check); a database busy
        with another writer is tried again on the next round."""
        try:
            with self.engine.begin() as db:
                rows = db.execute(
                    select(jobs.c.id, revisions.c.question).join(revisions, revisions.c.id == jobs.c.revision_id)
                    .where(jobs.c.state == "queued").order_by(*dispatch_order(self.code)).limit(limit)
                    .with_for_update(skip_locked=True, of=jobs)
                ).all()
                if not rows:
                    return []
                if rows[0].question in self.code:  # only code is left: a few at a time, the other threads take the rest
                    wanted = [r.id for r in rows[:CODE_BATCH]]
                else:
                    wanted = [r.id for r in rows if r.question not in self.code]
                taken = db.execute(
                    update(jobs).where(and_(jobs.c.id.in_(wanted), jobs.c.state == "queued"))
                    .values(state="running", started_at=now(), tries=jobs.c.tries + 1)
                    .returning(jobs.c.id)
                ).scalars().all()
                return sorted(taken)
        except OperationalError:
            return []

    def _warm_sandbox(self) -> None:
        try:
            self._ensure_sandbox()
        except Exception:  # noqa: BLE001 - the first code answer tries again and reports the failure
            pass

    def _ensure_sandbox(self) -> None:
        with self._sandbox_lock:
            if self.grader.sandbox is None:
                self.grader.sandbox = self._stack.enter_context(self.sandbox_factory())

    def run(self, job_id: int) -> None:
        self.run_batch([job_id])

    def run_batch(self, job_ids: list[int]) -> None:
        """Grade these claimed jobs; their results and ``done`` are written in one transaction."""
        with self.engine.connect() as db:
            rows = db.execute(
                select(jobs.c.id.label("job_id"), jobs.c.revision_id, jobs.c.tries, revisions.c.question, revisions.c.value,
                       attempts.c.id.label("attempt_id"), attempts.c.quiz, users.c.name)
                .join(revisions, revisions.c.id == jobs.c.revision_id)
                .join(attempts, attempts.c.id == jobs.c.attempt_id)
                .join(users, users.c.id == attempts.c.user_id)
                .where(jobs.c.id.in_(job_ids))
                .order_by(jobs.c.id)
            ).all()
        graded = [(row, item) for row in rows if (item := self.grade(row)) is not None]
        self.finish_all(graded)

    def grade(self, row: Any) -> Optional[ItemResult]:
        """The result of one claimed job, or None when it was queued again to retry."""
        served = self.course.get(row.quiz)
        question = served.questions.get(row.question) if served is not None else None
        if served is None or question is None:
            return ItemResult(
                student=row.name, question=row.question, kind="unknown", passed=False, score=0, points=0,
                max_points=0, error="this question is no longer served", quiz=row.quiz,
            )
        reading = served.reading(row.name, row.question, json.loads(row.value))
        try:
            if isinstance(question, CodeQuestion) and reading.problem is None and not reading.unanswered:
                self._ensure_sandbox()
            graded = grade_reading(self.grader, question, reading)
            if graded.retry and row.tries < MAX_TRIES:
                self.requeue(row.job_id)
                return None
        except Exception as err:  # a grader bug must not stop the queue
            if row.tries < MAX_TRIES:
                self.requeue(row.job_id)
                return None
            graded = refused(f"could not be graded ({type(err).__name__}); the instructor has been told")
        return item_result(row.name, question, reading.answer, graded, row.quiz).model_copy(
            update={
                "fingerprint": served.fingerprints[row.question],
                "grader_version": GRADER_VERSION,
                "params": reading.params,
            }
        )

    def requeue(self, job_id: int) -> None:
        with self.engine.begin() as db:
            db.execute(update(jobs).where(jobs.c.id == job_id).values(state="queued", started_at=None))
        self.stopping.wait(timeout=1.0)

    def finish_all(self, graded: list[tuple[Any, ItemResult]]) -> None:
        """Every result and ``done`` in one transaction; when one result is already there (a job
        graded twice after a restart), each is written on its own and the one there is kept."""
        if not graded:
            return
        moment = now()
        try:
            with self.engine.begin() as db:
                db.execute(insert(results), [
                    {"revision_id": row.revision_id, "attempt_id": row.attempt_id, "question": item.question,
                     "item": result_line(item), "graded_at": moment,
                     "grader": grader_key(item.fingerprint, item.grader_version)}
                    for row, item in graded
                ])
                db.execute(update(jobs).where(jobs.c.id.in_([row.job_id for row, _ in graded])).values(state="done", finished_at=moment))
        except IntegrityError:
            for row, item in graded:
                self.finish(row.job_id, row.revision_id, row.attempt_id, item)

    def finish(self, job_id: int, revision_id: int, attempt_id: int, item: ItemResult) -> None:
        """The result and ``done`` in one transaction; a result already there is kept."""
        try:
            with self.engine.begin() as db:
                db.execute(insert(results).values(
                    revision_id=revision_id, attempt_id=attempt_id, question=item.question, item=result_line(item),
                    graded_at=now(), grader=grader_key(item.fingerprint, item.grader_version),
                ))
                db.execute(update(jobs).where(jobs.c.id == job_id).values(state="done", finished_at=now()))
        except IntegrityError:
            with self.engine.begin() as db:
                db.execute(update(jobs).where(jobs.c.id == job_id).values(state="done", finished_at=now()))


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
