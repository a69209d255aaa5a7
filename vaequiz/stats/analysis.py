"""Classical item analysis of one quiz's ``results.jsonl``.

Every student is assumed to have sat the same quiz (as `vaequiz grade-sheets` writes it: a
skipped question is graded 0). A (student, item) pair missing from the file leaves that student
out of that item's statistics and out of Cronbach's alpha, which needs complete rows.

A parametric question's statistics pool every variant (its drawn numbers, recorded in each
result's ``params``); a per-variant breakdown follows, and a variant much harder than the rest
is flagged by a one-sided Fisher exact test of its pass rate against the other variants' (see
:func:`variant_stats`).
"""

from __future__ import annotations

import math
from collections import Counter
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Sequence

from vaequiz.bank.loader import Bank
from vaequiz.bank.models import MultipleChoice
from vaequiz.grading.models import ItemResult
from vaequiz.grading.objective import format_dims, parse_number, parse_shape
from vaequiz.grading.results import RESULTS_FILE, read_results
from vaequiz.render.quiz_spec import QuizSpecError, load_quiz_spec
from vaequiz.render.selection import WHOLE_BANK_ID, WHOLE_BANK_TITLE

TOO_EASY = 0.9
TOO_HARD = 0.2
GROUP_SHARE = 0.27
"""Share of students in each of the upper and lower groups (Kelley's 27%)."""
HISTOGRAM_BINS = 10
NO_ANSWER = "no answer"
SMALL_COHORT = 30
"""Below this many students, alpha and discrimination are too noisy to act on alone."""
COMMON_WRONG_ANSWERS = 5
VARIANT_MIN_STUDENTS = 5
"""A variant answered by fewer students is listed but not tested: too few to tell."""
VARIANT_ALPHA = 0.05
"""Family-wise error rate of the variant tests of one question (Bonferroni: each variant is
tested at VARIANT_ALPHA / the number of variants tested)."""
NOT_RECORDED = "numbers not recorded"


class StatsInputError(ValueError):
    """The results cannot be analysed; the message says why and what to run."""


@dataclass
class OptionShare:
    """How many students chose an option, and how well they did on the rest of the quiz."""

    label: str
    count: int
    share: float
    is_key: bool | None
    mean_rest_score: float | None
    text: str | None = None
    """The option's text as the bank writes it (Markdown), when the bank is known."""
    code: str | None = None
    """The option's code, for options given as code."""


@dataclass
class CheckFailures:
    """How many students failed one check of a code question: the class's misconceptions."""

    name: str
    failed: int
    share: float


@dataclass
class WrongAnswer:
    """A wrong numeric or shape answer, as the grader read it, and how many gave it."""

    answer: str
    count: int


@dataclass
class VariantStats:
    """One draw of a parametric question: who got it and how they did against the others."""

    numbers: str
    """The draw as the student saw it (``B = 32 and D = 8``)."""
    params: dict[str, Any] | None
    students: int
    facility: float
    passed: int
    p_value: float | None
    """One-sided Fisher exact p that this variant's pass rate is below the rest's; None when
    the variant has fewer than VARIANT_MIN_STUDENTS students (not tested)."""
    harder: bool = False


@dataclass
class ItemStats:
    """One question's statistics; ``None`` where the data cannot define a value."""

    question: str
    kind: str
    students: int
    max_points: float
    facility: float
    point_biserial: float | None
    upper_lower: float | None
    options: list[OptionShare] | None = None
    flags: list[str] = field(default_factory=list)
    number: int = 0
    """Position in the report; the item map labels its points with it."""
    check_failures: list[CheckFailures] | None = None
    wrong_answers: list[WrongAnswer] | None = None
    variants: list[VariantStats] | None = None
    """Parametric questions: one entry per draw, most students first."""


@dataclass
class HistogramBin:
    low: float
    high: float
    count: int


@dataclass
class QuizStats:
    """Whole-quiz figures: score distribution (percent of the maximum) and reliability."""

    name: str
    title: str
    students: int
    items: int
    max_points: float
    mean_percent: float
    sd_percent: float
    histogram: list[HistogramBin]
    cronbach_alpha: float | None
    complete_students: int
    caution: str | None = None


@dataclass
class StatsReport:
    quiz: QuizStats
    items: list[ItemStats]
    warnings: list[str] = field(default_factory=list)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


# --------------------------------------------------------------------------- small statistics


def mean(values: Sequence[float]) -> float:
    return sum(values) / len(values)


def variance(values: Sequence[float]) -> float:
    """Sample variance (n - 1); 0 for fewer than two values."""
    if len(values) < 2:
        return 0.0
    m = mean(values)
    return sum((v - m) ** 2 for v in values) / (len(values) - 1)


def pearson(x: Sequence[float], y: Sequence[float]) -> float | None:
    """Pearson correlation; None when either side is constant (no spread to correlate)."""
    if len(x) < 2:
        return None
    mx, my = mean(x), mean(y)
    sxy = sum((a - mx) * (b - my) for a, b in zip(x, y))
    sxx = sum((a - mx) ** 2 for a in x)
    syy = sum((b - my) ** 2 for b in y)
    if sxx <= 1e-12 or syy <= 1e-12:
        return None
    return sxy / math.sqrt(sxx * syy)


def cronbach_alpha(rows: Sequence[Sequence[float]]) -> float | None:
    """alpha = k/(k-1) * (1 - sum of item variances / variance of totals), rows = students."""
    if len(rows) < 2 or len(rows[0]) < 2:
        return None
    k = len(rows[0])
    item_variances = [variance([row[j] for row in rows]) for j in range(k)]
    total_variance = variance([sum(row) for row in rows])
    if total_variance <= 1e-12:
        return None
    return k / (k - 1) * (1 - sum(item_variances) / total_variance)


def upper_lower_index(scores: Sequence[float], criterion: Sequence[float]) -> float | None:
    """Mean item score of the top 27% minus the bottom 27%, students ranked by ``criterion``."""
    n = len(scores)
    group = max(1, round(GROUP_SHARE * n))
    if n < 2 or 2 * group > n:
        return None
    order = sorted(range(n), key=lambda i: criterion[i])
    lower = [scores[i] for i in order[:group]]
    upper = [scores[i] for i in order[-group:]]
    return mean(upper) - mean(lower)


def fisher_lower_tail(a: int, n: int, k: int, total: int) -> float:
    """P(X <= a) for X hypergeometric: ``n`` of ``total`` students drawn (the variant), ``k``
    of all students passed. The one-sided Fisher exact p that a variant with ``a`` passes out
    of ``n`` did worse than the rest by chance."""
    low = max(0, n - (total - k))
    denominator = math.comb(total, n)
    return sum(math.comb(k, x) * math.comb(total - k, n - x) for x in range(low, a + 1)) / denominator


# --------------------------------------------------------------------------- analysis


def _chosen_labels(answer: Any) -> list[str]:
    if answer is None or answer == "" or answer == []:
        return [NO_ANSWER]
    if isinstance(answer, str):
        return [answer.strip()] if answer.strip() else [NO_ANSWER]
    return list(answer)


def _option_shares(
    results: list[ItemResult], rest: dict[str, float], question: MultipleChoice | None
) -> list[OptionShare]:
    counts: Counter[str] = Counter()
    rest_by_label: dict[str, list[float]] = {}
    for result in results:
        for label in _chosen_labels(result.answer):
            counts[label] += 1
            rest_by_label.setdefault(label, []).append(rest[result.student])
    written: dict[str, tuple[str | None, str | None]] = {}
    if question is not None:
        labels = [o.label for o in question.options]
        keys: set[str] | None = set(question.answer)
        written = {o.label: (o.text, o.code) for o in question.options}
    else:  # no bank: the key is what full-score answers chose
        labels = sorted(l for l in counts if l != NO_ANSWER)
        full = [r for r in results if r.score >= 1.0 and r.answer]
        keys = set(_chosen_labels(full[0].answer)) if full else None
    labels += sorted(l for l in counts if l not in labels and l != NO_ANSWER)
    if counts[NO_ANSWER]:
        labels.append(NO_ANSWER)
    n = len(results)
    return [
        OptionShare(
            label=label,
            count=counts[label],
            share=counts[label] / n,
            is_key=None if keys is None or label == NO_ANSWER else label in keys,
            mean_rest_score=mean(rest_by_label[label]) if label in rest_by_label else None,
            text=written.get(label, (None, None))[0],
            code=written.get(label, (None, None))[1],
        )
        for label in labels
    ]


def _check_failures(results: list[ItemResult]) -> list[CheckFailures]:
    """Per check, the students who failed it, most failed first (checks in first-seen order)."""
    failed: Counter[str] = Counter()
    seen: dict[str, None] = {}
    for result in results:
        for check in result.checks:
            seen.setdefault(check.name)
            failed[check.name] += not check.passed
    n = len(results)
    order = sorted(seen, key=lambda name: -failed[name])
    return [CheckFailures(name, failed[name], failed[name] / n) for name in order]


def _wrong_answers(results: list[ItemResult], kind: str) -> list[WrongAnswer]:
    """The most common wrong answers, spelled the way the grader read them (``64x20`` and
    ``(64, 20)`` are one answer); unreadable ones as written."""
    counts: Counter[str] = Counter()
    for result in results:
        if result.score >= 1.0 or result.answer in (None, "", []):
            continue
        text = result.answer if isinstance(result.answer, str) else ", ".join(map(str, result.answer))
        if kind == "shape":
            dims = parse_shape(text)
            counts[format_dims(dims) if dims is not None else text.strip()] += 1
        else:
            value = parse_number(text)
            counts[f"{value:g}" if value is not None else text.strip()] += 1
    return [WrongAnswer(answer, count) for answer, count in counts.most_common(COMMON_WRONG_ANSWERS)]


def _numbers(params: dict[str, Any] | None) -> str:
    from vaequiz.params import describe

    return describe(params) if params else NOT_RECORDED


def variant_stats(results: list[ItemResult]) -> list[VariantStats] | None:
    """Per-draw figures of a parametric question, or None when its results show fewer than two
    draws. A variant with at least VARIANT_MIN_STUDENTS students is compared with all the other
    students of the question: its passes against theirs in a 2x2 table, tested one-sided with
    Fisher's exact test (exact for any count, unlike a two-proportion z-test). It is flagged
    harder when p < VARIANT_ALPHA / m, m being the variants tested (Bonferroni), so a question
    with many draws is not flagged by chance alone."""
    groups: dict[str, list[ItemResult]] = {}
    for result in results:
        groups.setdefault(_numbers(result.params), []).append(result)
    if len(groups) < 2:
        return None
    total = len(results)
    passed_all = sum(r.passed for r in results)
    tested = [g for g in groups.values() if len(g) >= VARIANT_MIN_STUDENTS and len(g) < total]
    threshold = VARIANT_ALPHA / max(1, len(tested))
    variants = []
    for numbers, group in groups.items():
        passed = sum(r.passed for r in group)
        p_value = None
        if any(group is t for t in tested):
            p_value = fisher_lower_tail(passed, len(group), passed_all, total)
        rest_rate = (passed_all - passed) / (total - len(group))
        variants.append(VariantStats(
            numbers=numbers,
            params=group[0].params,
            students=len(group),
            facility=mean([r.score for r in group]),
            passed=passed,
            p_value=p_value,
            harder=p_value is not None and p_value < threshold and passed / len(group) < rest_rate,
        ))
    return sorted(variants, key=lambda v: (-v.students, v.numbers))


def _flags(stats: ItemStats) -> list[str]:
    flags = []
    if stats.facility > TOO_EASY:
        flags.append(f"too easy (facility {stats.facility:.2f} > {TOO_EASY})")
    if stats.facility < TOO_HARD:
        flags.append(f"too hard (facility {stats.facility:.2f} < {TOO_HARD})")
    if stats.point_biserial is not None and stats.point_biserial < 0:
        flags.append(
            f"negative discrimination (r = {stats.point_biserial:.2f}): stronger students do "
            "worse on it; check the key"
        )
    for variant in stats.variants or []:
        if variant.harder:
            flags.append(
                f"variant {variant.numbers} much harder: {variant.passed} of {variant.students} "
                f"passed, against the other variants (Fisher exact p = {variant.p_value:.2g})"
            )
    return flags


def analyse(
    results: list[ItemResult], name: str, bank: Bank | None = None, warnings: list[str] | None = None,
    title: str | None = None,
) -> StatsReport:
    """Item and quiz statistics; points (score x max points) build the totals."""
    if not results:
        raise StatsInputError("no results to analyse; run `vaequiz grade-sheets` first")
    questions = list(dict.fromkeys(r.question for r in results))
    students = sorted({r.student for r in results})
    cell: dict[tuple[str, str], ItemResult] = {(r.student, r.question): r for r in results}
    totals = dict.fromkeys(students, 0.0)
    max_totals = dict.fromkeys(students, 0.0)
    for result in cell.values():
        totals[result.student] += result.points
        max_totals[result.student] += result.max_points
    by_id = bank.by_id() if bank is not None else {}

    items: list[ItemStats] = []
    for number, question in enumerate(questions, 1):
        taken = [cell[(s, question)] for s in students if (s, question) in cell]
        scores = [r.score for r in taken]
        rest = {r.student: totals[r.student] - r.points for r in taken}
        rest_list = [rest[r.student] for r in taken]
        stats = ItemStats(
            question=question,
            kind=taken[0].kind,
            students=len(taken),
            max_points=max(r.max_points for r in taken),
            facility=mean(scores),
            point_biserial=pearson(scores, rest_list),
            upper_lower=upper_lower_index(scores, rest_list),
            number=number,
        )
        if stats.kind == "mcq":
            bank_question = by_id.get(question)
            stats.options = _option_shares(
                taken, rest, bank_question if isinstance(bank_question, MultipleChoice) else None
            )
        if stats.kind == "code":
            stats.check_failures = _check_failures(taken)
        if stats.kind in ("shape", "numeric"):
            stats.wrong_answers = _wrong_answers(taken, stats.kind)
        if any(r.params for r in taken):
            stats.variants = variant_stats(taken)
        stats.flags = _flags(stats)
        items.append(stats)

    complete = [s for s in students if all((s, q) in cell for q in questions)]
    rows = [[cell[(s, q)].points for q in questions] for s in complete]
    percents = [100 * totals[s] / max_totals[s] if max_totals[s] > 0 else 0.0 for s in students]
    caution = None
    if len(students) < SMALL_COHORT:
        caution = (
            f"Only {len(students)} student(s): with fewer than {SMALL_COHORT}, Cronbach's alpha and "
            "the discrimination indices (r, D) vary a lot from one cohort to the next; read the "
            "flags as prompts to reread an item, not as verdicts."
        )
    quiz = QuizStats(
        name=name,
        title=title or name,
        students=len(students),
        items=len(questions),
        max_points=max(max_totals.values()),
        mean_percent=mean(percents),
        sd_percent=math.sqrt(variance(percents)),
        histogram=_histogram(percents),
        cronbach_alpha=cronbach_alpha(rows),
        complete_students=len(complete),
        caution=caution,
    )
    return StatsReport(quiz, items, list(warnings or []))


def _histogram(percents: list[float]) -> list[HistogramBin]:
    width = 100 / HISTOGRAM_BINS
    counts = [0] * HISTOGRAM_BINS
    for p in percents:
        counts[min(HISTOGRAM_BINS - 1, max(0, int(p // width)))] += 1
    return [HistogramBin(i * width, (i + 1) * width, c) for i, c in enumerate(counts)]


def results_path(folder: Path) -> Path:
    """``DIR/results.jsonl``, or the file itself when given one."""
    return folder if folder.is_file() else folder / RESULTS_FILE


def analyse_folder(folder: Path, bank: Bank | None = None) -> StatsReport:
    """Read ``DIR/results.jsonl`` (last line wins per student and question) and analyse it."""
    path = results_path(folder)
    if not path.is_file():
        raise StatsInputError(
            f"{path} not found; point stats at the folder `vaequiz grade-sheets` wrote"
        )
    results, warnings = read_results(path, repair=False)
    quizzes = sorted({r.quiz for r in results if r.quiz})
    if len(quizzes) > 1:
        students = {quiz: len({r.student for r in results if r.quiz == quiz}) for quiz in quizzes}
        listed = ", ".join(f"{quiz} ({students[quiz]} student(s))" for quiz in quizzes)
        raise StatsInputError(
            f"{path} mixes results of {len(quizzes)} quizzes: {listed}; item statistics of "
            "different quizzes cannot be pooled. Grade each quiz's sheets into its own folder "
            "(`vaequiz grade-sheets SHEETS --quiz Q.quiz.yaml --out DIR`) and run stats on each"
        )
    if not results:
        raise StatsInputError(f"{path} holds no result lines; run `vaequiz grade-sheets` first")
    name = (folder if folder.is_dir() else folder.parent).resolve().name
    title = quiz_title(quizzes[0] if quizzes else None, bank)
    return analyse(results, name, bank, warnings, title)


def quiz_title(quiz_id: str | None, bank: Bank | None) -> str | None:
    """The title of the quiz the results come from: from its spec next to the bank (or the
    whole bank's title), None when it cannot be found."""
    if quiz_id is None:
        return None
    if quiz_id == WHOLE_BANK_ID:
        return WHOLE_BANK_TITLE
    if bank is None or not bank.root.is_dir():
        return None
    for spec_file in sorted(bank.root.rglob("*.quiz.yaml")):
        try:
            spec, _ = load_quiz_spec(spec_file)
        except QuizSpecError:
            continue
        if spec.id == quiz_id:
            return spec.title
    return None
