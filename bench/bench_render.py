"""Benchmark `vaequiz build`: per-student variants and the whole bank in every mode.

Run from the repository root:  python bench/bench_render.py [--students 300] [--baseline 30]

1. 300 per-student exam variants of a 20-question quiz, written to disk through the same call
   `vaequiz build --roster` makes. The baseline renders each student's page from scratch
   (Markdown, MathML and highlighting redone, no fragment cache), as a naive writer would; it
   runs on fewer students and is compared per page. The ratio is baseline / cached.
2. The bundled bank in every mode, cold (all caches cleared first), against the same uncached
   baseline.
"""

from __future__ import annotations

import argparse
import os
import platform
import sys
import tempfile
import textwrap
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import vaequiz.grading.checks  # noqa: E402,F401  (imports torch, as the CLI does, outside the timings)
from vaequiz.bank.loader import load_bank  # noqa: E402
from vaequiz.paths import bundled_bank  # noqa: E402
from vaequiz.render.build import build  # noqa: E402
from vaequiz.render.fragments import FragmentRenderer, Mode  # noqa: E402
from vaequiz.render.markdown import (  # noqa: E402
    render_code,
    render_markdown,
    render_markdown_uncached,
    render_math,
)
from vaequiz.render.page import PageBuilder  # noqa: E402
from vaequiz.render.selection import Quiz, whole_bank_quiz  # noqa: E402

KINDS = ("mcq", "shape", "numeric", "short_answer", "code")


def clear_caches() -> None:
    for cached in (render_markdown, render_math, render_code):
        cached.cache_clear()


def synthetic_question(i: int) -> str:
    """One bank question with inline and display math and code, like the real bank's."""
    kind = KINDS[i % len(KINDS)]
    head = textwrap.dedent(
        f"""
        - id: bench-{i:03d}
          kind: {kind}
          topics: [bench-topic-{i % 4}]
          difficulty: intermediate
          source: original
          explanation: |
            Because $D_{{\\mathrm{{KL}}}}(q_\\phi(z \\mid x) \\,\\|\\, p(z)) \\ge 0$ for question {i},
            $$\\mathcal{{L}} = \\mathbb{{E}}_{{q}}[\\log p_\\theta(x \\mid z)] - \\beta D_{{\\mathrm{{KL}}}}$$
        """
    )
    stem = (
        f"Question {i}: with $z = \\mu + \\sigma \\odot \\varepsilon$ and "
        f"$\\varepsilon \\sim \\mathcal{{N}}(0, I)$, what happens to $\\sum_{{j=1}}^{{{i + 2}}} z_j^2$?"
    )
    if kind == "mcq":
        options = "\n".join(
            f"    - label: {chr(65 + k)}\n      text: Option {k} with $\\frac{{{k}}}{{{i + 1}}}\\sigma^2$"
            for k in range(4)
        )
        body = f"  stem: '{stem}'\n  options:\n{options}\n  answer: A\n"
    elif kind == "shape":
        body = f"  prompt: '{stem}'\n  answer: [64, {i + 1}]\n"
    elif kind == "numeric":
        body = f"  prompt: '{stem}'\n  answer: {i}.5\n  tolerance: 0.01\n"
    elif kind == "short_answer":
        body = (
            f"  prompt: '{stem}'\n  model_answer: The KL term $\\beta D_{{\\mathrm{{KL}}}}$ regularises.\n"
            "  rubric:\n    - name: regularises\n      phrasings: [regularise, regularize]\n"
        )
    else:
        body = textwrap.indent(
            textwrap.dedent(
                f"""\
                prompt: '{stem}'
                starter: |
                  z = ...
                given:
                  mu: {{type: tensor, shape: [B, D]}}
                expect: [z]
                reference: |
                  std = torch.ones_like(mu)
                  z = mu + torch.randn_like(std) * std  # sample {i}
                trials:
                  - bind: {{B: 2, D: 3}}
                checks:
                  - {{check: shape, of: z, like: mu}}
                """
            ),
            "  ",
        )
    return head.strip("\n") + "\n" + body


def synthetic_bank(folder: Path, count: int) -> Path:
    bank = folder / "bank"
    bank.mkdir(parents=True, exist_ok=True)
    (bank / "bench.yaml").write_text("".join(synthetic_question(i) for i in range(count)), encoding="utf-8")
    return bank


def quiz_spec(folder: Path) -> Path:
    path = folder / "bench.quiz.yaml"
    path.write_text(
        "id: bench-quiz\ntitle: Benchmark quiz\nseed: 1\nshuffle_questions: true\n"
        "select:\n  - topics: [bench-topic-0, bench-topic-1, bench-topic-2, bench-topic-3]\n"
        "    per_topic: 5\n",
        encoding="utf-8",
    )
    return path


def naive_page(quiz: Quiz, mode: Mode, student: str) -> str:
    """The baseline: nothing cached, every Markdown text and formula rendered again."""
    clear_caches()
    renderer = FragmentRenderer(markdown=render_markdown_uncached, cache=False)
    return PageBuilder(quiz, mode, renderer).render(student)


def bench_variants(folder: Path, students: int, baseline_students: int) -> None:
    bank = synthetic_bank(folder, 60)
    spec = quiz_spec(folder)
    roster = folder / "roster.csv"
    roster.write_text("student\n" + "".join(f"s{n:04d}\n" for n in range(students)), encoding="utf-8")
    clear_caches()
    start = time.perf_counter()
    pages = build(bank, folder / "pages", quiz_file=spec, mode=Mode.exam, roster=roster)
    cached_total = time.perf_counter() - start
    assert len(pages) == students
    size = sum(p.path.stat().st_size for p in pages) / len(pages)

    from vaequiz.render.build import load_quiz

    quiz = load_quiz(bank, spec, None)
    assert len(quiz.questions) == 20
    start = time.perf_counter()
    for n in range(baseline_students):
        html = naive_page(quiz, Mode.exam, f"s{n:04d}")
        (folder / "naive.html").write_text(html, encoding="utf-8")
    naive_per_page = (time.perf_counter() - start) / baseline_students
    cached_per_page = cached_total / students
    print(f"{students} variants of a 20-question exam (load + render + write):")
    print(f"  cached fragments: {cached_total:.2f} s total, {cached_per_page * 1000:.1f} ms/page, "
          f"{size / 1024:.0f} KiB/page")
    print(f"  baseline (full re-render per student, {baseline_students} students): "
          f"{naive_per_page * 1000:.1f} ms/page -> {naive_per_page * students:.1f} s for {students}")
    print(f"  ratio baseline/cached: {naive_per_page / cached_per_page:.1f}x")


def bench_whole_bank() -> None:
    bank = load_bank(bundled_bank())
    if not bank.questions:
        print("whole bank: the bundled bank has no valid questions; skipped")
        return
    quiz = whole_bank_quiz(bank)
    PageBuilder(Quiz("warm", "Warm", None, []), Mode.exam).render("")  # compile templates once
    clear_caches()
    renderer = FragmentRenderer()
    timings = {}
    sizes = {}
    for mode in Mode:
        start = time.perf_counter()
        sizes[mode] = len(PageBuilder(quiz, mode, renderer).render(""))
        timings[mode] = time.perf_counter() - start
    cached_total = sum(timings.values())
    start = time.perf_counter()
    for mode in Mode:
        naive_page(quiz, mode, "")
    naive_total = time.perf_counter() - start
    print(f"whole bundled bank ({len(bank.questions)} questions), every mode, caches cold at start:")
    for mode in Mode:
        print(f"  {mode.value:<10} {timings[mode] * 1000:6.1f} ms  ({sizes[mode] / 1024:.0f} KiB)")
    print(f"  all modes: {cached_total * 1000:.0f} ms with shared caches; baseline without caches "
          f"{naive_total * 1000:.0f} ms; ratio {naive_total / cached_total:.2f}x")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--students", type=int, default=300)
    parser.add_argument("--baseline", type=int, default=30, help="Students rendered by the baseline.")
    args = parser.parse_args()
    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()
    print(f"machine: {platform.machine()}, {cores} cores, Python {platform.python_version()}")
    with tempfile.TemporaryDirectory() as tmp:
        bench_variants(Path(tmp), args.students, args.baseline)
    bench_whole_bank()


if __name__ == "__main__":
    main()
