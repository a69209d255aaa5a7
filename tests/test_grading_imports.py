"""What an answer may import, through the real sandbox: the standard library, torch, numpy and
einops load (under every isolation layer this machine has); anything else is refused with one
message a student can act on, whichever way the import is spelled."""

from __future__ import annotations

from pathlib import Path
from typing import Iterator

import pytest

from vaequiz.bank.models import CodeQuestion, question_adapter
from vaequiz.grading.grader import Grader
from vaequiz.grading.sandbox import Sandbox
from vaequiz.grading.sandbox.runner import ALLOWED_PACKAGES

QUESTION = question_adapter.validate_python(
    {
        "id": "imports",
        "kind": "code",
        "topics": ["vq-vae"],
        "difficulty": "beginner",
        "source": "original",
        "explanation": "Because.",
        "prompt": "Bind `flat_z`.",
        "given": {"z": {"type": "tensor", "shape": [2, 3, 4, 5]}},
        "expect": ["flat_z"],
        "reference": "flat_z = z.permute(0, 2, 3, 1).reshape(-1, 3)",
        "trials": [{"bind": {}}],
        "checks": [{"check": "close", "of": "flat_z"}],
    }
)
assert isinstance(QUESTION, CodeQuestion)
REFUSED = (
    "ImportError: answers may import only torch, numpy, einops and the Python standard library; "
    "'{name}' is not available (line {line})"
)


@pytest.fixture(scope="module")
def grader() -> Iterator[Grader]:
    with Sandbox(workers=1) as sandbox:
        yield Grader(sandbox)


@pytest.mark.parametrize(
    "source",
    [
        "from __future__ import annotations\nimport math, collections.abc, itertools as it\n"
        "from typing import Tuple\nflat_z = z.permute(0, 2, 3, 1).reshape(-1, 3)",
        "import numpy as np\nflat_z = torch.from_numpy(np.moveaxis(z.numpy(), 1, -1).reshape(-1, 3))",
        "import einops\nflat_z = einops.rearrange(z, 'b d h w -> (b h w) d')",
        "from einops.layers.torch import Rearrange\nflat_z = nn.Sequential(Rearrange('b d h w -> (b h w) d'))(z)",
        "import torch.nn.functional as G\nfrom torch import nn as N\nflat_z = z.permute(0, 2, 3, 1).reshape(-1, 3)",
    ],
)
def test_allowed_imports_load(grader: Grader, source: str) -> None:
    graded = grader.grade(QUESTION, source)
    assert graded.passed, [c.message for c in graded.checks]


@pytest.mark.parametrize(
    ("source", "name", "line"),
    [
        ("from scipy.spatial.distance import cdist\nflat_z = 1", "scipy", 1),
        ("x = 1\nimport pydantic\nflat_z = 1", "pydantic", 2),
        ("import vaequiz.grading\nflat_z = 1", "vaequiz", 1),
        ("def f():\n    import pandas as pd\n    return pd\n\nf()\nflat_z = 1", "pandas", 2),
        ("np = __import__('tensorflow')\nflat_z = 1", "tensorflow", 1),
        ("exec('import scipy')\nflat_z = 1", "scipy", 1),
    ],
)
def test_other_imports_are_refused_with_the_list_of_allowed_ones(
    grader: Grader, source: str, name: str, line: int
) -> None:
    graded = grader.grade(QUESTION, source)
    assert not graded.passed
    assert graded.error == "your code raised " + REFUSED.format(name=name, line=line)


def test_the_readme_names_every_allowed_package() -> None:
    readme = " ".join((Path(__file__).resolve().parent.parent / "README.md").read_text().split())
    rule = readme.split("A snippet may import ", 1)[1].split(";", 1)[0]
    assert all(f"`{package}`" in rule for package in ALLOWED_PACKAGES), rule
    assert "Python standard library" in rule
