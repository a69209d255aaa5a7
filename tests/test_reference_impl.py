"""The reference models: shapes, gradients, the KL closed form, quantization, and a short training run."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st
from torch.distributions import Normal, kl_divergence as torch_kl

from reference_impl import VAE, VQVAE, ConvVAE, kl_divergence, reparameterize, vae_loss
from reference_impl.data import synthetic_strokes
from reference_impl.mlp_vae import Decoder, Encoder
from reference_impl.train import main as train_main
from reference_impl.train import train
from reference_impl.vq_vae import VectorQuantizer, flatten_for_codebook, nearest_code_indices

REPO = Path(__file__).resolve().parent.parent


@pytest.fixture(autouse=True)
def _seeded() -> None:
    torch.manual_seed(0)


# --------------------------------------------------------------------------- MLP VAE


def test_mlp_encoder_and_decoder_shapes() -> None:
    z, mu, logvar = Encoder()(torch.rand(7, 784))
    assert z.shape == mu.shape == logvar.shape == (7, 20)
    x_recon = Decoder()(z)
    assert x_recon.shape == (7, 784)
    assert 0 <= x_recon.min() and x_recon.max() <= 1


def test_mlp_vae_accepts_image_batches_and_samples_from_the_prior() -> None:
    model = VAE()
    x_recon, mu, logvar = model(torch.rand(5, 1, 28, 28))
    assert x_recon.shape == (5, 784) and mu.shape == (5, 20) and logvar.shape == (5, 20)
    assert model.sample(3).shape == (3, 784)


def test_reparameterize_is_gaussian_and_differentiable() -> None:
    mu = torch.full((4000, 3), 2.0, requires_grad=True)
    logvar = torch.full((4000, 3), torch.log(torch.tensor(0.25)).item(), requires_grad=True)
    z = reparameterize(mu, logvar)
    assert abs(z.mean().item() - 2.0) < 0.05
    assert abs(z.std().item() - 0.5) < 0.05
    z.sum().backward()
    assert torch.all(mu.grad == 1)
    assert logvar.grad is not None and torch.all(logvar.grad != 0)


def test_reparameterize_draws_fresh_noise() -> None:
    mu, logvar = torch.zeros(2, 5), torch.zeros(2, 5)
    assert not torch.equal(reparameterize(mu, logvar), reparameterize(mu, logvar))


def test_every_vae_parameter_receives_a_gradient() -> None:
    model = VAE()
    x = synthetic_strokes(6, seed=1).reshape(6, 784)
    x_recon, mu, logvar = model(x)
    vae_loss(x_recon, x, mu, logvar).backward()
    for name, parameter in model.named_parameters():
        assert parameter.grad is not None and parameter.grad.abs().sum() > 0, name


# --------------------------------------------------------------------------- losses


@settings(max_examples=25, deadline=None)
@given(
    batch=st.integers(1, 6),
    dims=st.integers(1, 8),
    seed=st.integers(0, 2**16),
    scale=st.floats(0.1, 3.0),
)
def test_kl_matches_torch_distributions(batch: int, dims: int, seed: int, scale: float) -> None:
    generator = torch.Generator().manual_seed(seed)
    mu = torch.randn(batch, dims, generator=generator, dtype=torch.float64) * scale
    logvar = torch.randn(batch, dims, generator=generator, dtype=torch.float64) * scale
    expected = torch_kl(Normal(mu, torch.exp(0.5 * logvar)), Normal(torch.zeros_like(mu), 1.0)).sum()
    assert torch.allclose(kl_divergence(mu, logvar), expected, rtol=1e-9, atol=1e-9)


def test_kl_is_zero_exactly_at_the_prior_and_positive_elsewhere() -> None:
    assert kl_divergence(torch.zeros(3, 4), torch.zeros(3, 4)).item() == 0
    assert kl_divergence(torch.full((1, 1), 0.1), torch.zeros(1, 1)).item() > 0
    assert kl_divergence(torch.zeros(1, 1), torch.full((1, 1), -0.1)).item() > 0


def test_vae_loss_is_summed_bce_plus_beta_times_kl() -> None:
    x = (torch.rand(3, 784) < 0.3).float()
    x_recon = torch.rand(3, 784) * 0.98 + 0.01
    mu, logvar = torch.randn(3, 5), torch.randn(3, 5)
    bce = -(x * x_recon.log() + (1 - x) * (1 - x_recon).log()).sum()
    kl = kl_divergence(mu, logvar)
    for beta in (0.0, 1.0, 4.0):
        loss = vae_loss(x_recon, x, mu, logvar, beta=beta)
        assert loss.shape == ()
        assert torch.allclose(loss, bce + beta * kl, rtol=1e-5)


# --------------------------------------------------------------------------- convolutional VAE


def test_conv_vae_shapes_and_gradients() -> None:
    model = ConvVAE(latent_dim=8)
    x = synthetic_strokes(4, seed=2)
    x_recon, mu, logvar = model(x)
    assert x_recon.shape == (4, 1, 28, 28) and mu.shape == (4, 8) and logvar.shape == (4, 8)
    vae_loss(x_recon, x, mu, logvar).backward()
    assert all(p.grad is not None for p in model.parameters())
    assert model.sample(2).shape == (2, 1, 28, 28)


# --------------------------------------------------------------------------- VQ-VAE


def test_flatten_for_codebook_orders_rows_by_position() -> None:
    z = torch.randn(2, 3, 4, 5)
    flat = flatten_for_codebook(z)
    assert flat.shape == (2 * 4 * 5, 3)
    for b, h, w in [(0, 0, 0), (1, 2, 3), (1, 3, 4)]:
        assert torch.equal(flat[(b * 4 + h) * 5 + w], z[b, :, h, w])


@settings(max_examples=25, deadline=None)
@given(n=st.integers(1, 40), k=st.integers(1, 30), d=st.integers(1, 6), seed=st.integers(0, 2**16))
def test_quantization_picks_a_nearest_code(n: int, k: int, d: int, seed: int) -> None:
    generator = torch.Generator().manual_seed(seed)
    points = torch.randn(n, d, generator=generator)
    codebook = torch.randn(k, d, generator=generator)
    indices = nearest_code_indices(points, codebook)
    assert indices.dtype == torch.int64 and indices.shape == (n,)
    distances = torch.cdist(points.double(), codebook.double())
    chosen = distances.gather(1, indices.view(-1, 1)).squeeze(1)
    assert torch.all(chosen <= distances.min(dim=1).values + 1e-4)


def test_quantizer_returns_codebook_rows_with_straight_through_gradient() -> None:
    quantizer = VectorQuantizer(num_codes=16, code_dim=4)
    z_e = torch.randn(2, 4, 3, 3, requires_grad=True)
    out = quantizer(z_e)
    assert out.z_q.shape == z_e.shape and out.indices.shape == (2, 3, 3)
    expected = quantizer.codebook(out.indices).permute(0, 3, 1, 2)
    assert torch.allclose(out.z_q, expected)
    weights = torch.randn_like(z_e)
    (out.z_q * weights).sum().backward()
    assert torch.allclose(z_e.grad, weights), "the straight-through estimator copies the gradient"


def test_quantizer_losses_train_the_right_side() -> None:
    quantizer = VectorQuantizer(num_codes=8, code_dim=2)
    z_e = torch.randn(1, 2, 2, 2, requires_grad=True)
    out = quantizer(z_e)
    out.codebook_loss.backward()
    assert z_e.grad is None and quantizer.codebook.weight.grad.abs().sum() > 0
    quantizer.zero_grad()  # sets .grad to None
    quantizer(z_e).commitment_loss.backward()
    assert z_e.grad.abs().sum() > 0 and quantizer.codebook.weight.grad is None


def test_vq_vae_shapes_and_codebook() -> None:
    model = VQVAE()
    assert model.codebook.num_embeddings == 512 and model.codebook.embedding_dim == 64
    assert model.encoder(torch.rand(3, 1, 28, 28)).shape == (3, 64, 7, 7)
    out = model(synthetic_strokes(3, seed=3))
    assert out.x_recon.shape == (3, 1, 28, 28) and out.indices.shape == (3, 7, 7)
    assert out.indices.dtype == torch.int64
    samples = model.quantizer.sample_codes(16)
    assert samples.shape == (16, 64)


# --------------------------------------------------------------------------- data and training


def test_synthetic_strokes_are_binary_seeded_and_not_blank() -> None:
    images = synthetic_strokes(32, seed=5)
    assert images.shape == (32, 1, 28, 28) and images.dtype == torch.float32
    assert set(images.unique().tolist()) <= {0.0, 1.0}
    assert torch.equal(images, synthetic_strokes(32, seed=5))
    assert not torch.equal(images, synthetic_strokes(32, seed=6))
    on = images.mean(dim=(1, 2, 3))
    assert torch.all(on > 0.02) and torch.all(on < 0.6)


@pytest.mark.parametrize("model_name", ["mlp", "conv", "vq"])
def test_a_few_training_steps_reduce_the_loss(model_name: str) -> None:
    report = train(model_name, steps=16, batch_size=16, lr=2e-3, dataset_size=128, seed=0, device="cpu")
    first, last = report.window_means(4)
    assert len(report.losses) == 16
    assert last < first, f"{model_name}: loss went from {first:.4f} to {last:.4f}"


def _run_train(*args: str) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    return subprocess.run(
        [sys.executable, "-m", "reference_impl.train", *args],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=300,
        env=env,
    )


def test_train_entry_point_reports_a_falling_loss() -> None:
    result = _run_train("--steps", "12", "--dataset-size", "128", "--batch-size", "16", "--device", "cpu")
    assert result.returncode == 0, result.stderr
    assert "mlp on cpu: loss fell from" in result.stdout


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--steps", "0"], "must be at least 1"),
        (["--model", "gan"], "invalid choice"),
        (["--steps", "many"], "invalid int value"),
    ],
)
def test_train_entry_point_rejects_bad_arguments(
    args: list[str], message: str, capsys: pytest.CaptureFixture[str]
) -> None:
    with pytest.raises(SystemExit) as exit_info:
        train_main(args)
    assert exit_info.value.code == 2
    assert message in capsys.readouterr().err


@pytest.mark.skipif(torch.cuda.is_available(), reason="checks the message shown without a GPU")
def test_asking_for_cuda_without_a_gpu_is_a_usage_error(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exit_info:
        train_main(["--device", "cuda", "--steps", "1"])
    assert exit_info.value.code == 2
    assert "no CUDA device is available" in capsys.readouterr().err


@pytest.mark.cuda
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
@pytest.mark.parametrize("model_name", ["mlp", "conv", "vq"])
def test_models_train_on_cuda(model_name: str) -> None:
    report = train(model_name, steps=16, batch_size=16, lr=2e-3, dataset_size=128, device="cuda")
    assert report.device.startswith("cuda")
    first, last = report.window_means(4)
    assert last < first
