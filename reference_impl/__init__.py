"""Reference PyTorch models for the course: readable, device-agnostic, used by the grader too.

- :mod:`reference_impl.mlp_vae`: the 784-400-20 MLP VAE of the course notes.
- :mod:`reference_impl.conv_vae`: a convolutional VAE with a transposed-convolution decoder.
- :mod:`reference_impl.vq_vae`: a VQ-VAE with a 512 x 64 codebook and straight-through gradients.
- :mod:`reference_impl.losses`: the closed-form KL term and the (beta-)VAE loss.
- :mod:`reference_impl.data`: a seeded synthetic set of binary 28x28 stroke images (offline).
- :mod:`reference_impl.train`: ``python -m reference_impl.train --steps N``.
"""

from reference_impl.conv_vae import ConvVAE
from reference_impl.losses import kl_divergence, vae_loss
from reference_impl.mlp_vae import VAE, Decoder, Encoder, reparameterize
from reference_impl.vq_vae import VQVAE, VectorQuantizer

__all__ = [
    "VAE",
    "ConvVAE",
    "Decoder",
    "Encoder",
    "VQVAE",
    "VectorQuantizer",
    "kl_divergence",
    "reparameterize",
    "vae_loss",
]
