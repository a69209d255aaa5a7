"""`vaequiz verify`: the bundled bank agrees with itself; a bank with wrong keys is caught."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from tests.conftest import BUNDLED_BANK, run_vaequiz
from vaequiz.bank.loader import load_bank
from vaequiz.bank.models import CodeQuestion, MultipleChoice

WRONG_KEYS = """
- id: kl-sum
  kind: code
  topics: [kl]
  difficulty: beginner
  source: original
  prompt: Bind kl.
  explanation: Closed form.
  given:
    mu: {type: tensor, shape: [B, D]}
    logvar: {type: tensor, shape: [B, D]}
  expect: [kl]
  reference: "kl = -0.5 * torch.sum(1 + logvar - mu.pow(2) - logvar.exp())"
  trials:
    - bind: {B: 4, D: 3}
  checks:
    - {check: close, of: kl}
  mutants:
    - code: "kl = -0.5 * torch.mean(1 + logvar - mu.pow(2) - logvar.exp())"
      why: Averages.
    - code: "kl = 0.5 * (mu.pow(2) + logvar.exp() - 1 - logvar).sum()"
      why: Listed as a mutant by mistake; it is right.
- id: kl-snippet
  kind: mcq
  topics: [kl]
  difficulty: beginner
  source: original
  stem: Which line computes the KL term?
  code_question: kl-sum
  options:
    - {label: A, code: "kl = -0.5 * torch.sum(1 + logvar - mu.pow(2) - logvar.exp())"}
    - {label: B, code: "kl = torch.sum(mu)"}
  answer: B
  explanation: Deliberately keyed wrong.
- id: explain
  kind: short_answer
  topics: [kl]
  difficulty: beginner
  source: original
  prompt: What does the KL term do?
  model_answer: It keeps the posterior close to the prior.
  rubric:
    - {name: regularisation, phrasings: [regularises]}
  explanation: The model answer misses its own rubric.
"""


@pytest.mark.slow
def test_bundled_bank_verifies() -> None:
    bank = load_bank(BUNDLED_BANK)
    code_ids = {q.id for q in bank.questions if isinstance(q, CodeQuestion)}
    linked = {q.id for q in bank.questions if isinstance(q, MultipleChoice) and q.code_question}
    done = run_vaequiz("verify", "--json", timeout=600)
    findings = json.loads(done.stdout)
    disagreements = [f for f in findings if not f["agrees"]]
    assert done.returncode == 0 and not disagreements, disagreements or done.stderr
    references = {f["question"] for f in findings if f["subject"] == "reference"}
    assert references == code_ids
    mutants = [f for f in findings if f["subject"].startswith("mutant")]
    assert mutants and all(f["got"] == "fail" and f["detail"].startswith("fails: ") for f in mutants)
    assert {f["question"] for f in findings if f["subject"].startswith("option")} == linked
    code_rows = [f for f in findings if f["question"] in code_ids]
    # questions with a gradient, call or fit probe are measured from programs; the others are
    # decided by their values alone
    probed = {"kl-divergence", "reparameterization-trick", "vae-loss", "mnist-decoder-bce"}
    assert probed < code_ids
    wrong = [(f["question"], f["subject"], f["measured"]) for f in code_rows
             if f["measured"] != ("out-of-process" if f["question"] in probed else "values only")]
    assert code_rows and not wrong, wrong


def test_wrong_keys_are_reported_with_exit_1(tmp_path: Path) -> None:
    bank = tmp_path / "bank"
    bank.mkdir()
    (bank / "wrong.yaml").write_text(WRONG_KEYS)
    done = run_vaequiz("verify", bank, "--workers", "1")
    assert done.returncode == 1
    assert "DISAGREES" in done.stdout and "2 of 6 agree" in done.stdout + done.stderr
    as_json = run_vaequiz("verify", bank, "--json", "--workers", "2")
    assert as_json.returncode == 1
    rows = {(f["question"], f["subject"]): f for f in json.loads(as_json.stdout)}
    assert rows[("kl-sum", "reference")]["agrees"]
    assert rows[("kl-sum", "mutant 1")]["agrees"] and rows[("kl-sum", "mutant 1")]["detail"] == "fails: value of kl"
    assert not rows[("kl-sum", "mutant 2")]["agrees"], "a right answer listed as a mutant is caught"
    assert not rows[("kl-snippet", "option A")]["agrees"] and rows[("kl-snippet", "option A")]["got"] == "pass"
    assert not rows[("kl-snippet", "option B")]["agrees"] and rows[("kl-snippet", "option B")]["got"] == "fail"
    explain = rows[("explain", "model answer")]
    assert not explain["agrees"] and "regularisation: not found in your answer" in explain["detail"]


UNCAPTURED_MUTANT = WRONG_KEYS.split("- id: kl-snippet")[0].replace(
    "  checks:\n    - {check: close, of: kl}\n",
    "  probes:\n    - {probe: grad, of: kl, wrt: [mu, logvar]}\n"
    "  checks:\n    - {check: close, of: kl}\n    - {check: gradient, of: kl, wrt: [mu, logvar], compare: reference}\n",
).replace(
    "shape: [B, D]}\n", "shape: [B, D], requires_grad: true}\n"
).replace(
    """    - code: "kl = 0.5 * (mu.pow(2) + logvar.exp() - 1 - logvar).sum()"
      why: Listed as a mutant by mistake; it is right.
""",
    """    - code: "_ = torch.eye(2).to_sparse()\\nkl = -0.5 * torch.mean(1 + logvar - mu.pow(2) - logvar.exp())"
      why: Averages, with a sparse tensor the capture refuses.
""",
)


def test_verify_says_per_code_question_whether_measurements_are_out_of_process(tmp_path: Path) -> None:
    bank = tmp_path / "bank"
    bank.mkdir()
    (bank / "kl.yaml").write_text(UNCAPTURED_MUTANT)
    as_json = run_vaequiz("verify", bank, "--json", "--workers", "1")
    assert as_json.returncode == 0, as_json.stdout + as_json.stderr
    rows = {f["subject"]: f for f in json.loads(as_json.stdout)}
    assert rows["reference"]["measured"] == rows["mutant 1"]["measured"] == "out-of-process"
    assert rows["mutant 2"]["measured"] == "measured in-process: operation aten._to_sparse.default is not in the allow list"
    table = run_vaequiz("verify", bank, "--workers", "1")
    assert "in-process for 1 of 3" in " ".join(table.stdout.split()), table.stdout
    (bank / "kl.yaml").write_text(UNCAPTURED_MUTANT.replace("_ = torch.eye(2).to_sparse()\\n", ""))
    table = run_vaequiz("verify", bank, "--workers", "1")
    assert "out-of-process (all 3" in " ".join(table.stdout.split()), table.stdout
    # without the gradient probe, the values decide: nothing is replayed, nothing labelled
    (bank / "kl.yaml").write_text(WRONG_KEYS.split("- id: kl-snippet")[0])
    rows = {f["subject"]: f for f in json.loads(run_vaequiz("verify", bank, "--json", "--workers", "1").stdout)}
    assert {f["measured"] for f in rows.values()} == {"values only"}, rows
    table = " ".join(run_vaequiz("verify", bank, "--workers", "1").stdout.split())
    assert table.count("values only") == 1 and "values only (all 3 answers)" in table, table
