"""Benchmark: grade corpus snippets with the grade-sheets machinery against a naive baseline.

The corpus (tests/corpus, right and wrong answers, hostile ones left out) is cycled into answer
sheets and graded by :func:`vaequiz.grading.sheets.grade_sheets` on a warm sandbox: first the
five questions without a training step or many repeats together (reparameterization, flatten,
KL, loss, nearest), then every bundled code question on its own (answers/s each). In the same
run, the naive baseline grades a subsample by starting a fresh Python interpreter per snippet
(import torch, draw inputs, run the snippet unsandboxed, check), and its rate is extrapolated.
Prints snippets/s and the ratio. The light questions and every question on its own are also
graded, in alternating rounds, by a sandbox without the measurement memo (every program
measured by its own child, the worst case: a class whose answers all compute differently) and
by one with the program path switched off (each snippet measured in its own process, as before
issue 11). Every timing starts with an empty memo, so only answers repeated within the batch
(the corpus is cycled, as a class repeats the common answers) share a measurement; the share
is printed.

With ``--previous REF``, the per-question rates are also measured for the code and bank of git
revision REF (extracted to a temporary folder and run in a child process on the same corpus),
in ``--rounds`` rounds that alternate with this tree's own measurement; each side's median
rate per question and their ratio are printed. The load average is printed with every figure: the
machine may be shared, so compare ratios taken in the same run.

    python bench/bench_grading.py [--snippets 500] [--baseline 30] [--workers N] [--program-rounds 3]
                                  [--previous REF [--rounds 3]]
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import re
import statistics
import subprocess
import sys
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from contextlib import nullcontext
from itertools import cycle
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
CODE_ROOT = Path(os.environ.get("VAEQUIZ_BENCH_CODE", ROOT))
"""Where vaequiz is imported from: this tree, or a previous revision's (``--previous``)."""
sys.path.insert(0, str(CODE_ROOT))

from vaequiz.bank.loader import load_bank  # noqa: E402
from vaequiz.bank.models import CodeQuestion  # noqa: E402
from vaequiz.grading.code import judge  # noqa: E402
from vaequiz.grading.grader import Grader  # noqa: E402
from vaequiz.grading.sandbox import Sandbox  # noqa: E402
from vaequiz.grading.sheets import grade_sheets  # noqa: E402

CORPUS = ROOT / "tests" / "corpus"
FAST = ["reparameterization-trick", "codebook-flatten", "kl-divergence", "vae-loss", "vq-nearest"]


def corpus(questions: list[str]) -> dict[str, list[str]]:
    """Snippet sources per question, right and wrong (hostile snippets excluded)."""
    found: dict[str, list[str]] = {q: [] for q in questions}
    for path in sorted(CORPUS.rglob("*.py")):
        if path.parent.name == "hostile":
            continue
        question = re.search(r"^# question: (.*)$", path.read_text(), re.M)
        if question and question.group(1).strip() in found:
            found[question.group(1).strip()].append(path.read_text())
    return found


def write_sheets(folder: Path, snippets: dict[str, list[str]], total: int) -> list[Path]:
    """Sheets answering every question of ``snippets``, cycling through its corpus, ``total`` answers."""
    folder.mkdir(parents=True, exist_ok=True)
    streams = {q: cycle(s) for q, s in snippets.items()}
    per_sheet = len(snippets)
    paths = []
    for i in range(-(-total // per_sheet)):
        answers = {q: next(stream) for q, stream in streams.items()}
        path = folder / f"student-{i:04d}.json"
        path.write_text(json.dumps({"student": f"student-{i:04d}", "answers": answers}))
        paths.append(path)
    return paths


def timed_sheets(bank_path: Path, sandbox: Sandbox, snippets: dict[str, list[str]], total: int, workers: int) -> tuple[int, float]:
    """(answers graded, seconds) for grade_sheets on an already warm sandbox, as for a fresh
    class: the sandbox's measurement memo starts empty (answers repeated within the batch share
    a measurement, as they do in one grading run)."""
    if hasattr(sandbox, "measurements"):
        sandbox.measurements.clear()
    bank = load_bank(bank_path)
    with tempfile.TemporaryDirectory() as tmp:
        sheets = write_sheets(Path(tmp) / "sheets", snippets, total)
        start = time.perf_counter()
        report = grade_sheets(sheets, Path(tmp) / "out", bank, lambda: nullcontext(sandbox), workers)
        seconds = time.perf_counter() - start
    assert not report.problems, report.problems
    return report.graded, seconds


def naive_one(bank_path: Path, question: str, source: str) -> float:
    """Seconds to grade one snippet in a fresh interpreter (imports, inputs, unsandboxed run, checks)."""
    script = (
        "import sys\n"
        "from vaequiz.bank.loader import load_bank\n"
        "from vaequiz.grading.code import judge\n"
        "from vaequiz.grading.inputs import prepare_question, run_trusted\n"
        "from vaequiz.grading.sandbox.api import RunOutcome, SandboxResult\n"
        "question = load_bank(sys.argv[1]).get(sys.argv[2])\n"
        "prepared = prepare_question(question)\n"
        "source = sys.stdin.read()\n"
        "outcomes = []\n"
        "for run in prepared.runs:\n"
        "    try:\n"
        "        outcomes.append(RunOutcome(outputs=run_trusted(source, question.expect, run)))\n"
        "    except Exception as err:\n"
        "        outcomes.append(RunOutcome(error=f'{type(err).__name__}: {err}'))\n"
        "print(judge(prepared, SandboxResult('ok', '', outcomes)).passed)\n"
    )
    start = time.perf_counter()
    subprocess.run(
        [sys.executable, "-c", script, str(bank_path), question],
        input=source,
        text=True,
        capture_output=True,
        cwd=ROOT,
        env={**os.environ, "PYTHONPATH": str(ROOT)},
        check=False,
    )
    return time.perf_counter() - start


def naive_rate(bank_path: Path, snippets: dict[str, list[str]], count: int, workers: int) -> float:
    """Snippets per second of the naive baseline, from ``count`` snippets on ``workers`` processes."""
    pairs = [(q, s) for q, sources in snippets.items() for s in sources]
    chosen = [pairs[i * len(pairs) // count] for i in range(count)]
    start = time.perf_counter()
    with ThreadPoolExecutor(workers) as pool:
        list(pool.map(lambda pair: naive_one(bank_path, *pair), chosen))
    return count / (time.perf_counter() - start)


def overhead(bank_path: Path, sandbox: Sandbox, snippets: dict[str, list[str]], count: int) -> tuple[float, float]:
    """Median milliseconds per snippet in the sandbox (fork, limits, wire, run) and in the checks."""
    bank = load_bank(bank_path)
    grader = Grader(sandbox)
    pairs = [(q, s) for q, sources in snippets.items() for s in sources]
    sandbox_ms, checks_ms = [], []
    for i in range(count):
        question_id, source = pairs[i % len(pairs)]
        question = bank.get(question_id)
        assert isinstance(question, CodeQuestion)
        prepared = grader.prepared(question)
        start = time.perf_counter()
        result = sandbox.run(prepared.request(source))
        middle = time.perf_counter()
        judge(prepared, result)
        sandbox_ms.append((middle - start) * 1000)
        checks_ms.append((time.perf_counter() - middle) * 1000)
    return statistics.median(sandbox_ms), statistics.median(checks_ms)


def code_questions(bank_path: Path) -> list[str]:
    """Ids of the bank's code questions that the corpus has snippets for, in bank order."""
    with_snippets = corpus([q.id for q in load_bank(bank_path).questions if isinstance(q, CodeQuestion)])
    return [q for q, sources in with_snippets.items() if sources]


MEMO_SHARE: dict[str, list[float]] = {}
"""Per question: the share of measurements the memo answered, in each timing with it on."""


def memo_share(sandbox: Sandbox) -> float | None:
    memo = getattr(sandbox, "measurements", None)
    if memo is None or not memo.limit_bytes or not memo.hits + memo.misses:
        return None
    return memo.hits / (memo.hits + memo.misses)


def per_question(bank_path: Path, sandbox: Sandbox, questions: list[str], count: int, workers: int) -> dict[str, float]:
    """Answers per second for each question on its own: ``count`` corpus snippets, right and wrong."""
    rates = {}
    for question in questions:
        graded, seconds = timed_sheets(bank_path, sandbox, corpus([question]), count, workers)
        rates[question] = graded / seconds
        share = memo_share(sandbox)
        if share is not None:
            MEMO_SHARE.setdefault(question, []).append(share)
    return rates


def load() -> str:
    return "load average " + " ".join(f"{x:.2f}" for x in os.getloadavg())


def previous_rates(ref: str, questions: list[str], count: int, workers: int) -> dict[str, float]:
    """Per-question rates of git revision ``ref``'s code and bank, measured in a child process."""
    with tempfile.TemporaryDirectory() as tmp:
        archive = subprocess.run(["git", "-C", str(ROOT), "archive", ref], capture_output=True, check=True).stdout
        subprocess.run(["tar", "-x", "-C", tmp], input=archive, check=True)
        done = subprocess.run(
            [sys.executable, __file__, "--rates-only", "--slow", str(count), "--workers", str(workers),
             "--bank", str(Path(tmp) / "question_bank"), "--questions", ",".join(questions)],
            env={**os.environ, "VAEQUIZ_BENCH_CODE": tmp, "PYTHONPATH": tmp},
            capture_output=True, text=True, check=True, cwd=tmp,
        )
    return json.loads(done.stdout.strip().splitlines()[-1])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--snippets", type=int, default=500)
    parser.add_argument("--baseline", type=int, default=30, help="naive snippets to time")
    parser.add_argument("--slow", type=int, default=40, help="snippets per question in the per-question figures")
    parser.add_argument("--workers", type=int, default=len(os.sched_getaffinity(0)))
    parser.add_argument("--bank", type=Path, default=ROOT / "question_bank")
    parser.add_argument("--previous", metavar="REF", help="git revision whose per-question rates to compare with")
    parser.add_argument("--rounds", type=int, default=3, help="alternating rounds with --previous")
    parser.add_argument("--program-rounds", type=int, default=3, help="alternating rounds, program path on and off")
    parser.add_argument("--questions", help=argparse.SUPPRESS)
    parser.add_argument("--rates-only", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args()
    questions = args.questions.split(",") if args.questions else code_questions(args.bank)
    if args.rates_only:  # the child of --previous: one JSON line of per-question rates
        with Sandbox(workers=args.workers) as sandbox:
            timed_sheets(args.bank, sandbox, corpus(questions[:1]), 2, args.workers)  # warm caches
            print(json.dumps(per_question(args.bank, sandbox, questions, args.slow, args.workers)))
        return
    bank_ids = {q.id for q in load_bank(args.bank).questions}
    fast = corpus([q for q in FAST if q in bank_ids])
    print(f"machine: {platform.machine()}, {len(os.sched_getaffinity(0))} cores, torch CPU; workers {args.workers}; {load()}")
    started = time.perf_counter()
    off = [n for n in os.environ.get("VAEQUIZ_SANDBOX_OFF", "").split(",") if n.strip()]
    with (
        Sandbox(workers=args.workers) as sandbox,
        Sandbox(workers=args.workers, memo_mb=0) as distinct,
        Sandbox(workers=args.workers, layers_off=[*off, "program"]) as in_process,
    ):
        print(f"sandbox start-up (three sandboxes): {time.perf_counter() - started:.1f} s (once per command)")
        boxes = ((sandbox, "program path"), (distinct, "every program measured (memo off)"),
                 (in_process, "program path off (measured in-process)"))
        for box, _ in boxes:
            timed_sheets(args.bank, box, fast, 2 * len(fast), args.workers)  # warm caches
        mix: dict[str, list[float]] = {name: [] for _, name in boxes}
        shares = []
        for _ in range(args.program_rounds):
            for box, name in boxes:
                graded, seconds = timed_sheets(args.bank, box, fast, args.snippets, args.workers)
                mix[name].append(graded / seconds)
                if box is sandbox:
                    shares.append(memo_share(sandbox) or 0.0)
        fast_rate = statistics.median(mix["program path"])
        off_rate = statistics.median(mix[boxes[2][1]])
        print(
            f"grade-sheets, {len(fast)} questions without a training step, {args.snippets} snippets (the corpus's "
            f"{sum(len(v) for v in fast.values())} cycled), median of {args.program_rounds} rounds: "
            f"program path {fast_rate:.1f} snippets/s ({statistics.median(shares):.0%} of measurements from the memo), "
            f"{boxes[1][1]} {statistics.median(mix[boxes[1][1]]):.1f}, {boxes[2][1]} {off_rate:.1f}; "
            f"ratio to the path off {fast_rate / off_rate:.2f}; {load()}"
        )
        for box, name in boxes:
            sandbox_ms, checks_ms = overhead(args.bank, box, fast, 100)
            print(f"per snippet, {name} (one at a time, median): sandbox {sandbox_ms:.1f} ms, checks {checks_ms:.1f} ms")
        ours: list[dict[str, float]] = []
        theirs: list[dict[str, float]] = []
        every: list[dict[str, float]] = []
        inside: list[dict[str, float]] = []
        for _ in range(args.rounds if args.previous else 1):
            ours.append(per_question(args.bank, sandbox, questions, args.slow, args.workers))
            every.append(per_question(args.bank, distinct, questions, args.slow, args.workers))
            inside.append(per_question(args.bank, in_process, questions, args.slow, args.workers))
            if args.previous:
                theirs.append(previous_rates(args.previous, questions, args.slow, args.workers))
    in_process_rates = {q: statistics.median(r[q] for r in inside) for q in questions}
    every_rates = {q: statistics.median(r[q] for r in every) for q in questions}
    rates = {q: statistics.median(r[q] for r in ours) for q in questions}
    before = {q: statistics.median(r[q] for r in theirs) for q in questions} if theirs else {}
    rounds = f", median of {len(ours)} rounds" if len(ours) > 1 else ""
    print(f"per question, {args.slow} snippets each (right and wrong), {args.workers} workers{rounds}; {load()}:")
    for question in questions:
        sizes = len(corpus([question])[question])
        share = statistics.median(MEMO_SHARE[question]) if question in MEMO_SHARE else None
        memo = f" ({share:.0%} of measurements from the memo)" if share is not None else " (values only: no program)"
        line = (
            f"  {question} ({sizes} distinct snippets): {rates[question]:.1f} answers/s{memo}; "
            f"memo off {every_rates[question]:.1f}; program path off {in_process_rates[question]:.1f}, "
            f"ratio {rates[question] / in_process_rates[question]:.2f}"
        )
        if question in before:
            line += f"; previous design ({args.previous}) {before[question]:.1f} answers/s; ratio {rates[question] / before[question]:.1f}x"
        print(line)
    baseline = naive_rate(args.bank, fast, args.baseline, args.workers)
    print(f"naive baseline (fresh interpreter per snippet, {args.baseline} timed, {args.workers} at a time): {baseline:.2f} snippets/s")
    print(f"ratio: {fast_rate / baseline:.0f}x the naive baseline; {load()}")


if __name__ == "__main__":
    main()
