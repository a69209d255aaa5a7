"""Regrade a served quiz with the machinery of `vaequiz regrade`.

The dry run hands the quiz's current results to :func:`vaequiz.grading.batch.grade_batch` as a
``results.jsonl`` in a temporary folder, with ``dry_run``: every stored answer whose question
(key, rubric, checks, reference, points) or grader changed is graded again, and the old and new
points come back; nothing is written. Applying stores each new result as a new row for the
same answer revision (rows are unique per revision and grader key), so the stale result stays
in the history and the newest one counts everywhere.
"""

from __future__ import annotations

import json
import secrets
import tempfile
import threading
from collections import OrderedDict
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Optional

from sqlalchemy import Engine, and_, insert, select

from vaequiz.bank.loader import Bank
from vaequiz.grading.batch import REASONS, Change, grade_batch
from vaequiz.grading.models import ItemResult
from vaequiz.grading.results import RESULTS_FILE
from vaequiz.serve.course import ServedQuiz
from vaequiz.serve.db import grader_key, now, results

KEPT_PLANS = 20
"""Dry runs kept for confirmation (per server process); an older one must be run again."""


@dataclass(frozen=True)
class Current:
    """The result that counts for one (student, question), and the answer revision it grades."""

    item: ItemResult
    revision_id: int
    attempt_id: int


@dataclass
class Plan:
    """A dry run: what would change, and the new results, ready to be stored on confirmation."""

    token: str
    quiz: str
    changes: list[Change]
    fresh: list[Current]
    up_to_date: int
    problems: list[str] = field(default_factory=list)
    """Answers that could not be graded (they keep their old result)."""
    warnings: list[str] = field(default_factory=list)

    def reason(self, change: Change) -> str:
        return REASONS.get(change.reason, change.reason)


def dry_run(
    served: ServedQuiz,
    bank_root: Path,
    current: list[Current],
    sandbox_factory: Callable[[], Any],
    workers: int,
) -> Plan:
    """Grade again what went stale; write nothing."""
    by_pair = {(c.item.student, c.item.question): c for c in current}
    bank = Bank(root=bank_root, questions=list(served.questions.values()))
    with tempfile.TemporaryDirectory(prefix="vaequiz-regrade-") as folder:
        out = Path(folder)
        (out / RESULTS_FILE).write_text(
            "".join(json.dumps(c.item.model_dump(mode="json"), ensure_ascii=True) + "\n" for c in current),
            encoding="utf-8",
        )
        report = grade_batch(out, bank, {}, sandbox_factory, workers, only=served.graded_ids, dry_run=True)
    changed = {(c.student, c.question) for c in report.changes}
    fresh = [
        Current(item, by_pair[(item.student, item.question)].revision_id, by_pair[(item.student, item.question)].attempt_id)
        for item in report.results
        if (item.student, item.question) in changed and (item.student, item.question) in by_pair
    ]
    # the temporary folder means nothing to the instructor: warnings name "the results" instead
    warnings = [w.replace(f"{out / RESULTS_FILE}: ", "") for w in report.warnings]
    return Plan(secrets.token_urlsafe(16), served.id, report.regraded, fresh, report.resumed,
                list(report.problems), warnings)


def apply(engine: Engine, plan: Plan) -> int:
    """Store the plan's new results (one new row per revision and grader key; a row already
    there, from applying the same plan twice, is kept); how many rows were added."""
    added = 0
    with engine.begin() as db:
        for entry in plan.fresh:
            key = grader_key(entry.item.fingerprint, entry.item.grader_version)
            exists = db.execute(
                select(results.c.id).where(and_(results.c.revision_id == entry.revision_id, results.c.grader == key))
            ).first()
            if exists is not None:
                continue
            db.execute(insert(results).values(
                revision_id=entry.revision_id, attempt_id=entry.attempt_id, question=entry.item.question,
                item=json.dumps(entry.item.model_dump(mode="json"), ensure_ascii=True), graded_at=now(), grader=key,
            ))
            added += 1
    return added


class Plans:
    """The latest dry runs of this server process, by token, for the confirm step."""

    def __init__(self) -> None:
        self._plans: OrderedDict[str, Plan] = OrderedDict()
        self._lock = threading.Lock()

    def keep(self, plan: Plan) -> None:
        with self._lock:
            self._plans[plan.token] = plan
            while len(self._plans) > KEPT_PLANS:
                self._plans.popitem(last=False)

    def take(self, token: str, quiz: str) -> Optional[Plan]:
        """The plan, once: a confirmed plan cannot be applied again."""
        with self._lock:
            plan = self._plans.get(token)
            if plan is None or plan.quiz != quiz:
                return None
            del self._plans[token]
            return plan
