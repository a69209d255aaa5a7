"""Properties through the real sandbox: for random sizes, a correct answer always passes and a
slightly perturbed one always fails (flatten, KL, nearest code). One sandbox serves the module."""

from __future__ import annotations

from typing import Any, Iterator

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from vaequiz.bank.models import CodeQuestion, question_adapter
from vaequiz.grading.grader import Grader
from vaequiz.grading.sandbox import Sandbox

SETTINGS = settings(max_examples=15, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
COMMON = {"topics": ["vq-vae"], "difficulty": "beginner", "source": "original", "explanation": "Because.", "prompt": "Do it."}
# An encoder's outputs for a batch of B codes of size D, as the KL questions are given them.
KL_GIVEN = {
    "mu": {"type": "tensor", "shape": ["B", "D"], "requires_grad": True},
    "logvar": {"type": "tensor", "shape": ["B", "D"], "dist": "uniform", "low": -3, "high": 2, "requires_grad": True},
}


@pytest.fixture(scope="module")
def grader() -> Iterator[Grader]:
    with Sandbox(workers=1) as sandbox:
        yield Grader(sandbox)


def question(qid: str, bind: dict[str, int], **fields: Any) -> CodeQuestion:
    parsed = question_adapter.validate_python({"id": qid, "kind": "code", "trials": [{"bind": bind}], **COMMON, **fields})
    assert isinstance(parsed, CodeQuestion)
    return parsed


def verdict(grader: Grader, q: CodeQuestion, source: str) -> tuple[bool, list[str]]:
    graded = grader.grade(q, source)
    return bool(graded.passed), [f"{c.name}: {c.message}" for c in graded.checks if not c.passed]


@SETTINGS
@given(
    sizes=st.tuples(st.integers(1, 4), st.integers(2, 9), st.integers(1, 6), st.integers(1, 6)).filter(lambda s: s[2] * s[3] >= 2),
    style=st.sampled_from(
        [
            "flat_z = z.permute(0, 2, 3, 1).reshape(-1, z.size(1))",
            "flat_z = z.flatten(2).transpose(1, 2).reshape(-1, z.shape[1])",
            "flat_z = torch.movedim(z, 1, -1).contiguous().view(-1, z.shape[1])",
        ]
    ),
    where=st.tuples(st.floats(0, 1, exclude_max=True), st.floats(0, 1, exclude_max=True)),
)
def test_flatten_right_passes_perturbed_fails(grader: Grader, sizes: tuple[int, int, int, int], style: str, where: tuple[float, float]) -> None:
    b, d, h, w = sizes
    q = question(
        "flatten",
        {"B": b, "D": d, "H": h, "W": w},
        given={"z": {"type": "tensor", "shape": ["B", "D", "H", "W"]}},
        expect=["flat_z"],
        reference="flat_z = z.permute(0, 2, 3, 1).reshape(-1, z.shape[1])",
        checks=[{"check": "shape", "of": "flat_z", "like": "reference"}, {"check": "close", "of": "flat_z"}],
    )
    passed, why = verdict(grader, q, style)
    assert passed, why
    row, col = int(where[0] * b * h * w), int(where[1] * d)
    passed, why = verdict(grader, q, f"{style}\nflat_z = flat_z.clone()\nflat_z[{row}, {col}] += 0.05")
    assert not passed and any("differs from the expected values at 1 of" in m for m in why), why
    passed, why = verdict(grader, q, "flat_z = z.reshape(-1, z.size(1))")
    assert not passed


@SETTINGS
@given(b=st.integers(1, 40), d=st.integers(1, 40), relative=st.sampled_from([-0.01, 0.003, 0.05]))
def test_kl_right_passes_perturbed_fails(grader: Grader, b: int, d: int, relative: float) -> None:
    q = question(
        "kl",
        {"B": b, "D": d},
        given=KL_GIVEN,
        expect=["kl"],
        reference="kl = -0.5 * torch.sum(1 + logvar - mu.pow(2) - logvar.exp())",
        probes=[{"probe": "grad", "of": "kl", "wrt": ["mu", "logvar"]}],
        checks=[
            {"check": "shape", "of": "kl", "is": [[]]},
            {"check": "close", "of": "kl"},
            {"check": "gradient", "of": "kl", "wrt": ["mu", "logvar"], "compare": "reference"},
        ],
    )
    right = "kl = 0.5 * (mu.pow(2) + logvar.exp() - 1 - logvar).sum()"
    passed, why = verdict(grader, q, right)
    assert passed, why
    passed, why = verdict(grader, q, f"{right}\nkl = kl * {1 + relative}")
    assert not passed and any(m.startswith("value of kl: kl = ") for m in why), why


@SETTINGS
@given(n=st.integers(1, 60), k=st.integers(2, 40), d=st.integers(1, 8), victim=st.floats(0, 1, exclude_max=True))
def test_nearest_right_passes_perturbed_fails(grader: Grader, n: int, k: int, d: int, victim: float) -> None:
    q = question(
        "nearest",
        {"N": n, "K": k, "D": d},
        given={"flat_z": {"type": "tensor", "shape": ["N", "D"]}, "codebook": {"type": "tensor", "shape": ["K", "D"]}},
        expect=["indices"],
        reference="indices = torch.cdist(flat_z, codebook).argmin(1)",
        checks=[
            {"check": "dtype", "of": "indices", "is": ["int64"]},
            {"check": "nearest", "of": "indices", "rows": "flat_z", "table": "codebook"},
        ],
    )
    right = "indices = ((flat_z[:, None, :] - codebook[None]) ** 2).sum(-1).argmin(-1)"
    passed, why = verdict(grader, q, right)
    assert passed, why
    row = int(victim * n)
    perturbed = f"{right}\nindices[{row}] = torch.cdist(flat_z, codebook)[{row}].argmax()"
    passed, why = verdict(grader, q, perturbed)
    assert not passed and any(f"indices[{row}] = " in m and "is closer" in m for m in why), why


@SETTINGS
@given(
    b=st.integers(1, 30),
    d=st.integers(1, 30),
    style=st.sampled_from(
        [
            "logvar.clamp_(-30.0, 20.0)\nkl = -0.5 * torch.sum(1 + logvar - mu.pow(2) - logvar.exp())",
            "var = logvar.exp()\nmu.pow_(2)\nkl = 0.5 * (mu + var - 1 - logvar).sum()",
            "half = logvar.mul_(0.5)\nkl = 0.5 * torch.sum(mu.pow(2) + half.mul(2).exp() - 1 - 2 * half)",
        ]
    ),
)
def test_in_place_ops_on_computed_givens_keep_their_gradients(grader: Grader, b: int, d: int, style: str) -> None:
    """Givens that require grad stand for an encoder's outputs: in-place ops on them are legal,
    and gradients (taken with respect to the leaves behind them) equal the reference's, which
    itself may edit its givens in place."""
    q = question(
        "kl-in-place",
        {"B": b, "D": d},
        given=KL_GIVEN,
        expect=["kl"],
        reference="logvar.mul_(1.0)\nkl = -0.5 * torch.sum(1 + logvar - mu.pow(2) - logvar.exp())",
        probes=[{"probe": "grad", "of": "kl", "wrt": ["mu", "logvar"]}],
        checks=[
            {"check": "close", "of": "kl"},
            {"check": "gradient", "of": "kl", "wrt": ["mu", "logvar"], "compare": "reference"},
        ],
    )
    passed, why = verdict(grader, q, style)
    assert passed, why
    passed, why = verdict(grader, q, f"logvar.mul_(2.0)\n{style}")
    assert not passed and any(m.startswith("gradient of kl") and "differs" in m for m in why), why
