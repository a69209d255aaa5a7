# question: mnist-decoder-bce
# expect: fail
# why: Tanh outputs negative values (seed option)
decoder = nn.Sequential(nn.Linear(latent_dim, 400), nn.ReLU(), nn.Linear(400, 784), nn.Tanh())
