"""A seeded synthetic data set of binary 28x28 images (pen strokes and rings), drawn with torch.

It stands in for MNIST where no download is possible: images are binary like binarised MNIST,
structured (so a VAE has something to learn), and identical for the same seed on any machine.
"""

from __future__ import annotations

import torch

SIDE = 28


def _segment_mask(
    a: torch.Tensor, b: torch.Tensor, thickness: torch.Tensor, grid: torch.Tensor
) -> torch.Tensor:
    """Pixels within ``thickness`` of the segment a-b; a, b (N, 2), grid (28, 28, 2) -> (N, 28, 28)."""
    direction = (b - a)[:, None, None, :]
    offset = grid[None] - a[:, None, None, :]
    length_sq = direction.pow(2).sum(-1).clamp_min(1e-6)
    t = ((offset * direction).sum(-1) / length_sq).clamp(0, 1)
    distance = (offset - t[..., None] * direction).norm(dim=-1)
    return distance < thickness[:, None, None]


def _ring_mask(
    centre: torch.Tensor, radius: torch.Tensor, thickness: torch.Tensor, grid: torch.Tensor
) -> torch.Tensor:
    distance = (grid[None] - centre[:, None, None, :]).norm(dim=-1)
    return (distance - radius[:, None, None]).abs() < thickness[:, None, None]


def synthetic_strokes(n: int, seed: int = 0, strokes: int = 2) -> torch.Tensor:
    """``n`` binary images (n, 1, 28, 28) of float32 0/1: ``strokes`` line segments each, and a
    ring in about half of them. Same seed, same images."""
    if n < 1:
        raise ValueError(f"need at least one image, got n={n}")
    generator = torch.Generator().manual_seed(seed)

    def uniform(*shape: int, low: float, high: float) -> torch.Tensor:
        return low + (high - low) * torch.rand(*shape, generator=generator)

    coords = torch.arange(SIDE, dtype=torch.float32)
    grid = torch.stack(torch.meshgrid(coords, coords, indexing="ij"), dim=-1)
    image = torch.zeros(n, SIDE, SIDE, dtype=torch.bool)
    for _ in range(strokes):
        a = uniform(n, 2, low=4, high=24)
        b = uniform(n, 2, low=4, high=24)
        image |= _segment_mask(a, b, uniform(n, low=1.0, high=2.0), grid)
    has_ring = torch.rand(n, generator=generator) < 0.5
    ring = _ring_mask(
        uniform(n, 2, low=10, high=18),
        uniform(n, low=3, high=7),
        uniform(n, low=0.7, high=1.2),
        grid,
    )
    image |= ring & has_ring[:, None, None]
    return image.float().unsqueeze(1)
