"""Agreement of the short-answer grader with an instructor on held-out answers.

Reads ``bench/short_answer_holdout.yaml`` (answers written after the bundled rubrics were fixed;
never used to tune them) and prints agreement, wrong answers passed, right answers failed, and
how many disagreements the review flags catch.

    python bench/short_answer_agreement.py [--verbose]
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import yaml

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from vaequiz.bank.loader import load_bank  # noqa: E402
from vaequiz.grading.short_answer import grade_short_answer  # noqa: E402


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--verbose", action="store_true", help="print every disagreement")
    args = parser.parse_args()
    bank = load_bank(REPO / "question_bank")
    cases = yaml.safe_load((Path(__file__).parent / "short_answer_holdout.yaml").read_text(encoding="utf-8"))
    agree = wrong_passed = right_failed = flagged_disagreements = flagged = 0
    wrong = sum(1 for c in cases if c["verdict"] == "fail")
    for case in cases:
        graded = grade_short_answer(bank.get(case["question"]), case["answer"])
        expected = case["verdict"] == "pass"
        flagged += graded.needs_review
        if bool(graded.passed) == expected:
            agree += 1
            continue
        wrong_passed += not expected
        right_failed += expected
        flagged_disagreements += graded.needs_review
        if args.verbose:
            print(f"{case['question']}: expected {case['verdict']}, got score {graded.score:.2f} "
                  f"({'flagged' if graded.needs_review else 'not flagged'}): {case['answer']}")
    disagreements = len(cases) - agree
    print(f"{len(cases)} held-out answers: agreement {agree}/{len(cases)} ({agree / len(cases):.0%}); "
          f"wrong answers passed {wrong_passed}/{wrong}; right answers failed {right_failed}/{len(cases) - wrong}; "
          f"{flagged_disagreements}/{disagreements} disagreements flagged for review; {flagged} flagged in all")


if __name__ == "__main__":
    main()
