"""Every check kind on crafted values: right values pass, wrong ones fail with a message a student
can act on. No sandbox here: outcomes are built by hand from the prepared hidden inputs."""

from __future__ import annotations

import itertools
import math
import typing
from typing import Any, Callable

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from vaequiz.bank.models import CheckSpec, CodeQuestion, grad_output_name, question_adapter
from vaequiz.grading.checks import (
    CHECKS,
    TAIL_LIMIT,
    Z_LIMIT,
    _all_distinct_probability,
    _success_count_distribution,
    run_check,
)
from vaequiz.grading.code import judge
from vaequiz.grading.evidence import Evidence
from vaequiz.grading.inputs import PreparedRun, derive_seed, prepare_question
from vaequiz.grading.sandbox.api import ModuleSummary, RunOutcome, SandboxResult

COMMON = {
    "topics": ["vae"],
    "difficulty": "beginner",
    "source": "original",
    "explanation": "Because.",
    "prompt": "Write it.",
}


def code_question(**fields: Any) -> CodeQuestion:
    question = question_adapter.validate_python({"id": "q", "kind": "code", **COMMON, **fields})
    assert isinstance(question, CodeQuestion)
    return question


REPARAM = dict(
    given={
        "mu": {"type": "tensor", "shape": ["B", "D"], "requires_grad": True},
        "logvar": {"type": "tensor", "shape": ["B", "D"], "dist": "uniform", "low": -3, "high": 2, "requires_grad": True},
    },
    expect=["z"],
    reference="z = mu + torch.randn_like(mu) * torch.exp(0.5 * logvar)",
    trials=[{"bind": {"B": 64, "D": 20}}, {"bind": {"B": 100, "D": 30}, "repeat": 2}],
    probes=[{"probe": "grad", "of": "z", "wrt": ["mu", "logvar"]}],
    checks=[
        {"check": "shape", "of": "z", "like": "mu"},
        {"check": "dtype", "of": "z", "like": "mu"},
        {"check": "gaussian", "of": "z", "mean": "mu", "logvar": "logvar", "points": 2},
        {"check": "independent", "of": "z", "mean": "mu", "logvar": "logvar"},
        {"check": "fresh", "of": "z"},
        {"check": "gradient", "of": "z", "wrt": ["mu", "logvar"]},
    ],
)

Outputs = Callable[[PreparedRun, torch.Generator], dict[str, Any]]


def evidence(question: CodeQuestion, outputs: Outputs, seed: int = 0) -> Evidence:
    """Evidence as if the sandbox had returned ``outputs(run)`` for every run."""
    prepared = prepare_question(question)
    gen = torch.Generator().manual_seed(seed)
    return Evidence(prepared, [RunOutcome(outputs=outputs(run, gen)) for run in prepared.runs])


def check(question: CodeQuestion, kind: str, outputs: Outputs, seed: int = 0) -> tuple[bool, str]:
    ev = evidence(question, outputs, seed)
    spec = next(c for c in question.checks if c.check == kind)
    result = run_check(spec, ev)
    return result.passed, result.message


def sample(run: PreparedRun, gen: torch.Generator, scale: Callable[[torch.Tensor], torch.Tensor] | None = None) -> torch.Tensor:
    mu, logvar = run.given["mu"], run.given["logvar"]
    assert isinstance(mu, torch.Tensor) and isinstance(logvar, torch.Tensor)
    std = torch.exp(0.5 * logvar.detach()) if scale is None else scale(logvar.detach())
    return mu.detach() + torch.randn(mu.shape, generator=gen) * std


def test_registry_covers_every_check_kind_of_the_bank_format() -> None:
    union = typing.get_args(typing.get_args(CheckSpec)[0])
    kinds = {typing.get_args(member.model_fields["check"].annotation)[0] for member in union}
    assert kinds == set(CHECKS)


def test_shape_message_names_both_shapes_and_the_reason() -> None:
    question = code_question(**{**REPARAM, "trials": [{"bind": {"B": 64, "D": 20}}]})
    passed, message = check(question, "shape", lambda run, gen: {"z": torch.zeros(64, 1)})
    assert not passed
    assert message == "z has shape (64, 1); expected (64, 20), the shape of mu"


def test_shape_with_symbols_and_alternatives() -> None:
    question = code_question(
        given={"latent": {"type": "int", "value": "L"}},
        expect=["out"],
        reference="out = torch.zeros(3, 784)",
        trials=[{"bind": {"L": 5, "B": 3}}],
        checks=[{"check": "shape", "of": "out", "is": [["B", 784], ["B", 1, 28, 28]]}],
    )
    assert check(question, "shape", lambda r, g: {"out": torch.zeros(3, 1, 28, 28)})[0]
    passed, message = check(question, "shape", lambda r, g: {"out": torch.zeros(3, 28, 28)})
    assert not passed and message == "out has shape (3, 28, 28); expected (3, 784) or (3, 1, 28, 28)"
    passed, message = check(question, "shape", lambda r, g: {"out": 3.0})
    assert not passed and message == "out is a float; expected a tensor"


def test_dtype_and_close_against_the_reference() -> None:
    question = code_question(
        given={"mu": {"type": "tensor", "shape": ["B", "D"]}, "logvar": {"type": "tensor", "shape": ["B", "D"]}},
        expect=["kl"],
        reference="kl = -0.5 * torch.sum(1 + logvar - mu.pow(2) - logvar.exp())",
        trials=[{"bind": {"B": 4, "D": 3}}],
        checks=[{"check": "dtype", "of": "kl", "is": ["float32"]}, {"check": "close", "of": "kl"}],
    )

    def kl(run: PreparedRun, reduce: Callable[[torch.Tensor], torch.Tensor]) -> torch.Tensor:
        mu, logvar = run.given["mu"], run.given["logvar"]
        assert isinstance(mu, torch.Tensor) and isinstance(logvar, torch.Tensor)
        return -0.5 * reduce(1 + logvar - mu.pow(2) - logvar.exp())

    assert check(question, "close", lambda r, g: {"kl": kl(r, torch.sum)})[0]
    passed, message = check(question, "close", lambda r, g: {"kl": kl(r, torch.mean)})
    assert not passed and message.startswith("kl = ") and "; expected " in message
    passed, message = check(question, "dtype", lambda r, g: {"kl": kl(r, torch.sum).double()})
    assert not passed and message == "kl has dtype float64; expected float32"


def test_close_on_tensors_points_at_the_first_wrong_element() -> None:
    question = code_question(
        given={"z": {"type": "tensor", "shape": [2, 3, 4, 5]}},
        expect=["flat_z"],
        reference="flat_z = z.permute(0, 2, 3, 1).reshape(-1, 3)",
        trials=[{"bind": {}}],
        checks=[{"check": "close", "of": "flat_z"}],
    )
    passed, message = check(question, "close", lambda r, g: {"flat_z": r.given["z"].reshape(-1, 3)})  # type: ignore[union-attr]
    assert not passed and "flat_z differs from the expected values at" in message and "e.g. at index (0, 1)" in message


def test_range_reports_the_offending_extreme() -> None:
    question = code_question(
        expect=["x"],
        reference="x = torch.rand(3)",
        trials=[{"bind": {}}],
        checks=[{"check": "range", "of": "x", "min": 0, "max": 1}],
    )
    assert check(question, "range", lambda r, g: {"x": torch.tensor([0.0, 0.5, 1.0])})[0]
    passed, message = check(question, "range", lambda r, g: {"x": torch.tensor([-0.25, 0.5])})
    assert not passed and message == "x has values as low as -0.25; expected values in [0, 1]"
    assert not check(question, "range", lambda r, g: {"x": torch.tensor([float("nan")])})[0]


@settings(max_examples=25, deadline=None)
@given(seed=st.integers(0, 2**32 - 1))
def test_a_correct_sample_passes_every_statistical_check(seed: int) -> None:
    question = code_question(**REPARAM)
    for kind in ("gaussian", "independent"):
        passed, message = check(question, kind, lambda r, g: {"z": sample(r, g)}, seed=seed)
        assert passed, message


def test_gaussian_catches_each_wrong_spread() -> None:
    question = code_question(**REPARAM)
    passed, message = check(question, "gaussian", lambda r, g: {"z": sample(r, g, scale=torch.exp)})
    assert not passed and "spread of z is too wide" in message
    passed, message = check(question, "gaussian", lambda r, g: {"z": sample(r, g, scale=lambda lv: lv.abs())})
    assert not passed
    uniform = lambda r, g: {  # noqa: E731 - unit-variance uniform noise: right moments, wrong shape
        "z": r.given["mu"].detach()  # type: ignore[union-attr]
        + (torch.rand(r.given["mu"].shape, generator=g) - 0.5) * 12**0.5 * torch.exp(0.5 * r.given["logvar"].detach())  # type: ignore[union-attr]
    }
    passed, message = check(question, "gaussian", uniform)
    assert not passed and "is not Gaussian" in message and "68.3%" in message
    passed, message = check(question, "gaussian", lambda r, g: {"z": sample(r, g) + 0.5 * torch.exp(0.5 * r.given["logvar"].detach())})  # type: ignore[union-attr]
    assert not passed and "off-centre" in message


def test_independence_catches_shared_rows_columns_and_repeats() -> None:
    question = code_question(**REPARAM)

    def shared_row(run: PreparedRun, gen: torch.Generator) -> dict[str, Any]:
        mu, logvar = run.given["mu"].detach(), run.given["logvar"].detach()  # type: ignore[union-attr]
        return {"z": mu + torch.randn(1, mu.shape[1], generator=gen) * torch.exp(0.5 * logvar)}

    passed, message = check(question, "independent", shared_row)
    assert not passed and "between neighbouring rows" in message

    def shared_column(run: PreparedRun, gen: torch.Generator) -> dict[str, Any]:
        mu, logvar = run.given["mu"].detach(), run.given["logvar"].detach()  # type: ignore[union-attr]
        return {"z": mu + torch.randn(mu.shape[0], 1, generator=gen) * torch.exp(0.5 * logvar)}

    passed, message = check(question, "independent", shared_column)
    assert not passed and "neighbouring elements of a row" in message

    def seeded(run: PreparedRun, gen: torch.Generator) -> dict[str, Any]:
        return {"z": sample(run, torch.Generator().manual_seed(7))}

    passed, message = check(question, "independent", seeded)
    assert not passed and "runs with the same inputs" in message
    passed, message = check(question, "fresh", seeded)
    assert not passed and "identical on two runs" in message
    assert check(question, "fresh", lambda r, g: {"z": sample(r, g)})[0]


def test_gradient_checks_say_what_is_cut_off() -> None:
    question = code_question(**REPARAM)

    def grads(mu_grad: Any, logvar_grad: Callable[[torch.Tensor], Any]) -> Outputs:
        def outputs(run: PreparedRun, gen: torch.Generator) -> dict[str, Any]:
            logvar = run.given["logvar"]
            assert isinstance(logvar, torch.Tensor)
            return {
                "z": sample(run, gen),
                grad_output_name("z", "mu"): mu_grad if mu_grad is None else torch.ones(logvar.shape),
                grad_output_name("z", "logvar"): logvar_grad(logvar.detach()),
            }

        return outputs

    assert check(question, "gradient", grads(1, lambda lv: torch.randn(lv.shape)))[0]
    passed, message = check(question, "gradient", grads(1, lambda lv: None))
    assert not passed and message.startswith("no gradient reaches logvar from z")
    partly = lambda lv: torch.cat([torch.zeros(lv.shape[0], 1), torch.randn(lv.shape[0], lv.shape[1] - 1)], 1)  # noqa: E731
    passed, message = check(question, "gradient", grads(1, partly))
    assert not passed and "is zero at" in message and "cut off from logvar" in message


def test_gradient_compared_with_the_reference() -> None:
    question = code_question(
        given={"mu": {"type": "tensor", "shape": [3, 2], "requires_grad": True}},
        expect=["loss"],
        reference="loss = (mu ** 2).sum()",
        trials=[{"bind": {}}],
        probes=[{"probe": "grad", "of": "loss", "wrt": ["mu"]}],
        checks=[{"check": "gradient", "of": "loss", "wrt": ["mu"], "compare": "reference"}],
    )
    name = grad_output_name("loss", "mu")
    right = lambda r, g: {"loss": torch.tensor(0.0), name: 2 * r.given["mu"].detach()}  # type: ignore[union-attr] # noqa: E731
    wrong = lambda r, g: {"loss": torch.tensor(0.0), name: r.given["mu"].detach()}  # type: ignore[union-attr] # noqa: E731
    assert check(question, "gradient", right)[0]
    passed, message = check(question, "gradient", wrong)
    assert not passed and "differs from the expected one" in message


CODEBOOK = dict(
    given={"model": {"type": "module", "embeddings": {"codebook": {"num_embeddings": 32, "embedding_dim": 4}}}},
    expect=["z_q"],
    reference="z_q = model.codebook(torch.randint(0, 32, (16,)))",
    trials=[{"bind": {}, "repeat": 120}],
    checks=[
        {"check": "rows_from", "of": "z_q", "table": "model.codebook"},
        {"check": "uniform_rows", "of": "z_q", "table": "model.codebook"},
    ],
)


def table(run: PreparedRun) -> torch.Tensor:
    return run.given["model"].embeddings["codebook"]  # type: ignore[union-attr]


def test_rows_from_and_uniform_rows() -> None:
    question = code_question(**CODEBOOK)
    right = lambda r, g: {"z_q": table(r)[torch.randint(0, 32, (16,), generator=g)]}  # noqa: E731
    assert check(question, "rows_from", right)[0]
    assert check(question, "uniform_rows", right)[0]
    fresh = lambda r, g: {"z_q": torch.randn(16, 4, generator=g)}  # noqa: E731
    passed, message = check(question, "rows_from", fresh)
    assert not passed and message.startswith("row 0 of z_q is not a row of model.codebook (16 of 16 rows are not)")
    few = lambda r, g: {"z_q": table(r)[torch.randint(0, 4, (16,), generator=g)]}  # noqa: E731
    passed, message = check(question, "uniform_rows", few)
    assert not passed and "only 4 distinct codes appeared" in message


def test_uniform_rows_requires_every_code_when_there_are_enough_draws() -> None:
    question = code_question(**{**CODEBOOK, "trials": [{"bind": {}, "repeat": 60}]})
    # 60 x 16 = 960 draws >= 32 ln(32e6) = 553, so a code that never appears is a failure
    off_by_one = lambda r, g: {"z_q": table(r)[torch.randint(0, 31, (16,), generator=g)]}  # noqa: E731
    passed, message = check(question, "uniform_rows", off_by_one)
    assert not passed and message.startswith("code 31 of model.codebook never appeared in 960 draws")


def test_with_replacement_fails_distinct_draws_and_confined_samplers() -> None:
    question = code_question(
        **{**CODEBOOK, "checks": [{"check": "with_replacement", "of": "z_q", "table": "model.codebook"}]}
    )
    right = lambda r, g: {"z_q": table(r)[torch.randint(0, 32, (16,), generator=g)]}  # noqa: E731
    assert check(question, "with_replacement", right) == (True, "")
    distinct = lambda r, g: {"z_q": table(r)[torch.randperm(32, generator=g)[:16]]}  # noqa: E731
    passed, message = check(question, "with_replacement", distinct)
    assert not passed and message.startswith(
        "the codes in z_q are not drawn with replacement: no code appeared twice in any of 120 runs "
        "of your code (16 codes each), while drawing every code independently from all 32 repeats "
        "one in about 119 of them (the birthday problem); draw the indices with torch.randint(0, 32, ...)"
    )
    # 16 draws from 32 codes repeat a code 99% of the time; a few distinct runs already fail
    mostly = lambda r, g: {"z_q": table(r)[torch.randperm(32, generator=g)[:16] if r.repeat % 2 else torch.randint(0, 32, (16,), generator=g)]}  # noqa: E731
    passed, message = check(question, "with_replacement", mostly)
    assert not passed and "a code appeared twice in only" in message


def test_with_replacement_upper_tail_and_too_few_runs() -> None:
    big = {"model": {"type": "module", "embeddings": {"codebook": {"num_embeddings": 512, "embedding_dim": 2}}}}
    spec = [{"check": "with_replacement", "of": "z_q", "table": "model.codebook"}]
    question = code_question(**{**CODEBOOK, "given": big, "trials": [{"bind": {}, "repeat": 400}], "checks": spec})
    right = lambda r, g: {"z_q": table(r)[torch.randint(0, 512, (16,), generator=g)]}  # noqa: E731
    assert check(question, "with_replacement", right) == (True, "")
    few = lambda r, g: {"z_q": table(r)[torch.randint(0, 20, (16,), generator=g)]}  # noqa: E731
    passed, message = check(question, "with_replacement", few)
    assert not passed and message.startswith("the codes in z_q repeat too often: a code appeared twice in ")
    assert "repeats one in about 84 of them" in message
    short = code_question(**{**CODEBOOK, "given": big, "trials": [{"bind": {}, "repeat": 5}], "checks": spec})
    passed, message = check(short, "with_replacement", right)
    assert not passed and message.startswith("5 runs cannot tell draws with replacement from draws without")


@settings(max_examples=60, deadline=None)
@given(n=st.integers(0, 5), k=st.integers(1, 5))
def test_birthday_probability_matches_enumeration(n: int, k: int) -> None:
    sequences = list(itertools.product(range(k), repeat=n))
    distinct = sum(len(set(s)) == n for s in sequences)
    assert math.isclose(_all_distinct_probability(n, k), distinct / len(sequences), abs_tol=1e-12)


@settings(max_examples=60, deadline=None)
@given(chances=st.lists(st.floats(0, 1), max_size=8))
def test_repeat_count_distribution_is_exact(chances: list[float]) -> None:
    """The Poisson binomial by dynamic programming equals the sum over every outcome pattern."""
    pmf = _success_count_distribution(chances)
    exact = [0.0] * (len(chances) + 1)
    for outcome in itertools.product((0, 1), repeat=len(chances)):
        exact[sum(outcome)] += math.prod(q if hit else 1 - q for q, hit in zip(chances, outcome))
    assert torch.allclose(pmf, torch.tensor(exact, dtype=torch.float64), atol=1e-12)


def test_tail_limit_is_the_one_sided_mass_beyond_z_limit() -> None:
    assert math.isclose(2 * TAIL_LIMIT, math.erfc(Z_LIMIT / math.sqrt(2)))
    assert 9e-10 < TAIL_LIMIT < 1e-9


NEAREST = dict(
    given={"flat_z": {"type": "tensor", "shape": ["N", "D"]}, "codebook": {"type": "tensor", "shape": ["K", "D"]}},
    expect=["indices"],
    reference="indices = torch.cdist(flat_z, codebook).argmin(1)",
    trials=[{"bind": {"N": 50, "D": 3, "K": 7}}],
    checks=[{"check": "nearest", "of": "indices", "rows": "flat_z", "table": "codebook"}],
)


def test_nearest_accepts_ties_and_rejects_far_rows() -> None:
    question = code_question(**NEAREST)
    nearest = lambda r, g: {"indices": torch.cdist(r.given["flat_z"], r.given["codebook"]).argmin(1)}  # type: ignore[arg-type] # noqa: E731
    assert check(question, "nearest", nearest)[0]
    farthest = lambda r, g: {"indices": torch.cdist(r.given["flat_z"], r.given["codebook"]).argmax(1)}  # type: ignore[arg-type] # noqa: E731
    passed, message = check(question, "nearest", farthest)
    assert not passed and "is closer" in message and "50 of 50 indices are not nearest" in message
    passed, message = check(question, "nearest", lambda r, g: {"indices": torch.full((50,), 9)})
    assert not passed and message == "indices holds indices outside 0..6, the rows of codebook"
    tie_question = code_question(**{**NEAREST, "given": {"flat_z": {"type": "tensor", "shape": ["N", "D"], "mean": 0, "std": 0}, "codebook": {"type": "tensor", "shape": ["K", "D"], "std": 0}}})
    assert check(tie_question, "nearest", lambda r, g: {"indices": torch.arange(50) % 7})[0]


def test_module_and_fit() -> None:
    question = code_question(
        given={"latent_dim": {"type": "int", "value": "L"}},
        expect=["decoder"],
        reference="decoder = nn.Sequential(nn.Linear(latent_dim, 784), nn.Sigmoid())",
        trials=[{"bind": {"L": 4}}],
        probes=[
            {
                "probe": "fit",
                "fn": "decoder",
                "input": {"type": "tensor", "shape": [8, "L"]},
                "target": {"type": "tensor", "shape": [8, 784], "dist": "bernoulli"},
                "as": "fitted",
            }
        ],
        checks=[{"check": "module", "of": "decoder"}, {"check": "fit", "of": "fitted", "below": 0.2}],
    )
    summary = ModuleSummary("Sequential", trainable_parameters=3920, total_parameters=3920)
    target = lambda r: r.probes[0].args[1]  # noqa: E731
    learned = lambda r, g: {"decoder": summary, "fitted": target(r) * 0.98 + 0.01}  # noqa: E731
    assert check(question, "module", learned)[0] and check(question, "fit", learned)[0]
    stuck = lambda r, g: {"decoder": summary, "fitted": torch.full_like(target(r), 0.5)}  # noqa: E731
    passed, message = check(question, "fit", stuck)
    assert not passed and "binary cross-entropy of 0.693 per element" in message
    tanh = lambda r, g: {"decoder": summary, "fitted": target(r) * 2 - 1}  # noqa: E731
    passed, message = check(question, "fit", tanh)
    assert not passed and "needs probabilities in [0, 1]" in message
    frozen = ModuleSummary("Sequential", trainable_parameters=0, total_parameters=3920)
    passed, message = check(question, "module", lambda r, g: {"decoder": frozen})
    assert not passed and "has 0 trainable parameters" in message


def test_missing_names_and_errors_fail_the_dependent_checks_with_the_reason() -> None:
    question = code_question(**REPARAM)
    prepared = prepare_question(question)
    runs = len(prepared.runs)
    never = judge(prepared, SandboxResult("ok", "", [RunOutcome(missing=("z",)) for _ in range(runs)]))
    assert not never.passed and never.score == 0
    assert {c.message for c in never.checks} == {"z was never assigned"}
    raised = judge(
        prepared,
        SandboxResult("ok", "", [RunOutcome(missing=("z",), error="NameError: name 'sd' is not defined (line 2)")] * runs),
    )
    assert {c.message for c in raised.checks} == {"your code raised NameError: name 'sd' is not defined (line 2)"}
    timed_out = judge(prepared, SandboxResult("time_limit", "time limit of 5 s exceeded"))
    assert {c.message for c in timed_out.checks} == {"time limit of 5 s exceeded"}
    assert timed_out.error == "time limit of 5 s exceeded" and not timed_out.retry
    broken = judge(prepared, SandboxResult("sandbox_error", "worker lost"))
    assert broken.retry, "a sandbox failure is not the student's fault and is graded again"


def test_score_is_the_weighted_share_of_points() -> None:
    question = code_question(**REPARAM)
    prepared = prepare_question(question)
    gen = torch.Generator().manual_seed(1)
    outcomes = [
        RunOutcome(outputs={"z": sample(run, gen), grad_output_name("z", "mu"): None, grad_output_name("z", "logvar"): None})
        for run in prepared.runs
    ]
    graded = judge(prepared, SandboxResult("ok", "", outcomes))
    assert [c.passed for c in graded.checks] == [True, True, True, True, True, False]
    assert graded.score == pytest.approx(6 / 7) and not graded.passed


def test_hidden_inputs_are_reproducible_and_differ_between_trials() -> None:
    question = code_question(**REPARAM)
    first, second = prepare_question(question), prepare_question(question)
    for a, b in zip(first.runs, second.runs):
        assert a.seed == b.seed and torch.equal(a.given["mu"], b.given["mu"])  # type: ignore[arg-type]
    assert first.runs[1].seed != first.runs[2].seed, "repeats get fresh seeds"
    assert first.runs[1].given is first.runs[2].given, "repeats share their inputs"
    assert derive_seed("q", 0, "inputs") != derive_seed("q", 1, "inputs")
    request = first.request("z = mu")
    assert "reference" not in repr(request.runs[0].given) and request.source == "z = mu"


def test_checks_run_on_one_intra_op_thread(tmp_path) -> None:
    """The grader's checks work on small tensors while the sandbox's workers hold every core, so
    they take one intra-op thread: a team of them only waits for cores (a check's float64 exp
    took 20-50 ms instead of microseconds on a busy machine). Run where torch was set to four."""
    import os
    import subprocess
    import sys

    from tests.conftest import REPO

    script = (
        "import torch\n"
        "from tests.test_grading_checks import REPARAM, code_question\n"
        "from vaequiz.grading.code import judge\n"
        "from vaequiz.grading.inputs import prepare_question\n"
        "from vaequiz.grading.sandbox.api import SandboxResult\n"
        "torch.set_num_threads(4)\n"
        "before = torch.get_num_threads()\n"
        "judge(prepare_question(code_question(**REPARAM)), SandboxResult('time_limit', 'time limit of 5 s exceeded'))\n"
        "print(before, torch.get_num_threads())\n"
    )
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    done = subprocess.run([sys.executable, "-c", script], env=env, cwd=REPO, capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    assert done.stdout.split() == ["4", "1"]
