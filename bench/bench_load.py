"""Benchmark: load and validate a generated bank of 1,000 questions.

Compares vaequiz's loader (libyaml events, located nodes, one validation pass) with a naive
baseline in the same run: PyYAML's default pure-Python ``yaml.safe_load`` followed by pydantic
validation, which keeps no locations at all. Prints seconds for each and the ratio.

    python bench/bench_load.py [--questions 1000] [--repeat 5]
"""

from __future__ import annotations

import argparse
import platform
import statistics
import sys
import tempfile
import time
from pathlib import Path

import yaml

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from vaequiz.bank.loader import bank_files, load_bank  # noqa: E402
from vaequiz.bank.models import question_adapter  # noqa: E402


def generated_question(i: int) -> dict:
    """A realistic mix: MCQs, short answers, shapes, cards, code questions."""
    common = {
        "id": f"q-{i}",
        "topics": ["vae-basics", f"topic-{i % 7}"],
        "difficulty": ["beginner", "intermediate", "advanced"][i % 3],
        "source": "original",
        "explanation": f"Explanation {i}: $D_{{KL}}(q \\| p)$ keeps the posterior near the prior.",
        "hint": "Think about the prior.",
    }
    match i % 5:
        case 0 | 1:
            return common | {
                "kind": "mcq",
                "stem": f"Question {i}: what does the KL term in the ELBO do?",
                "options": [
                    {"label": chr(65 + k), "text": f"Option {k} of {i}", "feedback": "Because."}
                    for k in range(4)
                ],
                "answer": "B",
            }
        case 2:
            return common | {
                "kind": "short_answer",
                "prompt": f"Explain idea {i}.",
                "model_answer": "It regularises the latent space toward the prior.",
                "rubric": [
                    {"name": f"concept {k}", "phrasings": ["prior", "standard normal", "regularise"]}
                    for k in range(4)
                ],
            }
        case 3:
            return common | {"kind": "shape", "prompt": "Shape of z?", "answer": [64, 20]}
        case _:
            return common | {
                "kind": "code",
                "prompt": "Compute the KL term.",
                "given": {
                    "mu": {"type": "tensor", "shape": ["B", "D"]},
                    "logvar": {"type": "tensor", "shape": ["B", "D"]},
                },
                "expect": ["kl"],
                "reference": "kl = -0.5 * torch.sum(1 + logvar - mu.pow(2) - logvar.exp())",
                "trials": [{"bind": {"B": 3, "D": 5}}, {"bind": {"B": 17, "D": 2}}],
                "checks": [{"check": "shape", "of": "kl", "is": [[]]}, {"check": "close", "of": "kl"}],
                "mutants": [{"code": "kl = mu.sum()", "why": "Not the KL."}],
            }


def write_bank(folder: Path, count: int, per_file: int = 50) -> None:
    for start in range(0, count, per_file):
        batch = [generated_question(i) for i in range(start, min(count, start + per_file))]
        (folder / f"part-{start // per_file:03d}.yaml").write_text(
            yaml.safe_dump(batch, sort_keys=False), encoding="utf-8"
        )


def naive_load(folder: Path) -> int:
    count = 0
    for file in bank_files(folder):
        for item in yaml.load(file.read_text(encoding="utf-8"), Loader=yaml.SafeLoader):
            question_adapter.validate_python(item)
            count += 1
    return count


def timed(fn, repeat: int) -> float:
    samples = []
    for _ in range(repeat):
        start = time.perf_counter()
        fn()
        samples.append(time.perf_counter() - start)
    return statistics.median(samples)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--questions", type=int, default=1000)
    parser.add_argument("--repeat", type=int, default=5)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp)
        write_bank(folder, args.questions)
        bank = load_bank(folder)
        assert not bank.problems and len(bank.questions) == args.questions, bank.problems[:3]
        assert naive_load(folder) == args.questions
        ours = timed(lambda: load_bank(folder), args.repeat)
        naive = timed(lambda: naive_load(folder), args.repeat)
    print(f"machine: {platform.machine()}, {platform.python_implementation()} {platform.python_version()}")
    print(f"questions: {args.questions} (median of {args.repeat} runs)")
    print(f"vaequiz load_bank (located, all checks): {ours:.3f} s  ({args.questions / ours:,.0f} questions/s)")
    print(f"baseline yaml.safe_load + validate:      {naive:.3f} s")
    print(f"ratio baseline / vaequiz: {naive / ours:.2f}x")


if __name__ == "__main__":
    main()
