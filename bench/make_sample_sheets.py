"""Write the sample answer sheets in question_bank/samples/ from the bank (deterministic).

Four students with mixed answers across every graded kind, for trying `vaequiz grade-sheets`:
``ada`` answers everything right (code in other styles from tests/corpus where there is one),
``ben`` gets about half wrong (wrong options, partial short answers, mutants, other shape
spellings), ``cai`` leaves some out and writes broken code, ``dee`` saw shuffled options (her
sheet carries the label mapping a built page writes) and answers right.

    python bench/make_sample_sheets.py [--bank question_bank] [--out question_bank/samples]
"""

from __future__ import annotations

import argparse
import json
import random
import re
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from vaequiz.bank.loader import load_bank  # noqa: E402
from vaequiz.bank.models import (  # noqa: E402
    AnyQuestion,
    CodeQuestion,
    MultipleChoice,
    NumericAnswer,
    ShapeAnswer,
    ShortAnswer,
)

CORPUS = ROOT / "tests" / "corpus"


def corpus_passes() -> dict[str, str]:
    """One right snippet per question from the corpus, without its header comments."""
    found: dict[str, str] = {}
    for path in sorted(CORPUS.glob("*/pass_*.py"), reverse=True):
        text = path.read_text()
        question = re.search(r"^# question: (.*)$", text, re.M)
        if question:
            found[question.group(1).strip()] = "\n".join(line for line in text.splitlines() if not line.startswith("# ")) + "\n"
    return found


def right(question: AnyQuestion, styles: dict[str, str]) -> str | list[str] | None:
    match question:
        case MultipleChoice():
            return list(question.answer) if question.multiple else question.answer[0]
        case ShortAnswer():
            return question.model_answer
        case ShapeAnswer():
            return "(" + ", ".join(map(str, question.answer)) + ("," if len(question.answer) == 1 else "") + ")"
        case NumericAnswer():
            return f"{question.answer:g}"
        case CodeQuestion():
            return styles.get(question.id, question.reference)
    return None


def wrong(question: AnyQuestion, rng: random.Random) -> str | list[str] | None:
    match question:
        case MultipleChoice():
            others = [o.label for o in question.options if o.label not in question.answer]
            return [question.answer[0], rng.choice(others)] if question.multiple else rng.choice(others)
        case ShortAnswer():
            sentences = re.split(r"(?<=[.;])\s+", question.model_answer.strip())
            return sentences[0]
        case ShapeAnswer():
            return "x".join(str(d) for d in reversed(question.answer)) or "(1,)"
        case NumericAnswer():
            return f"{question.answer * 2 + 1:g}"
        case CodeQuestion():
            return rng.choice(question.mutants).code if question.mutants else "pass\n"
    return None


def sheets(bank_path: Path) -> list[dict[str, object]]:
    bank = load_bank(bank_path)
    graded = [q for q in bank.questions if q.kind != "flashcard"]
    styles = corpus_passes()
    rng = random.Random(20240611)
    ada = {q.id: right(q, styles) for q in graded}
    ben = {q.id: (wrong(q, rng) if i % 2 else right(q, {})) for i, q in enumerate(graded)}
    cai: dict[str, object] = {}
    for i, q in enumerate(graded):
        if i % 3 == 0:
            continue  # left blank
        if isinstance(q, CodeQuestion):
            cai[q.id] = f"{q.expect[0]} = undefined_helper()\n"
        elif isinstance(q, ShapeAnswer):
            cai[q.id] = "torch.Size([" + ", ".join(map(str, q.answer)) + "])"
        else:
            cai[q.id] = wrong(q, rng) if i % 2 else right(q, {})
    dee: dict[str, object] = {}
    labels: dict[str, dict[str, str]] = {}
    for q in graded:
        answer = right(q, {})
        if isinstance(q, MultipleChoice) and q.shuffle:
            bank_labels = [o.label for o in q.options]
            shown_order = bank_labels[1:] + bank_labels[:1]  # the page showed options rotated
            shown_to_bank = dict(zip(bank_labels, shown_order))
            labels[q.id] = shown_to_bank
            bank_to_shown = {b: s for s, b in shown_to_bank.items()}
            answer = [bank_to_shown[a] for a in q.answer] if q.multiple else bank_to_shown[q.answer[0]]
        dee[q.id] = answer
    return [
        {"student": "ada", "answers": ada},
        {"student": "ben", "answers": ben},
        {"student": "cai", "answers": cai},
        {"student": "dee", "answers": dee, "labels": labels, "variant": "rotated"},
    ]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--bank", type=Path, default=ROOT / "question_bank")
    parser.add_argument("--out", type=Path, default=ROOT / "question_bank" / "samples")
    args = parser.parse_args()
    args.out.mkdir(parents=True, exist_ok=True)
    for sheet in sheets(args.bank):
        path = args.out / f"{sheet['student']}.json"
        path.write_text(json.dumps(sheet, indent=2, ensure_ascii=False) + "\n", encoding="utf-8")
        print(path)


if __name__ == "__main__":
    main()
