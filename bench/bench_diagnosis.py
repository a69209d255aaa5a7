"""Benchmark: what diagnosis by known mistake costs a grading run.

Grades the corpus's wrong answers (tests/corpus, hostile ones left out) of the fast code
questions twice on one warm sandbox, in the same run: once with diagnosis (each question's
mutants run once, on the first failing answer, and every failing answer is compared with them)
and once without (the baseline). A fresh grader each time, so the mutant runs are counted.
Prints seconds, the ratio, the mutant runs and how many answers were matched to a mutant.

    python bench/bench_diagnosis.py [--copies 5] [--workers N] [--questions all]
"""

from __future__ import annotations

import argparse
import os
import platform
import re
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from vaequiz.bank.loader import load_bank  # noqa: E402
from vaequiz.bank.models import CodeQuestion  # noqa: E402
from vaequiz.grading.grader import Grader  # noqa: E402
from vaequiz.grading.sandbox import Sandbox  # noqa: E402

CORPUS = ROOT / "tests" / "corpus"
FAST = ["reparameterization-trick", "codebook-flatten", "kl-divergence", "vae-loss", "vq-nearest"]


def wrong_answers(questions: list[str]) -> list[tuple[str, str]]:
    """(question id, source) of every corpus snippet expected to fail."""
    found = []
    for path in sorted(CORPUS.rglob("fail_*.py")):
        if path.parent.name == "hostile":
            continue
        text = path.read_text()
        question = re.search(r"^# question: (.*)$", text, re.M)
        if question and question.group(1).strip() in questions:
            found.append((question.group(1).strip(), text))
    return found


def timed(sandbox: Sandbox, bank, answers: list[tuple[str, str]], workers: int, diagnose: bool) -> tuple[float, int, int]:
    """(seconds, mutant runs, answers matched to a mutant) for one pass over ``answers``."""
    grader = Grader(sandbox)
    start = time.perf_counter()
    with ThreadPoolExecutor(max_workers=workers) as pool:
        results = list(pool.map(lambda qa: grader.grade(bank.get(qa[0]), qa[1], diagnose=diagnose), answers))
    seconds = time.perf_counter() - start
    matched = sum(1 for r in results if r.mistake)
    return seconds, grader.mistakes.mutant_runs if grader.mistakes else 0, matched


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--copies", type=int, default=5, help="How many times each wrong answer is graded.")
    parser.add_argument("--workers", type=int, default=len(os.sched_getaffinity(0)))
    parser.add_argument("--questions", default="fast", help="'fast' (default) or 'all' code questions.")
    args = parser.parse_args()
    bank = load_bank(ROOT / "question_bank")
    ids = FAST if args.questions == "fast" else [q.id for q in bank.questions if isinstance(q, CodeQuestion)]
    answers = wrong_answers(ids) * args.copies
    mutants = sum(len(bank.get(q).mutants) for q in ids)
    print(f"{platform.machine()}, {os.cpu_count()} cores, Python {platform.python_version()}; "
          f"{len(answers)} wrong answers of {len(ids)} questions ({mutants} mutants), {args.workers} workers")
    with Sandbox(workers=args.workers) as sandbox:
        timed(sandbox, bank, answers[:len(ids)], args.workers, False)  # warm up
        base, _, _ = timed(sandbox, bank, answers, args.workers, diagnose=False)
        with_diagnosis, runs, matched = timed(sandbox, bank, answers, args.workers, diagnose=True)
    print(f"without diagnosis: {base:.2f} s ({len(answers) / base:.1f} answers/s)")
    print(f"with diagnosis:    {with_diagnosis:.2f} s ({len(answers) / with_diagnosis:.1f} answers/s); "
          f"{runs} mutant runs, {matched} of {len(answers)} answers matched to a known mistake")
    print(f"ratio: {with_diagnosis / base:.2f}x the time of grading without diagnosis")


if __name__ == "__main__":
    main()
