"""The VAE objective: reconstruction (binary cross-entropy) plus beta times the KL term.

Both terms are summed over every element and the batch, so their relative weight does not
depend on image size or batch size; beta = 1 gives the negative ELBO, beta > 1 a beta-VAE.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F


def kl_divergence(mu: torch.Tensor, logvar: torch.Tensor) -> torch.Tensor:
    """KL( N(mu, exp(logvar)) || N(0, I) ), summed over latent dimensions and the batch.

    Per dimension the closed form is 0.5 * (mu^2 + sigma^2 - log sigma^2 - 1); working with
    log-variance keeps sigma^2 = exp(logvar) positive without any constraint on the encoder.
    """
    return -0.5 * torch.sum(1 + logvar - mu.pow(2) - logvar.exp())


def reconstruction_loss(x_recon: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
    """Binary cross-entropy summed over all pixels and the batch (x_recon holds probabilities)."""
    return F.binary_cross_entropy(x_recon.reshape(x.shape), x, reduction="sum")


def vae_loss(
    x_recon: torch.Tensor,
    x: torch.Tensor,
    mu: torch.Tensor,
    logvar: torch.Tensor,
    beta: float = 1.0,
) -> torch.Tensor:
    """Reconstruction + beta * KL: the negative ELBO for beta = 1, a beta-VAE loss otherwise."""
    return reconstruction_loss(x_recon, x) + beta * kl_divergence(mu, logvar)
