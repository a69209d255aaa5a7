"""`vaequiz serve --broker`: grading jobs go through Celery to `vaequiz worker` processes.

The server still writes every job row in the transaction of its answer; a publisher thread then
sends each queued, unpublished job to the broker and marks it published. Killed between the
commit and the publish, a server publishes the job on its next start (or another server does
on its next sweep). A worker claims the row (in a transaction, leased) before grading, so a
message delivered twice, or a job re-published after its worker died, is graded once; the
result is unique per answer revision.
"""

from __future__ import annotations

import logging
import os
import threading
import time
from contextlib import contextmanager
from datetime import timedelta
from pathlib import Path
from typing import Any, Callable, Iterator, Optional, Sequence

from sqlalchemy import Engine, and_, bindparam, select, update
from sqlalchemy.exc import OperationalError, SQLAlchemyError

from vaequiz.grading.remote import CPU_QUEUE, GPU_QUEUE, GRADE_JOB, celery_app, check_reachable, queue_for, register_answer_task
from vaequiz.serve.course import Course
from vaequiz.serve.db import jobs, now, revisions
from vaequiz.serve.jobs import (
    LEASE_S,
    Graders,
    JobTask,
    LeaseKeeper,
    Worker,
    claim,
    code_questions,
    job_known,
    owner_name,
    prepare_all,
    requeue_expired,
    run_job,
)

log = logging.getLogger("vaequiz.serve")
PUBLISH_BATCH = 200
REPUBLISH_AFTER = timedelta(minutes=15)
"""A job still queued this long after its publish is published again: its message may be gone
(a Redis restarted without persistence, a worker that could not read it). A duplicate costs one
failed claim."""


class Publisher:
    """The server's side of the broker (a :class:`~vaequiz.serve.jobs.Dispatch`): publishes
    queued code jobs after every commit that made some, and sweeps now and then for jobs never
    published and for jobs whose worker's lease ran out. Answers without code need no sandbox
    (a millisecond each): ``light`` threads of this server grade them, so they never wait in
    the broker's queue behind code, nor cost a round trip through it."""

    def __init__(self, engine: Engine, course: Course, broker_url: str, sandbox_factory: Callable[[], Any],
                 device: str = "cpu", lease_s: float = LEASE_S, light_threads: int = 1) -> None:
        self.engine = engine
        self.course = course
        self.code = code_questions(course)
        self.sandbox_factory = sandbox_factory
        self.light = Worker(engine, course, light_threads, sandbox_factory, lease_s, device, light_only=True)
        self.app = celery_app(broker_url)
        self.device = device
        self.lease_s = lease_s
        self.wake = threading.Event()
        self.stopping = threading.Event()
        self._thread: Optional[threading.Thread] = None
        self._swept = 0.0

    def start(self) -> None:
        check_reachable(self.app, set(), need_workers=False)
        requeue_expired(self.engine)
        self._swept = time.monotonic()
        self._thread = threading.Thread(target=self._loop, name="vaequiz-publisher", daemon=True)
        self._thread.start()
        self.wake.set()
        self.light.start()

    def stop(self) -> None:
        self.stopping.set()
        self.wake.set()
        if self._thread is not None:
            self._thread.join(timeout=30)
        self.light.stop()

    def notify(self) -> None:
        self.wake.set()
        self.light.notify()

    def _loop(self) -> None:
        while not self.stopping.is_set():
            self.wake.wait(timeout=max(0.5, self.lease_s / 4))
            self.wake.clear()
            try:
                if time.monotonic() - self._swept >= self.lease_s / 2:
                    self._swept = time.monotonic()
                    requeue_expired(self.engine)
                    self.forget_stale_publishes()
                while self.publish_pending() == PUBLISH_BATCH and not self.stopping.is_set():
                    pass
            except Exception as err:  # the broker or the database is back soon; the rows wait
                log.warning("could not publish grading jobs: %s", err)
                self.stopping.wait(timeout=1.0)

    def forget_stale_publishes(self) -> int:
        """Mark long-queued published jobs unpublished, so they are published again; how many."""
        with self.engine.begin() as db:
            return db.execute(
                update(jobs).where(and_(jobs.c.state == "queued", jobs.c.published_at < now() - REPUBLISH_AFTER))
                .values(published_at=None)
            ).rowcount

    def publish_pending(self) -> int:
        """Publish the oldest queued jobs not yet published; how many. One query reads the
        batch's tasks and one transaction marks them published (per-job round trips to the
        database would make the publisher, not the workers, set the pace of a burst)."""
        with self.engine.connect() as db:
            waiting = db.execute(
                select(jobs.c.id, jobs.c.tries).join(revisions, revisions.c.id == jobs.c.revision_id)
                .where(and_(jobs.c.state == "queued", jobs.c.published_at.is_(None),
                            revisions.c.question.in_(sorted(self.code))))
                .order_by(jobs.c.id).limit(PUBLISH_BATCH)
            ).all()
            tasks = prepare_all(db, self.course, [row.id for row in waiting])
        tries = {row.id: row.tries for row in waiting}
        for task in tasks:
            queue = CPU_QUEUE if task.question is None else queue_for(task.question, self.device)
            self.app.send_task(GRADE_JOB, args=[task.to_json()], queue=queue)
        if tasks:
            # Published first, marked after: a crash between the two publishes them again (harmless).
            # Marked only while untouched: a job claimed since (tries moved on) and then re-queued
            # because its worker died must be published again.
            with self.engine.begin() as db:
                db.execute(
                    update(jobs).where(and_(jobs.c.id == bindparam("job"), jobs.c.tries == bindparam("seen")))
                    .values(published_at=now()),
                    [{"job": task.job_id, "seen": tries[task.job_id]} for task in tasks],
                )
        return len(waiting)


def register_job_task(app: Any, engine: Engine, graders: Graders, leases: LeaseKeeper, lease_s: float) -> None:
    """The worker side: claim the job's row, grade it with the shared function, write the result."""

    @app.task(name=GRADE_JOB, bind=True, max_retries=None, ignore_result=True)
    def grade_job(self: Any, payload: dict[str, Any]) -> None:
        task = JobTask.from_json(payload)
        try:
            tries = claim(engine, task.job_id, task.revision_id, leases.owner, lease_s)
        except OperationalError as err:  # the database is unreachable: try the message again soon
            log.warning("job %s: database unavailable (%s); retrying", task.job_id, err)
            raise self.retry(countdown=5)
        if tries is None:  # graded already, or being graded elsewhere: this delivery is a duplicate
            if not job_known(engine, task.job_id, task.revision_id):
                log.warning("job %s is not in this worker's database %s: give workers the servers' --db",
                            task.job_id, engine.url.render_as_string(hide_password=True))
            return
        with leases.holding(task.job_id):
            try:
                run_job(engine, graders, task, tries)
            except SQLAlchemyError as err:  # no longer renewed: the lease runs out, a server re-queues it
                log.warning("job %s broke off: %s", task.job_id, err)


def check_device(device: str) -> Optional[str]:
    """Why ``device`` cannot grade here (no CUDA), or None."""
    if device != "cuda":
        return None
    import torch

    if not torch.cuda.is_available():
        return "--device cuda was given but torch sees no CUDA device on this machine; use --device cpu (the default)"
    return None


def run_worker(broker_url: str, engine: Engine, workers: int, device: str, lease_s: float = LEASE_S,
               hide: Sequence[Path] = (), announce: Any = print) -> None:
    """A Celery worker with ``workers`` threads over one warm sandbox pool of as many processes;
    ``--device cuda`` workers take only the GPU queue. Returns when the worker is stopped
    (SIGTERM or SIGINT: running gradings finish first)."""
    from vaequiz.grading.sandbox import Sandbox

    app = celery_app(broker_url)
    check_reachable(app, set(), need_workers=False)
    owner = owner_name()

    @contextmanager
    def sandbox() -> Iterator[Any]:
        # the bundled bank, the reference code and a checkout are hidden anyway; ``hide`` adds more
        with Sandbox(workers=workers, device=device, hide_paths=hide) as opened:
            yield opened

    graders = Graders(sandbox, device)
    runner = graders.get(True).sandbox  # warm now: the first job should not wait for torch to load
    for line in runner.hardening() if runner is not None else []:  # isolation layers this machine lacks
        if not line.endswith(": active"):
            announce(f"vaequiz worker: sandbox: {line}")
    leases = LeaseKeeper(engine, owner, lease_s)
    register_job_task(app, engine, graders, leases, lease_s)
    register_answer_task(app, graders.get)
    queue = GPU_QUEUE if device == "cuda" else CPU_QUEUE
    leases.start()
    announce(f"vaequiz worker {owner}: {workers} grader(s) on {device}, queue {queue}, broker "
             f"{app.conf.broker_url}, database {engine.url.render_as_string(hide_password=True)}")
    try:
        app.worker_main([
            "--quiet", "worker", "--pool=threads", f"--concurrency={workers}", "--queues", queue,
            "--hostname", f"vaequiz-{device}-{os.getpid()}@%h", "--loglevel=WARNING",
            "--without-gossip", "--without-mingle",
        ])
    finally:
        leases.stop()
        graders.close()
