"""Grading on `vaequiz worker` processes over Celery (Redis broker), on any number of machines.

Messages are acknowledged late (after the grading) and rejected back to the queue when a worker
dies, each worker takes one message at a time, and the broker's visibility timeout is longer
than the longest grading, so a message in progress is never handed to a second worker while the
first still grades it. The broker carries work, never the truth: `vaequiz serve`'s job rows
decide what is graded (once per answer revision), and `grade-sheets --broker` writes its results
itself, exactly as it does after grading locally.

Celery is imported when an app is made (the optional ``serve`` extra), never at import time.
"""

from __future__ import annotations

import threading
from typing import TYPE_CHECKING, Any, Callable

from vaequiz.bank.models import AnyQuestion, CodeQuestion
from vaequiz.grading.answers import Reading
from vaequiz.grading.batch import grade_reading
from vaequiz.grading.grader import Grader
from vaequiz.grading.objective import Graded
from vaequiz.grading.portable import graded_from_json, graded_json, needs_sandbox, question_from_json, question_json, reading_from_json, reading_json

if TYPE_CHECKING:
    from celery import Celery

CPU_QUEUE = "vaequiz"
GPU_QUEUE = "vaequiz-cuda"
GRADE_ANSWER = "vaequiz.grade_answer"
GRADE_JOB = "vaequiz.grade_job"
LONGEST_RUN_S = 600
"""The largest ``time_s`` a code question may set (bank/models.py); a grading makes several runs."""
VISIBILITY_TIMEOUT_S = 6 * 3600
"""How long Redis waits for a message's acknowledgement before giving it to another worker:
far longer than any grading (many runs of at most LONGEST_RUN_S each). A killed worker's
`vaequiz serve` jobs come back much sooner, through their lease (serve/jobs.py)."""


class BrokerError(RuntimeError):
    """The broker cannot be reached, or no worker listens; the message says what to do."""


def queue_for(question: AnyQuestion, device: str) -> str:
    """Code goes to the GPU queue when grading asks for cuda; everything else to the CPU queue."""
    return GPU_QUEUE if device == "cuda" and isinstance(question, CodeQuestion) else CPU_QUEUE


def celery_app(broker_url: str) -> "Celery":
    """The Celery app every server, worker and grade-sheets run builds the same way."""
    if not broker_url.startswith(("redis://", "rediss://", "redis+socket://")):
        raise BrokerError(f"--broker {broker_url!r} is not a Redis URL; use redis://HOST:PORT/DB")
    from celery import Celery

    app = Celery("vaequiz", broker=broker_url, backend=broker_url)
    transport = {"visibility_timeout": VISIBILITY_TIMEOUT_S}
    app.conf.update(
        task_acks_late=True,
        task_reject_on_worker_lost=True,
        worker_prefetch_multiplier=1,
        broker_transport_options=transport,
        result_backend_transport_options=transport,
        task_serializer="json",
        result_serializer="json",
        accept_content=["json"],
        task_default_queue=CPU_QUEUE,
        result_expires=24 * 3600,
        broker_connection_retry_on_startup=True,
        worker_hijack_root_logger=False,
        worker_send_task_events=False,
        task_send_sent_event=False,
    )
    return app


def check_reachable(app: "Celery", queues: set[str], need_workers: bool) -> None:
    """Fail with a clear message when the broker is down, or (``need_workers``) when no worker
    listens on one of ``queues``."""
    try:
        with app.connection_for_write() as connection:
            connection.ensure_connection(max_retries=2, interval_start=0.2, interval_step=0.5)
    except Exception as err:
        raise BrokerError(f"cannot reach the broker {app.conf.broker_url}: {err}") from None
    if not need_workers:
        return
    listening = app.control.inspect(timeout=3.0).active_queues() or {}
    found = {queue["name"] for consumed in listening.values() for queue in consumed}
    missing = sorted(queues - found)
    if missing:
        device = " --device cuda" if GPU_QUEUE in missing else ""
        raise BrokerError(
            f"no vaequiz worker takes the queue(s) {', '.join(missing)} on {app.conf.broker_url}; start one with "
            f"`vaequiz worker --broker URL{device}`"
        )


def register_answer_task(app: "Celery", grader: Callable[[bool], Grader]) -> None:
    """The worker side of `grade-sheets --broker`: grade one answer, send the verdict back.
    ``grader(needs_sandbox)`` is the worker's shared Grader."""

    @app.task(name=GRADE_ANSWER)
    def grade_answer(payload: dict[str, Any]) -> dict[str, Any]:
        question = question_from_json(payload["question"])
        reading = reading_from_json(payload["reading"])
        return graded_json(grade_reading(grader(needs_sandbox(question, reading)), question, reading))


class RemoteGrading:
    """The `grade-sheets --broker` side: grades one answer on a worker and waits for its verdict;
    a drop-in for :func:`vaequiz.grading.batch.grade_reading` (thread-safe)."""

    def __init__(self, broker_url: str, device: str = "cpu") -> None:
        self.app = celery_app(broker_url)
        self.device = device
        self._lock = threading.Lock()

    def check(self, questions: list[AnyQuestion]) -> None:
        check_reachable(self.app, {queue_for(q, self.device) for q in questions} or {CPU_QUEUE}, need_workers=True)

    def __call__(self, question: AnyQuestion, reading: Reading) -> Graded:
        payload = {"question": question_json(question), "reading": reading_json(reading)}
        sent = self.app.send_task(GRADE_ANSWER, args=[payload], queue=queue_for(question, self.device))
        with self._lock:  # Celery's Redis result consumer is not safe across threads; sends are
            try:
                return graded_from_json(sent.get(timeout=VISIBILITY_TIMEOUT_S, propagate=True))
            finally:
                sent.forget()
