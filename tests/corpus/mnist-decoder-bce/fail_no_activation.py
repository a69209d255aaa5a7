# question: mnist-decoder-bce
# expect: fail
# why: no output activation
decoder = nn.Sequential(nn.Linear(latent_dim, 400), nn.ReLU(), nn.Linear(400, 784))
