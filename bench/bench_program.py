"""Cost of measuring through a program against running the snippet directly.

For every ``pass_*`` corpus snippet of the light code questions (no training step, few
repeats), each of its runs is done two ways in this process, in the same run:

* baseline: run the snippet and its probes directly (the runner's ``Execution``, as a sandbox
  child does today);
* program path: capture the snippet as a program (record its ops), encode it, decode and check
  it strictly, rebuild it and take the probes' measurements from the rebuild.

Usage::

    python bench/bench_program.py [--rounds 5] [--questions a,b,...]

Prints ms per run for both, the ratio, and the program path's split into capture+encode,
decode+check and rebuild+measure; the decoder question (a fit probe of up to 60 Adam steps) is
reported apart.
"""

from __future__ import annotations

import argparse
import platform
import statistics
import sys
import time
from pathlib import Path

import torch

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from vaequiz.bank.loader import load_bank  # noqa: E402
from vaequiz.grading.inputs import prepare_runs  # noqa: E402
from vaequiz.grading.sandbox.program import capture_bytes  # noqa: E402
from vaequiz.grading.sandbox.pool import probe_doc  # noqa: E402
from vaequiz.grading.sandbox.program_format import decode_program  # noqa: E402
from vaequiz.grading.sandbox.program_run import measure_run  # noqa: E402
from vaequiz.grading.sandbox.runner import Execution  # noqa: E402

LIGHT = ("reparameterization-trick", "kl-divergence", "vae-loss", "vq-nearest", "codebook-flatten")


def _probe_dicts(run):  # the runner's request form of the probes
    return [probe_doc(p) for p in run.probes]


def cases(questions: tuple[str, ...]) -> list[tuple[str, str, list, list]]:
    bank = {q.id: q for q in load_bank(REPO / "question_bank").questions}
    found = []
    for qid in questions:
        runs = prepare_runs(bank[qid])
        for path in sorted((REPO / "tests" / "corpus" / qid).glob("pass_*.py")):
            found.append((f"{qid}/{path.stem}", path.read_text(), list(bank[qid].expect), runs))
    return found


def time_direct(source: str, expect: list, runs: list) -> float:
    start = time.perf_counter()
    execution = Execution(source, expect)
    for run in runs:
        execution.run(run.seed, run.given, _probe_dicts(run))
    return time.perf_counter() - start


def time_program(source: str, expect: list, runs: list) -> tuple[float, float, float]:
    capture = check = measure = 0.0
    for run in runs:
        t0 = time.perf_counter()
        data = capture_bytes(source, expect, run.given, run.seed, run.probes)
        t1 = time.perf_counter()
        program = decode_program(data)
        t2 = time.perf_counter()
        measure_run(program, run.given, run.seed, run.probes)
        t3 = time.perf_counter()
        capture, check, measure = capture + t1 - t0, check + t2 - t1, measure + t3 - t2
    return capture, check, measure


def report(title: str, found: list, rounds: int) -> None:
    direct, parts = [], []
    runs_total = sum(len(c[3]) for c in found)
    for _ in range(rounds):
        direct.append(sum(time_direct(s, e, r) for _, s, e, r in found))
        split = [time_program(s, e, r) for _, s, e, r in found]
        parts.append(tuple(sum(p[i] for p in split) for i in range(3)))
    base = statistics.median(direct) / runs_total * 1e3
    capture, check, measure = (statistics.median(p[i] for p in parts) / runs_total * 1e3 for i in range(3))
    total = capture + check + measure
    print(f"{title}: {len(found)} snippets, {runs_total} runs per round, median of {rounds} rounds")
    print(f"  direct (snippet + probes in-process): {base:.2f} ms/run")
    print(
        f"  program path: {total:.2f} ms/run (capture+encode {capture:.2f}, decode+check {check:.2f}, "
        f"rebuild+measure {measure:.2f})"
    )
    print(f"  ratio program/direct: {total / base:.2f}x")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--questions", default=",".join(LIGHT))
    args = parser.parse_args()
    torch.set_num_threads(1)
    print(f"{platform.machine()}, CPython {platform.python_version()}, torch {torch.__version__}, 1 thread")
    light = tuple(q for q in args.questions.split(",") if q)
    report("light questions", cases(light), args.rounds)
    report("mnist-decoder-bce (up to 60 Adam steps per trial, stopping below loss 0.02)", cases(("mnist-decoder-bce",)),
           max(1, args.rounds // 5))


if __name__ == "__main__":
    main()
