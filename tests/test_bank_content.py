"""The bundled question bank: it validates, covers every seed, and keeps its promises to graders.

These tests read the real YAML files under ``question_bank/``; a failure names the item to fix.
"""

from __future__ import annotations

import re
from collections import Counter, defaultdict
from pathlib import Path

import latex2mathml.converter
import pytest

from vaequiz.bank.loader import Bank, load_bank
from vaequiz.bank.models import (
    CodeQuestion,
    Flashcard,
    MultipleChoice,
    NumericAnswer,
    ShapeAnswer,
    ShortAnswer,
)
from vaequiz.grading.sandbox.runner import ALLOWED_PACKAGES

REPO = Path(__file__).resolve().parent.parent
BANK = REPO / "question_bank"
SEEDS = ("000_1c67774fde61a081", "001_dbd4fe3e558b94a0", "002_b75ee90b928972ce", "003_824a7485ffeab610")

CODE_QUESTIONS: dict[str, tuple[set[str], list[str]]] = {
    "reparameterization-trick": ({"mu", "logvar"}, ["z"]),
    "mnist-decoder-bce": ({"latent_dim"}, ["decoder"]),
    "codebook-flatten": ({"z"}, ["flat_z"]),
    "codebook-sample": ({"model"}, ["z_q"]),
    "kl-divergence": ({"mu", "logvar"}, ["kl"]),
    "vae-loss": ({"x", "x_recon", "mu", "logvar", "beta"}, ["loss"]),
    "vq-nearest": ({"flat_z", "codebook"}, ["indices"]),
}
"""The code questions the course relies on, with exactly the names graders bind and read."""

SEED_MINIMUM = {
    "000_1c67774fde61a081": 5,  # five hint-and-explanation questions
    "001_dbd4fe3e558b94a0": 12,  # five cards, five MCQs, two explain prompts
    "002_b75ee90b928972ce": 11,  # ten numbered MCQs plus the one that lost its stem
    "003_824a7485ffeab610": 4,  # four short answers
}


@pytest.fixture(scope="module")
def bank() -> Bank:
    loaded = load_bank(BANK)
    assert loaded.ok, "\n".join(str(p) for p in loaded.problems)
    return loaded


def test_validate_command_accepts_the_bundled_bank(cli) -> None:
    result = cli("validate", BANK)
    assert result.returncode == 0, result.stderr
    assert re.search(r"ok: \d+ questions in \d+ files", result.stdout)


def test_bank_files_are_grouped_by_topic_and_point_editors_at_the_schema() -> None:
    files = sorted(p.name for p in BANK.glob("*.yaml") if not p.name.endswith(".quiz.yaml"))
    for expected in (
        "vae-basics.yaml",
        "kl-divergence.yaml",
        "reparameterization.yaml",
        "architecture-and-shapes.yaml",
        "training-and-debugging.yaml",
        "beta-vae.yaml",
        "vq-vae.yaml",
        "evaluation.yaml",
    ):
        assert expected in files
    for name in files:
        first_line = (BANK / name).read_text(encoding="utf-8").splitlines()[0]
        assert first_line == "# yaml-language-server: $schema=../vaequiz/schemas/question-bank.schema.json", name


def test_bank_has_at_least_sixty_items(bank: Bank) -> None:
    assert len(bank.questions) >= 60


def test_every_topic_has_four_items_at_every_difficulty(bank: Bank) -> None:
    by_topic: dict[str, list[str]] = defaultdict(list)
    for question in bank.questions:
        for topic in question.topics:
            by_topic[topic].append(str(question.difficulty))
    for topic, levels in by_topic.items():
        assert len(levels) >= 4, f"topic {topic} has only {len(levels)} items"
        assert set(levels) == {"beginner", "intermediate", "advanced"}, f"topic {topic}: {Counter(levels)}"


def test_every_item_records_a_seed_or_original_source(bank: Bank) -> None:
    for question in bank.questions:
        stem = question.source.split("#")[0]
        assert question.source == "original" or (stem in SEEDS and "#" in question.source), (
            f"{question.id}: source {question.source!r} names no seed anchor"
        )


def test_every_seed_is_covered(bank: Bank) -> None:
    counts = Counter(q.source.split("#")[0] for q in bank.questions if q.source != "original")
    for seed, minimum in SEED_MINIMUM.items():
        assert counts[seed] >= minimum, f"{seed}: {counts[seed]} items, expected at least {minimum}"
    anchors = {q.source for q in bank.questions}
    for anchor in [f"002_b75ee90b928972ce#q{n}" for n in range(1, 11)] + ["002_b75ee90b928972ce#q4b"]:
        assert anchor in anchors, f"no item comes from {anchor}"


def test_seed_kinds_carry_over(bank: Bank) -> None:
    """Cards stay cards, explain prompts stay concept-scored, the z-shape question is a shape."""
    kinds = Counter((q.source.split("#")[0], q.kind) for q in bank.questions)
    assert kinds[("001_dbd4fe3e558b94a0", "flashcard")] == 5
    assert kinds[("001_dbd4fe3e558b94a0", "mcq")] == 5
    assert kinds[("001_dbd4fe3e558b94a0", "short_answer")] == 2
    assert kinds[("003_824a7485ffeab610", "short_answer")] == 4
    z_shape = [q for q in bank.questions if q.source == "000_1c67774fde61a081#q2"]
    assert [type(q) for q in z_shape] == [ShapeAnswer]
    # parametric now: the seed's own numbers are one of the draws, with the seed's key
    from vaequiz.bank.parametric import bind, space_of

    space = space_of(z_shape[0])
    assert 64 in space.free["B"] and 400 in space.free["H"] and 20 in space.free["D"]
    assert bind(z_shape[0], {"B": 64, "H": 400, "D": 20}).answer == [64, 20]


def test_seed_explain_prompts_score_four_and_three_concepts(bank: Bank) -> None:
    by_source = {q.source: q for q in bank.questions if isinstance(q, ShortAnswer)}
    assert len(by_source["001_dbd4fe3e558b94a0#explain1"].rubric) == 4
    assert len(by_source["001_dbd4fe3e558b94a0#explain2"].rubric) == 3
    for question in by_source.values():
        assert 3 <= len(question.rubric) <= 4, question.id
        for concept in question.rubric:
            assert len(concept.phrasings) + len(concept.patterns) >= 2, f"{question.id}: {concept.name}"


def test_code_questions_use_exactly_the_course_names(bank: Bank) -> None:
    for question_id, (given, expect) in CODE_QUESTIONS.items():
        question = bank.get(question_id)
        assert isinstance(question, CodeQuestion), question_id
        assert set(question.given) == given, question_id
        assert question.expect == expect, question_id


def test_every_code_question_has_four_mutants_and_distinct_trials(bank: Bank) -> None:
    for question in bank.questions:
        if not isinstance(question, CodeQuestion):
            continue
        assert len(question.mutants) >= 4, question.id
        assert all(m.why.strip() for m in question.mutants), question.id
        binds = [tuple(sorted(t.bind.items())) for t in question.trials]
        assert len(set(binds)) == len(binds), f"{question.id}: two trials bind the same sizes"


def test_every_code_prompt_says_what_an_answer_may_import(bank: Bank) -> None:
    """The sandbox refuses imports outside ALLOWED_PACKAGES and the standard library; a student
    learns that from the prompt, before an answer is refused."""
    for q in bank.questions:
        if isinstance(q, CodeQuestion):
            prompt = " ".join(q.prompt.split())
            assert "you may also import" in prompt and "Python standard library" in prompt, q.id
            for package in ALLOWED_PACKAGES:
                assert f"`{package}`" in prompt, (q.id, package)


def test_code_option_mcqs_link_a_code_question_and_give_code(bank: Bank) -> None:
    linked = {q.code_question: q for q in bank.questions if isinstance(q, MultipleChoice) and q.code_question}
    assert set(linked) >= {"reparameterization-trick", "mnist-decoder-bce", "codebook-flatten", "codebook-sample"}
    for target, question in linked.items():
        assert isinstance(bank.get(target), CodeQuestion)
        assert all(option.code for option in question.options), question.id
        expected = set(CODE_QUESTIONS[target][1])
        for option in question.options:
            assigned = set(re.findall(r"^(\w+)\s*=", option.code or "", flags=re.MULTILINE))
            assert expected <= assigned, f"{question.id} option {option.label} never binds {expected}"


def test_mcqs_have_hints_and_feedback_on_wrong_options(bank: Bank) -> None:
    for question in bank.questions:
        if not isinstance(question, MultipleChoice):
            continue
        assert question.hint, question.id
        wrong = [o for o in question.options if o.label not in question.answer]
        assert all(o.feedback for o in wrong), f"{question.id}: a distractor has no feedback"


def test_every_keyed_item_explains_its_key(bank: Bank) -> None:
    for question in bank.questions:
        if isinstance(question, Flashcard):
            assert question.back.strip(), question.id
        else:
            assert question.explanation and len(question.explanation) > 40, question.id


_FENCED = re.compile(r"```.*?```", re.DOTALL)
_INLINE_CODE = re.compile(r"`[^`]*`")
_MATH = re.compile(r"\$\$(.+?)\$\$|\$(.+?)\$", re.DOTALL)


def _markdown_fields(question: object) -> list[str]:
    fields = []
    for name in ("stem", "prompt", "front", "back", "hint", "explanation", "model_answer"):
        value = getattr(question, name, None)
        if isinstance(value, str):
            fields.append(value)
    for option in getattr(question, "options", []):
        fields += [t for t in (option.text, option.feedback) if t]
    fields += [m.why for m in getattr(question, "mutants", [])]
    return fields


def test_all_math_converts_to_mathml(bank: Bank) -> None:
    formulas = 0
    for question in bank.questions:
        for text in _markdown_fields(question):
            prose = _INLINE_CODE.sub("", _FENCED.sub("", text))
            assert prose.count("$") % 2 == 0, f"{question.id}: unbalanced $ in {text[:60]!r}"
            for display, inline in _MATH.findall(prose):
                latex = display or inline
                formulas += 1
                try:
                    latex2mathml.converter.convert(latex)
                except Exception as err:  # the converter raises several exception types
                    pytest.fail(f"{question.id}: {latex!r} does not convert: {err}")
    assert formulas > 50


_NUMBER = re.compile(r"-?\d+(?:\.\d+)?")


def test_numeric_keys_appear_in_their_worked_explanations(bank: Bank) -> None:
    """The worked answer in each numeric item's explanation agrees with its key, for every
    draw of a parametric item (40 students' numbers each)."""
    from vaequiz.bank.parametric import bind, is_parametric, sample_students

    bound = []
    for question in bank.questions:
        if is_parametric(question):
            bound += [bind(question, values) for values in sample_students(question, 40)]
        else:
            bound.append(question)
    for question in bound:
        if isinstance(question, NumericAnswer):
            text = re.sub(r"(?<=\d)(?:\{,\}|,)(?=\d{3})", "", question.explanation or "")
            numbers = [float(n) for n in _NUMBER.findall(text)]
            slack = max(question.tolerance, abs(question.answer) * question.relative_tolerance, 1e-9)
            assert any(abs(n - question.answer) <= slack for n in numbers), question.id


@pytest.mark.parametrize("student", ["ada", "ben", "cai", "dee", "eve", "fay"])
def test_computable_keys_agree_with_torch(bank: Bank, student: str) -> None:
    """Keys that torch can compute are recomputed with the real layers and the reference code,
    for the numbers several students draw (most of these questions are parametric)."""
    import math

    import torch
    from torch import nn

    from reference_impl.conv_vae import ConvEncoder
    from reference_impl.losses import kl_divergence
    from vaequiz.bank.parametric import bind, draw_for

    drawn: dict[str, dict] = {}

    def key(question_id: str) -> object:
        question = bank.get(question_id)
        drawn[question_id] = draw_for(question, "course", 7, student)
        return bind(question, drawn[question_id]).answer  # type: ignore[union-attr]

    answer = key("encoder-z-shape")
    B, H, D = (drawn["encoder-z-shape"][k] for k in "BHD")
    encoder = nn.Sequential(nn.Linear(784, H), nn.ReLU(), nn.Linear(H, D))
    assert list(encoder(torch.randn(B, 784)).shape) == answer
    answer = key("decoder-output-view-shape")
    B = drawn["decoder-output-view-shape"]["B"]
    assert list(torch.randn(B, 784).view(-1, 1, 28, 28).shape) == answer
    answer = key("linear-layer-parameters")
    numbers = drawn["linear-layer-parameters"]
    assert sum(p.numel() for p in nn.Linear(numbers["I"], numbers["O"]).parameters()) == answer
    answer = key("conv-transpose-output-shape")
    n = drawn["conv-transpose-output-shape"]
    up = nn.ConvTranspose2d(n["Cin"], n["Cout"], kernel_size=4, stride=2, padding=1)
    assert list(up(torch.randn(n["N"], n["Cin"], n["H"], n["H"])).shape) == answer
    assert ConvEncoder().fc_mu.in_features == 3136  # the course's own 28x28 encoder
    answer = key("conv-encoder-flat-features")
    n = drawn["conv-encoder-flat-features"]
    convs = nn.Sequential(nn.Conv2d(1, 32, 4, stride=2, padding=1), nn.Conv2d(32, n["C"], 4, stride=2, padding=1))
    assert convs(torch.randn(1, 1, n["S"], n["S"])).flatten(1).shape[1] == answer
    answer = key("vq-flat-shape")
    n = drawn["vq-flat-shape"]
    z_e = torch.randn(n["B"], n["C"], n["H"], n["H"])
    assert list(z_e.permute(0, 2, 3, 1).reshape(-1, n["C"]).shape) == answer
    answer = key("per-sample-kl-shape")
    n = drawn["per-sample-kl-shape"]
    mu, logvar = torch.randn(n["B"], n["D"]), torch.randn(n["B"], n["D"])
    per_sample = -0.5 * torch.sum(1 + logvar - mu.pow(2) - logvar.exp(), dim=1)
    assert list(per_sample.shape) == answer
    answer = key("kl-value")
    n = drawn["kl-value"]
    kl = kl_divergence(torch.tensor([[float(n["m"]), 0.0]]), torch.tensor([[0.0, math.log(n["v"])]]))
    assert abs(kl.item() - answer) <= bank.get("kl-value").tolerance  # type: ignore[union-attr, operator]


def test_model_answers_earn_every_concept_and_off_topic_answers_do_not(bank: Bank) -> None:
    from vaequiz.grading.short_answer import grade_short_answer

    off_topic = "Neural networks are trained with gradient descent on large data sets and GPUs."
    for question in bank.questions:
        if isinstance(question, ShortAnswer):
            graded = grade_short_answer(question, question.model_answer)
            missed = [c.name for c in graded.checks if not c.passed]
            assert not missed, f"{question.id}: the model answer misses {missed}"
            assert grade_short_answer(question, off_topic).score < question.pass_fraction, question.id


def test_every_reference_solution_runs_on_its_hidden_inputs(bank: Bank) -> None:
    from vaequiz.grading.inputs import prepare_question

    for question in bank.questions:
        if isinstance(question, CodeQuestion):
            prepared = prepare_question(question)
            assert prepared.reference_error is None, f"{question.id}: {prepared.reference_error}"
            for values in prepared.reference:
                assert set(question.expect) <= set(values), question.id
