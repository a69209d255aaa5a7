# question: mnist-decoder-bce
# expect: pass
# why: a Rearrange layer shapes the output as images
from einops.layers.torch import Rearrange

decoder = nn.Sequential(
    nn.Linear(latent_dim, 400),
    nn.ReLU(),
    nn.Linear(400, 784),
    nn.Sigmoid(),
    Rearrange("b (c h w) -> b c h w", c=1, h=28),
)
