"""What decided a grade, as a digest: a stored result whose fingerprint, grader version or
answer no longer match is stale and is graded again.

The fingerprint covers every field of a question except those that only present it (text,
hints, explanations, tags): a field the bank gains later is covered without anyone having to
remember to add it here, so a change can cause an unneeded regrade but never a stale grade.
"""

from __future__ import annotations

import hashlib
import json

from vaequiz.bank.models import AnyQuestion

GRADER_VERSION = "3"
"""Bump whenever a change to the grading code can change a verdict, a score or a message: every
stored result then counts as stale and `grade-sheets` / `regrade` grade it again.

2: failing code answers gain the known mistake they behave like, size hints and each distinct
error (results of version 1 lack them, so their feedback pages would silently miss them).
3: code answers are measured from their programs, outside the process that ran them; a probe is
never measured in that process (a forged gradient or fit that passed before now fails)."""

PRESENTATION_FIELDS = frozenset(
    {
        "topics",
        "difficulty",
        "hint",
        "explanation",
        "source",
        "stem",
        "prompt",
        "starter",
        "model_answer",
        "front",
        "back",
        "shuffle",
        "code_question",
    }
)
"""Question fields that never influence a grade (a page or `verify` uses them)."""


def question_fingerprint(question: AnyQuestion) -> str:
    """A digest of the question's key, rubric, checks, reference, limits and (effective) points."""
    material = question.model_dump(mode="json", exclude=set(PRESENTATION_FIELDS))
    canonical = json.dumps(material, sort_keys=True, ensure_ascii=False, separators=(",", ":"))
    return "sha256:" + hashlib.sha256(canonical.encode("utf-8")).hexdigest()[:32]
