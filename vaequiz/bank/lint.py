"""Item-writing quality checks beyond the schema: cues to guessers, weak keys, thin rubrics.

Each rule is a small function over the loaded bank that yields findings located with
``Bank.locate``; ``lint_bank`` runs them all. Every problem ``validate`` reports (math that
does not render among them) is an error; everything else is a warning an instructor may
accept on purpose.
"""

from __future__ import annotations

import math
import re
from collections import Counter
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Iterable, Iterator, Literal

from vaequiz.bank.loader import Bank, load_bank
from vaequiz.bank.models import (
    CodeQuestion,
    Flashcard,
    MultipleChoice,
    Option,
    ShortAnswer,
)
from vaequiz.bank.yaml_source import Location

Severity = Literal["error", "warning"]

LONGEST_KEY_RATIO = 1.25
"""The key is a length cue when it is the longest option by at least this factor."""
MIN_OPTIONS_FOR_CUES = 3
DUPLICATE_STEM_SIMILARITY = 0.8
"""Cosine similarity of TF-IDF word vectors (lowercased words and numbers, idf over the bank's
stems) at or above which two stems are near-duplicates."""
MIN_DUPLICATE_TOKENS = 5
MIN_MUTANTS = 4
MIN_MCQS_FOR_BUNCHING = 8
BUNCHING_Z = 2.326
"""One-sided z for p = 0.01: the chi-square critical value comes from Wilson-Hilferty."""

_ALL_OF_THE_ABOVE = re.compile(
    r"\b(?:all|none|both|neither)\s+of\s+(?:the\s+)?(?:above|these|those|options|answers)\b"
    r"|\bboth\s+[A-L]\s+and\s+[A-L]\b",
    re.IGNORECASE,
)


@dataclass(frozen=True, order=True)
class Finding:
    """One lint result, printed as ``file:line:column: severity: message (suggestion)``."""

    location: Location
    severity: Severity
    rule: str
    message: str
    suggestion: str

    def __str__(self) -> str:
        return f"{self.location}: {self.severity}: {self.message} ({self.suggestion})"


Rule = Callable[[Bank], Iterable[Finding]]


def _finding(
    bank: Bank, qid: str, path: tuple[Any, ...], rule: str, message: str, suggestion: str,
    severity: Severity = "warning",
) -> Finding:
    return Finding(bank.locate(qid, path), severity, rule, message, suggestion)


# --------------------------------------------------------------------------- multiple choice


def _single_answer_mcqs(bank: Bank) -> Iterator[MultipleChoice]:
    for question in bank.questions:
        if isinstance(question, MultipleChoice) and not question.multiple:
            yield question


def _option_content(option: Option) -> str:
    return (option.text or "") + (option.code or "")


def _option_form(option: Option) -> frozenset[str]:
    """Surface features a guesser can see without knowing the subject."""
    text = option.text or ""
    form = set()
    if option.code:
        form.add("code")
    if "$" in text:
        form.add("math")
    if "`" in text:
        form.add("inline code")
    if re.fullmatch(r"\s*[-+]?\d[\d.,eE+-]*\s*", text):
        form.add("a number")
    return frozenset(form)


def rule_key_cues(bank: Bank) -> Iterator[Finding]:
    """The keyed option stands out by length or form, so testwise students pick it unread."""
    for question in _single_answer_mcqs(bank):
        if len(question.options) < MIN_OPTIONS_FOR_CUES:
            continue
        key = question.answer[0]
        index = ord(key) - ord("A")
        option = question.options[index]
        others = [o for o in question.options if o.label != key]
        key_length = len(_option_content(option).strip())
        longest_other = max(len(_option_content(o).strip()) for o in others)
        path = ("options", index)
        if key_length >= LONGEST_KEY_RATIO * longest_other and key_length > longest_other:
            yield _finding(
                bank, question.id, path, "key-longest",
                f"the key {key} is the longest option ({key_length} characters, the next is "
                f"{longest_other})",
                "lengthen the distractors or trim the key so length gives nothing away",
            )
        forms = {_option_form(o) for o in others}
        key_form = _option_form(option)
        if len(forms) == 1 and key_form not in forms:
            describe = ", ".join(sorted(key_form)) or "plain text"
            yield _finding(
                bank, question.id, path, "key-form",
                f"the key {key} is the only option written as {describe}",
                "write the distractors in the same form as the key",
            )


def _wilson_hilferty_critical(df: int, z: float = BUNCHING_Z) -> float:
    """Approximate chi-square quantile; accurate to a few percent for df >= 1."""
    a = 2.0 / (9.0 * df)
    return df * (1.0 - a + z * math.sqrt(a)) ** 3


def rule_key_bunching(bank: Bank) -> Iterator[Finding]:
    """Keys that sit on one letter far more than chance let students guess that letter."""
    questions = list(_single_answer_mcqs(bank))
    if len(questions) < MIN_MCQS_FOR_BUNCHING:
        return
    observed: Counter[str] = Counter(q.answer[0] for q in questions)
    expected: Counter[str] = Counter()
    for question in questions:
        for option in question.options:
            expected[option.label] += 1.0 / len(question.options)
    letters = sorted(expected)
    statistic = sum((observed[l] - expected[l]) ** 2 / expected[l] for l in letters)
    critical = _wilson_hilferty_critical(max(1, len(letters) - 1))
    if statistic <= critical:
        return
    worst = max(letters, key=lambda l: observed[l] - expected[l])
    first = next(q for q in questions if q.answer[0] == worst)
    distribution = ", ".join(f"{l} {observed[l]} (expected {expected[l]:.1f})" for l in letters)
    fixed = sum(1 for q in questions if not q.shuffle)
    yield _finding(
        bank, first.id, ("answer",), "key-bunching",
        f"keys are bunched on {worst} across the bank's {len(questions)} single-answer MCQs: "
        f"{distribution}; chi-square {statistic:.1f} > {critical:.1f} (p < 0.01); "
        f"{fixed} of them are never shuffled",
        f"move some keys away from {worst} (reorder the options): answer keys, printed "
        "papers and exports keep the bank's order",
    )


def rule_all_of_the_above(bank: Bank) -> Iterator[Finding]:
    """'All/none of the above' reward partial knowledge and break when options are shuffled."""
    for question in bank.questions:
        if not isinstance(question, MultipleChoice):
            continue
        for i, option in enumerate(question.options):
            match = _ALL_OF_THE_ABOVE.search(option.text or "")
            if match:
                yield _finding(
                    bank, question.id, ("options", i, "text"), "all-of-the-above",
                    f"option {option.label} says '{match.group(0)}'",
                    "replace it with a specific statement; use a multi-select question "
                    "if several options are right",
                )


def rule_mcq_feedback(bank: Bank) -> Iterator[Finding]:
    """Practice mode teaches through hints and per-distractor feedback; without them it only
    says right or wrong."""
    for question in bank.questions:
        if not isinstance(question, MultipleChoice):
            continue
        missing = []
        if not question.hint:
            missing.append("no hint")
        bare = [o.label for o in question.options
                if o.label not in question.answer and not o.feedback]
        if bare:
            missing.append(f"no feedback on distractor{'s' if len(bare) > 1 else ''} "
                           + ", ".join(bare))
        if missing:
            yield _finding(
                bank, question.id, (), "mcq-feedback", f"MCQ '{question.id}' has "
                + " and ".join(missing),
                "add a 'hint' and a 'feedback' to each distractor saying why it is wrong",
            )


# --------------------------------------------------------------------------- across the bank


def _tokens(text: str) -> list[str]:
    return re.findall(r"[a-z0-9]+", text.lower())


def _tfidf_vectors(documents: list[list[str]]) -> list[dict[str, float]]:
    """Unit TF-IDF vectors (smoothed idf, as in scikit-learn): words every stem shares weigh
    little, so 'encoder' versus 'decoder' in otherwise equal stems keeps them apart."""
    frequency: Counter[str] = Counter(t for doc in documents for t in set(doc))
    n = len(documents)
    vectors = []
    for doc in documents:
        weights = {t: c * (math.log((1 + n) / (1 + frequency[t])) + 1) for t, c in Counter(doc).items()}
        norm = math.sqrt(sum(w * w for w in weights.values())) or 1.0
        vectors.append({t: w / norm for t, w in weights.items()})
    return vectors


def _cosine(a: dict[str, float], b: dict[str, float]) -> float:
    if len(a) > len(b):
        a, b = b, a
    return sum(w * b.get(t, 0.0) for t, w in a.items())


def rule_near_duplicates(bank: Bank) -> Iterator[Finding]:
    """Two near-identical stems give one item's answer away in the other (flashcards restate
    questions on purpose, so a card is compared with cards only)."""
    items = [(q, _tokens(q.text)) for q in bank.questions]
    items = [(q, t) for q, t in items if len(t) >= MIN_DUPLICATE_TOKENS]
    vectors = _tfidf_vectors([t for _, t in items])
    for j, (later, _) in enumerate(items):
        for i, (earlier, _) in enumerate(items[:j]):
            if isinstance(later, Flashcard) != isinstance(earlier, Flashcard):
                continue
            similarity = _cosine(vectors[i], vectors[j])
            if similarity >= DUPLICATE_STEM_SIMILARITY:
                yield _finding(
                    bank, later.id, (_text_field(later),), "near-duplicate",
                    f"'{later.id}' reads like '{earlier.id}' ({bank.locations[earlier.id]}); "
                    f"similarity {similarity:.2f}",
                    "merge them, or make each ask something the other does not",
                )


def _text_field(question: Any) -> str:
    for name in ("stem", "prompt", "front"):
        if hasattr(question, name):
            return name
    return "id"


# --------------------------------------------------------------------------- code and rubrics


def rule_few_mutants(bank: Bank) -> Iterator[Finding]:
    """`verify` can only prove the checks catch the mistakes it is shown."""
    for question in bank.questions:
        if isinstance(question, CodeQuestion) and len(question.mutants) < MIN_MUTANTS:
            yield _finding(
                bank, question.id, ("mutants",) if question.mutants else (), "few-mutants",
                f"code question '{question.id}' has {len(question.mutants)} mutant(s); "
                f"at least {MIN_MUTANTS} show the checks catch the common mistakes",
                "add wrong answers students really write, each with its 'why'",
            )


def rule_single_phrasing(bank: Bank) -> Iterator[Finding]:
    """A concept recognised by one phrasing misses students who say it in other words."""
    for question in bank.questions:
        if not isinstance(question, ShortAnswer):
            continue
        for i, concept in enumerate(question.rubric):
            if len(concept.phrasings) + len(concept.patterns) == 1:
                yield _finding(
                    bank, question.id, ("rubric", i), "single-phrasing",
                    f"rubric concept '{concept.name}' has a single phrasing",
                    "add synonyms and paraphrases students use, or a pattern",
                )


MIN_EXAMPLES = 8
"""Marked answers a short-answer question needs before its rubric counts as tested."""
COMMON_WORD_SHARE = 0.10
"""A one-word phrasing found in at least this share of the bank's question texts is too
generic to show a concept ("prior", "decoder", "sample")."""
_MATH_HINT = re.compile(
    r"\b(?:mu|sigma|eps|epsilon|logvar|log_var|std)\b|[μσεβ=+*]|\bN\s*\(\s*0", re.IGNORECASE
)


def _short_answers(bank: Bank) -> Iterator[ShortAnswer]:
    for question in bank.questions:
        if isinstance(question, ShortAnswer):
            yield question


def rule_phrasing_in_prompt(bank: Bank) -> Iterator[Finding]:
    """A phrasing the prompt already contains (as the grader reads it: stems, spelling
    tolerance) is earned by restating the question."""
    from vaequiz.bank.answer_text import analyse, compile_phrasing, find_phrasing

    for question in _short_answers(bank):
        sentences = analyse(question.prompt)
        for i, concept in enumerate(question.rubric):
            for j, phrasing in enumerate(concept.phrasings):
                hits = [m for s in sentences for m in find_phrasing(s, compile_phrasing(phrasing))]
                if hits:
                    yield _finding(
                        bank, question.id, ("rubric", i, "phrasings", j), "phrasing-in-prompt",
                        f"phrasing '{phrasing}' of concept '{concept.name}' occurs in the prompt "
                        f"('{hits[0].quoted}'): restating the question earns it",
                        "use a phrasing that says something the prompt does not, or join it to "
                        "one with '...' (e.g. 'kl ... toward ... prior')",
                    )


def _word_share(bank: Bank) -> dict[str, float]:
    """Share of the bank's question texts (stems, prompts, options, card fronts) with each stem."""
    from vaequiz.bank.answer_text import tokenize

    documents = []
    for question in bank.questions:
        text = question.text
        if isinstance(question, MultipleChoice):
            text += " " + " ".join(o.text or "" for o in question.options)
        documents.append({t.stem for t in tokenize(text)})
    counts: Counter[str] = Counter(s for d in documents for s in d)
    return {word: count / max(1, len(documents)) for word, count in counts.items()}


def rule_generic_phrasing(bank: Bank) -> Iterator[Finding]:
    """A one-word phrasing shared by two concepts, or common across the bank, shows nothing."""
    from vaequiz.bank.answer_text import compile_phrasing

    share = _word_share(bank)
    for question in _short_answers(bank):
        owners: dict[str, set[int]] = {}
        for i, concept in enumerate(question.rubric):
            for phrasing in concept.phrasings:
                parts = compile_phrasing(phrasing).parts
                if len(parts) == 1 and len(parts[0]) == 1:
                    owners.setdefault(parts[0][0], set()).add(i)
        for i, concept in enumerate(question.rubric):
            for j, phrasing in enumerate(concept.phrasings):
                parts = compile_phrasing(phrasing).parts
                if len(parts) != 1 or len(parts[0]) != 1:
                    continue
                word = parts[0][0]
                why = ""
                if len(owners[word]) > 1:
                    others = sorted(owners[word] - {i})
                    why = f"also a phrasing of concept '{question.rubric[others[0]].name}'"
                elif share.get(word, 0.0) >= COMMON_WORD_SHARE:
                    why = f"it occurs in {share[word]:.0%} of the bank's question texts"
                if why:
                    yield _finding(
                        bank, question.id, ("rubric", i, "phrasings", j), "generic-phrasing",
                        f"one-word phrasing '{phrasing}' of concept '{concept.name}': {why}",
                        "say what the word does in the concept ('pull ... toward ... prior')",
                    )


def rule_math_form(bank: Bank) -> Iterator[Finding]:
    """A concept with a math form (mu, sigma, epsilon, N(0, I), z = ...) that students may write
    as math needs patterns for it (patterns also match the canonical math form)."""
    for question in _short_answers(bank):
        for i, concept in enumerate(question.rubric):
            texts = [concept.name, *concept.phrasings]
            if not concept.patterns and any(_MATH_HINT.search(t) for t in texts):
                yield _finding(
                    bank, question.id, ("rubric", i), "math-form",
                    f"concept '{concept.name}' has a math form but no patterns for it",
                    "add a pattern over the math form, e.g. 'mu\\+sigma\\*eps' for z = μ + σ·ε",
                )


def rule_few_examples(bank: Bank) -> Iterator[Finding]:
    """`verify` can only prove the rubric grades the answers it is shown."""
    for question in _short_answers(bank):
        if len(question.examples) < MIN_EXAMPLES:
            yield _finding(
                bank, question.id, ("examples",) if question.examples else (), "few-examples",
                f"short answer '{question.id}' has {len(question.examples)} marked example(s); "
                f"at least {MIN_EXAMPLES} show the rubric grades real answers as a teacher would",
                "add answers in students' own words with the concepts a teacher sees and "
                "pass/fail: a paraphrase, a bare list of terms, a negation, a confident wrong "
                "answer from the key's words, typos, an equation",
            )


# --------------------------------------------------------------------------- parametric questions

WHERE_SAMPLE = 400
"""Free draws lint tries to estimate how many a question's ``where:`` rejects."""
WHERE_MIN_ACCEPTED = 0.5


def rule_unshown_params(bank: Bank) -> Iterator[Finding]:
    """A free param no text shows gives students different answers to the same-looking
    question; a derived param nothing reads is dead weight."""
    from vaequiz.bank.parametric import is_parametric, shown_names, space_of, used_names

    for question in bank.questions:
        if not is_parametric(question):
            continue
        space, shown, used = space_of(question), shown_names(question), used_names(question)
        for name in space.free:
            if name not in shown:
                yield _finding(bank, question.id, ("params", name), "param-not-shown",
                               f"param {name} is never shown in the question's text",
                               f"show it with {{{{ {name} }}}} in the text, or make it a fixed number")
        for name in space.derived:
            if name not in used and name not in shown:
                yield _finding(bank, question.id, ("params", name), "param-not-shown",
                               f"derived param {name} is used nowhere", "use it in a text or an answer, or remove it")


def rule_where_rejects_most(bank: Bank) -> Iterator[Finding]:
    """A ``where:`` that rejects most draws wastes them and hints the params are mis-ranged."""
    from vaequiz.bank.parametric import is_parametric, space_of
    from vaequiz.expressions import ExpressionError
    from vaequiz.variants import StableRandom

    for question in bank.questions:
        if not is_parametric(question) or not question.where:
            continue
        space = space_of(question)
        rng = StableRandom("lint-where", question.id)
        accepted = 0
        for _ in range(WHERE_SAMPLE):
            free = {name: options[rng.below(len(options))] for name, options in space.free.items()}
            try:
                accepted += all(space.holds(space.complete(free)))
            except ExpressionError:
                continue
        share = accepted / WHERE_SAMPLE
        if share < WHERE_MIN_ACCEPTED:
            yield _finding(bank, question.id, ("where",), "where-rejects-most",
                           f"'where' rejects {1 - share:.0%} of draws",
                           "narrow the params' ranges to the values that satisfy it")


RULES: tuple[Rule, ...] = (
    rule_unshown_params,
    rule_where_rejects_most,
    rule_key_cues,
    rule_key_bunching,
    rule_all_of_the_above,
    rule_mcq_feedback,
    rule_near_duplicates,
    rule_few_mutants,
    rule_single_phrasing,
    rule_phrasing_in_prompt,
    rule_generic_phrasing,
    rule_math_form,
    rule_few_examples,
)


@dataclass
class LintReport:
    """Findings of every rule plus the bank's schema problems (as errors)."""

    bank: Bank
    findings: list[Finding]

    @property
    def errors(self) -> list[Finding]:
        return [f for f in self.findings if f.severity == "error"]

    @property
    def warnings(self) -> list[Finding]:
        return [f for f in self.findings if f.severity == "warning"]


def lint_bank(root: Path | str) -> LintReport:
    """Load the bank and run every rule over the questions that validate."""
    bank = load_bank(root, check_formulas=True)
    findings = [
        Finding(p.location, "error", "schema",
                (f"{p.field_path}: " if p.field_path else "") + p.message,
                "`vaequiz validate` explains the format")
        for p in bank.problems
    ]
    for rule in RULES:
        findings.extend(rule(bank))
    return LintReport(bank, sorted(findings))
