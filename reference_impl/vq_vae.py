"""A VQ-VAE: encoder to a (B, 64, H, W) grid, nearest-code quantization, decoder.

The latent space is discrete: every encoder vector is replaced by its nearest row of a
learnable codebook ``nn.Embedding(512, 64)``. Taking the nearest row has no useful gradient,
so the straight-through estimator copies the decoder's gradient onto the encoder output, and two
extra losses train the codebook (pull codes towards encoder outputs) and keep the encoder
committed to its codes.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn


def flatten_for_codebook(z: torch.Tensor) -> torch.Tensor:
    """(B, D, H, W) -> (B*H*W, D), row (b*H + h)*W + w holding z[b, :, h, w].

    The channel axis must be moved last before reshaping: ``z.view(-1, D)`` would mix values
    from different positions into one row.
    """
    return z.permute(0, 2, 3, 1).reshape(-1, z.size(1))


def nearest_code_indices(flat_z: torch.Tensor, codebook: torch.Tensor) -> torch.Tensor:
    """For each row of ``flat_z`` (N, D), the index (int64) of the nearest row of ``codebook``
    (K, D) in Euclidean distance.

    ||a - c||^2 = ||a||^2 - 2 a.c + ||c||^2 avoids building an (N, K, D) tensor.
    """
    distances = (
        flat_z.pow(2).sum(dim=1, keepdim=True)
        - 2 * flat_z @ codebook.t()
        + codebook.pow(2).sum(dim=1)
    )
    return distances.argmin(dim=1)


@dataclass
class Quantized:
    """What the quantizer hands back: straight-through codes, indices and its two losses."""

    z_q: torch.Tensor
    indices: torch.Tensor
    codebook_loss: torch.Tensor
    commitment_loss: torch.Tensor


class VectorQuantizer(nn.Module):
    """Replaces each D-vector of a (B, D, H, W) grid by its nearest codebook row."""

    def __init__(self, num_codes: int = 512, code_dim: int = 64) -> None:
        super().__init__()
        # nn.Embedding's N(0, 1) start keeps codes on the scale of fresh encoder outputs; a tiny
        # uniform start lets encoder outputs outgrow the codebook, and its loss then rises.
        self.codebook = nn.Embedding(num_codes, code_dim)

    def forward(self, z_e: torch.Tensor) -> Quantized:
        batch, dim, height, width = z_e.shape
        indices = nearest_code_indices(flatten_for_codebook(z_e), self.codebook.weight)
        z_q = self.codebook(indices).view(batch, height, width, dim).permute(0, 3, 1, 2)
        codebook_loss = F.mse_loss(z_q, z_e.detach())  # moves codes towards encoder outputs
        commitment_loss = F.mse_loss(z_e, z_q.detach())  # keeps the encoder near its codes
        # Straight-through: the forward value is z_q, the backward pass treats it as z_e.
        z_q_st = z_e + (z_q - z_e).detach()
        return Quantized(z_q_st, indices.view(batch, height, width), codebook_loss, commitment_loss)

    def sample_codes(self, n: int) -> torch.Tensor:
        """n codebook rows drawn uniformly at random (a uniform prior over the codes)."""
        indices = torch.randint(0, self.codebook.num_embeddings, (n,), device=self.codebook.weight.device)
        return self.codebook(indices)


@dataclass
class VQVAEOutput:
    x_recon: torch.Tensor
    indices: torch.Tensor
    codebook_loss: torch.Tensor
    commitment_loss: torch.Tensor


class VQVAE(nn.Module):
    """(B, 1, 28, 28) -> encoder (B, 64, 7, 7) -> quantizer -> decoder -> (B, 1, 28, 28)."""

    def __init__(self, num_codes: int = 512, code_dim: int = 64) -> None:
        super().__init__()
        self.encoder = nn.Sequential(
            nn.Conv2d(1, 32, kernel_size=4, stride=2, padding=1),  # 28 -> 14
            nn.ReLU(),
            nn.Conv2d(32, code_dim, kernel_size=4, stride=2, padding=1),  # 14 -> 7
        )
        self.quantizer = VectorQuantizer(num_codes, code_dim)
        self.decoder = nn.Sequential(
            nn.ConvTranspose2d(code_dim, 32, kernel_size=4, stride=2, padding=1),  # 7 -> 14
            nn.ReLU(),
            nn.ConvTranspose2d(32, 1, kernel_size=4, stride=2, padding=1),  # 14 -> 28
            nn.Sigmoid(),
        )

    @property
    def codebook(self) -> nn.Embedding:
        return self.quantizer.codebook

    def forward(self, x: torch.Tensor) -> VQVAEOutput:
        quantized = self.quantizer(self.encoder(x.reshape(-1, 1, 28, 28)))
        return VQVAEOutput(
            self.decoder(quantized.z_q),
            quantized.indices,
            quantized.codebook_loss,
            quantized.commitment_loss,
        )


def vq_vae_loss(output: VQVAEOutput, x: torch.Tensor, commitment_weight: float = 0.25) -> torch.Tensor:
    """Reconstruction (BCE, mean per pixel) + codebook loss + commitment_weight * commitment loss."""
    recon = F.binary_cross_entropy(output.x_recon, x.reshape(output.x_recon.shape))
    return recon + output.codebook_loss + commitment_weight * output.commitment_loss
