# question: mnist-decoder-bce
# expect: pass
# why: an MLP with a Sigmoid output
decoder = nn.Sequential(
    nn.Linear(latent_dim, 400),
    nn.ReLU(),
    nn.Linear(400, 784),
    nn.Sigmoid(),
)
