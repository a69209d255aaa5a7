"""The statistical designs that let code questions grade on fewer runs, and their budgets.

``uniform_rows`` tests the first and last codes sequentially: a correct answer is decided on the
declared runs, and only an undecided one gets more runs, up to the draws after which a uniform
sampler has missed an end code with probability at most ``COVERAGE_BUDGET``. Its verdict equals
the fixed test's on all those draws, so the budget is the fixed test's, proved here against
exact probabilities and enumeration. The chi-square keeps its z > 6 rule on the smaller sample of
the declared runs; a fixed-seed simulation shows its z-score is still standard normal there.
Row lookups are batched; a property test compares them with brute force.
"""

from __future__ import annotations

import itertools
import math
from pathlib import Path
from typing import Any

import pytest
import torch
import torch.nn.functional as F
from hypothesis import given, settings
from hypothesis import strategies as st

from tests.conftest import BUNDLED_BANK
from tests.test_grading_checks import CODEBOOK, code_question, table
from vaequiz.bank.loader import load_bank
from vaequiz.bank.models import CodeQuestion
from vaequiz.grading.checks import (
    COVERAGE_BUDGET,
    Z_LIMIT,
    NeedsMoreRuns,
    _row_indices,
    end_code_draws,
    run_check,
)
from vaequiz.grading.code import judge
from vaequiz.grading.evidence import Evidence
from vaequiz.grading.grader import Grader
from vaequiz.grading.inputs import PreparedQuestion, PreparedRun, derive_seed, prepare_question
from vaequiz.grading.sandbox import Sandbox
from vaequiz.grading.sandbox.api import RunOutcome, SandboxResult

CORPUS = Path(__file__).parent / "corpus"


def end_code_miss_probability(n: int, k: int) -> float:
    """P(code 0 or code k-1 never appears in n uniform draws from k codes), by inclusion-exclusion."""
    if k == 2:
        return 2 * 0.5**n if n else 1.0
    return 2 * (1 - 1 / k) ** n - (1 - 2 / k) ** n


@settings(max_examples=40, deadline=None)
@given(n=st.integers(0, 6), k=st.integers(2, 5))
def test_end_code_miss_probability_matches_enumeration(n: int, k: int) -> None:
    sequences = list(itertools.product(range(k), repeat=n))
    missed = sum(0 not in s or k - 1 not in s for s in sequences)
    assert math.isclose(end_code_miss_probability(n, k), missed / len(sequences), abs_tol=1e-12)


@settings(max_examples=60, deadline=None)
@given(k=st.integers(2, 100_000))
def test_end_code_draws_spend_at_most_the_budget_and_no_fewer_draws_would(k: int) -> None:
    n = end_code_draws(k)
    assert end_code_miss_probability(n, k) <= COVERAGE_BUDGET
    assert 2 * (1 - 1 / k) ** (n - 1) > COVERAGE_BUDGET  # the union bound is tight at n - 1


def test_codebook_sample_numbers() -> None:
    """512 codes, 16 per run: 7422 draws (464 runs) bound the misses; a correct answer needs
    them only when an end code is missing from the 128 declared runs (under 4% of answers)."""
    assert end_code_draws(512) == 7422
    assert end_code_miss_probability(7422, 512) <= 1e-6
    assert end_code_miss_probability(128 * 16, 512) < 0.04


SMALL: dict[str, Any] = {**CODEBOOK, "trials": [{"bind": {}, "repeat": 8}]}
"""32 codes, 16 draws per run, 8 declared runs (128 draws; the end test needs 457)."""


def outcomes(runs: list[PreparedRun], sampler: Any) -> list[RunOutcome]:
    return [RunOutcome(outputs={"z_q": table(run)[sampler(run)]}) for run in runs]


def by_seed(high: int, low: int = 0, count: int = 16) -> Any:
    """Codes drawn from [low, high), from a generator seeded by the run (reproducible)."""
    return lambda run: torch.randint(low, high, (count,), generator=torch.Generator().manual_seed(run.seed))


def uniform_spec(question: CodeQuestion) -> Any:
    return next(c for c in question.checks if c.check == "uniform_rows")


def test_an_answer_showing_both_end_codes_is_decided_on_the_declared_runs() -> None:
    question = code_question(**SMALL)
    prepared = prepare_question(question)
    both = lambda run: torch.cat([torch.tensor([0, 31]), by_seed(32, count=14)(run)])  # noqa: E731
    ev = Evidence(prepared, outcomes(prepared.runs, both))
    assert run_check(uniform_spec(question), ev, extensible=True).passed


def test_an_undecided_answer_asks_for_the_runs_that_bound_the_budget() -> None:
    question = code_question(**SMALL)
    prepared = prepare_question(question)
    no_ends = by_seed(31, low=1)
    ev = Evidence(prepared, outcomes(prepared.runs, no_ends))
    with pytest.raises(NeedsMoreRuns) as asked:
        run_check(uniform_spec(question), ev, extensible=True)
    assert asked.value.runs * 16 >= end_code_draws(32) > (asked.value.runs - 1) * 16
    # without a way to make more runs, it fails rather than guess
    result = run_check(uniform_spec(question), ev)
    assert not result.passed and result.message == "could not be decided on 8 runs of your code; it needs 29"


def test_extended_runs_are_the_runs_of_a_question_declaring_more_repeats() -> None:
    question = code_question(**SMALL)
    prepared = prepare_question(question)
    longer = prepared.extended(29)
    assert longer is prepared.extended(29) and prepared.extended(8) is prepared
    assert longer.runs[:8] == prepared.runs and len(longer.runs) == 29 and len(longer.reference) == 29
    assert [r.repeat for r in longer.runs] == list(range(29))
    assert [r.seed for r in longer.runs] == [derive_seed("q", 0, r, "run") for r in range(29)]
    assert all(r.given is prepared.runs[0].given for r in longer.runs)
    request = longer.request("z_q = 1", start=8)
    assert [r.seed for r in request.runs] == [r.seed for r in longer.runs[8:]]


def staged(question: CodeQuestion, sampler: Any) -> tuple[bool, str, list[int]]:
    """Judge with a stand-in sandbox for the extra runs; returns (passed, message, runs asked)."""
    prepared = prepare_question(question)
    asked: list[int] = []

    def more(longer: PreparedQuestion) -> SandboxResult:
        asked.append(len(longer.runs))
        return SandboxResult("ok", "", outcomes(longer.runs[len(prepared.runs) :], sampler))

    graded = judge(prepared, SandboxResult("ok", "", outcomes(prepared.runs, sampler)), more)
    check = next(c for c in graded.checks if c.name == uniform_spec(question).title)
    return check.passed, check.message, asked


def test_extra_runs_decide_a_correct_answer_and_fail_an_off_by_one() -> None:
    question = code_question(**SMALL)
    late = lambda run: by_seed(32)(run) if run.repeat >= 8 else by_seed(31, low=1)(run)  # noqa: E731
    assert staged(question, late) == (True, "", [29])
    passed, message, asked = staged(question, by_seed(31))
    assert asked == [29] and not passed
    assert message.startswith("code 31 of model.codebook never appeared in 464 draws; every one of the 32 codes")
    both = lambda run: torch.cat([torch.tensor([0, 31]), by_seed(32, count=14)(run)])  # noqa: E731
    assert staged(question, both) == (True, "", [])  # both ends in the declared runs: no extra runs


@settings(max_examples=30, deadline=None)
@given(
    declared=st.integers(1, 6),
    draws=st.integers(1, 6),
    k=st.integers(2, 12),
    seed=st.integers(0, 2**32),
    skew=st.sampled_from(["uniform", "no_last", "no_first", "late"]),
)
def test_sequential_verdict_equals_the_fixed_test_on_all_the_draws(
    declared: int, draws: int, k: int, seed: int, skew: str
) -> None:
    """Whatever the codes, the staged check passes exactly when the end codes appear within the
    runs it could have asked for, and fails exactly when one is missing from all of them."""
    given = {"model": {"type": "module", "embeddings": {"codebook": {"num_embeddings": k, "embedding_dim": 3}}}}
    question = code_question(**{**CODEBOOK, "given": given, "trials": [{"bind": {}, "repeat": declared}]})
    low, high = {"uniform": (0, k), "no_last": (0, k - 1), "no_first": (1, k), "late": (0, k)}[skew]

    def sampler(run: PreparedRun) -> torch.Tensor:
        gen = torch.Generator().manual_seed(seed + run.repeat)
        if skew == "late" and run.repeat < declared:
            return torch.full((draws,), k // 2, dtype=torch.int64)
        return torch.randint(low, max(high, low + 1), (draws,), generator=gen)

    passed, message, asked = staged(question, sampler)
    if "not drawn uniformly" in message:
        return  # the chi-square decided first, on the declared runs
    total = asked[0] if asked else declared
    codes = torch.cat([sampler(run) for run in prepare_question(question).extended(total).runs])
    fixed = bool((codes == 0).any()) and bool((codes == k - 1).any())
    assert passed == fixed
    if asked:
        assert asked[0] * draws >= end_code_draws(k)


def test_chi_square_z_stays_standard_normal_on_the_declared_draws() -> None:
    """128 runs x 16 draws from 512 codes (4 per code expected): the Wilson-Hilferty z of
    Pearson's chi-square has mean 0, sd 1 and normal upper tails, as with 768 runs."""
    gen = torch.Generator().manual_seed(7)
    k, n, samples = 512, 2048, 20_000
    zs = []
    for _ in range(samples // 2000):
        codes = torch.randint(0, k, (2000, n), generator=gen)
        counts = torch.zeros(2000, k, dtype=torch.float64).scatter_add_(1, codes, torch.ones(2000, n, dtype=torch.float64))
        chi2 = ((counts - n / k) ** 2 / (n / k)).sum(1)
        df = k - 1
        zs.append(((chi2 / df) ** (1 / 3) - (1 - 2 / (9 * df))) / math.sqrt(2 / (9 * df)))
    z = torch.cat(zs)
    assert abs(float(z.mean())) < 0.03 and abs(float(z.std()) - 1) < 0.03
    for bound in (2.0, 3.0):
        normal = 0.5 * math.erfc(bound / math.sqrt(2))
        observed = float((z > bound).double().mean())
        assert observed < 1.5 * normal + 3 * math.sqrt(normal / samples)
    assert float(z.max()) < Z_LIMIT


@settings(max_examples=60, deadline=None)
@given(
    rows=st.integers(1, 12),
    width=st.integers(1, 5),
    dtype=st.sampled_from([torch.float32, torch.float64, torch.int64, torch.float16]),
    picks=st.lists(st.integers(-1, 11), min_size=0, max_size=20),
    seed=st.integers(0, 1000),
    duplicate=st.booleans(),
    negative_zero=st.booleans(),
)
def test_batched_row_lookup_matches_brute_force(
    rows: int, width: int, dtype: torch.dtype, picks: list[int], seed: int, duplicate: bool, negative_zero: bool
) -> None:
    gen = torch.Generator().manual_seed(seed)
    tab = (torch.randn(rows, width, generator=gen) * 3).round().to(dtype)  # small values: duplicates happen
    if duplicate and rows > 1:
        tab[-1] = tab[0]
    queries = torch.stack(
        [tab[p % rows] if p >= 0 else torch.full((width,), 99, dtype=dtype) for p in picks]
    ) if picks else torch.zeros(0, width, dtype=dtype)
    if negative_zero and dtype.is_floating_point:
        queries = torch.where(queries == 0, torch.tensor(-0.0, dtype=dtype), queries)
    expected = [next((i for i in range(rows) if bool((tab[i] == q).all())), -1) for q in queries]
    assert _row_indices(queries, tab).tolist() == expected


@pytest.fixture(scope="module")
def sandbox() -> Any:
    with Sandbox(workers=1) as pool:
        yield pool


def bundled(question_id: str) -> CodeQuestion:
    question = load_bank(BUNDLED_BANK).get(question_id)
    assert isinstance(question, CodeQuestion)
    return question


def test_codebook_sample_off_by_one_fails_after_the_extra_runs(sandbox: Sandbox) -> None:
    grader = Grader(sandbox)
    question = bundled("codebook-sample")
    graded = grader.grade(question, "z_q = model.codebook(torch.randint(0, 511, (16,)))")
    failed = [c for c in graded.checks if not c.passed]
    assert [c.name for c in failed] == ["codes in z_q uniform over model.codebook"]
    assert failed[0].message.startswith("code 511 of model.codebook never appeared in 7424 draws")
    assert grader.grade(question, question.reference).passed


def fit_loss(sandbox: Sandbox, prepared: PreparedQuestion, source: str) -> list[float]:
    """The fit check's loss on each trial, computed as the check computes it."""
    result = sandbox.run(prepared.request(source))
    assert result.status == "ok", result.reason
    losses = []
    for run, outcome in zip(prepared.runs, result.runs):
        probe = next(p for p in run.probes if p.kind == "fit")
        fitted = outcome.outputs.get("fitted")
        if not isinstance(fitted, torch.Tensor) or fitted.numel() != probe.args[1].numel():
            losses.append(math.inf)
            continue
        prediction = fitted.to(torch.float64).reshape(probe.args[1].shape).clamp(1e-7, 1 - 1e-7)
        losses.append(float(F.binary_cross_entropy(prediction, probe.args[1].to(torch.float64))))
    return losses


PLAUSIBLE_DECODERS = [
    # a transposed-convolution decoder learns slowest: 0.057 after 60 steps, 0.37 after 20
    "decoder = nn.Sequential(nn.Linear(latent_dim, 64 * 7 * 7), nn.ReLU(), nn.Unflatten(1, (64, 7, 7)), "
    "nn.ConvTranspose2d(64, 32, 4, 2, 1), nn.ReLU(), nn.ConvTranspose2d(32, 1, 4, 2, 1), nn.Sigmoid())",
    "decoder = nn.Sequential(nn.Linear(latent_dim, 400), nn.Sigmoid(), nn.Linear(400, 784), nn.Sigmoid())",
    "decoder = nn.Sequential(nn.Linear(latent_dim, 256), nn.ReLU(), nn.Linear(256, 256), nn.ReLU(), "
    "nn.Linear(256, 512), nn.ReLU(), nn.Linear(512, 784), nn.Sigmoid())",
    "decoder = nn.Sequential(nn.Linear(latent_dim, 32), nn.Tanh(), nn.Linear(32, 784), nn.Sigmoid())",
]


def test_decoder_fit_passes_slow_learners_and_fails_stuck_decoders(sandbox: Sandbox) -> None:
    """The fit probe's steps are part of the check's meaning: every decoder that should learn,
    including slow learners outside the corpus (a transposed-convolution decoder needs about 60
    Adam steps), ends below the threshold; decoders that cannot fit (but run) stay 5 times above."""
    question = bundled("mnist-decoder-bce")
    below = next(c for c in question.checks if c.check == "fit").below
    prepared = prepare_question(question)
    learners = [question.reference] + [p.read_text() for p in sorted((CORPUS / "mnist-decoder-bce").glob("pass_*.py"))]
    for source in learners + PLAUSIBLE_DECODERS:
        assert max(fit_loss(sandbox, prepared, source)) < below, source
    stuck = [p.read_text() for p in sorted((CORPUS / "mnist-decoder-bce").glob("fail_*_output.py"))]
    stuck += [m.code for m in question.mutants if "Softmax" in m.code or "Tanh" in m.code or "784))" in m.code]
    for source in stuck:
        assert min(fit_loss(sandbox, prepared, source)) > 5 * below, source


def test_fit_probe_fuses_adam_and_falls_back_where_torch_cannot() -> None:
    from torch import nn

    from vaequiz.grading.sandbox.runner import adam

    assert adam([nn.Parameter(torch.zeros(3))], 0.1).defaults["fused"] is True
    assert not adam([nn.Parameter(torch.zeros(3, dtype=torch.complex64))], 0.1).defaults["fused"]


def test_codebook_sample_reference_codes_decide_on_the_declared_runs() -> None:
    """Answers that draw like the reference (torch.randint with the run's seed, the most common
    answer) see both end codes in the 128 declared runs, so they never pay for extra runs."""
    question = bundled("codebook-sample")
    prepared = prepare_question(question)
    assert len(prepared.runs) == 128
    codes = torch.cat([_row_indices(values["z_q"], table(run)) for run, values in zip(prepared.runs, prepared.reference)])
    assert bool((codes == 0).any()) and bool((codes == 511).any())


COUNTED_DECODER = """
class Counted(nn.Module):
    def __init__(self, inner):
        super().__init__()
        self.inner = inner
    def forward(self, z):
        print("train" if self.training else "eval")
        out = self.inner(z)
        return out if self.training or not {eval_is_stuck} else torch.full_like(out, 0.5)
decoder = Counted(nn.Sequential(nn.Linear(latent_dim, 400), nn.ReLU(), nn.Linear(400, 784), nn.Sigmoid()))
"""
"""The reference decoder, printing the mode of every forward pass; with ``eval_is_stuck`` its
eval mode predicts 0.5 everywhere, however well its training mode fits."""


def test_decoder_fit_stops_once_the_judged_predictions_are_far_below_the_threshold(sandbox: Sandbox) -> None:
    """A decoder that learns stops training after a few of the probe's 60 steps: its eval-mode
    predictions (what the check judges) are then below ``stop_below``, a tenth of the check's
    threshold, and the answer passes on them."""
    question = bundled("mnist-decoder-bce")
    probe = next(p for p in question.probes if p.probe == "fit")
    below = next(c for c in question.checks if c.check == "fit").below
    assert probe.stop_below is not None and probe.stop_below <= below / 10
    prepared = prepare_question(question)
    source = COUNTED_DECODER.format(eval_is_stuck=False)
    result = sandbox.run(prepared.request(source))
    train_passes = result.output.split().count("train")
    assert 0 < train_passes < len(prepared.runs) * probe.steps / 5, result.output
    assert max(fit_loss(sandbox, prepared, source)) < probe.stop_below
    assert Grader(sandbox).grade(question, source).passed


def test_decoder_fit_never_stops_on_training_mode_alone(sandbox: Sandbox) -> None:
    """A decoder whose training mode fits but whose eval mode predicts 0.5 trains all 60 steps and
    fails: stopping (or judging) on the training-mode loss would have accepted it."""
    question = bundled("mnist-decoder-bce")
    probe = next(p for p in question.probes if p.probe == "fit")
    source = COUNTED_DECODER.format(eval_is_stuck=True)
    # Steps are counted where the snippet's forward runs in every step: the in-process fit (a
    # program's fit runs in the measuring child, where the snippet's print is not replayed).
    with Sandbox(workers=1, layers_off=["program"]) as in_process:
        result = in_process.run(prepare_question(question).request(source))
    assert result.output.split().count("train") == len(question.trials) * probe.steps, result.output
    graded = Grader(sandbox).grade(question, source)
    failed = [c for c in graded.checks if not c.passed]
    assert [c.name for c in failed] == ["fitted fits a small batch"], graded.checks
    assert "after 60 steps of Adam" in failed[0].message and "0.693 per element" in failed[0].message
