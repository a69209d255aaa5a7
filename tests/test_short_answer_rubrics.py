"""Rubrics that are tested: marked examples regraded by `vaequiz verify`, lint rules for weak
phrasings, and the bundled short answers passing both."""

from __future__ import annotations

import json
import textwrap
from pathlib import Path

from vaequiz.bank.lint import MIN_EXAMPLES, lint_bank
from vaequiz.bank.loader import load_bank
from vaequiz.bank.models import ShortAnswer
from tests.conftest import BUNDLED_BANK, run_vaequiz

RUBRIC = """
- id: kl-why
  kind: short_answer
  topics: [vae]
  difficulty: beginner
  source: original
  prompt: Why does the VAE loss contain a KL term?
  model_answer: It regularises the code and pulls each posterior toward the standard normal prior.
  rubric:
    - {name: regularises, phrasings: [regularise, "penalise ... code"]}
    - name: pulls toward the prior
      phrasings: ["pull ... toward ... prior"]
      contradictions: ["kl ... measure ... reconstruction"]
  explanation: See the model answer.
  examples:
    - answer: It regularises the latent code.
      concepts: [regularises]
      verdict: pass
    - answer: It does not regularise anything, it pulls posteriors toward the prior.
      concepts: [pulls toward the prior]
      verdict: pass
    - answer: "KL, regularisation, prior"
      concepts: []
      verdict: fail
      why: a bare list of key terms
    - answer: The KL measures reconstruction and pulls the output toward the prior.
      concepts: [pulls toward the prior]
      verdict: pass
      why: deliberately mismarked - the contradiction cancels the concept
"""


def write_bank(tmp_path: Path, text: str) -> Path:
    bank = tmp_path / "bank"
    bank.mkdir(exist_ok=True)
    (bank / "q.yaml").write_text(textwrap.dedent(text))
    return bank


def test_verify_regrades_examples_and_fails_on_any_disagreement(tmp_path: Path) -> None:
    bank = write_bank(tmp_path, RUBRIC)
    done = run_vaequiz("verify", bank, "--json", "--workers", "1")
    assert done.returncode == 1, done.stderr
    rows = {f["subject"]: f for f in json.loads(done.stdout) if f["question"] == "kl-why"}
    assert rows["model answer"]["agrees"]
    assert all(rows[f"example {i}"]["agrees"] for i in (1, 2, 3))
    assert rows["example 1"]["detail"] == "1 of 2 concepts, as marked"
    wrong = rows["example 4"]
    assert not wrong["agrees"] and wrong["got"] == "fail"
    assert "grader misses 'pulls toward the prior'" in wrong["detail"] and "contradicts this" in wrong["detail"]
    table = run_vaequiz("verify", bank, "--workers", "1")
    assert "DISAGREES" in table.stdout and "4 of 5 agree" in table.stdout + table.stderr


def test_verify_fails_when_only_the_concepts_differ(tmp_path: Path) -> None:
    text = RUBRIC.split("    - answer: It does not")[0].replace(
        "      concepts: [regularises]\n      verdict: pass",
        "      concepts: [pulls toward the prior]\n      verdict: pass",
    )
    done = run_vaequiz("verify", write_bank(tmp_path, text), "--json", "--workers", "1")
    example = next(f for f in json.loads(done.stdout) if f["subject"] == "example 1")
    assert done.returncode == 1 and example["expected"] == example["got"] == "pass"
    assert not example["agrees"] and "grader finds 'regularises'" in example["detail"]


def test_examples_are_checked_against_the_rubric_when_the_bank_loads(tmp_path: Path) -> None:
    unknown = RUBRIC.replace("concepts: [regularises]", "concepts: [regularization]")
    done = run_vaequiz("validate", write_bank(tmp_path, unknown))
    assert done.returncode == 1 and "examples.0.concepts: names 'regularization', which is not a rubric concept; concepts are: regularises" in done.stdout + done.stderr
    inconsistent = RUBRIC.replace("concepts: []\n      verdict: fail", "concepts: []\n      verdict: pass")
    done = run_vaequiz("validate", write_bank(tmp_path, inconsistent))
    assert done.returncode == 1 and "examples.2.verdict: marked pass but shows 0 of 2 concepts" in done.stdout + done.stderr


def test_lint_flags_weak_rubrics(tmp_path: Path) -> None:
    text = """
    - id: reparam-why
      kind: short_answer
      topics: [vae]
      difficulty: beginner
      source: original
      prompt: How does the reparameterization trick let gradients reach the encoder?
      model_answer: Write z = mu + sigma * eps with eps drawn from N(0, I); z is differentiable.
      rubric:
        - {name: gradients reach the encoder, phrasings: [gradients reach, "backprop ... through"]}
        - {name: rewrite as mu plus sigma times eps, phrasings: [shift and scale, noise]}
        - {name: noise from a fixed distribution, phrasings: [noise, "fixed ... distribution"]}
      explanation: The trick.
    """
    report = lint_bank(write_bank(tmp_path, text))
    by_rule: dict[str, list[str]] = {}
    for finding in report.findings:
        by_rule.setdefault(finding.rule, []).append(finding.message)
    assert any("'gradients reach'" in m and "occurs in the prompt" in m for m in by_rule["phrasing-in-prompt"])
    assert any("'noise'" in m and "also a phrasing of concept" in m for m in by_rule["generic-phrasing"])
    assert by_rule["math-form"] == ["concept 'rewrite as mu plus sigma times eps' has a math form but no patterns for it"]
    assert by_rule["few-examples"] == [
        f"short answer 'reparam-why' has 0 marked example(s); at least {MIN_EXAMPLES} show the rubric "
        "grades real answers as a teacher would"
    ]
    located = next(f for f in report.findings if f.rule == "phrasing-in-prompt")
    assert located.location.line == 10 and str(located.location).endswith(":10:55")


def test_lint_finds_words_too_common_in_the_bank(tmp_path: Path) -> None:
    bank = load_bank(BUNDLED_BANK)
    from vaequiz.bank.lint import rule_generic_phrasing

    assert list(rule_generic_phrasing(bank)) == [], "the bundled rubrics avoid generic one-word phrasings"
    text = (BUNDLED_BANK / "kl-divergence.yaml").read_text().replace(
        "phrasings: [regularise, ", 'phrasings: [regularise, "decoder", ', 1
    )
    assert '"decoder"' in text
    copy = tmp_path / "bank"
    copy.mkdir()
    for path in BUNDLED_BANK.glob("*.yaml"):
        (copy / path.name).write_text(path.read_text())
    (copy / "kl-divergence.yaml").write_text(text)
    findings = [f.message for f in lint_bank(copy).findings if f.rule == "generic-phrasing"]
    assert len(findings) == 1 and "'decoder'" in findings[0] and "of the bank's question texts" in findings[0]


def test_bundled_short_answers_are_tested_rubrics() -> None:
    bank = load_bank(BUNDLED_BANK)
    report = lint_bank(BUNDLED_BANK)
    rubric_rules = {"phrasing-in-prompt", "generic-phrasing", "math-form", "few-examples", "single-phrasing"}
    assert [str(f) for f in report.findings if f.rule in rubric_rules] == []
    questions = [q for q in bank.questions if isinstance(q, ShortAnswer)]
    assert len(questions) == 7
    for question in questions:
        assert len(question.examples) >= MIN_EXAMPLES, question.id
        verdicts = {e.verdict for e in question.examples}
        assert verdicts == {"pass", "fail"}, question.id


def test_the_key_page_lists_marked_examples_and_the_exam_page_does_not(tmp_path: Path) -> None:
    bank = load_bank(BUNDLED_BANK)
    question = bank.get("kl-importance")
    assert isinstance(question, ShortAnswer)
    pages = {}
    for mode in ("key", "exam"):
        out = tmp_path / f"{mode}.html"
        done = run_vaequiz("build", "--bank", BUNDLED_BANK, "--mode", mode, "-o", out)
        assert done.returncode == 0, done.stderr
        pages[mode] = out.read_text(encoding="utf-8")
    assert "Marked examples" in pages["key"] and "a bare list of key terms" in pages["key"]
    assert "KL, regularization, prior, standard normal, overfitting" in pages["key"]
    assert "Marked examples" not in pages["exam"]
    assert "KL, regularization, prior, standard normal, overfitting" not in pages["exam"]
