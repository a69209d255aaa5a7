"""The fully connected VAE of the course notes: 784-400-20 encoder, 20-400-784 sigmoid decoder."""

from __future__ import annotations

import torch
from torch import nn

IMAGE_PIXELS = 28 * 28


def reparameterize(mu: torch.Tensor, logvar: torch.Tensor) -> torch.Tensor:
    """Sample z ~ N(mu, exp(logvar)) as mu + sigma * eps, so gradients reach mu and logvar.

    The randomness lives in eps ~ N(0, I), which has no parameters; z is then a differentiable
    function of the encoder's outputs.
    """
    std = torch.exp(0.5 * logvar)
    eps = torch.randn_like(std)
    return mu + eps * std


class Encoder(nn.Module):
    """Maps a batch of images (B, 784) or (B, 1, 28, 28) to (z, mu, logvar), each (B, latent_dim)."""

    def __init__(
        self, input_dim: int = IMAGE_PIXELS, hidden_dim: int = 400, latent_dim: int = 20
    ) -> None:
        super().__init__()
        self.fc1 = nn.Linear(input_dim, hidden_dim)
        self.fc_mu = nn.Linear(hidden_dim, latent_dim)
        self.fc_logvar = nn.Linear(hidden_dim, latent_dim)

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        h = torch.relu(self.fc1(x.flatten(start_dim=1)))
        mu = self.fc_mu(h)
        logvar = self.fc_logvar(h)
        return reparameterize(mu, logvar), mu, logvar


class Decoder(nn.Module):
    """Maps latent codes (B, latent_dim) to pixel probabilities (B, 784) in (0, 1)."""

    def __init__(
        self, latent_dim: int = 20, hidden_dim: int = 400, output_dim: int = IMAGE_PIXELS
    ) -> None:
        super().__init__()
        self.net = nn.Sequential(
            nn.Linear(latent_dim, hidden_dim),
            nn.ReLU(),
            nn.Linear(hidden_dim, output_dim),
            nn.Sigmoid(),  # probabilities, so binary cross-entropy applies
        )

    def forward(self, z: torch.Tensor) -> torch.Tensor:
        return self.net(z)


class VAE(nn.Module):
    """Encoder + decoder; ``forward`` returns what :func:`reference_impl.losses.vae_loss` needs."""

    def __init__(self, latent_dim: int = 20, hidden_dim: int = 400) -> None:
        super().__init__()
        self.latent_dim = latent_dim
        self.encoder = Encoder(hidden_dim=hidden_dim, latent_dim=latent_dim)
        self.decoder = Decoder(latent_dim=latent_dim, hidden_dim=hidden_dim)

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """Returns (x_recon (B, 784), mu, logvar)."""
        z, mu, logvar = self.encoder(x)
        return self.decoder(z), mu, logvar

    @torch.no_grad()
    def sample(self, n: int) -> torch.Tensor:
        """Generate n new images (n, 784) by decoding draws from the prior N(0, I)."""
        device = next(self.parameters()).device
        return self.decoder(torch.randn(n, self.latent_dim, device=device))
