"""Train a reference model for a few steps on the offline synthetic data and report the loss.

    python -m reference_impl.train --steps 200 --model mlp --beta 1.0

Prints the loss every ``--log-every`` steps and a final line comparing the mean loss of the first
and last ten steps, so a short run shows whether learning happens at all.
"""

from __future__ import annotations

import argparse
import sys
from dataclasses import dataclass, field
from typing import Sequence

import torch

from reference_impl.conv_vae import ConvVAE
from reference_impl.data import synthetic_strokes
from reference_impl.losses import vae_loss
from reference_impl.mlp_vae import VAE
from reference_impl.vq_vae import VQVAE, vq_vae_loss

MODELS = ("mlp", "conv", "vq")


@dataclass
class TrainReport:
    """Loss per step (per image for the VAEs, so runs with different batch sizes compare)."""

    model: str
    device: str
    losses: list[float] = field(default_factory=list)

    def window_means(self, window: int = 10) -> tuple[float, float]:
        """Mean loss of the first and the last ``window`` steps (fewer if the run is short)."""
        window = max(1, min(window, len(self.losses) // 2 or 1))
        first = self.losses[:window]
        last = self.losses[-window:]
        return sum(first) / len(first), sum(last) / len(last)


def pick_device(name: str) -> torch.device:
    """``auto`` picks CUDA when there is one; asking for CUDA without one is a usage error."""
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if name == "cuda" and not torch.cuda.is_available():
        raise ValueError("--device cuda was requested but no CUDA device is available")
    return torch.device(name)


def build_model(name: str) -> torch.nn.Module:
    if name == "mlp":
        return VAE()
    if name == "conv":
        return ConvVAE()
    if name == "vq":
        return VQVAE()
    raise ValueError(f"unknown model {name!r}; choose one of {', '.join(MODELS)}")


def train(
    model_name: str = "mlp",
    steps: int = 100,
    batch_size: int = 64,
    lr: float = 1e-3,
    beta: float = 1.0,
    seed: int = 0,
    device: str = "auto",
    dataset_size: int = 2048,
    log_every: int = 0,
) -> TrainReport:
    """Train ``model_name`` with Adam on seeded synthetic strokes; returns the loss per step."""
    if steps < 1 or batch_size < 1 or dataset_size < 1:
        raise ValueError("--steps, --batch-size and --dataset-size must be at least 1")
    torch.manual_seed(seed)
    target = pick_device(device)
    data = synthetic_strokes(dataset_size, seed=seed).to(target)
    model = build_model(model_name).to(target)
    optimizer = torch.optim.Adam(model.parameters(), lr=lr)
    report = TrainReport(model_name, str(target))
    order = torch.randperm(dataset_size, device=target)
    cursor = 0
    model.train()
    for step in range(1, steps + 1):
        if cursor + batch_size > dataset_size:
            order, cursor = torch.randperm(dataset_size, device=target), 0
        x = data[order[cursor : cursor + batch_size]]
        cursor += batch_size
        optimizer.zero_grad()
        if model_name == "vq":
            loss = vq_vae_loss(model(x), x)
        else:
            x_recon, mu, logvar = model(x)
            loss = vae_loss(x_recon, x, mu, logvar, beta=beta) / x.size(0)
        loss.backward()
        optimizer.step()
        report.losses.append(loss.item())
        if log_every and (step % log_every == 0 or step == 1):
            print(f"step {step:>5}  loss {loss.item():.4f}", flush=True)
    return report


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m reference_impl.train",
        description="Train a reference VAE on offline synthetic 28x28 binary strokes.",
    )
    parser.add_argument("--steps", type=int, default=200, help="optimizer steps (default 200)")
    parser.add_argument("--model", choices=MODELS, default="mlp", help="which model (default mlp)")
    parser.add_argument("--batch-size", type=int, default=64)
    parser.add_argument("--lr", type=float, default=1e-3)
    parser.add_argument("--beta", type=float, default=1.0, help="KL weight (VAEs only)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--dataset-size", type=int, default=2048)
    parser.add_argument("--device", choices=("auto", "cpu", "cuda"), default="auto")
    parser.add_argument("--log-every", type=int, default=20, help="0 prints only the summary")
    args = parser.parse_args(argv)
    try:
        report = train(
            args.model,
            steps=args.steps,
            batch_size=args.batch_size,
            lr=args.lr,
            beta=args.beta,
            seed=args.seed,
            device=args.device,
            dataset_size=args.dataset_size,
            log_every=args.log_every,
        )
    except ValueError as err:
        parser.error(str(err))  # exits with status 2
    first, last = report.window_means()
    verdict = "fell" if last < first else "did not fall"
    print(
        f"{report.model} on {report.device}: loss {verdict} from {first:.4f} "
        f"(first steps) to {last:.4f} (last steps) over {len(report.losses)} steps"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
