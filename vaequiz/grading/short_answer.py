"""Short answers graded by concept, with evidence and deterministic guards.

Each rubric concept is looked for sentence by sentence. A match is evidence: the sentence it was
found in is kept and shown to the student ("found 'regularises' in: '...'"). A match does not
count when it sits in a negated clause ("it does not pull the posterior toward the prior"), when
it only occurs inside a bare list of terms with no verb ("KL, prior, overfitting"), or when one of
the concept's ``contradictions`` is stated without negation. Words of five letters or more
tolerate one spelling mistake (two from nine letters), words are stemmed simply, and math
written as math (``μ + σ·ε``, ``mu + exp(0.5*logvar)*eps``) is rewritten into one canonical form
that the concept's ``patterns`` are also matched against.

A verdict that is fragile (near the pass line, found only through spelling tolerance, a negation
or contradiction next to a matched phrase, an answer far longer or shorter than the model answer,
a bare list that named key terms) is flagged ``needs_review`` with the reasons.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

from vaequiz.bank.answer_text import (
    WORD,
    Match,
    Sentence,
    analyse,
    compile_phrasing,
    find_pattern,
    find_phrasing,
)
from vaequiz.bank.models import Concept, ShortAnswer
from vaequiz.grading.models import CheckResult
from vaequiz.grading.objective import Graded

MAX_TEXT_CHARS = 20_000
"""Longer answers are cut before matching (keeps matching fast and bounded)."""
QUOTE_CHARS = 160
SHORT_RATIO = 0.2
LONG_RATIO = 3.0
"""An answer with fewer than SHORT_RATIO or more than LONG_RATIO times the model answer's words
is flagged for review (at least MIN_WORDS words are always expected)."""
MIN_WORDS = 6

# --------------------------------------------------------------------------- concepts


def quote(sentence: str) -> str:
    flat = " ".join(sentence.split())
    return flat if len(flat) <= QUOTE_CHARS else flat[: QUOTE_CHARS - 1] + "…"


@dataclass
class ConceptVerdict:
    """What the grader decided for one concept, and why."""

    concept: Concept
    found: bool
    evidence: Match | None = None
    negated: list[Match] = field(default_factory=list)
    listed: list[Match] = field(default_factory=list)
    contradiction: Match | None = None

    @property
    def fuzzy_only(self) -> bool:
        return self.found and self.evidence is not None and self.evidence.fuzzy

    def check(self) -> CheckResult:
        if self.found and self.evidence is not None:
            shown = f"'{self.evidence.quoted}'"
            if self.evidence.fuzzy:
                shown += f" (read as '{self.evidence.phrasing}')"
            if self.evidence.as_math:
                shown += " (as math)"
            return CheckResult(
                name=self.concept.name, passed=True,
                evidence=f"found {shown} in: '{quote(self.evidence.sentence)}'",
            )
        if self.contradiction is not None:
            message = (
                f"'{self.contradiction.quoted}' contradicts this, in: "
                f"'{quote(self.contradiction.sentence)}'"
            )
        elif self.negated:
            m = self.negated[0]
            message = (
                f"'{m.quoted}' is negated in: '{quote(m.sentence)}'; a statement that something "
                "is not so does not show the concept"
            )
        elif self.listed:
            m = self.listed[0]
            message = (
                f"'{m.quoted}' appears only in a list of terms ('{quote(m.sentence)}'); "
                "say what it does: a bare list of terms earns nothing"
            )
        else:
            message = "not found in your answer"
        return CheckResult(name=self.concept.name, passed=False, message=message)


def judge_concept(concept: Concept, sentences: list[Sentence]) -> ConceptVerdict:
    """Found when some phrasing or pattern occurs unnegated outside a bare list, and no
    contradiction occurs unnegated. Exact matches are preferred as evidence over fuzzy ones."""
    verdict = ConceptVerdict(concept, False)
    counted: list[Match] = []
    for sentence in sentences:
        for text in concept.phrasings:
            for match in find_phrasing(sentence, compile_phrasing(text)):
                _sort(match, counted, verdict)
                if counted and not counted[-1].fuzzy:
                    break  # one exact occurrence settles this phrasing (bounds long answers)
        for pattern in concept.patterns:
            for match in find_pattern(sentence, pattern):
                _sort(match, counted, verdict)
    for sentence in sentences:
        for text in concept.contradictions:
            for match in find_phrasing(sentence, compile_phrasing(text)):
                if not match.negated and verdict.contradiction is None:
                    verdict.contradiction = match
    if counted and verdict.contradiction is None:
        verdict.found = True
        verdict.evidence = min(counted, key=lambda m: m.fuzzy)
    return verdict


def _sort(match: Match, counted: list[Match], verdict: ConceptVerdict) -> None:
    if match.negated:
        verdict.negated.append(match)
    elif match.listed:
        verdict.listed.append(match)
    else:
        counted.append(match)


def concepts_needed(question: ShortAnswer) -> int:
    """The fewest concepts that reach the pass line."""
    total = len(question.rubric)
    return max(1, math.ceil(question.pass_fraction * total - 1e-9))


def review_reasons(question: ShortAnswer, verdicts: list[ConceptVerdict], text: str) -> list[str]:
    """Why a person should confirm this verdict; empty when the evidence is clear."""
    reasons: list[str] = []
    found = sum(v.found for v in verdicts)
    needed = concepts_needed(question)
    if found in (needed - 1, needed):
        reasons.append(f"{found} of {len(verdicts)} concepts: within one of the pass line ({needed})")
    fuzzy = [v.concept.name for v in verdicts if v.fuzzy_only]
    if fuzzy:
        reasons.append("found only through spelling tolerance: " + "; ".join(fuzzy))
    touched = [  # a negation or contradiction that decided the concept (found elsewhere: no doubt)
        v.concept.name for v in verdicts if not v.found and (v.negated or v.contradiction is not None)
    ]
    if touched:
        reasons.append("a negation or contradiction next to a matched phrase: " + "; ".join(touched))
    listed = [v.concept.name for v in verdicts if v.listed and not v.found]
    if listed:
        reasons.append("key terms given only as a bare list: " + "; ".join(listed))
    words = len(WORD.findall(text))
    expected = len(WORD.findall(question.model_answer))
    if words < max(MIN_WORDS, SHORT_RATIO * expected):
        reasons.append(f"very short for this question ({words} words; the model answer has {expected})")
    elif words > LONG_RATIO * expected:
        reasons.append(f"very long for this question ({words} words; the model answer has {expected})")
    return reasons


def grade_short_answer(question: ShortAnswer, answer: str) -> Graded:
    """Score = share of rubric concepts shown; passed when the share reaches ``pass_fraction``."""
    text = answer[:MAX_TEXT_CHARS]
    sentences = analyse(text)
    verdicts = [judge_concept(concept, sentences) for concept in question.rubric]
    checks = [v.check() for v in verdicts]
    share = sum(c.passed for c in checks) / len(checks)
    reasons = review_reasons(question, verdicts, text)
    return Graded(
        share, checks, passed=share >= question.pass_fraction - 1e-9,
        needs_review=bool(reasons), review_reasons=reasons,
    )


def concepts_found(question: ShortAnswer, answer: str) -> list[str]:
    """Names of the concepts the grader finds in ``answer``, in rubric order."""
    return [c.name for c in grade_short_answer(question, answer).checks if c.passed]
