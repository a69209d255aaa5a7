"""Grade one code answer: build the sandbox request, run it, evaluate every check, weigh the score."""

from __future__ import annotations

import re
from typing import Callable, Protocol

import torch

from vaequiz.grading.checks import NeedsMoreRuns, run_check
from vaequiz.grading.evidence import Evidence
from vaequiz.grading.hints import size_hints
from vaequiz.grading.inputs import PreparedQuestion, PreparedRun
from vaequiz.grading.models import CheckResult
from vaequiz.grading.objective import Graded
from vaequiz.grading.sandbox.api import RunOutcome, SandboxRequest, SandboxResult

class SandboxRunner(Protocol):
    """What grading needs from a sandbox: run one request, thread-safely."""

    def run(self, request: SandboxRequest) -> SandboxResult: ...


def weighted_score(checks: list[CheckResult]) -> float:
    """Share of check points passed (partial credit)."""
    total = sum(c.points for c in checks)
    return sum(c.points for c in checks if c.passed) / total if total else 0.0


def failed_everywhere(prepared: PreparedQuestion, reason: str, retry: bool = False) -> Graded:
    """Every check fails with the same reason (the snippet did not run to a usable end)."""

    checks = [
        CheckResult(
            name=spec.title,
            passed=False,
            message=reason,
            points=spec.points,
            hidden=spec.hidden,
        )
        for spec in prepared.question.checks
    ]
    return Graded(0.0, checks, error=reason, retry=retry)


class Diagnosis(Protocol):
    """Explains a failing answer by the known mistake it behaves like (see ``mistakes.py``)."""

    def known_mistake(
        self, prepared: PreparedQuestion, outcomes: list[RunOutcome], graded: Graded
    ) -> str | None: ...


def grade_source(
    prepared: PreparedQuestion,
    source: str,
    sandbox: SandboxRunner,
    device: str = "cpu",
    diagnosis: Diagnosis | None = None,
) -> Graded:
    """Run ``source`` on the question's hidden inputs in the sandbox and check what it bound.

    A sequential check that cannot decide on the declared runs gets its extra runs from a
    second sandbox request with only the added runs (see :func:`judge`). A failing answer that
    ran gets hints (a size written as a number) and, with ``diagnosis``, the known mistake it
    behaves like; both are worked out here, in the trusted process.
    """
    if not source.strip():
        return failed_everywhere(prepared, "no answer")
    result = sandbox.run(prepared.request(source, device))

    def more(longer: PreparedQuestion) -> SandboxResult:
        return sandbox.run(longer.request(source, device, start=len(prepared.runs)))

    graded = judge(prepared, result, more)
    if graded.passed or result.status != "ok":
        return graded
    outcomes = run_outcomes(prepared, result)
    graded.hints = size_hints(prepared, source, outcomes)
    if diagnosis is not None:
        graded.mistake = diagnosis.known_mistake(prepared, outcomes, graded)
    return graded


def run_outcomes(prepared: PreparedQuestion, result: SandboxResult) -> list[RunOutcome]:
    """One outcome per declared run, on the CPU; runs the snippet never reached carry the reason."""
    return _complete(prepared.runs, [_on_cpu(o) for o in result.runs], result.reason)[: len(prepared.runs)]


def error_pattern(error: str) -> str:
    """An error with its numbers blanked: the same mistake on inputs of other sizes ("(5x12 and
    20x400)", "(9x37 and 20x400)") reads as one error. Line numbers are kept."""
    return re.sub(r"(?<!line )\d+", "#", error)


RAISED = re.compile(r"^[A-Za-z_][\w.]*(Error|Exception|Warning|Interrupt|Exit)\b")
"""How an exception reads ("RuntimeError: ..."), as opposed to a probe's own finding ("no
gradient flows from z to logvar"), which the check that needs it reports."""


def distinct_errors(outcomes: list[RunOutcome]) -> list[str]:
    """Every different exception the snippet raised, itself or when a probe called into it, in
    run order, each once (the first of those that differ only in sizes)."""
    seen: dict[str, str] = {}
    for outcome in outcomes:
        for error in (outcome.error, *outcome.probe_errors.values()):
            if error and RAISED.match(error):
                seen.setdefault(error_pattern(error), error)
    return list(seen.values())


MoreRuns = Callable[[PreparedQuestion], SandboxResult]
"""Runs the runs of a longer prepared question past the declared ones, in the sandbox."""


def one_intra_op_thread() -> None:
    """Run this thread's tensor work on one intra-op thread.

    Checks compute on small tensors while the sandbox's workers keep every core busy, so a team
    of intra-op threads mostly waits for a core: under load a float64 ``exp`` of 1,280 values
    (the ``gaussian`` check's residuals) took 20 to 50 ms instead of a few microseconds. Under
    OpenMP the setting belongs to the calling thread, so each grading thread makes it (0.4 us).
    """
    torch.set_num_threads(1)


def judge(prepared: PreparedQuestion, result: SandboxResult, more: MoreRuns | None = None) -> Graded:
    """Turn a sandbox result into a verdict; runs in the trusted process only.

    Every check evaluates the declared runs. A sequential check that cannot decide on them
    (:class:`NeedsMoreRuns`) is evaluated again once ``more`` has made the runs it asked for;
    without ``more`` it fails, saying it could not decide.
    """
    one_intra_op_thread()
    if result.status != "ok":
        reason = result.reason or result.status.replace("_", " ")
        graded = failed_everywhere(prepared, reason, retry=result.status == "sandbox_error")
        graded.output = result.output
        graded.in_process = result.in_process
        return graded
    outcomes = run_outcomes(prepared, result)
    evidence = Evidence(prepared=prepared, outcomes=outcomes)
    checks: list[CheckResult | None] = []
    wanted: dict[int, int] = {}
    for index, spec in enumerate(prepared.question.checks):
        try:
            checks.append(run_check(spec, evidence, extensible=more is not None))
        except NeedsMoreRuns as need:
            checks.append(None)
            wanted[index] = need.runs
    output = result.output
    in_process = result.in_process
    if wanted and more is not None:
        longer = prepared.extended(max(wanted.values()))
        extra = more(longer)
        output = "\n".join(part for part in (output, extra.output) if part)
        in_process = in_process or extra.in_process
        if extra.status != "ok":
            reason = extra.reason or extra.status.replace("_", " ")
            for index in wanted:
                spec = prepared.question.checks[index]
                checks[index] = CheckResult(
                    name=spec.title, passed=False, message=reason, points=spec.points, hidden=spec.hidden
                )
        else:
            added = _complete(longer.runs[len(prepared.runs) :], [_on_cpu(o) for o in extra.runs], extra.reason)
            outcomes = outcomes + added
            evidence = Evidence(prepared=longer, outcomes=outcomes, declared=len(prepared.runs))
            for index in wanted:
                checks[index] = run_check(prepared.question.checks[index], evidence)
    decided = [c for c in checks if c is not None]
    assert len(decided) == len(checks)
    errors = [o.error for o in outcomes if o.error]
    error = f"your code raised {errors[0]}" if errors else None
    return Graded(
        weighted_score(decided),
        decided,
        error=error,
        passed=all(c.passed for c in decided),
        output=output,
        errors=distinct_errors(outcomes),
        in_process=in_process,
    )


def _complete(runs: list[PreparedRun], outcomes: list[RunOutcome], reason: str) -> list[RunOutcome]:
    """One outcome per run: runs the snippet never reached fail with the reason."""
    if len(outcomes) != len(runs):
        missing_reason = reason or "your code stopped before every hidden input was tried"
        outcomes = outcomes + [RunOutcome(error=missing_reason)] * (len(runs) - len(outcomes))
    return outcomes


def _on_cpu(outcome: RunOutcome) -> RunOutcome:
    """Checks compare on the CPU, where the hidden inputs and reference values live."""
    moved = {k: v.cpu() if isinstance(v, torch.Tensor) else v for k, v in outcome.outputs.items()}
    return RunOutcome(outputs=moved, missing=outcome.missing, error=outcome.error, probe_errors=outcome.probe_errors)
