"""``--device cuda``: the child initialises CUDA itself and results come back on the GPU."""

from __future__ import annotations

import pytest
import torch

from vaequiz.grading.sandbox import (
    ProbeRequest,
    RunRequest,
    Sandbox,
    SandboxRequest,
    SandboxUnavailable,
)

needs_cuda = pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")


@pytest.mark.skipif(torch.cuda.is_available(), reason="this machine has CUDA")
def test_asking_for_cuda_without_a_device_is_refused_up_front() -> None:
    with pytest.raises(SandboxUnavailable, match="needs a CUDA device"):
        Sandbox(workers=1, device="cuda")


@pytest.mark.cuda
@needs_cuda
def test_snippets_run_on_the_gpu_and_results_decode_there() -> None:
    mu = torch.randn(8, 4, requires_grad=True)
    grad = ProbeRequest(kind="grad", target="z", wrt=("mu",))
    request = SandboxRequest(
        source="z = mu * 2 + torch.randn_like(mu)\non_gpu = int(mu.is_cuda and z.is_cuda)",
        expect=("z", "on_gpu"),
        runs=(RunRequest(seed=3, given={"mu": mu}, probes=(grad,)),) * 2,
        device="cuda",
    )
    with Sandbox(workers=1, device="cuda") as sandbox:
        assert any(line.startswith("memory limit on CUDA") for line in sandbox.hardening())
        result = sandbox.run(request)
        again = sandbox.run(request)
    assert result.status == "ok", result.reason
    first = result.runs[0]
    assert first.error is None and first.outputs["on_gpu"] == 1
    assert first.outputs["z"].device.type == "cuda"
    assert torch.equal(first.outputs["grad__z__mu"], torch.full((8, 4), 2.0, device="cuda"))
    assert torch.equal(first.outputs["z"], again.runs[0].outputs["z"]), "seeded on the GPU too"
