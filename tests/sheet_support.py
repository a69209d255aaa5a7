"""Set-up shared by the tests that grade answer sheets through the real CLI: the YAML of the small
questions their banks are made of, writing banks and sheets to disk, and reading results back.

Each test file still spells out its own bank (which questions, which options); only the blocks
that are the same everywhere live here, so a change to one of them is made once."""

from __future__ import annotations

import json
from pathlib import Path

PICK_OPTIONS = [
    "{label: A, text: the KL term}",
    "{label: B, text: the reconstruction term}",
    "{label: C, text: the learning rate}",
]


def pick_question(options: list[str]) -> str:
    """The two-point MCQ `pick` (answer A, the KL term) with the given option lines."""
    lines = "".join(f"    - {option}\n" for option in options)
    return (
        "- id: pick\n"
        "  kind: mcq\n"
        "  topics: [vae]\n"
        "  difficulty: beginner\n"
        "  source: original\n"
        "  points: 2\n"
        "  stem: Which term pulls the posterior towards the prior?\n"
        "  options:\n" + lines + "  answer: A\n"
        "  explanation: The KL term.\n"
    )


WHY_QUESTION = """\
- id: why
  kind: short_answer
  topics: [vae]
  difficulty: beginner
  source: original
  prompt: Why sample with the reparameterization trick?
  model_answer: Sampling is not differentiable; moving the noise into epsilon lets gradients flow.
  rubric:
    - {name: not differentiable, phrasings: [not differentiable]}
    - {name: noise in epsilon, phrasings: [epsilon]}
  explanation: See the model answer.
"""

Z_SHAPE_QUESTION = """\
- id: z-shape
  kind: shape
  topics: [vae]
  difficulty: beginner
  source: original
  prompt: Shape of z?
  answer: [64, 20]
  explanation: Batch by latent size.
"""

PARAMS_QUESTION = """\
- id: params
  kind: numeric
  topics: [vae]
  difficulty: beginner
  source: original
  prompt: How many weights has a 784 by 400 linear layer, without bias?
  answer: 313600
  explanation: 784 x 400.
"""


def kl_why_question(rubric: str) -> str:
    """The two-point short answer `kl-why` (why the VAE loss has a KL term) with the given
    rubric items (YAML list lines, indented by four spaces)."""
    return (
        "- id: kl-why\n"
        "  kind: short_answer\n"
        "  topics: [vae]\n"
        "  difficulty: beginner\n"
        "  source: original\n"
        "  points: 2\n"
        "  prompt: Why does the VAE loss contain a KL term?\n"
        "  model_answer: |\n"
        "    The KL term regularises the latent space: it pulls each approximate posterior toward the\n"
        "    standard normal prior, so the encoder cannot memorise its inputs as isolated points.\n"
        "  rubric:\n" + rubric + "  explanation: See the model answer.\n"
    )


def write_bank(tmp_path: Path, text: str, name: str = "questions.yaml") -> Path:
    """Write ``text`` as ``tmp_path/bank/NAME`` and return the bank folder."""
    folder = tmp_path / "bank"
    folder.mkdir()
    (folder / name).write_text(text)
    return folder


def write_sheet(folder: Path, name: str, content: object, prefix: bytes = b"") -> Path:
    """Write a sheet: ``content`` as JSON, or as it is when it is already text (for broken
    sheets), after the raw bytes ``prefix`` (a BOM, say)."""
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / name
    text = content if isinstance(content, str) else json.dumps(content)
    path.write_bytes(prefix + text.encode("utf-8"))
    return path


def write_sheets(folder: Path, sheets: list[dict]) -> list[Path]:
    """Write each sheet as ``folder/STUDENT.json``, in order."""
    return [write_sheet(folder, f"{sheet['student']}.json", sheet) for sheet in sheets]


def read_results(out: Path) -> list[dict]:
    """The lines of ``out/results.jsonl``."""
    return [json.loads(line) for line in (out / "results.jsonl").read_text().split("\n") if line]


def results_by_pair(out: Path) -> dict[tuple[str, str], dict]:
    """The results keyed by (student, question)."""
    return {(r["student"], r["question"]): r for r in read_results(out)}
