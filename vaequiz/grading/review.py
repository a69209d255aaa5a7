"""Teachers' overrides of short-answer verdicts, stored beside the results.

``DIR/overrides.jsonl`` holds one :class:`Override` per line (the last one per student and
question wins): the concepts a teacher sees in an answer, and a fingerprint of the answer they
saw. ``results.jsonl`` keeps the grader's own verdict; overrides are applied where the gradebook
is written (grades.csv, feedback pages), so they survive regrading. An override whose answer
fingerprint no longer matches (the sheet changed) is not applied, and the result stays flagged.
"""

from __future__ import annotations

import csv
import hashlib
import json
import os
from datetime import datetime, timezone
from pathlib import Path
from typing import Iterable

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from vaequiz.bank.models import AnyQuestion, ShortAnswer
from vaequiz.grading.models import Answer, CheckResult, ItemResult

OVERRIDES_FILE = "overrides.jsonl"
CSV_COLUMNS = ("student", "question", "concept", "grader", "teacher", "evidence", "answer")
YES = frozenset({"y", "yes", "1", "true", "present", "x"})
NO = frozenset({"n", "no", "0", "false", "absent", "-"})


class Override(BaseModel):
    """A teacher's decision on one answer, concept by concept."""

    model_config = ConfigDict(extra="forbid")

    student: str
    question: str
    concepts: dict[str, bool] = Field(description="Concept name -> present in the answer.")
    answer_sha256: str = Field(description="Fingerprint of the answer the teacher reviewed.")
    reviewer: str = "teacher"
    at: str = Field(default_factory=lambda: datetime.now(timezone.utc).isoformat(timespec="seconds"))


class ReviewError(ValueError):
    """A CSV or overrides file that cannot be used; the message says where and why."""


def answer_fingerprint(answer: Answer | None) -> str:
    """SHA-256 of the answer as graded, so an override follows the answer, not the file."""
    text = json.dumps(answer, ensure_ascii=False, sort_keys=True)
    return hashlib.sha256(text.encode("utf-8")).hexdigest()


def read_overrides(folder: Path) -> tuple[dict[tuple[str, str], Override], list[str]]:
    """The latest override per (student, question), plus warnings for unreadable lines."""
    path = folder / OVERRIDES_FILE
    found: dict[tuple[str, str], Override] = {}
    warnings: list[str] = []
    if not path.exists():
        return found, warnings
    for number, line in enumerate(path.read_text(encoding="utf-8").splitlines(), start=1):
        if not line.strip():
            continue
        try:
            override = Override.model_validate_json(line)
        except ValidationError as err:
            warnings.append(f"{path}:{number}: not an override ({err.errors()[0]['msg']}); ignored")
            continue
        found[(override.student, override.question)] = override
    return found, warnings


def append_override(folder: Path, override: Override) -> None:
    """Add one line and force it to disk (a review session can be interrupted at any point)."""
    folder.mkdir(parents=True, exist_ok=True)
    with (folder / OVERRIDES_FILE).open("a", encoding="utf-8") as handle:
        handle.write(override.model_dump_json() + "\n")
        handle.flush()
        os.fsync(handle.fileno())


def apply_override(item: ItemResult, override: Override, question: ShortAnswer) -> ItemResult:
    """The result as the teacher decided it: concepts set, score and pass recomputed."""
    checks = []
    for check in item.checks:
        if check.name in override.concepts:
            present = override.concepts[check.name]
            note = f"set by {override.reviewer}"
            check = CheckResult(
                name=check.name, passed=present, points=check.points, hidden=check.hidden,
                message="" if present else f"not shown in your answer ({note})",
                evidence=(check.evidence + f" ({note})" if check.evidence and present else note if present else ""),
            )
        checks.append(check)
    total = sum(c.points for c in checks) or 1.0
    score = sum(c.points for c in checks if c.passed) / total
    return item.model_copy(
        update={
            "checks": checks,
            "score": round(score, 9),
            "points": round(score * item.max_points, 9),
            "passed": score >= question.pass_fraction - 1e-9,
            "needs_review": False,
            "review_reasons": [],
            "reviewed_by": override.reviewer,
        }
    )


def apply_overrides(
    results: list[ItemResult], folder: Path, questions: dict[str, AnyQuestion]
) -> tuple[list[ItemResult], list[str]]:
    """Every result with its teacher's override applied where the answer is the one reviewed."""
    overrides, warnings = read_overrides(folder)
    applied: list[ItemResult] = []
    for item in results:
        override = overrides.get((item.student, item.question))
        question = questions.get(item.question)
        if override is None or not isinstance(question, ShortAnswer):
            applied.append(item)
        elif override.answer_sha256 != answer_fingerprint(item.answer):
            reason = f"the answer changed since {override.reviewer} reviewed it"
            applied.append(item.model_copy(update={
                "needs_review": True, "review_reasons": [*item.review_reasons, reason],
            }))
        else:
            applied.append(apply_override(item, override, question))
    return applied, warnings


def pending(results: Iterable[ItemResult], folder: Path) -> list[ItemResult]:
    """Flagged short answers that no override (for the same answer) has settled yet."""
    overrides, _ = read_overrides(folder)
    waiting = []
    for item in results:
        override = overrides.get((item.student, item.question))
        settled = override is not None and override.answer_sha256 == answer_fingerprint(item.answer)
        if item.kind == "short_answer" and item.needs_review and not settled:
            waiting.append(item)
    return sorted(waiting, key=lambda i: (i.question, i.student))


# --------------------------------------------------------------------------- CSV round trip


def write_review_csv(path: Path, items: list[ItemResult]) -> int:
    """One row per (answer, concept) with the grader's verdict and an empty ``teacher`` cell."""
    rows = 0
    with path.open("w", newline="", encoding="utf-8") as handle:
        writer = csv.writer(handle)
        writer.writerow(CSV_COLUMNS)
        for item in items:
            for i, check in enumerate(item.checks):
                writer.writerow([
                    item.student, item.question, check.name, "yes" if check.passed else "no", "",
                    check.evidence or check.message, _answer_text(item.answer) if i == 0 else "",
                ])
                rows += 1
    return rows


def read_review_csv(
    path: Path, results: list[ItemResult], reviewer: str
) -> tuple[list[Override], list[str]]:
    """Overrides from a filled-in review CSV; blank ``teacher`` cells keep the grader's verdict.

    Rows naming an unknown student, question or concept, or a ``teacher`` cell that is not
    yes/no, are reported as ``file:line: reason`` and nothing of that answer is taken.
    """
    by_pair = {(i.student, i.question): i for i in results}
    decided: dict[tuple[str, str], dict[str, bool]] = {}
    problems: list[str] = []
    spoiled: set[tuple[str, str]] = set()
    try:
        handle = path.open(newline="", encoding="utf-8")
    except OSError as err:
        raise ReviewError(f"{path}: cannot be read: {err.strerror or err}") from None
    with handle:
        reader = csv.DictReader(handle)
        missing = [c for c in ("student", "question", "concept", "teacher") if c not in (reader.fieldnames or [])]
        if missing:
            raise ReviewError(f"{path}: missing column(s) {', '.join(missing)}; expected {', '.join(CSV_COLUMNS)}")
        for row in reader:
            line = reader.line_num
            pair = (row["student"] or "", row["question"] or "")
            item = by_pair.get(pair)
            cell = (row["teacher"] or "").strip().lower()
            if item is None:
                problems.append(f"{path}:{line}: no result for student {pair[0]!r} and question {pair[1]!r}")
                continue
            if row["concept"] not in {c.name for c in item.checks}:
                problems.append(f"{path}:{line}: {pair[1]} has no concept {row['concept']!r}")
                spoiled.add(pair)
                continue
            if cell and cell not in YES | NO:
                problems.append(f"{path}:{line}: teacher must be yes, no or empty (got {row['teacher']!r})")
                spoiled.add(pair)
                continue
            if cell:
                decided.setdefault(pair, {})[row["concept"]] = cell in YES
    overrides = []
    for pair, concepts in decided.items():
        if pair in spoiled:
            continue
        item = by_pair[pair]
        full = {c.name: concepts.get(c.name, c.passed) for c in item.checks}
        overrides.append(Override(
            student=pair[0], question=pair[1], concepts=full,
            answer_sha256=answer_fingerprint(item.answer), reviewer=reviewer,
        ))
    return overrides, problems


def _answer_text(answer: Answer | None) -> str:
    if answer is None:
        return ""
    return answer if isinstance(answer, str) else ", ".join(answer)
