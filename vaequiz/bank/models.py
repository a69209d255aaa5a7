"""The question bank's data model: the single source of truth for the YAML format.

Every other format (JSON Schema, docs, the loader's error messages, exports) is derived from
these classes, so a field is added here once and appears everywhere.
"""

from __future__ import annotations

import keyword
import re
import typing
from enum import StrEnum
from typing import Annotated, Any, ClassVar, Literal, Union

from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    TypeAdapter,
    field_validator,
    model_validator,
)
from pydantic_core import PydanticCustomError

ID_PATTERN = r"^[a-z0-9]+(?:-[a-z0-9]+)*$"
LABEL_PATTERN = r"^[A-Z]$"
SOURCE_PATTERN = r"^(?:original|[A-Za-z0-9_.-]+(?:#[A-Za-z0-9_.-]+)?)$"

QuestionId = Annotated[
    str,
    Field(
        pattern=ID_PATTERN,
        max_length=80,
        description="Unique, stable, kebab-case id (grades and statistics refer to it).",
        examples=["kl-term-role"],
    ),
]
Topic = Annotated[str, Field(pattern=ID_PATTERN, max_length=60, description="A kebab-case tag.")]
Label = Annotated[str, Field(pattern=LABEL_PATTERN, description="An option label: A, B, C, ...")]
class MarkdownText:
    """Marks a text field as Markdown (math and code are rendered), so lint and other tools find
    every such field from the models, whatever its own description says."""


Markdown = Annotated[
    str,
    MarkdownText(),
    Field(
        min_length=1,
        description="Markdown with $...$ / $$...$$ LaTeX math and fenced code blocks.",
        json_schema_extra={"format": "markdown"},
    ),
]


def is_markdown_field(field: Any) -> bool:
    """Whether a pydantic field holds Markdown, also inside ``Markdown | None``."""

    def marked(annotation: Any) -> bool:
        if typing.get_origin(annotation) is Annotated:
            if any(isinstance(m, MarkdownText) for m in typing.get_args(annotation)[1:]):
                return True
        return any(marked(arg) for arg in typing.get_args(annotation))

    return any(isinstance(m, MarkdownText) for m in field.metadata) or marked(field.annotation)
PythonSource = Annotated[str, Field(min_length=1, description="Python statements.")]
Symbol = Annotated[str, Field(pattern=r"^[A-Za-z_][A-Za-z0-9_]*$")]
Dim = Union[int, Symbol]
"""A tensor dimension: a literal size or a symbol bound by each trial (e.g. ``B``)."""


class StrictModel(BaseModel):
    """Base for every format model: unknown keys are errors, so typos never pass silently."""

    model_config = ConfigDict(extra="forbid", coerce_numbers_to_str=True, populate_by_name=True)


class Difficulty(StrEnum):
    beginner = "beginner"
    intermediate = "intermediate"
    advanced = "advanced"


def _check_identifier(name: str) -> str:
    if not name.isidentifier() or keyword.iskeyword(name):
        raise ValueError(f"{name!r} is not a valid Python name")
    return name


PythonName = Annotated[str, Field(pattern=r"^[A-Za-z_][A-Za-z0-9_]*$", max_length=64)]


class QuestionBase(StrictModel):
    """Fields every question kind shares."""

    id: QuestionId
    topics: list[Topic] = Field(min_length=1, description="Tags used to select questions.")
    difficulty: Difficulty
    points: float = Field(1.0, ge=0, le=1000, description="Points the item is worth.")
    hint: Markdown | None = Field(None, description="Shown on request in practice mode.")
    explanation: Markdown | None = Field(
        None, description="Why the key is right; required for every kind with a key."
    )
    source: str = Field(
        pattern=SOURCE_PATTERN,
        description="The seed the item comes from (e.g. '002_b75ee90b928972ce#q4') or 'original'.",
    )

    @field_validator("topics")
    @classmethod
    def _unique_topics(cls, topics: list[str]) -> list[str]:
        duplicates = sorted({t for t in topics if topics.count(t) > 1})
        if duplicates:
            raise ValueError(f"topic listed twice: {', '.join(duplicates)}")
        return topics

    @model_validator(mode="after")
    def _explanation_when_keyed(self) -> "QuestionBase":
        if self.has_key and not self.explanation:
            raise PydanticCustomError(
                "field_missing",
                "missing required field 'explanation' (say why the key is right)",
                {"field": "explanation"},
            )
        return self

    @property
    def has_key(self) -> bool:
        return True

    @property
    def text(self) -> str:
        """The main question text (stem, prompt or card front)."""
        raise NotImplementedError


# --------------------------------------------------------------------------- multiple choice


class Option(StrictModel):
    """One labelled answer option; ``text`` is Markdown, ``code`` a Python snippet shown as code."""

    label: Label
    text: Markdown | None = None
    code: PythonSource | None = Field(
        None, description="Option given as Python code (run by `vaequiz verify` when linked)."
    )
    feedback: Markdown | None = Field(
        None, description="Why a student who picks this option is wrong (or right)."
    )

    @model_validator(mode="after")
    def _has_content(self) -> "Option":
        if not self.text and not self.code:
            raise ValueError("an option needs 'text' or 'code'")
        return self


class MultipleChoice(QuestionBase):
    """Single-answer (radio) or multi-select (checkbox) multiple choice."""

    kind: Literal["mcq"]
    stem: Markdown
    options: list[Option] = Field(min_length=2, max_length=12)
    answer: list[Label] = Field(description="The keyed label, or a list for multi-select.")
    multiple: bool = Field(False, description="Multi-select: students tick every correct option.")
    shuffle: bool = Field(True, description="Options may be shuffled in per-student variants.")
    code_question: QuestionId | None = Field(
        None,
        description="Id of the code question every option's `code` is graded against by verify.",
    )

    @field_validator("answer", mode="before")
    @classmethod
    def _answer_as_list(cls, value: Any) -> Any:
        return [value] if isinstance(value, str) else value

    @model_validator(mode="after")
    def _key_consistent(self) -> "MultipleChoice":
        labels = [o.label for o in self.options]
        expected = [chr(ord("A") + i) for i in range(len(labels))]
        if labels != expected:
            raise ValueError(
                f"options must be labelled {', '.join(expected)} in order; got {', '.join(labels)}"
            )
        contents = [(o.text or "").strip() + "\0" + (o.code or "").strip() for o in self.options]
        for i, content in enumerate(contents):
            if content in contents[:i]:
                first = labels[contents.index(content)]
                raise ValueError(f"options {first} and {labels[i]} are identical")
        unknown = [a for a in self.answer if a not in labels]
        if unknown:
            raise ValueError(
                f"answer {', '.join(unknown)} is not one of the options ({', '.join(labels)})"
            )
        if len(set(self.answer)) != len(self.answer):
            raise ValueError("answer lists a label twice")
        if self.multiple and len(self.answer) < 2:
            raise ValueError("a multi-select question ('multiple: true') needs at least two keys")
        if not self.multiple and len(self.answer) != 1:
            raise ValueError(
                "a single-answer question has exactly one key; set 'multiple: true' for several"
            )
        if self.code_question and not all(o.code for o in self.options):
            missing = [o.label for o in self.options if not o.code]
            raise ValueError(
                f"with 'code_question' every option needs 'code'; missing in {', '.join(missing)}"
            )
        return self

    @property
    def text(self) -> str:
        return self.stem


# --------------------------------------------------------------------------- short answer


class Concept(StrictModel):
    """A concept the answer should show, recognised by any of its phrasings or patterns."""

    name: str = Field(min_length=1, description="What the concept is, shown in feedback.")
    phrasings: list[str] = Field(
        default_factory=list,
        description=(
            "Words or phrases that show the concept, matched case-insensitively as whole words "
            "after normalising hyphens, plurals and whitespace."
        ),
    )
    patterns: list[str] = Field(
        default_factory=list,
        description=(
            "Python regular expressions (case-insensitive), matched against each sentence as "
            "written and against its math form (z=mu+sigma*eps; see the README)."
        ),
    )
    contradictions: list[str] = Field(
        default_factory=list,
        description=(
            "Phrasings that, stated without negation, cancel the concept "
            "(e.g. 'kl ... measures ... reconstruction'); '...' allows a few words between parts."
        ),
    )

    @field_validator("patterns")
    @classmethod
    def _patterns_compile(cls, patterns: list[str]) -> list[str]:
        for pattern in patterns:
            try:
                re.compile(pattern)
            except re.error as err:
                raise ValueError(f"pattern {pattern!r} is not a valid regular expression: {err}")
        return patterns

    @model_validator(mode="after")
    def _has_matchers(self) -> "Concept":
        if not self.phrasings and not self.patterns:
            raise ValueError(f"concept {self.name!r} needs at least one phrasing or pattern")
        return self


class RubricExample(StrictModel):
    """A marked student answer: `vaequiz verify` regrades it and fails on any disagreement."""

    answer: str = Field(min_length=1, description="The answer as a student wrote it.")
    concepts: list[str] = Field(
        default_factory=list, description="Names of the rubric concepts a teacher sees in it."
    )
    verdict: Literal["pass", "fail"] = Field(description="The teacher's pass/fail.")
    why: str | None = Field(None, description="What the example tests (a trap, a paraphrase).")


class ShortAnswer(QuestionBase):
    """Free text scored by the share of rubric concepts it shows."""

    kind: Literal["short_answer"]
    prompt: Markdown
    model_answer: Markdown
    rubric: list[Concept] = Field(min_length=1)
    pass_fraction: float = Field(
        0.5, gt=0, le=1, description="Share of concepts needed for the item to count as passed."
    )
    examples: list[RubricExample] = Field(
        default_factory=list, description="Marked answers the rubric must grade the same way."
    )

    @model_validator(mode="after")
    def _unique_concepts(self) -> "ShortAnswer":
        names = [c.name for c in self.rubric]
        if len(set(names)) != len(names):
            raise ValueError("two rubric concepts have the same name")
        for i, example in enumerate(self.examples):
            unknown = [c for c in example.concepts if c not in names]
            if unknown:
                raise ValueError(
                    f"examples[{i}] names {unknown[0]!r}, which is not a rubric concept; "
                    f"concepts are: {'; '.join(names)}"
                )
            share = len(set(example.concepts)) / len(names)
            if (share >= self.pass_fraction - 1e-9) != (example.verdict == "pass"):
                raise ValueError(
                    f"examples[{i}] is marked {example.verdict} but shows {len(set(example.concepts))} "
                    f"of {len(names)} concepts (pass_fraction {self.pass_fraction:g})"
                )
        return self

    @property
    def text(self) -> str:
        return self.prompt


# --------------------------------------------------------------------------- recall card


class Flashcard(QuestionBase):
    """A recall card: prompt on the front, answer on the back; its level is ``difficulty``."""

    kind: Literal["flashcard"]
    front: Markdown
    back: Markdown
    points: float = Field(0.0, ge=0, le=0, description="Cards are for revision and never graded.")

    @property
    def has_key(self) -> bool:
        return False

    @property
    def text(self) -> str:
        return self.front


# --------------------------------------------------------------------------- shape and numeric


class ShapeAnswer(QuestionBase):
    """A tensor shape; students may write (64, 20), [64, 20], torch.Size([64, 20]) or 64x20."""

    kind: Literal["shape"]
    prompt: Markdown
    answer: list[int] = Field(description="The shape, e.g. [64, 20]; [] for a scalar.")

    @field_validator("answer")
    @classmethod
    def _non_negative(cls, dims: list[int]) -> list[int]:
        if any(d < 0 for d in dims):
            raise ValueError("tensor dimensions cannot be negative")
        return dims

    @property
    def text(self) -> str:
        return self.prompt


class NumericAnswer(QuestionBase):
    """A number, accepted within an absolute or relative tolerance."""

    kind: Literal["numeric"]
    prompt: Markdown
    answer: float
    tolerance: float = Field(0.0, ge=0, description="Accepted absolute difference.")
    relative_tolerance: float = Field(0.0, ge=0, description="Accepted relative difference.")

    @property
    def text(self) -> str:
        return self.prompt


# --------------------------------------------------------------------------- code: inputs


class TensorInput(StrictModel):
    """A tensor the grader draws (seeded) for each trial."""

    type: Literal["tensor"]
    shape: list[Dim] = Field(description="Sizes or trial symbols, e.g. [B, D].")
    dist: Literal["normal", "uniform", "bernoulli", "randint", "probability"] = "normal"
    low: float = Field(0.0, description="uniform/randint lower bound.")
    high: float = Field(1.0, description="uniform/randint upper bound (exclusive for randint).")
    mean: float = 0.0
    std: float = 1.0
    p: float = Field(0.5, ge=0, le=1, description="bernoulli probability of a 1.")
    dtype: Literal["float32", "float64", "int64", "bool"] = "float32"
    requires_grad: bool = False

    @model_validator(mode="after")
    def _grad_on_floats(self) -> "TensorInput":
        if self.requires_grad and not self.dtype.startswith("float"):
            raise ValueError("only floating-point tensors can require grad")
        return self


class ScalarInput(StrictModel):
    """An int or float, literal or bound by the trial (e.g. ``value: latent_dim``)."""

    type: Literal["int", "float"]
    value: float | int | Symbol

    @field_validator("value", mode="before")
    @classmethod
    def _keep_numbers(cls, value: Any) -> Any:
        return value


class EmbeddingAttr(StrictModel):
    """An ``nn.Embedding(num, dim)`` attribute of a given module, weights drawn N(0, 1)."""

    num_embeddings: Dim
    embedding_dim: Dim


class ModuleInput(StrictModel):
    """A plain ``nn.Module`` carrying attributes, e.g. ``model.codebook = nn.Embedding(512, 64)``."""

    type: Literal["module"]
    embeddings: dict[PythonName, EmbeddingAttr] = Field(min_length=1)


InputSpec = Annotated[Union[TensorInput, ScalarInput, ModuleInput], Field(discriminator="type")]


class Trial(StrictModel):
    """One hidden run: symbol bindings (sizes) and how often to repeat it with fresh seeds."""

    bind: dict[Symbol, int | float] = Field(default_factory=dict)
    repeat: int = Field(1, ge=1, le=4096, description="Runs with the same inputs, new seed each.")


# --------------------------------------------------------------------------- code: probes


class GradProbe(StrictModel):
    """Gradient of ``of.sum()`` with respect to given tensors, taken inside the sandbox."""

    probe: Literal["grad"]
    of: PythonName
    wrt: list[PythonName] = Field(min_length=1)


class CallProbe(StrictModel):
    """Calls an expected callable (e.g. a decoder) on grader-drawn inputs; output is ``as``."""

    probe: Literal["call"]
    fn: PythonName
    args: list[TensorInput] = Field(min_length=1)
    as_: PythonName = Field(alias="as")
    train_mode: bool = False


class FitProbe(StrictModel):
    """Trains an expected module on a grader-drawn batch for a few steps; output is ``as``.

    Returns the module's final predictions on the training inputs; the grader computes the loss
    itself from those bytes, so the verdict never depends on numbers the snippet reports.
    """

    probe: Literal["fit"]
    fn: PythonName
    input: TensorInput
    target: TensorInput
    loss: Literal["bce", "mse"] = "bce"
    steps: int = Field(100, ge=1, le=5000)
    lr: float = Field(1e-2, gt=0)
    as_: PythonName = Field(alias="as")


ProbeSpec = Annotated[Union[GradProbe, CallProbe, FitProbe], Field(discriminator="probe")]


# --------------------------------------------------------------------------- code: checks


class CheckBase(StrictModel):
    """Fields every check shares (Otter-style: name, points, hidden flag, messages)."""

    name: str | None = Field(None, description="Shown to students; a default is derived.")
    points: float = Field(1.0, gt=0)
    hidden: bool = Field(False, description="Hide this check's message from students.")
    message: str | None = Field(None, description="Replaces the default failure message.")

    default_title: ClassVar[str] = "{check} of {of}"
    """How the check is named when the author gives no ``name``; fields fill the braces."""

    @property
    def title(self) -> str:
        """The name students see, in the grader's feedback and on practice and key pages alike."""
        if self.name:
            return self.name
        fields = {k: ", ".join(map(str, v)) if isinstance(v, list) else v for k, v in self.__dict__.items()}
        return self.default_title.format(**fields)


class ShapeCheck(CheckBase):
    """``of`` has one of the shapes in ``is`` (symbols from the trial) or the shape of ``like``."""

    check: Literal["shape"]
    default_title: ClassVar[str] = "shape of {of}"
    of: PythonName
    is_: list[list[Dim]] | None = Field(None, alias="is")
    like: PythonName | None = Field(None, description="A given name, or 'reference'.")

    @model_validator(mode="after")
    def _one_target(self) -> "ShapeCheck":
        if (self.is_ is None) == (self.like is None):
            raise ValueError("a shape check needs exactly one of 'is' and 'like'")
        return self


class DtypeCheck(CheckBase):
    """``of`` has one of the dtypes in ``is``, or the dtype of ``like`` (a given or 'reference')."""

    check: Literal["dtype"]
    default_title: ClassVar[str] = "dtype of {of}"
    of: PythonName
    is_: list[Literal["float16", "bfloat16", "float32", "float64", "int32", "int64", "bool"]] | None = (
        Field(None, alias="is")
    )
    like: PythonName | None = None

    @model_validator(mode="after")
    def _one_target(self) -> "DtypeCheck":
        if (self.is_ is None) == (self.like is None):
            raise ValueError("a dtype check needs exactly one of 'is' and 'like'")
        return self


class CloseCheck(CheckBase):
    """``of`` equals the reference's value on the same hidden inputs, within tolerances."""

    check: Literal["close"]
    default_title: ClassVar[str] = "value of {of}"
    of: PythonName
    rtol: float = Field(1e-4, ge=0)
    atol: float = Field(1e-5, ge=0)


class RangeCheck(CheckBase):
    """Every element of ``of`` lies in [min, max]."""

    check: Literal["range"]
    default_title: ClassVar[str] = "range of {of}"
    of: PythonName
    min: float | None = None
    max: float | None = None


class GaussianCheck(CheckBase):
    """``of`` is a sample of N(mean, exp(logvar)): standardised residuals have mean 0 and variance
    1, unrelated to the variance, with tolerances for a false failure below 1e-6."""

    check: Literal["gaussian"]
    default_title: ClassVar[str] = "{of} ~ N({mean}, exp({logvar}))"
    of: PythonName
    mean: PythonName
    logvar: PythonName


class IndependenceCheck(CheckBase):
    """Standardised residuals of ``of`` are uncorrelated across elements, rows and repeats."""

    check: Literal["independent"]
    default_title: ClassVar[str] = "independent noise in {of}"
    of: PythonName
    mean: PythonName
    logvar: PythonName


class FreshCheck(CheckBase):
    """Repeats of a trial (same inputs, new seed) give different values: no fixed seed."""

    check: Literal["fresh"]
    default_title: ClassVar[str] = "fresh randomness in {of}"
    of: PythonName


class GradientCheck(CheckBase):
    """A grad probe's result: ``nonzero`` (gradient reaches every input) or ``reference``
    (matches the reference's gradient on the same inputs)."""

    check: Literal["gradient"]
    default_title: ClassVar[str] = "gradient of {of} w.r.t. {wrt}"
    of: PythonName
    wrt: list[PythonName] = Field(min_length=1)
    compare: Literal["nonzero", "reference"] = "nonzero"
    rtol: float = Field(1e-3, ge=0)
    atol: float = Field(1e-4, ge=0)


class RowsFromCheck(CheckBase):
    """Every row of ``of`` is exactly a row of the embedding table ``table`` (e.g. model.codebook)."""

    check: Literal["rows_from"]
    default_title: ClassVar[str] = "rows of {of} come from {table}"
    of: PythonName
    table: str = Field(pattern=r"^[A-Za-z_]\w*\.[A-Za-z_]\w*$", description="given.attribute")


class UniformRowsCheck(CheckBase):
    """Rows of ``of``, pooled over repeats, are drawn uniformly from all rows of ``table``."""

    check: Literal["uniform_rows"]
    default_title: ClassVar[str] = "codes in {of} uniform over {table}"
    of: PythonName
    table: str = Field(pattern=r"^[A-Za-z_]\w*\.[A-Za-z_]\w*$")


class WithReplacementCheck(CheckBase):
    """Codes in ``of`` (rows of ``table``) repeat within a run as often as independent uniform
    draws with replacement do (the birthday problem), so distinct draws (``randperm``) fail."""

    check: Literal["with_replacement"]
    default_title: ClassVar[str] = "codes in {of} drawn independently, with replacement"
    of: PythonName
    table: str = Field(pattern=r"^[A-Za-z_]\w*\.[A-Za-z_]\w*$", description="given.attribute")


class NearestCheck(CheckBase):
    """``of`` holds, for each row of ``rows``, the index of a nearest row of ``table``."""

    check: Literal["nearest"]
    default_title: ClassVar[str] = "{of} picks nearest rows of {table}"
    of: PythonName
    rows: PythonName = Field(description="The query rows; one index is expected per row.")
    table: PythonName


class ModuleCheck(CheckBase):
    """``of`` is an ``nn.Module`` with at least ``min_trainable`` trainable parameters."""

    check: Literal["module"]
    default_title: ClassVar[str] = "{of} is a trainable nn.Module"
    of: PythonName
    min_trainable: int = Field(1, ge=0)


class FitCheck(CheckBase):
    """A fit probe's predictions reach a loss below ``below`` (mean per element) on its batch."""

    check: Literal["fit"]
    default_title: ClassVar[str] = "{of} fits a small batch"
    of: PythonName
    below: float = Field(gt=0)


CheckSpec = Annotated[
    Union[
        ShapeCheck,
        DtypeCheck,
        CloseCheck,
        RangeCheck,
        GaussianCheck,
        IndependenceCheck,
        FreshCheck,
        GradientCheck,
        RowsFromCheck,
        UniformRowsCheck,
        WithReplacementCheck,
        NearestCheck,
        ModuleCheck,
        FitCheck,
    ],
    Field(discriminator="check"),
]


class Limits(StrictModel):
    """Resource limits for one graded snippet (all trials together)."""

    time_s: float = Field(5.0, gt=0, le=600, description="Wall-clock limit.")
    cpu_s: float | None = Field(None, gt=0, le=600, description="CPU limit; default time_s.")
    memory_mb: int = Field(1024, ge=64, le=65536, description="Memory beyond the warm worker's.")
    processes: int = Field(8, ge=1, le=512, description="Processes and threads the snippet may add.")
    output_kb: int = Field(64, ge=1, le=65536, description="stdout + stderr kept; more is cut.")
    file_mb: int = Field(16, ge=0, le=4096, description="Largest file the snippet may write.")


class Mutant(StrictModel):
    """A known-wrong answer; `vaequiz verify` proves that the checks reject it."""

    code: PythonSource
    why: Markdown = Field(description="The misconception it encodes, shown in the answer key.")


class CodeQuestion(QuestionBase):
    """A PyTorch snippet run in the sandbox on hidden inputs and checked against the reference.

    Before it runs, ``torch``, ``nn`` (torch.nn) and ``F`` (torch.nn.functional) are bound, plus
    every ``given`` name; afterwards the grader reads the ``expect`` names.
    """

    kind: Literal["code"]
    prompt: Markdown
    starter: str | None = Field(None, description="Code placed in the answer box.")
    given: dict[PythonName, InputSpec] = Field(default_factory=dict)
    expect: list[PythonName] = Field(min_length=1)
    reference: PythonSource
    mutants: list[Mutant] = Field(default_factory=list)
    trials: list[Trial] = Field(min_length=1)
    probes: list[ProbeSpec] = Field(default_factory=list)
    checks: list[CheckSpec] = Field(min_length=1)
    limits: Limits = Field(default_factory=Limits)

    @field_validator("given", "expect")
    @classmethod
    def _names_not_reserved(cls, value: Any) -> Any:
        for name in value:
            _check_identifier(name)
            if name in {"torch", "nn", "F"}:
                raise ValueError(f"{name!r} is bound by the grader already")
        return value

    @field_validator("reference")
    @classmethod
    def _reference_compiles(cls, source: str) -> str:
        _compile_or_explain(source, "reference")
        return source

    @model_validator(mode="after")
    def _cross_references(self) -> "CodeQuestion":
        symbols_needed = set()
        for spec in self.given.values():
            symbols_needed |= _symbols_of(spec)
        for probe in self.probes:
            for spec in _probe_inputs(probe):
                symbols_needed |= _symbols_of(spec)
        for i, trial in enumerate(self.trials):
            missing = sorted(symbols_needed - set(trial.bind))
            if missing:
                raise ValueError(f"trials[{i}] does not bind {', '.join(missing)}")
        if not _reference_binds(self.reference, self.expect):
            missing = [n for n in self.expect if n not in _assigned_names(self.reference)]
            raise ValueError(
                f"the reference never assigns {', '.join(missing)}, which 'expect' lists"
            )
        produced = set(self.expect) | set(self.given)
        for probe in self.probes:
            target = probe.of if isinstance(probe, GradProbe) else probe.fn
            if target not in self.expect:
                raise ValueError(f"probe uses {target!r}, which is not in 'expect'")
            if isinstance(probe, GradProbe):
                produced |= {grad_output_name(probe.of, w) for w in probe.wrt}
                for w in probe.wrt:
                    if w not in self.given:
                        raise ValueError(f"grad probe wrt {w!r}, which is not a given name")
            else:
                produced.add(probe.as_)
        for check in self.checks:
            for name in _check_names(check):
                if name not in produced and name != "reference":
                    raise ValueError(
                        f"check '{check.check}' refers to {name!r}, which is neither given, "
                        "expected nor produced by a probe"
                    )
            if isinstance(check, GradientCheck):
                missing = [w for w in check.wrt if grad_output_name(check.of, w) not in produced]
                if missing:
                    raise ValueError(
                        f"gradient check of {check.of!r} wrt {', '.join(missing)} needs a matching "
                        "'grad' probe"
                    )
        return self

    @property
    def text(self) -> str:
        return self.prompt


def models_in(annotation: Any) -> list[type[BaseModel]]:
    """Every model an annotation can hold: itself, list/dict items, union members."""
    if isinstance(annotation, type) and issubclass(annotation, BaseModel):
        return [annotation]
    return [m for arg in typing.get_args(annotation) for m in models_in(arg)]


def grad_output_name(of: str, wrt: str) -> str:
    """Name under which a grad probe's result travels back from the sandbox."""
    return f"grad__{of}__{wrt}"


def _compile_or_explain(source: str, what: str) -> None:
    try:
        compile(source, f"<{what}>", "exec")
    except SyntaxError as err:
        raise ValueError(f"{what} is not valid Python: line {err.lineno}: {err.msg}")


def _assigned_names(source: str) -> set[str]:
    import ast

    names: set[str] = set()
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.Name) and isinstance(node.ctx, ast.Store):
            names.add(node.id)
        elif isinstance(node, (ast.FunctionDef, ast.ClassDef, ast.AsyncFunctionDef)):
            names.add(node.name)
        elif isinstance(node, (ast.Import, ast.ImportFrom)):
            names |= {(a.asname or a.name).split(".")[0] for a in node.names}
    return names


def _reference_binds(source: str, names: list[str]) -> bool:
    return set(names) <= _assigned_names(source)


def _symbols_of(spec: Any) -> set[str]:
    if isinstance(spec, TensorInput):
        return {d for d in spec.shape if isinstance(d, str)}
    if isinstance(spec, ScalarInput):
        return {spec.value} if isinstance(spec.value, str) else set()
    if isinstance(spec, ModuleInput):
        return {
            d
            for e in spec.embeddings.values()
            for d in (e.num_embeddings, e.embedding_dim)
            if isinstance(d, str)
        }
    return set()


def _probe_inputs(probe: Any) -> list[Any]:
    if isinstance(probe, CallProbe):
        return list(probe.args)
    if isinstance(probe, FitProbe):
        return [probe.input, probe.target]
    return []


def _check_names(check: Any) -> list[str]:
    names = [check.of]
    for attr in ("like", "mean", "logvar", "rows", "table"):
        value = getattr(check, attr, None)
        if isinstance(value, str):
            names.append(value.split(".")[0])
    return names


# --------------------------------------------------------------------------- the union

Question = Annotated[
    Union[MultipleChoice, ShortAnswer, Flashcard, ShapeAnswer, NumericAnswer, CodeQuestion],
    Field(discriminator="kind"),
]
QUESTION_KINDS: dict[str, type[QuestionBase]] = {
    "mcq": MultipleChoice,
    "short_answer": ShortAnswer,
    "flashcard": Flashcard,
    "shape": ShapeAnswer,
    "numeric": NumericAnswer,
    "code": CodeQuestion,
}
AnyQuestion = Union[MultipleChoice, ShortAnswer, Flashcard, ShapeAnswer, NumericAnswer, CodeQuestion]

question_adapter: TypeAdapter[AnyQuestion] = TypeAdapter(Question)
BankFile = Union[list[Question], Question]
bank_file_adapter: TypeAdapter[Any] = TypeAdapter(BankFile)
