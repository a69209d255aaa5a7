"""A convolutional VAE for 28x28 images: strided convolutions down, transposed convolutions up.

Spatial layers share weights across positions and keep neighbourhoods together, which is why
they reconstruct image structure with far fewer parameters than a fully connected decoder.
"""

from __future__ import annotations

import torch
from torch import nn

from reference_impl.mlp_vae import reparameterize


class ConvEncoder(nn.Module):
    """(B, 1, 28, 28) -> (z, mu, logvar), each (B, latent_dim)."""

    def __init__(self, latent_dim: int = 20) -> None:
        super().__init__()
        self.features = nn.Sequential(
            nn.Conv2d(1, 32, kernel_size=4, stride=2, padding=1),  # 28 -> 14
            nn.ReLU(),
            nn.Conv2d(32, 64, kernel_size=4, stride=2, padding=1),  # 14 -> 7
            nn.ReLU(),
            nn.Flatten(),
        )
        self.fc_mu = nn.Linear(64 * 7 * 7, latent_dim)
        self.fc_logvar = nn.Linear(64 * 7 * 7, latent_dim)

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        h = self.features(x.reshape(-1, 1, 28, 28))
        mu, logvar = self.fc_mu(h), self.fc_logvar(h)
        return reparameterize(mu, logvar), mu, logvar


class ConvDecoder(nn.Module):
    """(B, latent_dim) -> pixel probabilities (B, 1, 28, 28)."""

    def __init__(self, latent_dim: int = 20) -> None:
        super().__init__()
        self.fc = nn.Linear(latent_dim, 64 * 7 * 7)
        self.deconv = nn.Sequential(
            nn.ReLU(),
            nn.Unflatten(1, (64, 7, 7)),
            nn.ConvTranspose2d(64, 32, kernel_size=4, stride=2, padding=1),  # 7 -> 14
            nn.ReLU(),
            nn.ConvTranspose2d(32, 1, kernel_size=4, stride=2, padding=1),  # 14 -> 28
            nn.Sigmoid(),
        )

    def forward(self, z: torch.Tensor) -> torch.Tensor:
        return self.deconv(self.fc(z))


class ConvVAE(nn.Module):
    """Convolutional encoder + transposed-convolution decoder; same interface as the MLP VAE."""

    def __init__(self, latent_dim: int = 20) -> None:
        super().__init__()
        self.latent_dim = latent_dim
        self.encoder = ConvEncoder(latent_dim)
        self.decoder = ConvDecoder(latent_dim)

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """Returns (x_recon (B, 1, 28, 28), mu, logvar)."""
        z, mu, logvar = self.encoder(x)
        return self.decoder(z), mu, logvar

    @torch.no_grad()
    def sample(self, n: int) -> torch.Tensor:
        device = next(self.parameters()).device
        return self.decoder(torch.randn(n, self.latent_dim, device=device))
