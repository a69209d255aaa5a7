"""Hypothesis strategies that build valid questions of every kind."""

from __future__ import annotations

import string

from hypothesis import strategies as st

from vaequiz.bank import models as m
from vaequiz.formulas import formula_errors

_words = st.text(
    alphabet=string.ascii_lowercase + string.digits, min_size=1, max_size=8
)
ids = st.lists(_words, min_size=1, max_size=4).map("-".join)
topics = st.lists(ids, min_size=1, max_size=3, unique=True)
# Markdown-ish text: letters, punctuation YAML cares about, unicode, and newlines.
text = st.text(
    alphabet=st.sampled_from(
        list(string.ascii_letters + string.digits + " .,;:!?'\"#&*[]{}|>-%@`\\")
        + ["é", "β", "∑", "\n", "μ", "😀"]
    ),
    min_size=1,
    max_size=60,
).filter(lambda s: s.strip() != "" and not formula_errors(s))  # valid text renders its math
sources = st.one_of(
    st.just("original"),
    st.sampled_from(["000_1c67774fde61a081", "002_b75ee90b928972ce"]).flatmap(
        lambda seed: st.one_of(st.just(seed), _words.map(lambda a: f"{seed}#{a}"))
    ),
)
points = st.one_of(st.integers(0, 20).map(float), st.floats(0.25, 10, allow_nan=False))


def _common(kind: str) -> dict:
    return dict(
        id=ids,
        topics=topics,
        difficulty=st.sampled_from(list(m.Difficulty)),
        hint=st.none() | text,
        explanation=text,
        source=sources,
        kind=st.just(kind),
    )


@st.composite
def mcqs(draw: st.DrawFn) -> m.MultipleChoice:
    count = draw(st.integers(2, 6))
    labels = [chr(ord("A") + i) for i in range(count)]
    bodies = draw(st.lists(text, min_size=count, max_size=count, unique_by=str.strip))
    options = [
        m.Option(label=label, text=body, feedback=draw(st.none() | text))
        for label, body in zip(labels, bodies)
    ]
    multiple = draw(st.booleans())
    if multiple:
        answer = draw(st.lists(st.sampled_from(labels), min_size=2, max_size=count, unique=True))
    else:
        answer = [draw(st.sampled_from(labels))]
    common = {k: draw(v) for k, v in _common("mcq").items()}
    return m.MultipleChoice(
        **common,
        points=draw(points),
        stem=draw(text),
        options=options,
        answer=answer,
        multiple=multiple,
        shuffle=draw(st.booleans()),
    )


@st.composite
def short_answers(draw: st.DrawFn) -> m.ShortAnswer:
    names = draw(st.lists(text, min_size=1, max_size=4, unique=True))
    rubric = [
        m.Concept(
            name=name,
            phrasings=draw(st.lists(text, min_size=1, max_size=3)),
            patterns=draw(st.lists(st.sampled_from([r"\bkl\b", r"prior|normal", r"sampl\w+"]), max_size=2)),
        )
        for name in names
    ]
    common = {k: draw(v) for k, v in _common("short_answer").items()}
    return m.ShortAnswer(
        **common,
        points=draw(points),
        prompt=draw(text),
        model_answer=draw(text),
        rubric=rubric,
        pass_fraction=draw(st.floats(0.1, 1.0)),
    )


@st.composite
def flashcards(draw: st.DrawFn) -> m.Flashcard:
    common = {k: draw(v) for k, v in _common("flashcard").items()}
    common["explanation"] = draw(st.none() | text)
    return m.Flashcard(**common, front=draw(text), back=draw(text))


@st.composite
def shapes(draw: st.DrawFn) -> m.ShapeAnswer:
    common = {k: draw(v) for k, v in _common("shape").items()}
    return m.ShapeAnswer(
        **common,
        points=draw(points),
        prompt=draw(text),
        answer=draw(st.lists(st.integers(0, 4096), max_size=5)),
    )


@st.composite
def numerics(draw: st.DrawFn) -> m.NumericAnswer:
    common = {k: draw(v) for k, v in _common("numeric").items()}
    return m.NumericAnswer(
        **common,
        points=draw(points),
        prompt=draw(text),
        answer=draw(st.floats(-1e6, 1e6, allow_nan=False)),
        tolerance=draw(st.floats(0, 1)),
    )


@st.composite
def code_questions(draw: st.DrawFn) -> m.CodeQuestion:
    symbols = draw(st.lists(st.sampled_from(["B", "D", "H", "W", "K"]), min_size=1, max_size=3, unique=True))
    trials = [
        m.Trial(bind={s: draw(st.integers(1, 64)) for s in symbols}, repeat=draw(st.integers(1, 3)))
        for _ in range(draw(st.integers(1, 3)))
    ]
    given = {
        "x": m.TensorInput(
            type="tensor",
            shape=symbols,
            dist=draw(st.sampled_from(["normal", "uniform", "bernoulli"])),
            requires_grad=draw(st.booleans()),
        )
    }
    checks: list = [m.ShapeCheck(check="shape", of="y", like="x")]
    if draw(st.booleans()):
        checks.append(m.CloseCheck(check="close", of="y", atol=draw(st.floats(0, 1))))
    common = {k: draw(v) for k, v in _common("code").items()}
    return m.CodeQuestion(
        **common,
        points=draw(points),
        prompt=draw(text),
        given=given,
        expect=["y"],
        reference="y = x * 2",
        trials=trials,
        checks=checks,
        mutants=[m.Mutant(code="y = x", why=draw(text))],
        limits=m.Limits(time_s=draw(st.floats(0.5, 30))),
    )


questions = st.one_of(mcqs(), short_answers(), flashcards(), shapes(), numerics(), code_questions())


def to_yaml_data(question: m.QuestionBase) -> dict:
    """A question as the plain data an author would write (aliases such as `is`, no nulls)."""
    return question.model_dump(mode="json", by_alias=True, exclude_none=True)
