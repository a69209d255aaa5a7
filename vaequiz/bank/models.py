"""The question bank's data model: the single source of truth for the YAML format.

Every other format (JSON Schema, docs, the loader's error messages, exports) is derived from
these classes, so a field is added here once and appears everywhere.
"""

from __future__ import annotations

import keyword
import re
import typing
from typing import Annotated, Any, ClassVar, Literal, Union

from pydantic import (
    AfterValidator,
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Discriminator,
    Field,
    TypeAdapter,
    Tag,
    ValidationError,
    ValidationInfo,
    field_validator,
    model_validator,
)
from pydantic_core import InitErrorDetails, PydanticCustomError, core_schema

from vaequiz.compat import StrEnum
from vaequiz.expressions import ExpressionError, parse_expression

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
NAME_PATTERN = r"^[A-Za-z_][A-Za-z0-9_]*$"
Symbol = Annotated[str, Field(pattern=NAME_PATTERN)]


def _whole_number(value: Any) -> Any:
    """JSON Schema counts 3.0 as an integer, so the loader does too (never ``true`` or ``"3"``)."""
    if isinstance(value, float) and value.is_integer():
        return int(value)
    return value


Int = Annotated[int, BeforeValidator(_whole_number)]
"""An integer as the JSON Schema's ``integer`` accepts it: 3 or 3.0."""
Dim = Union[Int, Symbol]
"""A tensor dimension: a literal size or a symbol bound by each trial (e.g. ``B``)."""


class StrictModel(BaseModel):
    """Base for every format model: unknown keys are errors, so typos never pass silently."""

    model_config = ConfigDict(extra="forbid", coerce_numbers_to_str=True, populate_by_name=True)


class BankModel(StrictModel):
    """Base for every bank-file model: values must have the JSON type the schema states.

    YAML types silently (``id: 12345`` is a number, ``points: "3"`` a string, ``text: yes`` a
    boolean); strict validation refuses each, so what the JSON Schema rejects, ``validate``
    rejects. A number where a float is expected is fine, as in JSON Schema.
    """

    model_config = ConfigDict(strict=True, coerce_numbers_to_str=False)


RuleProblems = list[tuple[tuple[Union[str, int], ...], str]]
"""Broken rules, each a path below the validated field (or model) and a message."""


def rule_errors(
    problems: RuleProblems, value: Any = None, along: ValidationError | None = None
) -> ValidationError:
    """Several broken rules at once, each at a path below the field (or model) that checks them,
    plus the errors of ``along`` (a validator raises one error holding every problem).

    Raised from a validator, the paths are appended to the validator's own location, so the
    loader reports every problem in one run, each at the line of the value it is about.
    """
    details = [_error_details(error) for error in along.errors()] if along else []
    details += [
        InitErrorDetails(type=PydanticCustomError("rule", message), loc=path, input=value)
        for path, message in problems
    ]
    return ValidationError.from_exception_data("rules", details)


_PYDANTIC_ERROR_TYPES = frozenset(typing.get_args(core_schema.ErrorType))


def _error_details(error: Any) -> InitErrorDetails:
    """One reported error back as raisable details, the same type, place and message."""
    if error["type"] not in _PYDANTIC_ERROR_TYPES:
        custom = PydanticCustomError(error["type"], error["msg"])
        return InitErrorDetails(type=custom, loc=error["loc"], input=error["input"])
    details = InitErrorDetails(type=error["type"], loc=error["loc"], input=error["input"])
    if "ctx" in error:
        details["ctx"] = error["ctx"]
    return details


def validated_with_rules(data: Any, handler: Any, rules: Any) -> Any:
    """Validate ``data`` and check its rules between fields on the values as written, in one go.

    A field validator stops once a field it reads is invalid, and an after-validator waits
    until every field is valid; rules that read the written values (those of the right type)
    are reported in the same run as every other mistake of the model, each at its own value.
    """
    problems = rules(data) if isinstance(data, dict) else []
    try:
        model = handler(data)
    except ValidationError as err:
        raise rule_errors(problems, data, along=err) from None
    if problems:
        raise rule_errors(problems, data)
    return model


def _written(item: Any, name: str) -> Any:
    """A field as written (a mapping) or as built in Python (a model; ``name`` may be an alias)."""
    if isinstance(item, dict):
        return item.get(name)
    if isinstance(item, BaseModel):
        for attribute, field in type(item).model_fields.items():
            if name in (attribute, field.alias):
                return getattr(item, attribute)
    return None


def _is_number(value: Any) -> bool:
    """A number as written (YAML ``true`` is not one)."""
    return isinstance(value, (int, float)) and not isinstance(value, bool)


def _names(value: Any) -> list[str]:
    """The strings of a list as written (other items are reported by their field)."""
    return [v for v in value if isinstance(v, str)] if isinstance(value, list) else []


class Difficulty(StrEnum):
    beginner = "beginner"
    intermediate = "intermediate"
    advanced = "advanced"


PythonName = Annotated[str, Field(pattern=r"^[A-Za-z_][A-Za-z0-9_]*$", max_length=64)]


_PLAIN_WITHOUT_PARAMS: dict[str, dict[str, Any]] = {
    "shape": {"answer": {"type": "array", "items": {"type": "integer", "minimum": 0}}},
    "numeric": {"answer": {"type": "number"}},
    "mcq": {"options": {"type": "array", "items": {"not": {"required": ["correct_if"]}}}},
}
"""What a question without ``params`` may not use: expression answers and ``correct_if``."""


def _plain_without_params(schema: dict[str, Any], model: Any) -> None:
    """The schema states what the validator enforces without ``params``: answers are numbers
    and ``where`` is empty (an expression needs params to read)."""
    if "params" not in schema.get("properties", {}):
        return
    kind = typing.get_args(model.model_fields["kind"].annotation)[0] if "kind" in model.model_fields else None
    plain = {"where": {"type": "array", "maxItems": 0}, **_PLAIN_WITHOUT_PARAMS.get(kind, {})}
    schema["if"] = {"required": ["params"], "properties": {"params": {"type": "object", "minProperties": 1}}}
    schema["else"] = {"properties": plain}


def _explanation_required_when_keyed(schema: dict[str, Any], model: Any) -> None:
    """The schema states what the validator enforces: a keyed kind needs a real explanation
    (and, without params, plain answers)."""
    _plain_without_params(schema, model)
    if not getattr(model, "keyed", False) or "explanation" not in schema.get("properties", {}):
        return
    field = schema["properties"]["explanation"]
    field.pop("default", None)
    texts = [s for s in field.pop("anyOf", []) if s.get("type") != "null"]
    if len(texts) == 1:
        field.update({k: v for k, v in texts[0].items() if k != "description"})
    schema.setdefault("required", []).append("explanation")


EXPRESSION_SCHEMA_PATTERN = r"^(?!.*\b(?!(?:and|or|not|if|else)\b)\w+\s+(?!(?:and|or|not|if|else)\b)\w)"
"""For editors: two names or numbers in a row ("x y") cannot be an expression; the loader
parses every expression fully and says exactly what is wrong."""


def _parses(source: str) -> str:
    try:
        parse_expression(source)
    except ExpressionError as err:
        raise PydanticCustomError("expression", str(err)) from None
    return source


ExpressionText = Annotated[
    str,
    Field(
        min_length=1,
        max_length=500,
        description="An expression of the question's params: numbers, + - * / // % **, "
        "comparisons, and/or/not, 'x if c else y', min/max/abs/log/exp/sqrt/floor/ceil/round.",
        examples=["B * D", "0.5 * (mu**2 + sigma**2 - log(sigma**2) - 1)"],
        json_schema_extra={"pattern": EXPRESSION_SCHEMA_PATTERN},
    ),
    AfterValidator(_parses),
]
"""An expression text, checked to parse (its names are checked against the params by the
question); evaluated by :mod:`vaequiz.expressions`, never by Python's eval."""
ParamNumber = Union[Int, float]


class RangeParam(BankModel):
    """Values from ``low`` to ``high`` (inclusive) in steps of ``step``; whole numbers when all
    three are whole."""

    low: ParamNumber
    high: ParamNumber
    step: ParamNumber = Field(1, gt=0)


def _param_kind(value: Any) -> str | None:
    if isinstance(value, str):
        return "derived"
    if isinstance(value, list):
        return "choice"
    if isinstance(value, (dict, RangeParam)):
        return "range"
    return None


ParamSpec = Annotated[
    Union[
        Annotated[
            Annotated[list[ParamNumber], Field(min_length=1, max_length=1000, description="A choice of values.")],
            Tag("choice"),
        ],
        Annotated[RangeParam, Tag("range")],
        Annotated[ExpressionText, Field(description="Derived from other params, e.g. 'C * 2'."), Tag("derived")],
    ],
    Discriminator(
        _param_kind,
        custom_error_type="param_kind",
        custom_error_message="a param is a list of values, a range {low, high, step} or an expression text",
    ),
]
"""One param: a choice, a range or a derived value, told apart by the value's type so a
mistake is explained once, for the kind the author wrote."""


class QuestionBase(BankModel):
    """Fields every question kind shares."""

    model_config = ConfigDict(json_schema_extra=_explanation_required_when_keyed)
    keyed: ClassVar[bool] = True
    """Whether the kind has a key (and so needs an ``explanation``)."""

    id: QuestionId
    topics: list[Topic] = Field(min_length=1, description="Tags used to select questions.")
    difficulty: Annotated[Difficulty, Field(strict=False)]
    points: float = Field(1.0, ge=0, le=1000, description="Points the item is worth.")
    hint: Markdown | None = Field(None, description="Shown on request in practice mode.")
    explanation: Markdown | None = Field(
        None,
        description="Why the key is right; required for every kind with a key.",
        validate_default=True,
    )
    source: str = Field(
        pattern=SOURCE_PATTERN,
        description="The seed the item comes from (e.g. '002_b75ee90b928972ce#q4') or 'original'.",
    )
    params: dict[PythonName, ParamSpec] | None = Field(
        None,
        description="Per-student numbers: a choice list ([16, 32, 64]), a range "
        "({low: -2, high: 2, step: 0.5}) or an expression of other params ('C * 2'); texts show "
        "them as {{ B }} or {{ sigma:.2f }}, and answers may be expressions of them.",
    )
    where: list[ExpressionText] = Field(
        default_factory=list, description="Constraints every draw of the params satisfies, e.g. 'D < H'."
    )

    @field_validator("where", mode="before", json_schema_input_type=Union[ExpressionText, list[ExpressionText]])
    @classmethod
    def _where_as_list(cls, value: Any) -> Any:
        return [value] if isinstance(value, str) else value

    @model_validator(mode="after")
    def _params_agree(self) -> Any:
        from vaequiz.bank.parametric import param_problems

        problems = param_problems(self)
        if problems:
            raise rule_errors(problems, self)
        return self

    @field_validator("topics")
    @classmethod
    def _unique_topics(cls, topics: list[str]) -> list[str]:
        repeated = [(i,) for i, t in enumerate(topics) if t in topics[:i]]
        if repeated:
            raise rule_errors([(at, f"topic listed twice: {topics[at[0]]}") for at in repeated], topics)
        return topics

    @field_validator("explanation")
    @classmethod
    def _explanation_when_keyed(cls, explanation: str | None) -> str | None:
        if cls.keyed and explanation is None:
            raise PydanticCustomError(
                "field_missing", "missing required field 'explanation' (say why the key is right)"
            )
        return explanation

    @property
    def has_key(self) -> bool:
        return self.keyed

    @property
    def text(self) -> str:
        """The main question text (stem, prompt or card front)."""
        raise NotImplementedError


# --------------------------------------------------------------------------- multiple choice


class Option(BankModel):
    """One labelled answer option; ``text`` is Markdown, ``code`` a Python snippet shown as code."""

    model_config = ConfigDict(
        json_schema_extra={
            "anyOf": [
                {"required": [name], "properties": {name: {"type": "string"}}}
                for name in ("text", "code")
            ]
        }
    )
    label: Label
    text: Markdown | None = None
    code: PythonSource | None = Field(
        None, description="Option given as Python code (run by `vaequiz verify` when linked)."
    )
    feedback: Markdown | None = Field(
        None, description="Why a student who picks this option is wrong (or right)."
    )
    correct_if: ExpressionText | None = Field(
        None,
        description="Parametric questions: the option is right for a draw exactly when this "
        "expression of the params is true (options without it are right when keyed in 'answer').",
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
    answer: list[Label] = Field(
        min_length=1, description="The keyed label, or a list for multi-select."
    )
    multiple: bool = Field(False, description="Multi-select: students tick every correct option.")
    shuffle: bool = Field(True, description="Options may be shuffled in per-student variants.")
    code_question: QuestionId | None = Field(
        None,
        description="Id of the code question every option's `code` is graded against by verify.",
    )

    @field_validator("answer", mode="before", json_schema_input_type=Union[Label, list[Label]])
    @classmethod
    def _answer_as_list(cls, value: Any) -> Any:
        return [value] if isinstance(value, str) else value

    @model_validator(mode="wrap")
    @classmethod
    def _key_matches_options(cls, data: Any, handler: Any) -> Any:
        return validated_with_rules(data, handler, _key_and_options_problems)

    @property
    def text(self) -> str:
        return self.stem


def _is_label(value: Any) -> bool:
    return isinstance(value, str) and re.fullmatch(LABEL_PATTERN, value) is not None


def _key_and_options_problems(data: dict[str, Any]) -> RuleProblems:
    """The MCQ's rules between fields, over the values that have the right type (a value of the
    wrong type is reported by its own field)."""
    problems: RuleProblems = []
    options = data.get("options")
    labels: list[str] | None = None
    if isinstance(options, list):
        labels = [chr(ord("A") + i) for i in range(len(options))]
        contents: list[str | None] = []
        for i, option in enumerate(options):
            label = _written(option, "label")
            if _is_label(label) and label != labels[i]:
                problems.append(
                    (("options", i, "label"), f"option {i + 1} must be labelled {labels[i]} "
                     f"(options are labelled A, B, C, ... in order); got {label}")
                )
            text, code = _written(option, "text"), _written(option, "code")
            content = None
            if all(v is None or isinstance(v, str) for v in (text, code)) and (text or code):
                content = (text or "").strip() + "\0" + (code or "").strip()
            if content is not None and content in contents:
                first = labels[contents.index(content)]
                problems.append((("options", i), f"options {first} and {labels[i]} are identical"))
            contents.append(content)
    answer = data.get("answer")
    keys = [answer] if isinstance(answer, str) else answer if isinstance(answer, list) else None
    if keys:  # an empty list is reported by the field itself
        for k, key in enumerate(keys):
            at: tuple[str | int, ...] = ("answer",) if isinstance(answer, str) else ("answer", k)
            if not _is_label(key):
                continue  # reported by the field itself
            if labels is not None and key not in labels:
                problems.append((at, f"answer {key} is not one of the options ({', '.join(labels)})"))
            if key in keys[:k]:
                problems.append((at, f"answer lists {key} twice"))
        multiple = data.get("multiple", False)
        if multiple is True and len(keys) < 2:
            problems.append(
                (("answer",), "a multi-select question ('multiple: true') needs at least two keys")
            )
        if multiple is False and len(keys) != 1:
            problems.append(
                (("answer",), "a single-answer question has exactly one key; set 'multiple: true' "
                 "for several")
            )
    code_question = data.get("code_question")
    if isinstance(code_question, str) and code_question and labels is not None:
        missing = [labels[i] for i, o in enumerate(options) if not _written(o, "code")]
        if missing:
            problems.append(
                (("code_question",), f"with 'code_question' every option needs 'code'; missing "
                 f"in {', '.join(missing)}")
            )
    return problems


# --------------------------------------------------------------------------- short answer


class Concept(BankModel):
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
        problems: RuleProblems = []
        for i, pattern in enumerate(patterns):
            try:
                re.compile(pattern)
            except re.error as err:
                problems.append(
                    ((i,), f"pattern {pattern!r} is not a valid regular expression: {err}")
                )
        if problems:
            raise rule_errors(problems, patterns)
        return patterns

    @model_validator(mode="after")
    def _has_matchers(self) -> "Concept":
        if not self.phrasings and not self.patterns:
            raise ValueError(f"concept {self.name!r} needs at least one phrasing or pattern")
        return self


class RubricExample(BankModel):
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

    @field_validator("rubric")
    @classmethod
    def _unique_concepts(cls, rubric: list[Concept]) -> list[Concept]:
        names = [c.name for c in rubric]
        problems: RuleProblems = [
            ((i, "name"), f"two rubric concepts are named {name!r}")
            for i, name in enumerate(names)
            if name in names[:i]
        ]
        if problems:
            raise rule_errors(problems, rubric)
        return rubric

    @model_validator(mode="after")
    def _examples_match_rubric(self) -> "ShortAnswer":
        """Each marked example names real concepts, and its pass/fail follows from them."""
        names = [c.name for c in self.rubric]
        problems: RuleProblems = []
        for i, example in enumerate(self.examples):
            unknown = [c for c in example.concepts if c not in names]
            if unknown:
                problems.append(
                    (("examples", i, "concepts"),
                     f"names {unknown[0]!r}, which is not a rubric concept; concepts are: {'; '.join(names)}")
                )
                continue
            shown = len(set(example.concepts))
            if (shown / len(names) >= self.pass_fraction - 1e-9) != (example.verdict == "pass"):
                problems.append(
                    (("examples", i, "verdict"),
                     f"marked {example.verdict} but shows {shown} of {len(names)} concepts "
                     f"(pass_fraction {self.pass_fraction:g})")
                )
        if problems:
            raise rule_errors(problems, self.examples)
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
    keyed: ClassVar[bool] = False

    @property
    def text(self) -> str:
        return self.front


# --------------------------------------------------------------------------- shape and numeric


class ShapeAnswer(QuestionBase):
    """A tensor shape; students may write (64, 20), [64, 20], torch.Size([64, 20]) or 64x20."""

    kind: Literal["shape"]
    prompt: Markdown
    answer: list[Union[Annotated[Int, Field(ge=0)], ExpressionText]] = Field(
        description="The shape, e.g. [64, 20]; [] for a scalar; sizes may be expressions of the "
        "params, e.g. [B, D]."
    )

    @property
    def text(self) -> str:
        return self.prompt


class NumericAnswer(QuestionBase):
    """A number, accepted within an absolute or relative tolerance."""

    kind: Literal["numeric"]
    prompt: Markdown
    answer: Union[float, ExpressionText] = Field(
        description="The value, or an expression of the params, e.g. '0.5 * (mu**2 - 1)'."
    )
    tolerance: float = Field(0.0, ge=0, description="Accepted absolute difference.")
    relative_tolerance: float = Field(0.0, ge=0, description="Accepted relative difference.")

    @property
    def text(self) -> str:
        return self.prompt


# --------------------------------------------------------------------------- code: inputs


class TensorInput(BankModel):
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

    @field_validator("requires_grad")
    @classmethod
    def _grad_on_floats(cls, requires_grad: bool, info: ValidationInfo) -> bool:
        dtype = info.data.get("dtype", "float32")
        if requires_grad and not dtype.startswith("float"):
            raise ValueError(f"only floating-point tensors can require grad; this one is {dtype}")
        return requires_grad


class ScalarInput(BankModel):
    """An int or float, literal or bound by the trial (e.g. ``value: latent_dim``)."""

    type: Literal["int", "float"]
    value: float | int | Symbol

    @field_validator("value", mode="before")
    @classmethod
    def _keep_numbers(cls, value: Any) -> Any:
        return value


class EmbeddingAttr(BankModel):
    """An ``nn.Embedding(num, dim)`` attribute of a given module, weights drawn N(0, 1)."""

    num_embeddings: Dim
    embedding_dim: Dim


class ModuleInput(BankModel):
    """A plain ``nn.Module`` carrying attributes, e.g. ``model.codebook = nn.Embedding(512, 64)``."""

    type: Literal["module"]
    embeddings: dict[PythonName, EmbeddingAttr] = Field(min_length=1)


InputSpec = Annotated[Union[TensorInput, ScalarInput, ModuleInput], Field(discriminator="type")]


class Trial(BankModel):
    """One hidden run: symbol bindings (sizes) and how often to repeat it with fresh seeds."""

    bind: dict[Symbol, int | float] = Field(default_factory=dict)
    repeat: Int = Field(1, ge=1, le=4096, description="Runs with the same inputs, new seed each.")


# --------------------------------------------------------------------------- code: probes


class GradProbe(BankModel):
    """Gradient of ``of.sum()`` with respect to given tensors, taken inside the sandbox."""

    probe: Literal["grad"]
    of: PythonName
    wrt: list[PythonName] = Field(min_length=1)


class CallProbe(BankModel):
    """Calls an expected callable (e.g. a decoder) on grader-drawn inputs; output is ``as``."""

    probe: Literal["call"]
    fn: PythonName
    args: list[TensorInput] = Field(min_length=1)
    as_: PythonName = Field(alias="as")
    train_mode: bool = False


class FitProbe(BankModel):
    """Trains an expected module on a grader-drawn batch for a few steps; output is ``as``.

    Returns the module's final predictions on the training inputs; the grader computes the loss
    itself from those bytes, so the verdict never depends on numbers the snippet reports.
    """

    probe: Literal["fit"]
    fn: PythonName
    input: TensorInput
    target: TensorInput
    loss: Literal["bce", "mse"] = "bce"
    steps: Int = Field(100, ge=1, le=5000)
    lr: float = Field(1e-2, gt=0)
    stop_below: float | None = Field(
        None,
        gt=0,
        description=(
            "End training early once the eval-mode predictions' loss is below this (far below the "
            "fit check's `below`): a model that gets there has fitted the batch, and one that does "
            "not still trains every step."
        ),
    )
    as_: PythonName = Field(alias="as")


ProbeSpec = Annotated[Union[GradProbe, CallProbe, FitProbe], Field(discriminator="probe")]


# --------------------------------------------------------------------------- code: checks


class CheckBase(BankModel):
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


ONE_TARGET_SCHEMA: dict[str, Any] = {
    "oneOf": [
        {"required": [name], "properties": {name: {"not": {"type": "null"}}}}
        for name in ("is", "like")
    ]
}
"""A shape or dtype check names exactly one of 'is' and 'like' (the schema says so too)."""


class ShapeCheck(CheckBase):
    """``of`` has one of the shapes in ``is`` (symbols from the trial) or the shape of ``like``."""

    model_config = ConfigDict(json_schema_extra=ONE_TARGET_SCHEMA)
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

    model_config = ConfigDict(json_schema_extra=ONE_TARGET_SCHEMA)
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
    min_trainable: Int = Field(1, ge=0)


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


class Limits(BankModel):
    """Resource limits for one graded snippet (all trials together)."""

    time_s: float = Field(5.0, gt=0, le=600, description="Wall-clock limit.")
    cpu_s: float | None = Field(None, gt=0, le=600, description="CPU limit; default time_s.")
    memory_mb: Int = Field(1024, ge=64, le=65536, description="Memory beyond the warm worker's.")
    processes: Int = Field(8, ge=1, le=512, description="Processes and threads the snippet may add.")
    output_kb: Int = Field(64, ge=1, le=65536, description="stdout + stderr kept; more is cut.")
    file_mb: Int = Field(16, ge=0, le=4096, description="Largest file the snippet may write.")


class Mutant(BankModel):
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

    @model_validator(mode="wrap")
    @classmethod
    def _names_agree(cls, data: Any, handler: Any) -> Any:
        return validated_with_rules(data, handler, _code_rule_problems)

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


GRADER_NAMES = frozenset({"torch", "nn", "F"})
"""Names the grader binds before a snippet runs."""


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


def _is_name(value: Any) -> bool:
    return isinstance(value, str) and re.fullmatch(NAME_PATTERN, value) is not None


def _symbols_of(spec: Any) -> set[str]:
    """Trial symbols an input spec uses, as written."""
    kind = _written(spec, "type")
    dims: list[Any] = []
    if kind == "tensor":
        dims = _written(spec, "shape") or []
    elif kind in ("int", "float"):
        dims = [_written(spec, "value")]
    elif kind == "module":
        embeddings = _written(spec, "embeddings")
        for attr in embeddings.values() if isinstance(embeddings, dict) else []:
            dims += [_written(attr, "num_embeddings"), _written(attr, "embedding_dim")]
    return {d for d in dims if _is_name(d)} if isinstance(dims, list) else set()


def _probe_inputs(probe: Any) -> list[Any]:
    kind = _written(probe, "probe")
    if kind == "call":
        args = _written(probe, "args")
        return [{"type": "tensor", **a} if isinstance(a, dict) else a for a in args or []] if isinstance(args, list) else []
    if kind == "fit":
        return [{"type": "tensor", **t} if isinstance(t, dict) else t
                for t in (_written(probe, "input"), _written(probe, "target")) if t is not None]
    return []


def _code_rule_problems(data: dict[str, Any]) -> RuleProblems:
    """A code question's rules between given, expect, reference, trials, probes and checks,
    over the values written with the right type (others are reported by their own field)."""
    problems: RuleProblems = []
    given = data.get("given") if isinstance(data.get("given"), dict) else {}
    expect = data.get("expect")
    for where, names in (("given", [(n, n) for n in given]), ("expect", enumerate(_names(expect)))):
        for at, name in names:
            if _is_name(name) and (keyword.iskeyword(name) or name in GRADER_NAMES):
                why = "is a Python keyword" if keyword.iskeyword(name) else "is bound by the grader already"
                problems.append(((where, at), f"{name!r} {why}"))
    reference = data.get("reference")
    if isinstance(reference, str):
        try:
            compile(reference, "<reference>", "exec")
            assigned = _assigned_names(reference)
        except SyntaxError as err:
            problems.append((("reference",), f"reference is not valid Python: line {err.lineno}: {err.msg}"))
        except ValueError as err:  # a NUL byte
            problems.append((("reference",), f"reference is not valid Python: {err}"))
        else:
            missing = [n for n in _names(expect) if n not in assigned]
            if missing:
                problems.append(
                    (("reference",), f"the reference never assigns {', '.join(missing)}, which "
                     "'expect' lists")
                )
    trials = data.get("trials") if isinstance(data.get("trials"), list) else []
    binds = [_written(t, "bind") for t in trials]
    bound = [set(b) if isinstance(b, dict) else None for b in binds]  # None: unreadable
    needed: dict[str, str] = {}
    for name, spec in given.items():
        needed.update({symbol: f"given {name!r}" for symbol in _symbols_of(spec)})
    for i, names in enumerate(bound):
        missing = sorted(set(needed) - names) if names is not None else []
        if missing:
            users = ", ".join(sorted({needed[s] for s in missing}))
            problems.append(
                (("trials", i, "bind"), f"trials[{i}] does not bind {', '.join(missing)} (used by {users})")
            )
    probes = data.get("probes") if isinstance(data.get("probes"), list) else []
    produced = set(_names(expect)) | {n for n in given if isinstance(n, str)}
    outputs_known = isinstance(expect, list)
    for i, probe in enumerate(probes):
        kind = _written(probe, "probe")
        target_field = "of" if kind == "grad" else "fn"
        target = _written(probe, target_field)
        if isinstance(expect, list) and _is_name(target) and target not in expect:
            problems.append((("probes", i, target_field), f"probe uses {target!r}, which is not in 'expect'"))
        if kind == "grad":
            wrt = _names(_written(probe, "wrt"))
            for j, w in enumerate(wrt):
                if _is_name(w) and w not in given:
                    problems.append((("probes", i, "wrt", j), f"grad probe wrt {w!r}, which is not a given name"))
            if isinstance(target, str):
                produced |= {grad_output_name(target, w) for w in wrt}
            else:
                outputs_known = False
        elif isinstance(_written(probe, "as"), str):
            produced.add(_written(probe, "as"))
        else:
            outputs_known = False  # a probe whose output is unreadable: do not guess
        symbols = set().union(*(_symbols_of(spec) for spec in _probe_inputs(probe)))
        for t, names in enumerate(bound):
            missing = sorted(symbols - names) if names is not None else []
            if missing:
                problems.append(
                    (("probes", i), f"trials[{t}] does not bind {', '.join(missing)} (used by this probe)")
                )
    early_stops = {
        _written(p, "as"): _written(p, "stop_below")
        for p in probes
        if _written(p, "probe") == "fit" and isinstance(_written(p, "as"), str) and _is_number(_written(p, "stop_below"))
    }
    checks = data.get("checks") if isinstance(data.get("checks"), list) else []
    for i, check in enumerate(checks if outputs_known else []):
        for attr in ("of", "like", "mean", "logvar", "rows", "table"):
            value = _written(check, attr)
            name = value.split(".")[0] if isinstance(value, str) else None
            if name and _is_name(name) and name not in produced and name != "reference":
                problems.append(
                    (("checks", i, attr), f"check '{_written(check, 'check')}' refers to {name!r}, "
                     "which is neither given, expected nor produced by a probe")
                )
        of, wrt = _written(check, "of"), _names(_written(check, "wrt"))
        below = _written(check, "below")
        stop = early_stops.get(of) if isinstance(of, str) else None
        if _written(check, "check") == "fit" and _is_number(below) and stop is not None and not stop < below:
            problems.append(
                (("checks", i, "below"), f"fit check of {of!r} passes below {below:g}, but its probe stops "
                 f"training at {stop:g}; stop_below must be lower, or a model stopped there would fail")
            )
        if _written(check, "check") == "gradient" and isinstance(of, str):
            missing = [w for w in wrt if grad_output_name(of, w) not in produced]
            if missing:
                problems.append(
                    (("checks", i), f"gradient check of {of!r} wrt {', '.join(missing)} needs a "
                     "matching 'grad' probe")
                )
    return problems


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
