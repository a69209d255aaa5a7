"""A small bank with every question kind, shared by the render and browser tests."""

from __future__ import annotations

import textwrap
from pathlib import Path

from vaequiz.bank.loader import load_bank

SAMPLE_BANK = r"""
- id: kl-role
  kind: mcq
  topics: [kl-divergence]
  difficulty: beginner
  source: original
  stem: What does the term $D_{\mathrm{KL}}(q_\phi(z \mid x) \,\|\, p(z))$ do in the VAE loss?
  options:
    - label: A
      text: It keeps the approximate posterior close to the prior.
      feedback: Yes, it is a regulariser on the encoder.
    - label: B
      text: It measures the reconstruction error.
      feedback: That is the other term of the ELBO.
    - label: C
      text: It makes the decoder deterministic.
    - label: D
      text: It counts latent dimensions.
  answer: A
  hint: Which two distributions does it compare?
  explanation: SAMPLE-EXPLANATION-KL the KL term pulls $q_\phi$ towards the prior $\mathcal{N}(0, I)$.
- id: vae-true-facts
  kind: mcq
  topics: [vae-basics]
  difficulty: intermediate
  source: original
  multiple: true
  stem: Which statements about a VAE are true? Tick every one.
  options:
    - label: A
      text: The encoder outputs the parameters of a distribution.
    - label: B
      text: The latent code is sampled with the reparameterization trick.
    - label: C
      text: The decoder is never trained.
  answer: [A, B]
  explanation: SAMPLE-EXPLANATION-FACTS the decoder is trained with the rest.
- id: sampling-code
  kind: mcq
  topics: [reparameterization]
  difficulty: intermediate
  source: original
  shuffle: false
  stem: Which line samples $z$ so gradients reach `mu`?
  options:
    - label: A
      code: "z = mu + torch.randn_like(mu) * torch.exp(0.5 * logvar)"
    - label: B
      code: "z = torch.normal(mu, torch.exp(0.5 * logvar)).detach()"
  answer: A
  explanation: SAMPLE-EXPLANATION-SAMPLING only A keeps the graph.
- id: latent-shape
  kind: shape
  topics: [shapes]
  difficulty: beginner
  source: original
  prompt: A batch of 64 images goes through an encoder with a 20-dimensional latent space. What is the shape of `z`?
  answer: [64, 20]
  explanation: SAMPLE-EXPLANATION-SHAPE one row per image, one column per latent dimension.
- id: kl-value
  kind: numeric
  topics: [kl-divergence]
  difficulty: intermediate
  source: original
  prompt: What is $D_{\mathrm{KL}}(\mathcal{N}(0,1) \,\|\, \mathcal{N}(0,1))$?
  answer: 0
  tolerance: 0.001
  explanation: SAMPLE-EXPLANATION-NUMERIC identical distributions have zero divergence.
- id: why-reparameterize
  kind: short_answer
  topics: [reparameterization]
  difficulty: intermediate
  source: original
  prompt: Why does a VAE sample $z$ as $\mu + \sigma \odot \varepsilon$?
  model_answer: SAMPLE-MODEL-ANSWER so that gradients flow through the mean and the variance.
  rubric:
    - name: gradients flow
      phrasings: [gradient, backpropagation, differentiable]
    - name: noise is separate
      phrasings: [noise, epsilon]
  explanation: SAMPLE-EXPLANATION-SHORT the noise carries the randomness.
- id: elbo-card
  kind: flashcard
  topics: [elbo]
  difficulty: beginner
  source: original
  front: What does ELBO stand for?
  back: SAMPLE-CARD-BACK the evidence lower bound, $\log p(x) \ge \mathcal{L}$.
- id: reparam-code
  kind: code
  topics: [reparameterization]
  difficulty: intermediate
  points: 4
  source: original
  prompt: Bind `z`, a sample of $\mathcal{N}(\mu, \sigma^2)$ that gradients flow through.
  starter: |
    z = ...
  hint: Draw noise without parameters, then shift and scale it.
  explanation: SAMPLE-EXPLANATION-CODE shift and scale standard noise.
  given:
    mu: {type: tensor, shape: [B, D], requires_grad: true}
    logvar: {type: tensor, shape: [B, D], dist: uniform, low: -3, high: 2, requires_grad: true}
  expect: [z]
  reference: |
    sample_reference_std = torch.exp(0.5 * logvar)
    z = mu + torch.randn_like(sample_reference_std) * sample_reference_std
  trials:
    - bind: {B: 3, D: 5}
      repeat: 2
  probes:
    - {probe: grad, of: z, wrt: [mu, logvar]}
  checks:
    - {check: shape, of: z, like: mu}
    - {check: gradient, of: z, wrt: [mu, logvar]}
    - {check: fresh, of: z, hidden: true}
  mutants:
    - code: "z = mu * torch.randn_like(logvar)"
      why: SAMPLE-MUTANT-WHY the variance never enters.
"""

KEY_MARKERS = (
    "SAMPLE-EXPLANATION",
    "SAMPLE-MODEL-ANSWER",
    "SAMPLE-MUTANT-WHY",
    "sample_reference_std",
    "Yes, it is a regulariser",
    "That is the other term",
    "Which two distributions",
)
"""Text that only key, practice or flashcard pages may contain."""

SAMPLE_QUIZ = """
id: sample-quiz
title: Sample quiz
instructions: Answer every question. The prior is $p(z) = \\mathcal{N}(0, I)$.
select:
  - ids: [kl-role, vae-true-facts, sampling-code, latent-shape, kl-value, why-reparameterize, reparam-code]
  - kinds: [flashcard]
seed: 7
shuffle_questions: true
points: {latent-shape: 2}
"""


def write_sample_bank(folder: Path) -> Path:
    """Write the sample bank to ``folder/bank`` and return that folder."""
    bank = folder / "bank"
    bank.mkdir(parents=True, exist_ok=True)
    (bank / "sample.yaml").write_text(textwrap.dedent(SAMPLE_BANK).lstrip(), encoding="utf-8")
    return bank


def write_sample_quiz(folder: Path, text: str = SAMPLE_QUIZ) -> Path:
    path = folder / "sample.quiz.yaml"
    path.write_text(textwrap.dedent(text).lstrip(), encoding="utf-8")
    return path


def test_sample_bank_is_valid_and_covers_every_kind(tmp_path: Path) -> None:
    bank = load_bank(write_sample_bank(tmp_path))
    assert bank.ok, bank.problems
    assert {q.kind for q in bank.questions} == {
        "mcq", "short_answer", "flashcard", "shape", "numeric", "code"
    }
